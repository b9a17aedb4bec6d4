//! The benchmark of issue 4: plain veth, bridge + kernel vxlan and vtep (each decap mode),
//! built side by side on this machine and measured in turn within every run, so drift on a
//! shared machine hits them alike; plus each eBPF program's cost per packet. Writes
//! `bench.json` and `bench.svg`; everything it builds is removed on every path.

mod batch;
mod chart;
#[cfg(feature = "etcd")]
pub mod control_plane;
mod floor;
mod frames;
mod program;
mod report;
pub mod scale;
mod traffic;

use std::{
    fs,
    io::IsTerminal,
    path::Path,
    sync::atomic::{AtomicBool, Ordering},
};

use anyhow::{bail, Context, Result};
use serde_json::{json, Value};

pub use batch::Writer;
pub use program::{Program, FDB_SIZES};
pub use report::{Report, Series};
pub use traffic::{Metric, Topology};

use crate::{netns::unique_tag, Overlay};

/// How long and how often to measure.
#[derive(Clone, Copy, Debug)]
pub struct Plan {
    pub runs: usize,
    pub iperf_secs: u32,
    pub ping_count: u32,
    /// Single BPF_PROG_TEST_RUN runs per program measurement (each of probe and idle frame).
    pub program_samples: u32,
    /// Passes of the repeated idle-frame run that calibrates out the timer.
    pub program_repeat: u32,
    /// Whether the topologies are built and measured at all.
    pub traffic: bool,
}

impl Plan {
    pub const FULL: Plan = Plan {
        runs: 5,
        iperf_secs: 4,
        ping_count: 50_000,
        program_samples: 20_000,
        program_repeat: 1_000_000,
        traffic: true,
    };
    /// Every measurement once, briefly: checks the bench works, measures little.
    pub const QUICK: Plan = Plan {
        runs: 1,
        iperf_secs: 1,
        ping_count: 5_000,
        program_samples: 1_000,
        program_repeat: 100_000,
        traffic: true,
    };

    /// The topologies this plan builds and measures.
    pub fn topologies(self) -> &'static [Topology] {
        if self.traffic {
            &Topology::ALL
        } else {
            &[]
        }
    }

    fn to_json(self) -> Value {
        json!({
            "runs": self.runs,
            "iperf_seconds": self.iperf_secs,
            "ping_count": self.ping_count,
            "program_samples": self.program_samples,
            "program_repeat": self.program_repeat,
            "traffic": self.traffic,
        })
    }
}

static INTERRUPTED: AtomicBool = AtomicBool::new(false);

/// Asks a running bench to stop at the next measurement (and clean up): for a Ctrl-C handler.
pub fn interrupt() {
    INTERRUPTED.store(true, Ordering::SeqCst);
}

fn check_interrupted() -> Result<()> {
    if INTERRUPTED.load(Ordering::SeqCst) {
        bail!("interrupted");
    }
    Ok(())
}

/// Runs the bench and writes `bench.json` and `bench.svg` into `out_dir`.
/// `traffic` false times only the programs: quick feedback while working on the data path.
pub fn run(quick: bool, traffic: bool, out_dir: &Path) -> Result<Report> {
    let plan = if quick { Plan::QUICK } else { Plan::FULL };
    let plan = Plan { traffic, ..plan };
    let per_run = Metric::ALL.len() * plan.topologies().len()
        + Program::ALL.len() * FDB_SIZES.len()
        + Writer::ALL.len();
    let mut progress = Progress::new(plan.runs * per_run);

    let mut overlays: Vec<(Topology, Box<dyn Overlay>)> = Vec::new();
    for &t in plan.topologies() {
        check_interrupted()?;
        progress.say(&format!("building {} ({})", t.key(), t.describe()));
        overlays.push((
            t,
            t.build(&unique_tag("b"))
                .with_context(|| format!("building {}", t.key()))?,
        ));
    }
    check_interrupted()?;
    progress.say(&format!(
        "building the program-cost hosts (FDBs of {FDB_SIZES:?} entries)"
    ));
    let rigs = program::Rigs::new(&unique_tag("b"))?;
    progress.say(&format!(
        "building the batch hosts ({} FDB entries per batch)",
        batch::ENTRIES
    ));
    let batch_rig = batch::Rig::new(&unique_tag("b"), batch::ENTRIES)?;

    let mut report = Report::new(plan);
    for run in 0..plan.runs {
        for metric in Metric::ALL {
            // A different topology goes first each run, so none always follows the same one.
            for i in 0..overlays.len() {
                let (topology, overlay) = &overlays[(i + run) % overlays.len()];
                check_interrupted()?;
                progress.step(&format!(
                    "run {}/{}: {} over {}",
                    run + 1,
                    plan.runs,
                    metric.label(),
                    topology.key()
                ));
                let value = metric.measure(overlay.as_ref(), &plan);
                check_interrupted()?;
                report
                    .traffic
                    .entry((*topology, metric))
                    .or_default()
                    .record(value);
            }
        }
        for program in Program::ALL {
            for n in FDB_SIZES {
                check_interrupted()?;
                progress.step(&format!(
                    "run {}/{}: {} with {n} FDB entries",
                    run + 1,
                    plan.runs,
                    program.key()
                ));
                report
                    .programs
                    .entry((program, n))
                    .or_default()
                    .record(rigs.measure(program, n, &plan));
            }
        }
        for writer in Writer::ALL {
            check_interrupted()?;
            progress.step(&format!(
                "run {}/{}: {} FDB entries through {} -batch",
                run + 1,
                plan.runs,
                batch::ENTRIES,
                writer.key()
            ));
            report
                .batch
                .entry(writer)
                .or_default()
                .record(batch_rig.measure(writer).map(|l| l.per_sec));
        }
    }
    drop(progress);

    fs::create_dir_all(out_dir).with_context(|| format!("creating {}", out_dir.display()))?;
    let json_path = out_dir.join("bench.json");
    fs::write(
        &json_path,
        serde_json::to_string_pretty(&report.to_json())? + "\n",
    )
    .with_context(|| format!("writing {}", json_path.display()))?;
    let svg_path = out_dir.join("bench.svg");
    fs::write(&svg_path, chart::svg(&report))
        .with_context(|| format!("writing {}", svg_path.display()))?;
    Ok(report)
}

/// One status line on stderr, rewritten in place on a terminal and cleared when dropped.
struct Progress {
    total: usize,
    done: usize,
    tty: bool,
}

impl Progress {
    fn new(total: usize) -> Self {
        Progress {
            total,
            done: 0,
            tty: std::io::stderr().is_terminal(),
        }
    }

    fn say(&self, what: &str) {
        if self.tty {
            eprint!("\r\x1b[2K{what}");
        } else {
            eprintln!("{what}");
        }
    }

    fn step(&mut self, what: &str) {
        self.done += 1;
        self.say(&format!("[{}/{}] {what}", self.done, self.total));
    }
}

impl Drop for Progress {
    fn drop(&mut self) {
        if self.tty {
            eprint!("\r\x1b[2K");
        }
    }
}
