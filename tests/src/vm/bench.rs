//! Kernel vxlan vs vtep (TC decap) vs vtep (native XDP decap) between the two VMs, measured
//! in turn within one boot: under TCG, runs of one configuration differ by 2-8% within a
//! boot but up to 26% between boots, so only interleaved runs compare, and differences
//! under ~15% are not resolved. Absolute figures under TCG say nothing about hardware.

use anyhow::{Context, Result};

use super::{
    reference::{tcp_result, Stack, SIDES},
    Pair, Series,
};

pub struct Config {
    pub name: &'static str,
    pub stack: Stack,
}

pub fn configs() -> Vec<Config> {
    vec![
        Config {
            name: "kernel",
            stack: Stack::Kernel,
        },
        Config {
            name: "vtep_tc",
            stack: Stack::Vtep(String::new()),
        },
        Config {
            name: "vtep_xdp",
            stack: Stack::Vtep("--decap xdp --xdp-mode native".into()),
        },
    ]
}

/// One measurement: ping round trip (ms, average of 20) and TCP (Mbit/s, 3 s).
#[derive(Clone, Copy, Debug)]
pub struct Sample {
    pub rtt_ms: f64,
    pub tcp_mbits: f64,
}

pub struct Report {
    pub series: Series,
    pub release: String,
    /// Per configuration (in `configs()` order), one sample per run.
    pub samples: Vec<Vec<Sample>>,
}

/// `runs` rounds, each measuring every configuration (a different one first each round).
pub fn run(series: Series, runs: usize, tag: &str, log: &mut dyn FnMut(&str)) -> Result<Report> {
    let pair = Pair::boot(series, tag)?;
    let configs = configs();
    // The first traffic after boot runs slower for every configuration (QEMU is still
    // translating the guest's paths): one unrecorded round of the first configuration.
    pair.configure([&configs[0].stack, &configs[0].stack])?;
    pair.ping(0, 2)?;
    pair.iperf(3, None)?;
    for me in [0, 1] {
        pair.unconfigure(me, &configs[0].stack)?;
    }
    let mut samples = vec![Vec::new(); configs.len()];
    for round in 0..runs {
        for k in 0..configs.len() {
            let i = (round + k) % configs.len();
            let c = &configs[i];
            pair.configure([&c.stack, &c.stack])?;
            // Warm-up: ARP and the first packets through a fresh path.
            pair.ping(0, 2)?;
            let s = Sample {
                rtt_ms: rtt(&pair)?,
                tcp_mbits: tcp_result(&pair.iperf(3, None)?)?.0 * 1000.0,
            };
            log(&format!(
                "run {} {:<9} rtt {:.3} ms  tcp {:.0} Mbit/s",
                round + 1,
                c.name,
                s.rtt_ms,
                s.tcp_mbits
            ));
            samples[i].push(s);
            for me in [0, 1] {
                pair.unconfigure(me, &c.stack)?;
            }
        }
    }
    Ok(Report {
        series,
        release: pair.kernel.release.clone(),
        samples,
    })
}

/// Average round trip of 20 pings from container 1.
fn rtt(pair: &Pair) -> Result<f64> {
    let out = pair.vms[0].run(&format!(
        "ip netns exec {} ping -q -c 20 -i 0.05 {}",
        SIDES[0].container, SIDES[1].container_ip
    ))?;
    // rtt min/avg/max/mdev = 0.412/0.530/0.873/0.101 ms
    let line = out
        .lines()
        .find(|l| l.contains("min/avg/max"))
        .with_context(|| format!("no rtt line: {out}"))?;
    let values = line.split('=').nth(1).context("rtt values")?;
    Ok(values
        .trim()
        .split('/')
        .nth(1)
        .context("rtt avg")?
        .parse()?)
}

pub fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    let n = v.len();
    if n == 0 {
        return f64::NAN;
    }
    if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    }
}

impl Report {
    /// A Markdown table: medians, vtep vs kernel ratios, and every run's values.
    pub fn table(&self) -> String {
        let configs = configs();
        let med = |i: usize, f: fn(&Sample) -> f64| median(self.samples[i].iter().map(f).collect());
        let mut t = format!(
            "kernel {} ({}), QEMU TCG -smp 1 -m 256, virtio-net on a tap wire; medians of {} interleaved runs\n\n",
            self.series.name(),
            self.release,
            self.samples[0].len()
        );
        t.push_str("| metric | kernel | vtep_tc | vtep_xdp | vtep_tc vs kernel | vtep_xdp vs kernel |\n|---|---|---|---|---|---|\n");
        let row = |name: &str, f: fn(&Sample) -> f64, fmt: fn(f64) -> String| {
            let m: Vec<f64> = (0..configs.len()).map(|i| med(i, f)).collect();
            format!(
                "| {name} | {} | {} | {} | {:.2}x | {:.2}x |\n",
                fmt(m[0]),
                fmt(m[1]),
                fmt(m[2]),
                m[1] / m[0],
                m[2] / m[0]
            )
        };
        // The spread of one configuration's runs in this boot: what the ratios can resolve.
        let spread = |f: fn(&Sample) -> f64| {
            (0..configs.len())
                .map(|i| {
                    let v: Vec<f64> = self.samples[i].iter().map(f).collect();
                    let (lo, hi) = v
                        .iter()
                        .fold((f64::MAX, f64::MIN), |(lo, hi), &x| (lo.min(x), hi.max(x)));
                    (hi - lo) / med(i, f)
                })
                .fold(0.0, f64::max)
        };
        t.push_str(&row("ping RTT (ms)", |s| s.rtt_ms, |v| format!("{v:.3}")));
        t.push_str(&row(
            "TCP 1 stream (Mbit/s)",
            |s| s.tcp_mbits,
            |v| format!("{v:.0}"),
        ));
        t.push_str(&format!(
            "\nlargest spread of one configuration's runs (max-min over median): ping {:.0}%, TCP {:.0}%\n",
            spread(|s| s.rtt_ms) * 100.0,
            spread(|s| s.tcp_mbits) * 100.0
        ));
        t.push_str("\nevery run (rtt ms / TCP Mbit/s):\n");
        for (i, c) in configs.iter().enumerate() {
            let runs: Vec<String> = self.samples[i]
                .iter()
                .map(|s| format!("{:.3}/{:.0}", s.rtt_ms, s.tcp_mbits))
                .collect();
            t.push_str(&format!("  {:<9} {}\n", c.name, runs.join("  ")));
        }
        t
    }
}
