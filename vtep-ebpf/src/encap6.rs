//! Encapsulation towards IPv6 VTEPs: outer IPv6 headers with a UDP checksum, and the
//! underlay next hop over IPv6. The frame has been grown by `encap::open(.., Family::V6)`.
//!
//! The outer UDP checksum (mandatory over IPv6 unless `--udp6zerocsumtx`) is computed here,
//! not left to the kernel: bpf_skb_adjust_room marks a GSO skb SKB_GSO_UDP_TUNNEL, never
//! SKB_GSO_UDP_TUNNEL_CSUM, so segmentation (udp_offload.c `__skb_udp_tunnel_segment`,
//! `need_csum`) never touches the outer checksum. A non-GSO frame gets the exact checksum;
//! a GSO super-packet gets the same sum over its template headers: nonzero, which receivers
//! that trust CHECKSUM_PARTIAL (a veth peer) accept, but not right for segments a NIC or
//! software GSO would cut from it (see `inner_sum`).

use aya_ebpf::programs::TcContext;
use vtep_common::{
    outer6::{self, Inner, Outer6, ENCAP6_LEN},
    wire::{ETH_LEN, MAX_VLAN_TAGS, VLAN_LEN},
    Config, Remote,
};

use crate::{
    csum,
    encap::{self, NextHop, Tunnel, AF_INET6},
    maps::{OUTER6_SCRATCH, SUM_SCRATCH},
};

/// The one's-complement sum of the inner frame (its Ethernet header as the tunnel will
/// write it, tags included), for `address`; None when the frame cannot be read.
///
/// The inner packet's L4 checksum stands in for its L4 region when it has one
/// (`outer6::inner`): exact whether the stack already filled it in or leaves it to
/// the NIC (CHECKSUM_PARTIAL, which a TC program cannot see: the __sk_buff has neither
/// ip_summed nor csum_start), because a correct L4 region sums to the same either way.
/// Other frames are summed byte by byte.
#[inline(always)]
pub fn inner_sum(ctx: &TcContext, cfg: &Config, t: &Tunnel) -> Option<u32> {
    let mut whole_from = 0;
    let head = head_sum(ctx, cfg, t, &mut whole_from)?;
    if whole_from == 0 {
        return Some(head);
    }
    // Called from here, not from `head_sum`: each level of calls adds its frame to the
    // 512 bytes of stack a call chain may use.
    csum::sum_from(ctx, whole_from).map(|s| head + s)
}

/// The sum of what `inner_sum` needs short of a whole frame's bytes; for a frame summed
/// whole, also the offset its bytes start at (`whole_from`). Not inlined: its spills would
/// crowd the caller's frame.
#[inline(never)]
fn head_sum(ctx: &TcContext, cfg: &Config, t: &Tunnel, whole_from: &mut u32) -> Option<u32> {
    if cfg.udp6_zero_csum_tx != 0 {
        return Some(0);
    }
    let eth = &t.inner_eth;
    let mut head = outer6::sum16(eth, 0);
    for tag in t.tags.tag.iter().take(t.tags.n.min(MAX_VLAN_TAGS)) {
        head = outer6::sum16(tag, head);
    }
    let l3_off = ENCAP6_LEN + ETH_LEN + t.tags.n.min(MAX_VLAN_TAGS) * VLAN_LEN;
    // In per-CPU scratch, not on the stack: this frame stacks on its program's and on
    // `address_unicast`'s (512 bytes in all).
    let buf = SUM_SCRATCH.get_ptr_mut(0)?;
    let l3 = unsafe { &mut *(buf as *mut [u8; 40]) };
    let loaded = csum::load_l3(ctx, l3_off as u32, l3);
    let ethertype = u16::from_be_bytes([eth[12], eth[13]]);
    let class = if loaded {
        outer6::inner(ethertype, l3)
    } else {
        // Shorter than an IPv6 header: cheap to sum whole.
        Inner::Whole
    };
    match class {
        Inner::Headers { ip_len: 20, l4 } => {
            Some(outer6::sum16(l3.first_chunk::<20>()?, head + l4))
        }
        Inner::Headers { l4, .. } => Some(outer6::sum16(l3, head + l4)),
        // A super-packet's bytes are not what goes out: its checksum is a template anyway.
        Inner::Whole if unsafe { (*ctx.skb.skb).gso_size } != 0 => Some(head),
        Inner::Whole => {
            *whole_from = l3_off as u32;
            Some(head)
        }
    }
}

