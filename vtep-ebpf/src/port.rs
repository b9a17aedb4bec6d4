//! Frames a container sends, seen at TC ingress on the host side of its veth: what the
//! bridge and the vxlan device do together in the classic setup.

use aya_ebpf::{bindings::TC_ACT_OK, helpers::bpf_redirect, programs::TcContext};
use vtep_common::{
    counter,
    wire::{self, is_vlan, ARP_FRAME_LEN, ETH_LEN, ETH_P_ARP, ETH_P_IP, ETH_P_IPV6, VLAN_LEN},
    Addr, IpVni, MacVni, Port, Remote,
};

use crate::{
    encap::{self, Family},
    fdb, head,
    maps::{CONFIG, FDB, LOCAL, NEIGH, PORTS},
    miss,
    nd::{self, owns, Nd},
    stats::{drop, Verdict},
    tail, vlan,
};

/// The port's verdict on a frame it sent, counted once (here, or by the program it hands
/// the frame on to). Inlined: the verifier refuses a tail call from a BPF function whose
/// callers' frames take 256 bytes or more.
#[inline(always)]
pub fn ingress(ctx: &TcContext) -> i32 {
    verdict(ctx).finish()
}

#[inline(always)]
fn verdict(ctx: &TcContext) -> Verdict<i32> {
    let ifindex = unsafe { (*ctx.skb.skb).ifindex };
    let Some(port) = (unsafe { PORTS.get(ifindex) }) else {
        // Not ours (a stale attachment): leave the frame to the kernel.
        return Verdict::new(TC_ACT_OK, counter::PASS_NOT_PORT);
    };
    let Some(cfg) = CONFIG.get(0).filter(|c| c.ready != 0) else {
        return drop(counter::DROP_NOT_READY);
    };
    let Some(&eth) = head::view::<ETH_LEN>(ctx) else {
        return drop(counter::DROP_MALFORMED);
    };
    let dst = [eth[0], eth[1], eth[2], eth[3], eth[4], eth[5]];
    let vni = port.vni;
    if port.allow_spoofing == 0 && !sends_as_itself(ctx, port, &eth) {
        return drop(counter::DROP_SPOOF);
    }

    // One call of `encap::unicast` however the frame got there: it is inlined, and every
    // copy costs the verifier its whole exploration.
    let reason = 'flood: {
        let ty = u16::from_be_bytes([eth[12], eth[13]]);
        if ty == ETH_P_IPV6 {
            // Multicast solicitations and unicast NUD probes alike, as for ARP.
            match nd::proxy(ctx, ifindex, vni) {
                Nd::Answered(verdict) => return verdict,
                Nd::Unknown(ip) if wire::is_multicast(&dst) => {
                    miss::neigh(vni, ifindex, Addr::v6(ip));
                    break 'flood counter::DROP_ND_MISS;
                }
                _ => {}
            }
        }
        if ty == ETH_P_ARP {
            // Broadcast requests and unicast NUD probes alike are answered from the table.
            match proxy_arp(ctx, ifindex, vni) {
                Arp::Answered(verdict) => return verdict,
                Arp::Unknown(ip) if wire::is_multicast(&dst) => {
                    // The owner may still answer for itself: flood the request.
                    miss::neigh(vni, ifindex, Addr::v4(ip));
                    break 'flood counter::DROP_ARP_MISS;
                }
                _ => {}
            }
        }
        if wire::is_multicast(&dst) {
            if wire::is_link_local(&dst) {
                return drop(counter::DROP_LINK_LOCAL);
            }
            if let Some((off, ETH_P_IPV6)) = vlan::network(ctx, &eth) {
                nd::count_control(ctx, off);
            }
            break 'flood counter::DROP_BUM;
        }

        // Remote before local: the tunnel is the common path, and `fdb add` and `port add`
        // keep permanent entries and local MACs apart, so the order decides nothing else.
        let key = MacVni::new(dst, vni);
        let remote = match unsafe { FDB.get(key) } {
            Some(&entry) => Some(entry),
            None => {
                if let Some(out) = unsafe { LOCAL.get(key) } {
                    return Verdict::new(unsafe { bpf_redirect(*out, 0) } as i32, counter::LOCAL);
                }
                fdb::learned(&key, cfg)
            }
        };
        if let Some(entry) = remote {
            let to = Remote::of(&entry);
            if !to.ip.is_v4() {
                return tail::to_unicast6(ctx, vni, &to);
            }
            return encap::unicast(ctx, cfg, &to, Family::V4, vni, ifindex, &eth);
        }
        miss::fdb(vni, ifindex, dst);
        counter::DROP_NO_FDB
    };
    tail::to_flood(ctx, vni, reason)
}

