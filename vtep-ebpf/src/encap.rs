//! VXLAN encapsulation of a container's frame towards remote VTEPs (RFC 7348).

use core::{ffi::c_void, mem};

use aya_ebpf::{
    bindings::{
        bpf_adj_room_mode::BPF_ADJ_ROOM_MAC, bpf_fib_lookup as FibLookup,
        bpf_redir_neigh as RedirNeigh, bpf_redir_neigh__bindgen_ty_1 as NextHopAddr,
        BPF_ADJ_ROOM_ENCAP_L2_SHIFT, BPF_FIB_LKUP_RET_FWD_DISABLED, BPF_FIB_LKUP_RET_NO_NEIGH,
        BPF_FIB_LKUP_RET_SUCCESS, BPF_F_ADJ_ROOM_ENCAP_L2_ETH, BPF_F_ADJ_ROOM_ENCAP_L3_IPV4,
        BPF_F_ADJ_ROOM_ENCAP_L4_UDP, BPF_F_ADJ_ROOM_FIXED_GSO, BPF_F_INGRESS,
    },
    helpers::{
        bpf_fib_lookup, bpf_get_hash_recalc, bpf_redirect, bpf_redirect_neigh, bpf_skb_change_head,
    },
    programs::TcContext,
};
use vtep_common::{
    counter,
    wire::{self, ENCAP_LEN, ENCAP_ROOM, ETH_LEN, ETH_P_IP, ETH_P_IPV6},
    Config, Remote, REFLECT_MARK,
};

use crate::{head, port::drop, stats::count};

const AF_INET: u8 = 2;

/// Keeps GSO/TSO intact: the kernel marks the skb as UDP-tunnelled Ethernet and segments it
/// (inner TCP included) only at the last moment, exactly as for its own vxlan device. The
/// inner MAC header length is 14: with 22 the segments come out corrupt.
const ROOM_FLAGS: u64 = BPF_F_ADJ_ROOM_FIXED_GSO as u64
    | BPF_F_ADJ_ROOM_ENCAP_L3_IPV4 as u64
    | BPF_F_ADJ_ROOM_ENCAP_L4_UDP as u64
    | BPF_F_ADJ_ROOM_ENCAP_L2_ETH as u64
    | ((ETH_LEN as u64) << BPF_ADJ_ROOM_ENCAP_L2_SHIFT);

/// What stays the same for every copy of one encapsulated frame.
pub struct Tunnel {
    inner_eth: [u8; ETH_LEN],
    inner_len: u16,
    src_port: u16,
    tos: u8,
    vni: u32,
}

/// Grows the frame by the outer headers (filled in later, per destination).
#[inline(always)]
pub fn open(ctx: &TcContext, cfg: &Config, vni: u32, inner_eth: &[u8; ETH_LEN]) -> Option<Tunnel> {
    let inner_ipv4 = u16::from_be_bytes([inner_eth[12], inner_eth[13]]) == ETH_P_IP;
    let hash = flow_hash(ctx, inner_ipv4);
    // Only an inheriting tunnel pays for reading the inner TOS.
    let inherited = if cfg.tos_inherit != 0 && inner_ipv4 {
        ctx.load::<u8>(ETH_LEN + 1).ok()
    } else {
        None
    };
    let tos = inherited.unwrap_or(cfg.tos);
    // A GSO super-packet can exceed what the 16-bit length fields hold; its outer lengths are
    // only a template the kernel rewrites per segment, so saturate rather than wrap.
    let inner_len = ctx
        .len()
        .min(u16::MAX as u32 - (ENCAP_LEN - ETH_LEN) as u32) as u16;
    let proto = ctx.skb.protocol();
    if proto == ETH_P_IP.to_be() as u32 || proto == ETH_P_IPV6.to_be() as u32 {
        ctx.adjust_room(ENCAP_ROOM as i32, BPF_ADJ_ROOM_MAC, ROOM_FLAGS)
            .ok()?;
    } else if unsafe { bpf_skb_change_head(ctx.skb.skb, ENCAP_LEN as u32, 0) } != 0 {
        // adjust_room takes only IP skbs; other frames (ARP) are never GSO, so pushing
        // plain headroom in front of the whole frame loses nothing.
        return None;
    }
    Some(Tunnel {
        inner_eth: *inner_eth,
        inner_len,
        src_port: wire::src_port(hash, cfg.srcport_min, cfg.srcport_max),
        tos,
        vni,
    })
}

/// The inner flow's hash, for the outer source port: the skb's own when the stack set one
/// (TCP sockets do), else the IPv4 flow mixed here (cheaper than the flow dissector), else
/// the dissector's.
#[inline(always)]
fn flow_hash(ctx: &TcContext, inner_ipv4: bool) -> u32 {
    let hash = unsafe { (*ctx.skb.skb).hash };
    if hash != 0 {
        return hash;
    }
    if inner_ipv4 {
        if let Some(headers) = head::view::<38>(ctx) {
            return wire::ipv4_flow_hash(headers);
        }
    }
    unsafe { bpf_get_hash_recalc(ctx.skb.skb) }
}

