//! VXLAN encapsulation of a container's frame towards a remote VTEP (RFC 7348).

use core::{ffi::c_void, mem};

use aya_ebpf::{
    bindings::{
        bpf_adj_room_mode::BPF_ADJ_ROOM_MAC, bpf_fib_lookup as FibLookup,
        BPF_ADJ_ROOM_ENCAP_L2_SHIFT, BPF_FIB_LKUP_RET_FWD_DISABLED, BPF_FIB_LKUP_RET_NO_NEIGH, BPF_FIB_LKUP_RET_SUCCESS,
        BPF_F_ADJ_ROOM_ENCAP_L2_ETH, BPF_F_ADJ_ROOM_ENCAP_L3_IPV4, BPF_F_ADJ_ROOM_ENCAP_L4_UDP,
        BPF_F_ADJ_ROOM_FIXED_GSO,
    },
    helpers::{bpf_fib_lookup, bpf_get_hash_recalc, bpf_redirect, bpf_redirect_neigh},
    programs::TcContext,
};
use vtep_common::{
    counter,
    wire::{self, ENCAP_LEN, ENCAP_ROOM, ETH_LEN, ETH_P_IP},
    Config, FdbEntry,
};

use crate::{port::drop, stats::count};

const AF_INET: u8 = 2;

/// Keeps GSO/TSO intact: the kernel marks the skb as UDP-tunnelled Ethernet and segments it
/// (inner TCP included) only at the last moment, exactly as for its own vxlan device.
const ROOM_FLAGS: u64 = BPF_F_ADJ_ROOM_FIXED_GSO as u64
    | BPF_F_ADJ_ROOM_ENCAP_L3_IPV4 as u64
    | BPF_F_ADJ_ROOM_ENCAP_L4_UDP as u64
    | BPF_F_ADJ_ROOM_ENCAP_L2_ETH as u64
    | ((ETH_LEN as u64) << BPF_ADJ_ROOM_ENCAP_L2_SHIFT);

enum NextHop {
    /// Route and neighbour known: outer MACs and egress device.
    Resolved { ifindex: u32, dst_mac: [u8; 6], src_mac: [u8; 6] },
    /// Route known, neighbour not yet: let the kernel resolve it.
    Unresolved,
}

pub fn to_remote(
    ctx: &TcContext,
    cfg: &Config,
    remote: &FdbEntry,
    vni: u32,
    inner_eth: &[u8; ETH_LEN],
) -> i32 {
    let Some(hop) = next_hop(ctx, cfg, remote) else {
        return drop(counter::DROP_NO_ROUTE);
    };
    // The neighbour-resolving redirect needs an IPv4 skb; other inner protocols wait until
    // an IPv4 frame has resolved the next hop.
    if matches!(hop, NextHop::Unresolved) && ctx.skb.protocol() != (ETH_P_IP.to_be() as u32) {
        return drop(counter::DROP_NO_ROUTE);
    }

    let skb = ctx.skb.skb;
    let hash = unsafe { bpf_get_hash_recalc(skb) };
    // A GSO super-packet can exceed what the 16-bit length fields hold; its outer lengths are
    // only a template the kernel rewrites per segment, so saturate rather than wrap.
    let inner_len = ctx.len().min(u16::MAX as u32 - (ENCAP_LEN - ETH_LEN) as u32) as u16;
    if ctx.adjust_room(ENCAP_ROOM as i32, BPF_ADJ_ROOM_MAC, ROOM_FLAGS).is_err() {
        return drop(counter::DROP_ENCAP_FAIL);
    }

    let (dst_mac, src_mac) = match hop {
        NextHop::Resolved { dst_mac, src_mac, .. } => (dst_mac, src_mac),
        NextHop::Unresolved => ([0; 6], [0; 6]),
    };
    let outer = wire::outer_headers(&wire::Outer {
        dst_mac,
        src_mac,
        src_ip: cfg.local_ip,
        dst_ip: remote.remote_ip,
        src_port: wire::src_port(hash, cfg.srcport_min, cfg.srcport_max),
        dst_port: remote.port,
        vni,
        ttl: cfg.ttl,
        tos: 0,
        inner_len,
    });
    let mut headers = [0u8; ENCAP_LEN + ETH_LEN];
    headers[..ENCAP_LEN].copy_from_slice(&outer);
    headers[ENCAP_LEN..].copy_from_slice(inner_eth);
    if ctx.store(0, &headers, 0).is_err() {
        return drop(counter::DROP_ENCAP_FAIL);
    }

    match hop {
        NextHop::Resolved { ifindex, .. } => {
            count(counter::ENCAP);
            unsafe { bpf_redirect(ifindex, 0) as i32 }
        }
        NextHop::Unresolved => {
            count(counter::NEIGH_RESOLVE);
            unsafe { bpf_redirect_neigh(cfg.underlay_ifindex, core::ptr::null_mut(), 0, 0) as i32 }
        }
    }
}

/// The underlay route to the remote VTEP, from the kernel's FIB and neighbour table (never
/// a constant MAC: the underlay may change under us).
fn next_hop(ctx: &TcContext, cfg: &Config, remote: &FdbEntry) -> Option<NextHop> {
    let mut fib: FibLookup = unsafe { mem::zeroed() };
    fib.family = AF_INET;
    fib.ifindex = cfg.underlay_ifindex;
    fib.__bindgen_anon_3.ipv4_src = u32::from_ne_bytes(cfg.local_ip);
    fib.__bindgen_anon_4.ipv4_dst = u32::from_ne_bytes(remote.remote_ip);
    let rc = unsafe {
        bpf_fib_lookup(
            ctx.skb.skb as *mut c_void,
            &mut fib,
            mem::size_of::<FibLookup>() as i32,
            0,
        )
    };
    match rc as u32 {
        BPF_FIB_LKUP_RET_SUCCESS => Some(NextHop::Resolved {
            ifindex: fib.ifindex,
            dst_mac: fib.dmac,
            src_mac: fib.smac,
        }),
        // Without IP forwarding on the underlay the FIB helper refuses to answer; the
        // kernel's own output path still knows the way.
        BPF_FIB_LKUP_RET_NO_NEIGH | BPF_FIB_LKUP_RET_FWD_DISABLED => Some(NextHop::Unresolved),
        _ => None,
    }
}