/// A port may only send with its own MAC, and IPv4, ARP and IPv6 only from its own
/// addresses (or 0.0.0.0 and `::`, which duplicate-address detection uses), VLAN-tagged or
/// not.
#[inline(always)]
fn sends_as_itself(ctx: &TcContext, port: &Port, eth: &[u8; ETH_LEN]) -> bool {
    if eth[6..12] != port.mac {
        return false;
    }
    // Read in packet memory, like the Ethernet header: this runs for every frame.
    let ty = u16::from_be_bytes([eth[12], eth[13]]);
    if ty == ETH_P_IPV6 {
        return nd::from_port(ctx, port, ETH_LEN);
    }
    if !is_vlan(ty) {
        return !names_sender(ty)
            || head::view::<{ ETH_LEN + 18 }>(ctx)
                .and_then(tail18)
                .is_some_and(|l3| from_own_address(port, ty, l3));
    }
    // Tags in the bytes (QinQ); one in metadata takes no room.
    let Some((off, ty)) = vlan::network(ctx, eth) else {
        return false;
    };
    if ty == ETH_P_IPV6 {
        return nd::from_port(ctx, port, off);
    }
    if !names_sender(ty) {
        return true;
    }
    let l3 = if off == ETH_LEN + VLAN_LEN {
        head::view::<{ ETH_LEN + VLAN_LEN + 18 }>(ctx).and_then(tail18)
    } else {
        head::view::<{ ETH_LEN + 2 * VLAN_LEN + 18 }>(ctx).and_then(tail18)
    };
    l3.is_some_and(|l3| from_own_address(port, ty, l3))
}

/// IPv4 and ARP name their sender; anti-spoofing checks those.
#[inline(always)]
fn names_sender(ethertype: u16) -> bool {
    ethertype == ETH_P_IP || ethertype == ETH_P_ARP
}

/// Whether the IPv4 or ARP header whose first 18 bytes are `l3` comes from the port.
#[inline(always)]
fn from_own_address(port: &Port, ethertype: u16, l3: &[u8; 18]) -> bool {
    let own_ip = |ip: [u8; 4]| ip == [0; 4] || owns(port, &Addr::v4(ip));
    if ethertype == ETH_P_IP {
        own_ip([l3[12], l3[13], l3[14], l3[15]])
    } else {
        // Sender hardware address, then sender protocol address.
        l3[8..14] == port.mac && own_ip([l3[14], l3[15], l3[16], l3[17]])
    }
}

/// The last 18 bytes of a header view: the part of an IPv4 or ARP header that names the
/// sender.
#[inline(always)]
fn tail18<const N: usize>(h: &[u8; N]) -> Option<&[u8; 18]> {
    h.last_chunk::<18>()
}

enum Arp {
    Answered(Verdict<i32>),
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
    let key = IpVni {
        ip: Addr::v4(target),
        vni,
    };
    let Some(neigh) = (unsafe { NEIGH.get(key) }) else {
        return Arp::Unknown(target);
    };
    // Rewritten in place: the request becomes the reply.
    wire::arp_reply(frame, &neigh.mac);
    Arp::Answered(Verdict::new(
        unsafe { bpf_redirect(ifindex, 0) as i32 },
        counter::ARP_REPLY,
    ))
}
