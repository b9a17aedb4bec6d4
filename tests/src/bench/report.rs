//! The numbers of one bench: every run's value, medians, ratios, as JSON and as a table.

use std::{collections::BTreeMap, fmt::Write as _};

use anyhow::Result;
use serde_json::{json, Map, Value};

use super::{
    batch::Writer,
    program::{Program, FDB_SIZES},
    traffic::{Metric, Topology},
    Plan,
};

/// One quantity measured once per run; a failed run leaves `None` and its error.
#[derive(Clone, Debug, Default)]
pub struct Series {
    pub runs: Vec<Option<f64>>,
    pub errors: Vec<String>,
}

impl Series {
    pub fn record(&mut self, value: Result<f64>) {
        match value {
            Ok(v) => self.runs.push(Some(v)),
            Err(e) => {
                self.runs.push(None);
                self.errors.push(format!("run {}: {e:#}", self.runs.len()));
            }
        }
    }

    /// The median of the runs that succeeded.
    pub fn median(&self) -> Option<f64> {
        let mut ok: Vec<f64> = self.runs.iter().flatten().copied().collect();
        if ok.is_empty() {
            return None;
        }
        ok.sort_by(f64::total_cmp);
        let mid = ok.len() / 2;
        Some(if ok.len() % 2 == 1 {
            ok[mid]
        } else {
            (ok[mid - 1] + ok[mid]) / 2.0
        })
    }

    fn to_json(&self) -> Map<String, Value> {
        let mut m = Map::new();
        m.insert("runs".into(), json!(self.runs));
        m.insert("median".into(), json!(self.median()));
        m.insert("errors".into(), json!(self.errors));
        m
    }
}

pub struct Report {
    pub plan: Plan,
    pub traffic: BTreeMap<(Topology, Metric), Series>,
    /// Keyed by program and FDB size.
    pub programs: BTreeMap<(Program, u32), Series>,
    /// FDB entries per second through `-batch`, by writer.
    pub batch: BTreeMap<Writer, Series>,
}

impl Report {
    pub fn new(plan: Plan) -> Self {
        Report {
            plan,
            traffic: BTreeMap::new(),
            programs: BTreeMap::new(),
            batch: BTreeMap::new(),
        }
    }

    pub fn median(&self, topology: Topology, metric: Metric) -> Option<f64> {
        self.traffic
            .get(&(topology, metric))
            .and_then(Series::median)
    }

    /// `topology`'s median over `base`'s, for the same metric.
    pub fn ratio(&self, topology: Topology, metric: Metric, base: Topology) -> Option<f64> {
        Some(self.median(topology, metric)? / self.median(base, metric)?)
    }

    pub fn program_median(&self, program: Program, fdb_entries: u32) -> Option<f64> {
        self.programs
            .get(&(program, fdb_entries))
            .and_then(Series::median)
    }

    /// How much a program slows down with the large FDB.
    pub fn fdb_growth(&self, program: Program) -> Option<f64> {
        let [small, large] = FDB_SIZES;
        Some(self.program_median(program, large)? / self.program_median(program, small)?)
    }

    pub fn to_json(&self) -> Value {
        let mut topologies = Map::new();
        for t in Topology::ALL {
            let mut metrics = Map::new();
            for m in Metric::ALL {
                let mut entry = Map::new();
                entry.insert("unit".into(), json!(m.unit()));
                entry.insert(
                    "better".into(),
                    json!(if m.higher_is_better() {
                        "higher"
                    } else {
                        "lower"
                    }),
                );
                entry.extend(
                    self.traffic
                        .get(&(t, m))
                        .cloned()
                        .unwrap_or_default()
                        .to_json(),
                );
                entry.insert("vs_kernel".into(), json!(self.ratio(t, m, t.kernel())));
                entry.insert("vs_plain".into(), json!(self.ratio(t, m, Topology::Plain)));
                metrics.insert(m.key().into(), Value::Object(entry));
            }
            topologies.insert(
                t.key().into(),
                json!({ "description": t.describe(), "metrics": metrics }),
            );
        }
        let mut programs = Map::new();
        for p in Program::ALL {
            let mut entry = Map::new();
            entry.insert("description".into(), json!(p.describe()));
            entry.insert("unit".into(), json!("ns/packet"));
            for n in FDB_SIZES {
                let series = self.programs.get(&(p, n)).cloned().unwrap_or_default();
                entry.insert(format!("fdb_{n}"), Value::Object(series.to_json()));
            }
            entry.insert(
                format!("ratio_fdb_{}_vs_{}", FDB_SIZES[1], FDB_SIZES[0]),
                json!(self.fdb_growth(p)),
            );
            programs.insert(p.key().into(), Value::Object(entry));
        }
        let mut batch = Map::new();
        batch.insert("entries".into(), json!(super::batch::ENTRIES));
        batch.insert("unit".into(), json!("entries/s"));
        for w in Writer::ALL {
            let series = self.batch.get(&w).cloned().unwrap_or_default();
            batch.insert(w.key().into(), Value::Object(series.to_json()));
        }
        batch.insert("vtep_vs_kernel".into(), json!(self.batch_ratio()));
        json!({
            "machine": machine(),
            "plan": self.plan.to_json(),
            "topologies": topologies,
            "programs": programs,
            "batch": batch,
        })
    }

