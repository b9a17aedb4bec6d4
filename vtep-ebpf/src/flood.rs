//! Head-end replication of broadcast, multicast and unknown-unicast frames: a copy to every
//! other local port of the VNI and one to every VTEP of the VNI's flood list.
//!
//! Lists are walked with `bpf_loop` (Linux 5.17): the verifier checks the callback once,
//! whatever the list's length, so a list of 4,096 costs it no more than one of 16. The
//! callbacks find the frame through a pointer to the caller's stack (the `Walk`). It runs
//! in `vtep_flood` (see `tail`), whose stack the callbacks and the IPv6 headers they write
//! stack on.

use core::ffi::c_void;

use aya_ebpf::{
    bindings::{__sk_buff, TC_ACT_SHOT},
    helpers::{bpf_loop, bpf_skb_change_head, bpf_skb_change_proto},
    programs::TcContext,
};
use vtep_common::{
    counter,
    outer6::EXTRA6,
    wire::{ETH_LEN, ETH_P_IP, ETH_P_IPV6},
    Config, Slot, MAX_FLOOD, MAX_VNI_PORTS,
};

use crate::{
    encap::{self, Family, Route, Tunnel},
    encap6,
    maps::{FLOOD, VNIS, VNI_PORTS},
    mtu,
    stats::{count, drop, Verdict},
};

/// What `copy_to_port` needs of its caller: the frame and the VNI whose ports it walks.
/// Every field is set from a variable: a run of constant zeros becomes a call to the
/// global `memset`, which the verifier refuses without BTF for it.
#[repr(C)]
struct PortWalk {
    skb: *mut __sk_buff,
    vni: u32,
    /// The port the frame came in on, which gets no copy.
    except: u32,
}

/// What `copy_to_vtep` needs of its caller: the frame, the VNI whose flood list it walks,
/// and the tunnel every copy shares.
#[repr(C)]
struct VtepWalk {
    skb: *mut __sk_buff,
    cfg: *const Config,
    tunnel: *const Tunnel,
    vni: u32,
    /// The inner frame's sum, for IPv6 copies' UDP checksum.
    inner_sum: u32,
    /// Set when the walk passed a VTEP of the other family, left for a second walk.
    other: u8,
}

/// bpf_loop callbacks may only answer 0 (go on) or 1 (stop).
const GO_ON: i64 = 0;
const STOP: i64 = 1;

/// Copies of the (still unencapsulated) frame to the VNI's local ports but `except`.
#[inline(always)]
pub fn local(ctx: &TcContext, vni: u32, except: u32) {
    if let Some(lists) = unsafe { VNIS.get(vni) } {
        to_ports(ctx, vni, lists.ports, except);
    }
}

#[inline(always)]
fn to_ports(ctx: &TcContext, vni: u32, len: u32, except: u32) {
    let mut walk = PortWalk {
        skb: ctx.skb.skb,
        vni,
        except,
    };
    walk_list(len.min(MAX_VNI_PORTS), copy_to_port, &mut walk);
}

extern "C" fn copy_to_port(index: u32, walk: *mut c_void) -> i64 {
    let walk = unsafe { &*(walk as *const PortWalk) };
    let Some(&ifindex) = (unsafe {
        VNI_PORTS.get(Slot {
            vni: walk.vni,
            index,
        })
    }) else {
        // Shortened while we walk: the rest is gone too.
        return STOP;
    };
    if ifindex != walk.except && TcContext::new(walk.skb).clone_redirect(ifindex, 0).is_ok() {
        count(counter::FLOOD_LOCAL);
    }
    GO_ON
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
    let Some(&lists) = (unsafe { VNIS.get(vni) }) else {
        return drop(reason);
    };
    // The sender is one of the local ports.
    let others = lists.ports > 1;
    if !others && lists.flood == 0 {
        return drop(reason);
    }
    let fits = mtu::exceeded(ctx, cfg, eth, first(cfg).overhead()).is_none();
    if !others && !fits {
        return drop(counter::DROP_TOO_BIG);
    }
    if others {
        to_ports(ctx, vni, lists.ports, ifindex);
    }
    if lists.flood > 0 && fits {
        remote(ctx, cfg, vni, lists.flood, eth);
    }
    Verdict::new(TC_ACT_SHOT, counter::FLOOD)
}

/// The first walk's family: IPv4 when the host has an IPv4 address (IPv4 lists cost what
/// they did before IPv6), else IPv6.
#[inline(always)]
fn first(cfg: &Config) -> Family {
    if cfg.local_ip != [0; 4] {
        Family::V4
    } else {
        Family::V6
    }
}