/// Where one copy goes: the remote VTEP, its UDP port, the outer MACs (destination,
/// source), and the sum of the inner frame (`inner_sum`) for the UDP checksum.
pub struct To6 {
    pub remote: [u8; 16],
    pub port: u16,
    pub macs: ([u8; 6], [u8; 6]),
    pub inner: u32,
}

/// `address` for a unicast frame, which sums its inner frame first. Not inlined: the sum
/// and `To6` would crowd `vtep_unicast6`'s frame, on which the sum's calls stack.
#[inline(never)]
pub fn address_unicast(
    ctx: &TcContext,
    cfg: &Config,
    t: &Tunnel,
    to: &Remote,
    macs: &([u8; 6], [u8; 6]),
) -> bool {
    inner_sum(ctx, cfg, t).is_some_and(|inner| {
        let to = To6 {
            remote: to.ip.0,
            port: to.port,
            macs: *macs,
            inner,
        };
        address(ctx, cfg, t, &to)
    })
}

/// Writes the outer IPv6 headers towards `to` and the inner Ethernet header with its tags.
#[inline(never)]
pub fn address(ctx: &TcContext, cfg: &Config, t: &Tunnel, to: &To6) -> bool {
    let (macs, inner) = (to.macs, to.inner);
    // Built in per-CPU scratch, not on the stack: this frame stacks on a flood callback's,
    // on the flood walk's, on the port program's (512 bytes in all).
    let Some(slot) = OUTER6_SCRATCH.get_ptr_mut(0) else {
        return false;
    };
    let o = unsafe { &mut *slot };
    *o = Outer6 {
        dst_mac: macs.0,
        src_mac: macs.1,
        src_ip: cfg.local_ip6,
        dst_ip: to.remote,
        src_port: t.src_port,
        dst_port: to.port,
        vni: t.vni,
        hop_limit: cfg.ttl,
        tclass: t.tos,
        flow_label: outer6::flow_label(t.hash),
        inner_len: t.inner_len,
    };
    let csum = if cfg.udp6_zero_csum_tx != 0 {
        0
    } else {
        outer6::udp6_checksum(o, inner)
    };
    let write = |h: &mut [u8; ENCAP6_LEN]| outer6::write_outer6(h, o, csum);
    match t.tags.n {
        0 => encap::write_head::<{ ENCAP6_LEN + ETH_LEN }, ENCAP6_LEN>(ctx, write, t),
        1 => encap::write_head::<{ ENCAP6_LEN + ETH_LEN + VLAN_LEN }, ENCAP6_LEN>(ctx, write, t),
        _ => encap::write_head::<{ ENCAP6_LEN + ETH_LEN + MAX_VLAN_TAGS * VLAN_LEN }, ENCAP6_LEN>(
            ctx, write, t,
        ),
    }
}

/// The underlay route to an IPv6 VTEP: as `encap::next_hop`, from the FIB when IPv6
/// forwarding lets it answer, else on-link or the kernel's. Inlined: as a BPF function its
/// `Option<NextHop>` return type would go into BTF as a union with its niche member at
/// byte 16, which the kernel refuses (union members sit at 0), and without the object's
/// BTF the bpf_loop callbacks have no func_info.
#[inline(always)]
pub fn next_hop(ctx: &TcContext, cfg: &Config, remote: &[u8; 16]) -> Option<NextHop> {
    if cfg.fib6_ok == 0 {
        let on_link = outer6::same_subnet6(&cfg.local_ip6, remote, cfg.onlink_prefix6);
        return Some(NextHop::without_fib(on_link, cfg));
    }
    let words = |a: &[u8; 16]| {
        let w = |i: usize| u32::from_ne_bytes([a[i], a[i + 1], a[i + 2], a[i + 3]]);
        [w(0), w(4), w(8), w(12)]
    };
    encap::route(ctx, cfg, |fib| {
        fib.family = AF_INET6;
        fib.__bindgen_anon_2.flowinfo = 0;
        fib.__bindgen_anon_3.ipv6_src = words(&cfg.local_ip6);
        fib.__bindgen_anon_4.ipv6_dst = words(remote);
    })
}
