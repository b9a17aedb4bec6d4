//! Head-end replication of broadcast, multicast and unknown-unicast frames: a copy to every
//! other local port of the VNI and one to every VTEP of the VNI's flood list.
//!
//! The loops keep no per-copy state (no running count of successes): the verifier explores
//! every iteration, and state that differs per path would multiply the paths it must walk.

use aya_ebpf::{bindings::TC_ACT_SHOT, programs::TcContext};
use vtep_common::{counter, wire::ETH_LEN, Config, FloodList, VniPorts};

use crate::{
    encap,
    maps::{FLOOD, VNI_PORTS},
    mtu,
    stats::{count, drop, Verdict},
};

/// Copies of the (still unencapsulated) frame to the VNI's local ports but `except`.
#[inline(always)]
pub fn local(ctx: &TcContext, vni: u32, except: u32) {
    if let Some(ports) = unsafe { VNI_PORTS.get(vni) } {
        to_ports(ctx, ports, except);
    }
}

#[inline(always)]
fn to_ports(ctx: &TcContext, ports: &VniPorts, except: u32) {
    for &ifindex in ports.ifindex.iter().take(ports.count as usize) {
        if ifindex != except && ctx.clone_redirect(ifindex, 0).is_ok() {
            count(counter::FLOOD_LOCAL);
        }
    }
}

/// A frame from port `ifindex` nobody is known to own: copies go to the VNI's other local
/// ports and, if it fits the underlay, to its flood list; the original is consumed
/// (`flood`). Dropped as `reason` when the VNI has nowhere to flood to, or as
/// `drop_too_big` when only remote copies were due and the frame does not fit. The caller
/// counts the verdict; copies are counted here, one by one.
#[inline(always)]
pub fn from_port(
    ctx: &TcContext,
    cfg: &Config,
    vni: u32,
    ifindex: u32,
    eth: &[u8; ETH_LEN],
    reason: u32,
) -> Verdict<i32> {
    let ports = unsafe { VNI_PORTS.get(vni) }.filter(|p| p.count > 1);
    let list = unsafe { FLOOD.get(vni) }.filter(|l| l.count > 0);
    // The sender is one of the local ports.
    if ports.is_none() && list.is_none() {
        return drop(reason);
    }
    let fits = mtu::exceeded(ctx, cfg, eth).is_none();
    if ports.is_none() && !fits {
        return drop(counter::DROP_TOO_BIG);
    }
    if let Some(ports) = ports {
        to_ports(ctx, ports, ifindex);
    }
    if let (Some(list), true) = (list, fits) {
        remote(ctx, cfg, vni, list, eth);
    }
    Verdict::new(TC_ACT_SHOT, counter::FLOOD)
}

/// Encapsulates once; each copy only rewrites the outer headers and takes the detour
/// through the underlay's ingress for its next hop.
#[inline(always)]
fn remote(ctx: &TcContext, cfg: &Config, vni: u32, list: &FloodList, eth: &[u8; ETH_LEN]) {
    let tunnel = match encap::open(ctx, cfg, vni, eth) {
        Ok(t) => t,
        // No remote copy can be made; the frame's verdict stays `flood` (local copies).
        Err(reason) => return count(reason),
    };
    encap::reflect_mark(ctx);
    for remote in list.remotes.iter().take(list.count as usize) {
        if encap::address(ctx, cfg, &tunnel, remote, ([0; 6], [0; 6]))
            && ctx
                .clone_redirect(cfg.underlay_ifindex, encap::REFLECT_FLAGS)
                .is_ok()
        {
            count(counter::FLOOD_REMOTE);
        }
    }
}
