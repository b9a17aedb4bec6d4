//! Control-plane throughput: FDB entries written per second by `vtep -batch`, and by
//! `bridge -batch` into a kernel vxlan device as the reference measured in the same run.

use std::{path::PathBuf, time::Instant};

use anyhow::{Context, Result};

use crate::{
    cmd::{run, vtep},
    netns::Netns,
};

/// Entries per measurement of the main bench.
pub const ENTRIES: usize = 100_000;

/// One batch load: its speed, and the kernel memory each entry took.
#[derive(Clone, Copy, Debug)]
pub struct Load {
    pub per_sec: f64,
    pub bytes_per_entry: f64,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Writer {
    Vtep,
    Kernel,
}

impl Writer {
    pub const ALL: [Writer; 2] = [Writer::Vtep, Writer::Kernel];

    pub fn key(self) -> &'static str {
        match self {
            Writer::Vtep => "vtep",
            Writer::Kernel => "kernel",
        }
    }
}

/// One host namespace per writer, each with an underlay device, and the two batch files.
pub struct Rig {
    vtep_ns: Netns,
    kernel_ns: Netns,
    vtep_file: PathBuf,
    kernel_file: PathBuf,
    entries: usize,
}

fn mac(i: usize) -> String {
    format!(
        "02:00:{:02x}:{:02x}:{:02x}:01",
        (i >> 16) & 255,
        (i >> 8) & 255,
        i & 255
    )
}

impl Rig {
    /// Batches of `entries` FDB entries for each writer.
    pub fn new(tag: &str, entries: usize) -> Result<Self> {
        let vtep_ns = Netns::add(&format!("{tag}bv"))?;
        let kernel_ns = Netns::add(&format!("{tag}bk"))?;
        for ns in [&vtep_ns.name, &kernel_ns.name] {
            run(
                "ip",
                &[
                    "-n", ns, "link", "add", "eth1", "type", "veth", "peer", "name", "eth1p",
                ],
            )?;
            run(
                "ip",
                &["-n", ns, "addr", "add", "192.168.104.2/24", "dev", "eth1"],
            )?;
            run("ip", &["-n", ns, "link", "set", "eth1", "up"])?;
        }
        vtep(&[
            "-n",
            &vtep_ns.name,
            "up",
            "--dev",
            "eth1",
            "--local",
            "192.168.104.2",
        ])?;
        let dir = std::env::temp_dir();
        let vtep_file = dir.join(format!("{tag}-vtep.batch"));
        let kernel_file = dir.join(format!("{tag}-bridge.batch"));
        let lines =
            |f: &dyn Fn(usize) -> String| (0..entries).map(f).collect::<Vec<_>>().join("\n");
        std::fs::write(
            &vtep_file,
            lines(&|i| format!("fdb add {} dst 192.168.104.{} vni 42", mac(i), 3 + i % 200)),
        )?;
        std::fs::write(
            &kernel_file,
            lines(&|i| {
                format!(
                    "fdb add {} dev vxlan1 self dst 192.168.104.{} vni 42 port 4789",
                    mac(i),
                    3 + i % 200
                )
            }),
        )?;
        Ok(Rig {
            vtep_ns,
            kernel_ns,
            vtep_file,
            kernel_file,
            entries,
        })
    }

    /// One batch into an empty table: entries per second, and kernel memory per entry
    /// (vtep: what its maps' fdinfo says; the kernel: slab and vmalloc growth, which other
    /// activity on the machine blurs a little).
    pub fn measure(&self, writer: Writer) -> Result<Load> {
        let kns = self.kernel_ns.name.as_str();
        if writer == Writer::Kernel {
            run(
                "ip",
                &[
                    "-n", kns, "link", "add", "vxlan1", "type", "vxlan", "id", "42",
                ],
            )
            .and_then(|_| {
                run(
                    "ip",
                    &[
                        "-n",
                        kns,
                        "link",
                        "set",
                        "vxlan1",
                        "type",
                        "vxlan",
                        "nolearning",
                    ],
                )
                .or(Ok(String::new()))
            })
            .context("creating the kernel vxlan device")?;
        }
        let before = self.memory(writer)?;
        let start = Instant::now();
        let result = match writer {
            Writer::Vtep => vtep(&[
                "-n",
                &self.vtep_ns.name,
                "-batch",
                &self.vtep_file.display().to_string(),
            ]),
            Writer::Kernel => run(
                "bridge",
                &["-n", kns, "-batch", &self.kernel_file.display().to_string()],
            ),
        };
        let secs = start.elapsed().as_secs_f64();
        let grown = self
            .memory(writer)
            .map(|after| after.saturating_sub(before));
        // Empty again for the next run, whatever happened.
        let cleanup = match writer {
            Writer::Vtep => vtep(&["-n", &self.vtep_ns.name, "fdb", "flush", "vni", "42"]),
            Writer::Kernel => run("ip", &["-n", kns, "link", "del", "vxlan1"]),
        };
        result?;
        cleanup?;
        Ok(Load {
            per_sec: self.entries as f64 / secs,
            bytes_per_entry: grown? as f64 / self.entries as f64,
        })
    }

    /// Bytes of kernel memory the writer's tables use (vtep), or the kernel's slab and
    /// vmalloc use (the vxlan FDB is kmalloc'd entries in a kvmalloc'd hash table).
    fn memory(&self, writer: Writer) -> Result<u64> {
        match writer {
            Writer::Vtep => {
                let show: serde_json::Value =
                    serde_json::from_str(&vtep(&["-n", &self.vtep_ns.name, "-j", "show"])?)?;
                let maps = show["memory"].as_object().context("no memory in show")?;
                Ok(maps.values().filter_map(serde_json::Value::as_u64).sum())
            }
            Writer::Kernel => {
                let info = std::fs::read_to_string("/proc/meminfo")?;
                let kib = |key: &str| {
                    info.lines()
                        .find_map(|l| l.strip_prefix(key))
                        .and_then(|v| v.split_whitespace().next()?.parse::<u64>().ok())
                        .unwrap_or(0)
                };
                Ok((kib("Slab:") + kib("VmallocUsed:")) * 1024)
            }
        }
    }
}

impl Drop for Rig {
    fn drop(&mut self) {
        vtep(&["-n", &self.vtep_ns.name, "down"]).ok();
        std::fs::remove_file(&self.vtep_file).ok();
        std::fs::remove_file(&self.kernel_file).ok();
    }
}