    fn batch_median(&self, w: Writer) -> Option<f64> {
        self.batch.get(&w).and_then(Series::median)
    }

    /// vtep's batch throughput over the kernel's, medians of the same run.
    pub fn batch_ratio(&self) -> Option<f64> {
        Some(self.batch_median(Writer::Vtep)? / self.batch_median(Writer::Kernel)?)
    }

    /// Medians and ratios, for the terminal.
    pub fn table(&self) -> String {
        let mut s = String::new();
        writeln!(
            s,
            "medians of {} run(s), topologies measured in turn each run; the machine is shared, so compare ratios",
            self.plan.runs
        ).ok();
        let shown = self.plan.topologies();
        let measured: &[Metric] = if shown.is_empty() { &[] } else { &Metric::ALL };
        write!(s, "\n{:<28}", "").ok();
        for t in shown {
            write!(s, "{:>12}", t.key()).ok();
        }
        s.push('\n');
        for &m in measured {
            write!(s, "{:<28}", format!("{} ({})", m.label(), m.unit())).ok();
            for t in Topology::ALL {
                write!(
                    s,
                    "{:>12}",
                    self.median(t, m)
                        .map_or("failed".into(), |v| number(v, m.unit()))
                )
                .ok();
            }
            s.push('\n');
            for (name, base) in [
                (
                    "  vs kernel (same underlay)",
                    Topology::kernel as fn(_) -> _,
                ),
                ("  vs plain", |_| Topology::Plain),
            ] {
                write!(s, "{name:<28}").ok();
                for t in Topology::ALL {
                    write!(
                        s,
                        "{:>12}",
                        self.ratio(t, m, base(t))
                            .map_or("-".into(), |r| format!("{r:.2}x"))
                    )
                    .ok();
                }
                s.push('\n');
            }
        }
        let [small, large] = FDB_SIZES;
        let (small_head, large_head) = (format!("FDB {small}"), format!("FDB {large}"));
        writeln!(
            s,
            "\n{:<28}{small_head:>12}{large_head:>12}{:>12}",
            "program (ns/packet)", "ratio"
        )
        .ok();
        for p in Program::ALL {
            let cell = |n| {
                self.program_median(p, n)
                    .map_or("failed".into(), |v| format!("{v:.1}"))
            };
            let growth = self
                .fdb_growth(p)
                .map_or("-".into(), |r| format!("{r:.2}x"));
            writeln!(
                s,
                "{:<28}{:>12}{:>12}{:>12}",
                p.key(),
                cell(small),
                cell(large),
                growth
            )
            .ok();
        }
        let failures: Vec<String> = self
            .traffic
            .iter()
            .flat_map(|((t, m), series)| {
                series
                    .errors
                    .iter()
                    .map(move |e| format!("{} {}: {e}", t.key(), m.key()))
            })
            .chain(self.programs.iter().flat_map(|((p, n), series)| {
                series
                    .errors
                    .iter()
                    .map(move |e| format!("{} (FDB {n}): {e}", p.key()))
            }))
            .chain(self.batch.iter().flat_map(|(w, series)| {
                series
                    .errors
                    .iter()
                    .map(move |e| format!("{} -batch: {e}", w.key()))
            }))
            .collect();
        let rate = |w| {
            self.batch_median(w)
                .map_or("failed".into(), |v| format!("{:.0}", v))
        };
        writeln!(
            s,
            "\nFDB entries/s through -batch ({} entries): vtep {} kernel (bridge) {} ratio {}",
            super::batch::ENTRIES,
            rate(Writer::Vtep),
            rate(Writer::Kernel),
            self.batch_ratio()
                .map_or("-".into(), |r| format!("{r:.2}x"))
        )
        .ok();
        if !failures.is_empty() {
            s.push_str("\nfailed measurements:\n");
            for f in failures {
                writeln!(s, "  {f}").ok();
            }
        }
        s
    }
}

pub fn number(v: f64, unit: &str) -> String {
    match unit {
        "packets/s" => format!("{:.0}k", v / 1e3),
        _ => format!("{v:.2}"),
    }
}

/// What the numbers were measured on: they only compare within one run on one machine.
fn machine() -> Value {
    let read = |p: &str| {
        std::fs::read_to_string(p)
            .map(|s| s.trim().to_string())
            .ok()
    };
    let cpu = read("/proc/cpuinfo").and_then(|c| {
        c.lines()
            .find(|l| l.starts_with("model name"))
            .and_then(|l| l.split(':').nth(1))
            .map(|m| m.trim().to_string())
    });
    json!({
        "cpus": std::thread::available_parallelism().map(|n| n.get()).ok(),
        "cpu": cpu,
        "kernel": read("/proc/sys/kernel/osrelease"),
        "unix_time": std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs()).ok(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn median_skips_failed_runs_and_averages_the_middle_pair() {
        let mut s = Series::default();
        for v in [
            Ok(3.0),
            Err(anyhow::anyhow!("boom")),
            Ok(1.0),
            Ok(2.0),
            Ok(10.0),
        ] {
            s.record(v);
        }
        assert_eq!(s.median(), Some(2.5));
        assert_eq!(s.errors, vec!["run 2: boom".to_string()]);
        assert_eq!(Series::default().median(), None);
    }
}
