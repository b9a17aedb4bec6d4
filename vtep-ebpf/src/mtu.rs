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
    icmp::{self, MIN_MTU, QUOTE_LEN, REPLY_HEAD},
    wire::{ENCAP_LEN, ETH_LEN, ETH_P_IP, ETH_P_IPV6, IPV4_LEN, VLAN_LEN},
    Config,
};

use crate::{
    head,
    stats::{drop, redirected, Verdict},
};

const IPPROTO_TCP: u8 = 6;
/// bpf_csum_diff sums at most this many bytes per call.
const CSUM_CHUNK: usize = 512;

/// The MTU to report when the frame, with its `tags` pushed inside and the outer headers
/// added, would not fit the underlay; None when it fits. GSO packets are judged by their
/// segments.
#[inline(always)]
pub fn exceeded(ctx: &TcContext, cfg: &Config, tags: usize, l3: (usize, u16)) -> Option<u32> {
    // Outer IPv4, UDP and VXLAN, then the inner Ethernet header and tags, around the inner
    // packet: as many bytes as ENCAP_LEN, whose outer Ethernet header the MTU leaves out.
    let overhead = (ENCAP_LEN + tags * VLAN_LEN) as u32;
    let limit = cfg.underlay_mtu.saturating_sub(overhead);
    let gso_size = unsafe { (*ctx.skb.skb).gso_size };
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

/// Turns the frame into the ICMP "fragmentation needed" reply reporting `mtu` and sends it
/// back out of `port`, or drops it when the kernel would not answer. A tag in metadata
/// stays there, so the reply goes back into the sender's VLAN.
#[inline(always)]
pub fn answer(ctx: &TcContext, port: u32, eth: &[u8; ETH_LEN], mtu: u32) -> Verdict<i32> {
    let too_big = drop(counter::DROP_TOO_BIG);
    // As the kernel: IPv4 right after the Ethernet header, and a reportable MTU.
    if u16::from_be_bytes([eth[12], eth[13]]) != ETH_P_IP || mtu < MIN_MTU {
        return too_big;
    }
    let Some(h) = head::view::<{ ETH_LEN + IPV4_LEN + 1 }>(ctx) else {
        return too_big;
    };
    let Some(first) = h[ETH_LEN..].first_chunk::<{ IPV4_LEN + 1 }>() else {
        return too_big;
    };
    if !icmp::may_answer(first) {
        return too_big;
    }
    let mut ip = [0u8; IPV4_LEN];
    ip.copy_from_slice(&first[..IPV4_LEN]);
    let eth = *eth;
    // Trimmed to the quote, then room for the new IPv4 and ICMP headers in front of it.
    if unsafe { bpf_skb_change_tail(ctx.skb.skb, (ETH_LEN + QUOTE_LEN) as u32, 0) } != 0 {
        return too_big;
    }
    let Some(sum) = quote_sum(ctx) else {
        return too_big;
    };
    if ctx
        .adjust_room((REPLY_HEAD - ETH_LEN) as i32, BPF_ADJ_ROOM_MAC, 0)
        .is_err()
        || !head::write(ctx, &icmp::frag_needed(&eth, &ip, mtu as u16, sum))
    {
        return too_big;
    }
    let rc = unsafe { bpf_redirect(port, 0) } as i32;
    redirected(rc, counter::ICMP_FRAG_NEEDED, counter::DROP_TOO_BIG)
}

/// The one's-complement sum of the quoted bytes, in packet memory.
#[inline(always)]
fn quote_sum(ctx: &TcContext) -> Option<u32> {
    let q = head::view::<{ ETH_LEN + QUOTE_LEN }>(ctx)?;
    let (first, rest) = q[ETH_LEN..].split_first_chunk::<CSUM_CHUNK>()?;
    let rest = rest.first_chunk::<{ QUOTE_LEN - CSUM_CHUNK }>()?;
    let seed = unsafe {
        bpf_csum_diff(
            ptr::null_mut(),
            0,
            first.as_ptr() as *mut u32,
            CSUM_CHUNK as u32,
            0,
        )
    };
    if seed < 0 {
        return None;
    }
    let sum = unsafe {
        bpf_csum_diff(
            ptr::null_mut(),
            0,
            rest.as_ptr() as *mut u32,
            (QUOTE_LEN - CSUM_CHUNK) as u32,
            seed as u32,
        )
    };
    (sum >= 0).then_some(sum as u32)
}
