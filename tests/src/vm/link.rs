//! The wire between the two VMs: a network namespace of its own holding a bridge and one
//! multiqueue tap per VM. QEMU runs inside that namespace, so deleting it (on drop) also
//! kills any QEMU left behind. Taps give virtio-net a vnet header, hence the checksum and
//! TSO offloads a real NIC has (a UDP socket link has none), and two queue pairs, so the
//! driver has a spare queue for XDP_TX/XDP_REDIRECT with one vCPU.

use anyhow::Result;

use crate::{cmd::run, netns::Netns};

pub struct Wire {
    pub ns: Netns,
    pub taps: [String; 2],
}

impl Wire {
    pub fn new(tag: &str) -> Result<Wire> {
        let ns = Netns::add(&format!("{tag}w"))?;
        let n = ns.name.as_str();
        run("ip", &["-n", n, "link", "add", "br0", "type", "bridge"])?;
        run("ip", &["-n", n, "link", "set", "br0", "up"])?;
        let taps = ["tap0".to_string(), "tap1".to_string()];
        for tap in &taps {
            run(
                "ip",
                &[
                    "-n",
                    n,
                    "tuntap",
                    "add",
                    "dev",
                    tap,
                    "mode",
                    "tap",
                    "multi_queue",
                ],
            )?;
            run("ip", &["-n", n, "link", "set", tap, "master", "br0", "up"])?;
        }
        Ok(Wire { ns, taps })
    }
}