/// Writes the outer headers towards `remote_ip:port` (and the inner Ethernet header, which
/// the growth displaced).
#[inline(always)]
pub fn address(
    ctx: &TcContext,
    cfg: &Config,
    t: &Tunnel,
    to: &Remote,
    macs: ([u8; 6], [u8; 6]),
) -> bool {
    let Some((outer, inner)) = head::view_mut::<{ ENCAP_LEN + ETH_LEN }>(ctx)
        .and_then(|h| h.split_first_chunk_mut::<ENCAP_LEN>())
    else {
        return false;
    };
    wire::write_outer(
        outer,
        &wire::Outer {
            dst_mac: macs.0,
            src_mac: macs.1,
            src_ip: cfg.local_ip,
            dst_ip: to.ip,
            src_port: t.src_port,
            dst_port: to.port,
            vni: t.vni,
            ttl: cfg.ttl,
            tos: t.tos,
            inner_len: t.inner_len,
        },
    );
    inner.copy_from_slice(&t.inner_eth);
    true
}

/// Marks an encapsulated frame for the detour through the underlay's ingress (redirect with
/// `REFLECT_FLAGS`), where the kernel re-derives skb->protocol (IPv4) and the underlay
/// program hands it to `bpf_redirect_neigh`.
#[inline(always)]
pub fn reflect_mark(ctx: &TcContext) {
    ctx.set_mark(REFLECT_MARK);
}

pub const REFLECT_FLAGS: u64 = BPF_F_INGRESS as u64;

pub enum NextHop {
    /// Route and neighbour known: outer MACs and egress device.
    Resolved {
        ifindex: u32,
        dst_mac: [u8; 6],
        src_mac: [u8; 6],
    },
    /// On the underlay's own subnet: the kernel only resolves the neighbour, no route.
    OnLink,
    /// The kernel has to route and resolve it.
    Unresolved,
}

/// Unicast to one remote VTEP.
#[inline(always)]
pub fn unicast(
    ctx: &TcContext,
    cfg: &Config,
    to: &Remote,
    vni: u32,
    inner_eth: &[u8; ETH_LEN],
) -> i32 {
    let Some(hop) = next_hop(ctx, cfg, to.ip) else {
        return drop(counter::DROP_NO_ROUTE);
    };
    let is_ipv4 = ctx.skb.protocol() == ETH_P_IP.to_be() as u32;
    let Some(tunnel) = open(ctx, cfg, vni, inner_eth) else {
        return drop(counter::DROP_ENCAP_FAIL);
    };
    let macs = match hop {
        NextHop::Resolved {
            dst_mac, src_mac, ..
        } => (dst_mac, src_mac),
        NextHop::OnLink | NextHop::Unresolved => ([0; 6], [0; 6]),
    };
    if !address(ctx, cfg, &tunnel, to, macs) {
        return drop(counter::DROP_ENCAP_FAIL);
    }
    match hop {
        NextHop::Resolved { ifindex, .. } => {
            count(counter::ENCAP);
            unsafe { bpf_redirect(ifindex, 0) as i32 }
        }
        NextHop::OnLink if is_ipv4 => {
            count(counter::ENCAP);
            count(counter::NEIGH_RESOLVE);
            // Every byte set by value: mem::zeroed() becomes a byte-loop memset call here.
            let mut nh = RedirNeigh {
                nh_family: AF_INET as u32,
                __bindgen_anon_1: NextHopAddr {
                    ipv6_nh: [u32::from_ne_bytes(to.ip), 0, 0, 0],
                },
            };
            unsafe {
                bpf_redirect_neigh(
                    cfg.underlay_ifindex,
                    &mut nh,
                    mem::size_of::<RedirNeigh>() as i32,
                    0,
                ) as i32
            }
        }
        NextHop::Unresolved if is_ipv4 => {
            count(counter::ENCAP);
            count(counter::NEIGH_RESOLVE);
            unsafe { bpf_redirect_neigh(cfg.underlay_ifindex, core::ptr::null_mut(), 0, 0) as i32 }
        }
        // skb->protocol still names the inner frame (ARP, say), which bpf_redirect_neigh
        // refuses: take the detour through the underlay's ingress.
        NextHop::OnLink | NextHop::Unresolved => {
            count(counter::ENCAP);
            count(counter::NEIGH_RESOLVE);
            reflect_mark(ctx);
            unsafe { bpf_redirect(cfg.underlay_ifindex, REFLECT_FLAGS) as i32 }
        }
    }
}

/// The underlay route to the remote VTEP, from the kernel's FIB and neighbour table (never
/// a constant MAC: the underlay may change under us).
pub fn next_hop(ctx: &TcContext, cfg: &Config, remote_ip: [u8; 4]) -> Option<NextHop> {
    if cfg.fib_ok == 0 {
        // The FIB helper would refuse (no IP forwarding): skip straight to the kernel.
        return Some(
            if wire::same_subnet(cfg.local_ip, remote_ip, cfg.onlink_prefix) {
                NextHop::OnLink
            } else {
                NextHop::Unresolved
            },
        );
    }
    let mut fib: FibLookup = unsafe { mem::zeroed() };
    fib.family = AF_INET;
    fib.ifindex = cfg.underlay_ifindex;
    fib.__bindgen_anon_3.ipv4_src = u32::from_ne_bytes(cfg.local_ip);
    fib.__bindgen_anon_4.ipv4_dst = u32::from_ne_bytes(remote_ip);
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
