//! The soak: the reference scenario under a 500 pps ping and an iperf3 stream while
//! unrelated FDB entries churn through `vtep` and `vtep up` re-runs (upgrades) every two
//! seconds. Reports loss, table sizes and the loader's peak memory.

use std::{
    process::{Command, Stdio},
    sync::atomic::{AtomicBool, AtomicU64, Ordering},
    time::{Duration, Instant},
};

use anyhow::{bail, Context, Result};
use serde_json::Value;

use crate::{cmd::vtep_bin, iperf, netns::unique_tag, scenario::ping_counts, Host, Stack, Testbed};

#[derive(Debug)]
pub struct SoakReport {
    pub seconds: u32,
    pub pings_sent: u64,
    pub pings_received: u64,
    pub tcp_gbits: f64,
    pub upgrades: u64,
    pub fdb_ops: u64,
    pub fdb_entries: usize,
    pub learned_entries: usize,
    /// Peak resident memory of any one `vtep` invocation, in KiB.
    pub loader_max_rss_kib: i64,
}

impl SoakReport {
    pub fn lost(&self) -> u64 {
        self.pings_sent - self.pings_received
    }
}

/// Runs `vtep -n HOST args` and returns its peak RSS in KiB (wait4's rusage: this child
/// alone, not the other processes the soak runs).
fn vtep_measured(host: &Host, args: &[&str]) -> Result<i64> {
    let child = Command::new(vtep_bin())
        .args(["-n", &host.ns])
        .args(args)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .context("running vtep")?;
    let mut status = 0;
    // SAFETY: rusage is plain integers: all zeroes is a valid value.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: status and usage are live locals the kernel fills in; the pid is our child.
    if unsafe { libc::wait4(child.id() as i32, &mut status, 0, &mut usage) } < 0 {
        bail!("waiting for vtep: {}", std::io::Error::last_os_error());
    }
    if !libc::WIFEXITED(status) || libc::WEXITSTATUS(status) != 0 {
        bail!("`vtep {}` failed", args.join(" "));
    }
    Ok(usage.ru_maxrss)
}

pub fn run(seconds: u32) -> Result<SoakReport> {
    let bed = Testbed::new(&unique_tag("soak"), [Stack::vtep(), Stack::vtep()])?;
    let (h1, h2) = (bed.c1(), bed.c2());
    let done = AtomicBool::new(false);
    let (max_rss, upgrades, fdb_ops) = (AtomicU64::new(0), AtomicU64::new(0), AtomicU64::new(0));
    let deadline = Instant::now() + Duration::from_secs(seconds.into());
    let up = ["up", "--dev", "eth1", "--local", h1.ip.as_str()];

    let secs = seconds.to_string();
    let (pings, tcp) = std::thread::scope(|s| -> Result<_> {
        let pinger = s.spawn(|| {
            ping_counts(
                &h1.container,
                &h2.container_ip,
                "0.002",
                u64::from(seconds) * 500,
            )
        });
        let stream = s.spawn(|| {
            iperf::exchange(
                &h1.container,
                &h2.container,
                &h2.container_ip,
                &["-t", &secs, "-b", "500M"],
            )
        });
        let churner = s.spawn(|| -> Result<()> {
            let mut i = 0u32;
            while !done.load(Ordering::Relaxed) {
                let mac = format!("0a:cc:00:{:02x}:{:02x}:01", (i >> 8) as u8, i as u8);
                let rss = vtep_measured(
                    h1,
                    &["fdb", "add", &mac, "dst", "192.168.104.77", "vni", "42"],
                )?
                .max(vtep_measured(h1, &["fdb", "del", &mac, "vni", "42"])?);
                max_rss.fetch_max(rss as u64, Ordering::Relaxed);
                fdb_ops.fetch_add(2, Ordering::Relaxed);
                i = i.wrapping_add(1);
            }
            Ok(())
        });
        while Instant::now() < deadline {
            let rss = vtep_measured(h1, &up)?;
            max_rss.fetch_max(rss as u64, Ordering::Relaxed);
            upgrades.fetch_add(1, Ordering::Relaxed);
            std::thread::sleep(
                Duration::from_secs(2).min(deadline.saturating_duration_since(Instant::now())),
            );
        }
        let pings = pinger.join().expect("pinger")?;
        let tcp = stream.join().expect("iperf3")?;
        done.store(true, Ordering::Relaxed);
        churner.join().expect("churner")?;
        Ok((pings, tcp))
    })?;

    let fdb: Value = serde_json::from_str(&h1.vtep(&["-j", "fdb", "show"])?)?;
    let entries = fdb.as_array().context("fdb show")?;
    Ok(SoakReport {
        seconds,
        pings_sent: pings.0,
        pings_received: pings.1,
        tcp_gbits: tcp["end"]["sum_sent"]["bits_per_second"]
            .as_f64()
            .unwrap_or(0.0)
            / 1e9,
        upgrades: upgrades.load(Ordering::Relaxed),
        fdb_ops: fdb_ops.load(Ordering::Relaxed),
        fdb_entries: entries.iter().filter(|e| e["dst"].is_string()).count(),
        learned_entries: entries.iter().filter(|e| e["origin"] == "learned").count(),
        loader_max_rss_kib: max_rss.load(Ordering::Relaxed) as i64,
    })
}
