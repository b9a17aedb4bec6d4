//! Head-end replication of broadcast, multicast and unknown-unicast frames: a copy to every
//! other local port of the VNI and one to every VTEP of the VNI's flood list.
//!
//! Lists are walked with `bpf_loop` (Linux 5.17): the verifier checks the callback once,
//! whatever the list's length, so a list of 4,096 costs it no more than one of 16. The
//! callbacks find the frame through a pointer to the caller's stack (the `Walk`).

use core::ffi::c_void;

use aya_ebpf::{
    bindings::{__sk_buff, TC_ACT_SHOT},
    helpers::bpf_loop,
    programs::TcContext,
};
use vtep_common::{counter, wire::ETH_LEN, Config, Slot, MAX_FLOOD, MAX_VNI_PORTS};

use crate::{
    encap::{self, Route, Tunnel},
    maps::{FLOOD, VNIS, VNI_PORTS},
    mtu,
    stats::{count, drop, Verdict},
};

/// What a callback needs of its caller: the frame and the list it walks.
#[repr(C)]
struct Walk {
    skb: *mut __sk_buff,
    vni: u32,
    /// The port the frame came in on (local walk), which gets no copy.
    except: u32,
    cfg: *const Config,
    tunnel: *const Tunnel,
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
    let mut walk = Walk {
        skb: ctx.skb.skb,
        vni,
        except,
        cfg: core::ptr::null(),
        tunnel: core::ptr::null(),
    };
    walk_list(len.min(MAX_VNI_PORTS), copy_to_port, &mut walk);
}

extern "C" fn copy_to_port(index: u32, walk: *mut c_void) -> i64 {
    let walk = unsafe { &*(walk as *const Walk) };
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
    let fits = mtu::exceeded(ctx, cfg, eth).is_none();
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

/// Encapsulates once; each copy only rewrites the outer headers. A copy whose next hop the
/// FIB knows goes straight out; the others take the detour through the underlay's ingress,
/// where the kernel resolves it. Straight out matters for long lists: every detour waits
/// in the CPU's backlog (netdev_max_backlog, 1,000 by default) until this program returns.
#[inline(always)]
fn remote(ctx: &TcContext, cfg: &Config, vni: u32, len: u32, eth: &[u8; ETH_LEN]) {
    let tunnel = match encap::open(ctx, cfg, vni, eth) {
        Ok(t) => t,
        // No remote copy can be made; the frame's verdict stays `flood` (local copies).
        Err(reason) => return count(reason),
    };
    encap::reflect_mark(ctx);
    let mut walk = Walk {
        skb: ctx.skb.skb,
        vni,
        except: 0,
        cfg,
        tunnel: &tunnel,
    };
    walk_list(len.min(MAX_FLOOD), copy_to_vtep, &mut walk);
}

extern "C" fn copy_to_vtep(index: u32, walk: *mut c_void) -> i64 {
    let walk = unsafe { &*(walk as *const Walk) };
    let Some(remote) = (unsafe {
        FLOOD.get(Slot {
            vni: walk.vni,
            index,
        })
    }) else {
        return STOP;
    };
    let Some(remote_ip) = remote.ip.v4_octets() else {
        // IPv6 VTEPs are not reachable yet.
        count(counter::DROP_NO_ROUTE);
        return GO_ON;
    };
    let ctx = TcContext::new(walk.skb);
    let (cfg, tunnel) = unsafe { (&*walk.cfg, &*walk.tunnel) };
    let (macs, ifindex, flags) = match encap::next_hop(&ctx, cfg, remote_ip) {
        Some(h) if h.route == Route::Resolved => ((h.dst_mac, h.src_mac), h.ifindex, 0),
        Some(_) => (([0; 6], [0; 6]), cfg.underlay_ifindex, encap::REFLECT_FLAGS),
        None => {
            count(counter::DROP_NO_ROUTE);
            return GO_ON;
        }
    };
    if encap::address(&ctx, cfg, tunnel, remote_ip, remote.port, macs)
        && ctx.clone_redirect(ifindex, flags).is_ok()
    {
        count(counter::FLOOD_REMOTE);
    }
    GO_ON
}

#[inline(always)]
fn walk_list(len: u32, callback: extern "C" fn(u32, *mut c_void) -> i64, walk: &mut Walk) {
    if len > 0 {
        unsafe {
            bpf_loop(
                len,
                callback as *mut c_void,
                walk as *mut Walk as *mut c_void,
                0,
            )
        };
    }
}
