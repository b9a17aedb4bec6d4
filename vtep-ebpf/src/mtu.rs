//! Frames too big for the underlay once encapsulated. The kernel's vxlan device answers a
//! bridged IPv4 frame with DF by ICMP "fragmentation needed" carrying the tunnel's MTU
//! (`skb_tunnel_check_pmtu`), so path MTU discovery works through the overlay; vtep does
//! the same in the data path. vtep always sets DF outside, so anything else too big is
//! dropped and counted rather than fragmented.

use core::ptr;

use aya_ebpf::{
    bindings::bpf_adj_room_mode::BPF_ADJ_ROOM_MAC,
    helpers::{bpf_csum_diff, bpf_redirect, bpf_skb_change_tail},
    programs::TcContext,
};
use vtep_common::{
    counter,
    icmp::{self, IPV6_LEN, MIN_MTU, MIN_MTU6, QUOTE6_LEN, QUOTE_LEN, REPLY6_HEAD, REPLY_HEAD},
    wire::{ETH_LEN, ETH_P_IP, ETH_P_IPV6, IPV4_LEN, MAX_VLAN_TAGS, VLAN_LEN},
    Config,
};

use crate::{
    head,
    stats::{drop, redirected, Verdict},
    vlan,
};

const IPPROTO_TCP: u8 = 6;
/// bpf_csum_diff sums at most this many bytes per call.
const CSUM_CHUNK: usize = 512;

/// The MTU to report when the frame starting with `eth`, with its VLAN tags pushed inside
/// and the outer headers added (`overhead` bytes with their Ethernet header: 50 towards an
/// IPv4 VTEP, 70 towards an IPv6 one), would not fit the underlay; None when it fits (or
/// carries more tags than vtep takes, which encapsulation drops). GSO packets are judged
/// by their segments.
#[inline(always)]
pub fn exceeded(
    ctx: &TcContext,
    cfg: &Config,
    eth: &[u8; ETH_LEN],
    overhead: usize,
) -> Option<u32> {
    let gso_size = unsafe { (*ctx.skb.skb).gso_size };
    // The common case in one comparison: fits even with the most tags pushed inside.
    let most = (overhead - ETH_LEN + MAX_VLAN_TAGS * VLAN_LEN) as u32;
    if gso_size == 0 && ctx.len() + most <= cfg.underlay_mtu {
        return None;
    }
    let (tags, l3) = (vlan::count(ctx, eth)?, vlan::network(ctx, eth)?);
    // Outer IP, UDP and VXLAN, then the inner Ethernet header and tags, around the inner
    // packet: as many bytes as `overhead`, whose outer Ethernet header the MTU leaves out.
    let limit = cfg
        .underlay_mtu
        .saturating_sub((overhead + tags * VLAN_LEN) as u32);
    let l3_len = if gso_size == 0 {
        ctx.len().saturating_sub(l3.0 as u32)
    } else {
        gso_size + headers(ctx, l3)
    };
    (l3_len > limit).then_some(limit)
}

/// Network and transport header bytes of the packet at `l3`, for a GSO segment's length.
#[inline(always)]
fn headers(ctx: &TcContext, (off, ty): (usize, u16)) -> u32 {
    let (ip_len, proto) = match ty {
        ETH_P_IP => match (ctx.load::<u8>(off), ctx.load::<u8>(off + 9)) {
            (Ok(v), Ok(p)) => (((v & 0x0f) as usize) * 4, p),
            _ => return 0,
        },
        ETH_P_IPV6 => match ctx.load::<u8>(off + 6) {
            Ok(p) => (40, p),
            _ => return 0,
        },
        _ => return 0,
    };
    let l4_len = if proto == IPPROTO_TCP {
        ctx.load::<u8>(off + ip_len + 12)
            .map_or(20, |d| ((d >> 4) as u32) * 4)
    } else {
        8
    };
    ip_len as u32 + l4_len
}