/// Encapsulates once per outer family; each copy only rewrites the outer headers. The
/// list is walked for `first`'s VTEPs, then, if it holds IPv6 ones too, the frame grows by
/// the 20 bytes IPv6 adds and the list is walked for those. A copy whose next hop the FIB
/// knows goes straight out; the others take the detour through the underlay's ingress,
/// where the kernel resolves it. Straight out matters for long lists: every detour waits
/// in the CPU's backlog (netdev_max_backlog, 1,000 by default) until this program returns.
#[inline(always)]
fn remote(ctx: &TcContext, cfg: &Config, vni: u32, len: u32, eth: &[u8; ETH_LEN]) {
    let first = first(cfg);
    // Judged before growing: IPv6 copies need 20 bytes more than IPv4 ones.
    let fits6 = mtu::exceeded(ctx, cfg, eth, Family::V6.overhead()).is_none();
    let tunnel = match encap::open(ctx, cfg, vni, eth, first) {
        Ok(t) => t,
        // No remote copy can be made; the frame's verdict stays `flood` (local copies).
        Err(reason) => return count(reason),
    };
    encap::reflect_mark(ctx);
    let mut walk = VtepWalk {
        skb: ctx.skb.skb,
        cfg,
        tunnel: &tunnel,
        vni,
        inner_sum: 0,
        other: 0,
    };
    let len = len.min(MAX_FLOOD);
    if first == Family::V6 {
        walk.inner_sum = match encap6::inner_sum(ctx, cfg, &tunnel) {
            Some(sum) => sum,
            None => return count(counter::DROP_ENCAP_FAIL),
        };
        return walk_list(len, copy_to_vtep::<true>, &mut walk);
    }
    walk_list(len, copy_to_vtep::<false>, &mut walk);
    if walk.other != 0 && cfg.local_ip6 != [0; 16] {
        if fits6 {
            then_ipv6(ctx, &mut walk, len);
        } else {
            count(counter::DROP_TOO_BIG);
        }
    }
}

/// The second walk of a list holding both families: grown for IPv6, to its IPv6 VTEPs.
#[inline(always)]
fn then_ipv6(ctx: &TcContext, walk: &mut VtepWalk, len: u32) {
    let (cfg, tunnel) = unsafe { (&*walk.cfg, &*walk.tunnel) };
    match grow6(ctx)
        .then(|| encap6::inner_sum(ctx, cfg, tunnel))
        .flatten()
    {
        Some(sum) => walk.inner_sum = sum,
        None => return count(counter::DROP_ENCAP_FAIL),
    }
    walk_list(len, copy_to_vtep::<true>, walk);
}

/// Turns the room for IPv4 outer headers into room for IPv6 ones. An IP frame changes
/// skb->protocol with it (bpf_skb_change_proto, which keeps the inner offsets), as the
/// kernel routes by it; a GSO one cannot (the helper would retag its inner TCP segments
/// as IPv6), and gets no IPv6 copies. Other frames (ARP) just get 20 bytes more in front.
#[inline(never)]
fn grow6(ctx: &TcContext) -> bool {
    let skb = ctx.skb.skb;
    if ctx.skb.protocol() == (ETH_P_IP.to_be() as u32) {
        if unsafe { (*skb).gso_size } != 0 {
            return false;
        }
        return unsafe { bpf_skb_change_proto(skb, ETH_P_IPV6.to_be(), 0) } == 0;
    }
    unsafe { bpf_skb_change_head(skb, EXTRA6 as u32, 0) == 0 }
}

/// One callback per outer family (`V6`), each verified only for its own: with the family
/// a runtime value the verifier walked every IPv4 path with every IPv6 one.
extern "C" fn copy_to_vtep<const V6: bool>(index: u32, walk: *mut c_void) -> i64 {
    let walk = unsafe { &mut *(walk as *mut VtepWalk) };
    let Some(remote) = (unsafe {
        FLOOD.get(Slot {
            vni: walk.vni,
            index,
        })
    }) else {
        return STOP;
    };
    let v4 = remote.ip.v4_octets();
    if v4.is_some() == V6 {
        walk.other = 1;
        return GO_ON;
    }
    let ctx = TcContext::new(walk.skb);
    let (cfg, tunnel) = unsafe { (&*walk.cfg, &*walk.tunnel) };
    let hop = match v4 {
        Some(ip) => encap::next_hop(&ctx, cfg, ip),
        None => encap6::next_hop(&ctx, cfg, &remote.ip.0),
    };
    let (macs, ifindex, flags) = match hop {
        Some(h) if h.route == Route::Resolved => ((h.dst_mac, h.src_mac), h.ifindex, 0),
        Some(_) => (([0; 6], [0; 6]), cfg.underlay_ifindex, encap::REFLECT_FLAGS),
        None => {
            count(counter::DROP_NO_ROUTE);
            return GO_ON;
        }
    };
    let written = match v4 {
        Some(ip) => encap::address(&ctx, cfg, tunnel, ip, remote.port, macs),
        None => {
            let to = encap6::To6 {
                remote: remote.ip.0,
                port: remote.port,
                macs,
                inner: walk.inner_sum,
            };
            encap6::address(&ctx, cfg, tunnel, &to)
        }
    };
    if written && ctx.clone_redirect(ifindex, flags).is_ok() {
        count(counter::FLOOD_REMOTE);
    }
    GO_ON
}

#[inline(always)]
fn walk_list<W>(len: u32, callback: extern "C" fn(u32, *mut c_void) -> i64, walk: &mut W) {
    if len > 0 {
        unsafe {
            bpf_loop(
                len,
                callback as *mut c_void,
                walk as *mut W as *mut c_void,
                0,
            )
        };
    }
}
