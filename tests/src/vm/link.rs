//! The wire between the two VMs: a network namespace of its own holding a bridge and one
//! multiqueue tap per VM. QEMU runs inside that namespace, so deleting it (on drop) also
//! kills any QEMU left behind. Taps give virtio-net a vnet header, hence the checksum and
//! TSO offloads a real NIC has (a UDP socket link has none), and two queue pairs, so the
//! driver has a spare queue for XDP_TX/XDP_REDIRECT with one vCPU.

use anyhow::Result;

use crate::{
    cmd::{output, run},
    netns::{self, Netns},
};

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

/// Deletes wires left by a process that was killed (its QEMUs died with it through the
/// parent-death signal; the namespace stays). Called with the VM slot held, when every
/// live wire has QEMU running in it, so an empty one of our naming is stale.
pub fn remove_stale() {
    let Ok(list) = output("ip", &["netns", "list"]) else {
        return;
    };
    for name in String::from_utf8_lossy(&list.stdout)
        .lines()
        .filter_map(|l| l.split_whitespace().next())
    {
        if !is_wire_name(name) {
            continue;
        }
        let empty = output("ip", &["netns", "pids", name])
            .is_ok_and(|o| o.status.success() && o.stdout.iter().all(u8::is_ascii_whitespace));
        if empty {
            netns::remove(name);
        }
    }
}

/// `{vm|demo|bench}PIDxNw`, as `Pair::boot` callers name them through `unique_tag`.
fn is_wire_name(name: &str) -> bool {
    let Some(rest) = ["vm", "demo", "bench"]
        .iter()
        .find_map(|p| name.strip_prefix(p))
    else {
        return false;
    };
    let Some(rest) = rest.strip_suffix('w') else {
        return false;
    };
    let Some((pid, n)) = rest.split_once('x') else {
        return false;
    };
    !pid.is_empty()
        && !n.is_empty()
        && pid.bytes().all(|b| b.is_ascii_digit())
        && n.bytes().all(|b| b.is_ascii_digit())
}
