//! Frames a container sends, seen at TC ingress on the host side of its veth: what the
//! bridge and the vxlan device do together in the classic setup.

use aya_ebpf::{
    bindings::{TC_ACT_OK, TC_ACT_SHOT},
    helpers::bpf_redirect,
    programs::TcContext,
};
use vtep_common::{
    counter,
    wire::{self, ARP_FRAME_LEN, ETH_LEN, ETH_P_ARP, ETH_P_IP},
    IpVni, MacVni, Port, Remote,
};

use crate::{
    encap, fdb, flood, head,
    maps::{CONFIG, FDB, LOCAL, NEIGH, PORTS},
    miss,
    stats::count,
};

#[inline(always)]
pub fn drop(reason: u32) -> i32 {
    count(reason);
    TC_ACT_SHOT
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
    let Some(&eth) = head::view::<ETH_LEN>(ctx) else {
        return drop(counter::DROP_MALFORMED);
    };
    let dst = [eth[0], eth[1], eth[2], eth[3], eth[4], eth[5]];
    let vni = port.vni;
    if port.allow_spoofing == 0 && !sends_as_itself(ctx, port, &eth) {
        return drop(counter::DROP_SPOOF);
    }

    if u16::from_be_bytes([eth[12], eth[13]]) == ETH_P_ARP {
        // Broadcast requests and unicast NUD probes alike are answered from the table.
        match proxy_arp(ctx, ifindex, vni) {
            Arp::Answered(verdict) => return verdict,
            Arp::Unknown(ip) if wire::is_multicast(&dst) => {
                // The owner may still answer for itself: flood the request.
                miss::neigh(vni, ifindex, ip);
                return flood::from_port(ctx, cfg, vni, ifindex, &eth, counter::DROP_ARP_MISS);
            }
            _ => {}
        }
    }
    if wire::is_multicast(&dst) {
        return flood::from_port(ctx, cfg, vni, ifindex, &eth, counter::DROP_BUM);
    }

    // Remote before local: the tunnel is the common path, and `fdb add` and `port add` keep
    // permanent entries and local MACs apart, so the order decides nothing else.
    let key = MacVni::new(dst, vni);
    if let Some(&entry) = unsafe { FDB.get(key) } {
        return encap::unicast(ctx, cfg, &Remote::of(&entry), vni, &eth);
    }
    if let Some(out) = unsafe { LOCAL.get(key) } {
        count(counter::LOCAL);
        return unsafe { bpf_redirect(*out, 0) } as i32;
    }
    if let Some(entry) = fdb::learned(&key, cfg) {
        return encap::unicast(ctx, cfg, &Remote::of(&entry), vni, &eth);
    }
    miss::fdb(vni, ifindex, dst);
    flood::from_port(ctx, cfg, vni, ifindex, &eth, counter::DROP_NO_FDB)
}

/// A port may only send with its own MAC, and IPv4 and ARP only from its own address (or
/// 0.0.0.0, which duplicate-address probes use).
#[inline(always)]
fn sends_as_itself(ctx: &TcContext, port: &Port, eth: &[u8; ETH_LEN]) -> bool {
    if eth[6..12] != port.mac {
        return false;
    }
    let own_ip = |ip: [u8; 4]| ip == port.ipv4 || ip == [0; 4];
    // Read in packet memory, like the Ethernet header: this runs for every frame.
    match u16::from_be_bytes([eth[12], eth[13]]) {
        ETH_P_IP => matches!(head::view::<{ ETH_LEN + 16 }>(ctx),
            Some(h) if own_ip([h[26], h[27], h[28], h[29]])),
        // Sender hardware address, then sender protocol address.
        ETH_P_ARP => matches!(head::view::<{ ETH_LEN + 18 }>(ctx),
            Some(h) if h[22..28] == port.mac && own_ip([h[28], h[29], h[30], h[31]])),
        _ => true,
    }
}

enum Arp {
    Answered(i32),
    /// A request for an IP the table does not know.
    Unknown([u8; 4]),
    /// Not a request (a reply, a gratuitous announcement, or malformed).
    Other,
}

/// Answers an ARP request from the neighbour table, back out of the port it came in on:
/// the `proxy` behaviour of the kernel's vxlan device.
#[inline(always)]
fn proxy_arp(ctx: &TcContext, ifindex: u32, vni: u32) -> Arp {
    let Some(frame) = head::view_mut::<ARP_FRAME_LEN>(ctx) else {
        return Arp::Other;
    };
    let Some(target) = wire::arp_request_target(frame) else {
        return Arp::Other;
    };
    let Some(neigh) = (unsafe { NEIGH.get(IpVni { ip: target, vni }) }) else {
        return Arp::Unknown(target);
    };
    // Rewritten in place: the request becomes the reply.
    wire::arp_reply(frame, &neigh.mac);
    count(counter::ARP_REPLY);
    Arp::Answered(unsafe { bpf_redirect(ifindex, 0) as i32 })
}
