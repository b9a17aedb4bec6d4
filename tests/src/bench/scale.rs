//! `cargo xtask bench --scale`: what long flood lists and big tables cost. The cost of one
//! broadcast from a port with flood lists of 16, 256 and 4,096 VTEPs (BPF_PROG_TEST_RUN on
//! the pinned port program, every copy really sent), and so the cost per copy; a million
//! FDB entries loaded by `vtep -batch` and by `bridge -batch` into a kernel vxlan device,
//! side by side: speed and kernel memory per entry.

use std::fmt::Write as _;

use anyhow::{anyhow, Context, Result};
use aya::programs::SchedClassifier;
use serde_json::{json, Value};

use super::{
    batch::{self, Load, Writer},
    frames,
    program::{self, Probe, Prog},
    Plan,
};
use crate::{netns, netns::unique_tag, Stack, Testbed};

pub const FLOOD_SIZES: [u32; 3] = [16, 256, 4096];
const LOAD_ENTRIES: usize = 1_000_000;
/// Few samples: a broadcast to 4,096 VTEPs takes milliseconds.
const PLAN: Plan = Plan {
    program_samples: 301,
    program_repeat: 100_000,
    ..Plan::QUICK
};

pub struct ScaleReport {
    /// Nanoseconds per broadcast, by flood-list length.
    pub flood: Vec<(u32, f64)>,
    pub loads: Vec<(Writer, Load)>,
}

impl ScaleReport {
    /// The cost of one more copy: the slope between the shortest and the longest list.
    pub fn per_copy_ns(&self) -> Option<f64> {
        let (first, last) = (self.flood.first()?, self.flood.last()?);
        Some((last.1 - first.1) / f64::from(last.0 - first.0))
    }

    pub fn to_json(&self) -> Value {
        json!({
            "flood_ns": self.flood.iter().map(|(n, ns)| json!({"vteps": n, "ns": ns})).collect::<Vec<_>>(),
            "flood_ns_per_copy": self.per_copy_ns(),
            "load": self.loads.iter().map(|(w, l)| json!({
                "writer": w.key(),
                "entries": LOAD_ENTRIES,
                "entries_per_sec": l.per_sec,
                "bytes_per_entry": l.bytes_per_entry,
            })).collect::<Vec<_>>(),
        })
    }

    pub fn table(&self) -> String {
        let mut t = String::new();
        writeln!(t, "broadcast from a port, by flood-list length").ok();
        for (n, ns) in &self.flood {
            writeln!(t, "  {n:>5} VTEPs  {:>10.0} ns", ns).ok();
        }
        if let Some(c) = self.per_copy_ns() {
            writeln!(t, "  per copy     {c:>10.0} ns").ok();
        }
        writeln!(t, "{LOAD_ENTRIES} FDB entries by -batch").ok();
        for (w, l) in &self.loads {
            writeln!(
                t,
                "  {:<7} {:>10.0} entries/s  {:>6.0} bytes/entry of kernel memory",
                w.key(),
                l.per_sec,
                l.bytes_per_entry
            )
            .ok();
        }
        t
    }
}

pub fn run() -> Result<ScaleReport> {
    let flood = flood_costs(&unique_tag("bs"))?;
    let rig = batch::Rig::new(&unique_tag("bs"), LOAD_ENTRIES)?;
    let loads = Writer::ALL
        .iter()
        .map(|&w| Ok((w, rig.measure(w)?)))
        .collect::<Result<_>>()?;
    Ok(ScaleReport { flood, loads })
}

/// Host 1 with a container port and a flood list of each length in turn, its far VTEPs
/// routed through host 2 with forwarding on (each copy's next hop from the FIB).
fn flood_costs(tag: &str) -> Result<Vec<(u32, f64)>> {
    let bed = Testbed::underlay(tag, vec![Stack::vtep(), Stack::vtep()])?;
    let (h1, h2) = (bed.c1(), bed.c2());
    h1.route_through("10.99.0.0/16", h2)?;
    h1.port(&h1.container, &h1.mac, &h1.container_ip, frames::VNI)?;
    let ports: Value = serde_json::from_str(&h1.vtep(&["-j", "port", "show"])?)?;
    let ifindex = ports[0]["host_ifindex"]
        .as_u64()
        .and_then(|i| u32::try_from(i).ok())
        .context("no host_ifindex in `vtep port show`")?;
    let port = Prog::Tc(
        SchedClassifier::from_pin(h1.pin_dir()?.join("prog_port"))
            .context("opening the pinned port program")?,
    );
    let mut out = Vec::new();
    for n in FLOOD_SIZES {
        h1.vtep(&["fdb", "flush", "vni", &frames::VNI.to_string()])?;
        let lines: String = (0..n)
            .map(|i| {
                format!(
                    "fdb append 00:00:00:00:00:00 dst 10.99.{}.{} vni {}\n",
                    i / 250,
                    1 + i % 250,
                    frames::VNI
                )
            })
            .collect();
        h1.batch(&lines)?;
        let ns = std::thread::scope(|s| {
            s.spawn(|| {
                let _inside = netns::enter(&h1.ns)?;
                program::stay_on_this_cpu()?;
                let probe = Probe {
                    prog: &port,
                    frame: frames::container_broadcast(),
                    ctx: Some(program::skb_ctx(ifindex)),
                    // The original is consumed: only the copies travel.
                    verdict: program::TC_ACT_SHOT,
                    expect: program::encapsulated,
                    compare_from: usize::MAX,
                };
                let idle = Probe {
                    prog: &port,
                    frame: frames::container_udp(),
                    ctx: None,
                    verdict: program::TC_ACT_OK,
                    expect: program::unchanged,
                    compare_from: 0,
                };
                program::cost(&probe, &idle, &PLAN)
            })
            .join()
            .map_err(|_| anyhow!("measuring thread panicked"))?
        })?;
        out.push((n, ns));
    }
    Ok(out)
}