/// Turns the frame into the ICMP "fragmentation needed" (IPv4) or ICMPv6 "packet too big"
/// reply reporting `mtu` and sends it back out of `port` (`icmp_too_big`), or drops it
/// when the kernel would not answer (`drop_too_big`). A tag in metadata stays there, so the
/// reply goes back into the sender's VLAN. Not inlined: a rare path whose headers would
/// otherwise crowd the port program's 512-byte stack.
#[inline(never)]
pub fn answer(ctx: &TcContext, port: u32, eth: &[u8; ETH_LEN], mtu: u32) -> Verdict<i32> {
    // As the kernel: IP right after the Ethernet header, and a reportable MTU.
    let replied = match u16::from_be_bytes([eth[12], eth[13]]) {
        ETH_P_IP if mtu >= MIN_MTU => frag_needed(ctx, mtu),
        ETH_P_IPV6 if mtu >= MIN_MTU6 => packet_too_big(ctx, mtu),
        _ => false,
    };
    if !replied {
        return drop(counter::DROP_TOO_BIG);
    }
    let rc = unsafe { bpf_redirect(port, 0) } as i32;
    redirected(rc, counter::ICMP_TOO_BIG, counter::DROP_TOO_BIG)
}

#[inline(always)]
fn frag_needed(ctx: &TcContext, mtu: u32) -> bool {
    let answerable = head::view::<{ ETH_LEN + IPV4_LEN + 1 }>(ctx)
        .and_then(|h| h.last_chunk::<{ IPV4_LEN + 1 }>())
        .is_some_and(icmp::may_answer);
    answerable
        && trim_and_sum::<{ ETH_LEN + QUOTE_LEN }>(ctx).is_some_and(|sum| {
            make_room(ctx, REPLY_HEAD)
                && head::view_mut::<{ REPLY_HEAD + IPV4_LEN }>(ctx)
                    .map(|h| icmp::frag_needed(h, mtu as u16, sum))
                    .is_some()
        })
}

#[inline(always)]
fn packet_too_big(ctx: &TcContext, mtu: u32) -> bool {
    let answerable = head::view::<{ ETH_LEN + IPV6_LEN + 1 }>(ctx)
        .and_then(|h| h.last_chunk::<{ IPV6_LEN + 1 }>())
        .is_some_and(icmp::may_answer6);
    answerable
        && trim_and_sum::<{ ETH_LEN + QUOTE6_LEN }>(ctx).is_some_and(|sum| {
            make_room(ctx, REPLY6_HEAD)
                && head::view_mut::<{ REPLY6_HEAD + IPV6_LEN }>(ctx)
                    .map(|h| icmp::packet_too_big(h, mtu, sum))
                    .is_some()
        })
}

/// Trims the frame to its Ethernet header and the quote (its first `N` bytes), and sums
/// the quote in packet memory.
#[inline(always)]
fn trim_and_sum<const N: usize>(ctx: &TcContext) -> Option<u32> {
    if unsafe { bpf_skb_change_tail(ctx.skb.skb, N as u32, 0) } != 0 {
        return None;
    }
    let q = head::view::<N>(ctx)?;
    // bpf_csum_diff takes a constant size of at most 512 bytes: 548 = 512 + 36 (IPv4),
    // 1232 = 512 + 512 + 208 (IPv6).
    let (first, rest) = q.get(ETH_LEN..)?.split_first_chunk::<CSUM_CHUNK>()?;
    let sum = csum(first, 0)?;
    match rest.len() {
        36 => csum(rest.first_chunk::<36>()?, sum),
        720 => {
            let (second, last) = rest.split_first_chunk::<CSUM_CHUNK>()?;
            csum(last.first_chunk::<208>()?, csum(second, sum)?)
        }
        _ => None,
    }
}

/// `seed` plus the one's-complement sum of `bytes` (a multiple of 4, at most 512).
#[inline(always)]
pub fn csum<const M: usize>(bytes: &[u8; M], seed: u32) -> Option<u32> {
    let sum = unsafe {
        bpf_csum_diff(
            ptr::null_mut(),
            0,
            bytes.as_ptr() as *mut u32,
            M as u32,
            seed,
        )
    };
    (sum >= 0).then_some(sum as u32)
}

/// Room for the reply's headers (`head` bytes with the Ethernet header) in front of the
/// quote; the reply is then built in place.
#[inline(always)]
fn make_room(ctx: &TcContext, head: usize) -> bool {
    ctx.adjust_room((head - ETH_LEN) as i32, BPF_ADJ_ROOM_MAC, 0)
        .is_ok()
}
