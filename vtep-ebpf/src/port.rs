//! Frames a container sends, seen at TC ingress on the host side of its veth: what the
//! bridge and the vxlan device do together in the classic setup.

use aya_ebpf::{
    bindings::{TC_ACT_SHOT, TC_ACT_OK},
    helpers::bpf_redirect,
    programs::TcContext,
};
use vtep_common::{
    counter,
    wire::{self, ARP_FRAME_LEN, ETH_LEN, ETH_P_ARP},
    IpVni, MacVni,
};

use crate::{
    encap,
    maps::{CONFIG, FDB, LOCAL, NEIGH, PORTS},
    stats::count,
};

const SHOT: i32 = TC_ACT_SHOT;

#[inline(always)]
pub fn drop(reason: u32) -> i32 {
    count(reason);
    SHOT
}

pub fn ingress(ctx: &TcContext) -> i32 {
    let ifindex = unsafe { (*ctx.skb.skb).ifindex };
    let Some(port) = (unsafe { PORTS.get(ifindex) }) else {
        // Not ours (a stale attachment): leave the frame to the kernel.
        count(counter::DROP_NOT_PORT);
        return TC_ACT_OK;
    };
    let Some(cfg) = CONFIG.get(0) else {
        return drop(counter::DROP_NOT_READY);
    };
    if cfg.ready == 0 {
        return drop(counter::DROP_NOT_READY);
    }
    let Ok(eth) = ctx.load::<[u8; ETH_LEN]>(0) else {
        return drop(counter::DROP_MALFORMED);
    };
    let dst = [eth[0], eth[1], eth[2], eth[3], eth[4], eth[5]];
    let vni = port.vni;

    if u16::from_be_bytes([eth[12], eth[13]]) == ETH_P_ARP {
        // Broadcast requests and unicast NUD probes alike are answered from the table.
        if let Some(verdict) = proxy_arp(ctx, ifindex, vni) {
            return verdict;
        }
        if wire::is_multicast(&dst) {
            return drop(counter::DROP_ARP_MISS);
        }
    } else if wire::is_multicast(&dst) {
        return drop(counter::DROP_BUM);
    }

    let key = MacVni::new(dst, vni);
    if let Some(out) = unsafe { LOCAL.get(key) } {
        count(counter::LOCAL);
        return unsafe { bpf_redirect(*out, 0) } as i32;
    }
    if let Some(remote) = unsafe { FDB.get(key) } {
        return encap::to_remote(ctx, cfg, remote, vni, &eth);
    }
    drop(counter::DROP_NO_FDB)
}

/// Answers an ARP request from the neighbour table, back out of the port it came in on:
/// the `proxy` behaviour of the kernel's vxlan device. None when the table has no answer.
fn proxy_arp(ctx: &TcContext, ifindex: u32, vni: u32) -> Option<i32> {
    let Ok(mut frame) = ctx.load::<[u8; ARP_FRAME_LEN]>(0) else {
        return Some(drop(counter::DROP_MALFORMED));
    };
    let target = wire::arp_request_target(&frame)?;
    let neigh = unsafe { NEIGH.get(IpVni { ip: target, vni }) }?;
    wire::arp_reply(&mut frame, &neigh.mac);
    if ctx.store(0, &frame, 0).is_err() {
        return Some(drop(counter::DROP_MALFORMED));
    }
    count(counter::ARP_REPLY);
    Some(unsafe { bpf_redirect(ifindex, 0) as i32 })
}
