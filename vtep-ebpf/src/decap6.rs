//! Decapsulation of VXLAN over IPv6 at TC ingress on the underlay (XDP passes these frames on
//! to TC): the checks of `vtep_common::parse6`, the outer UDP checksum, then the same
//! delivery as for IPv4.

use aya_ebpf::{bindings::TC_ACT_OK, helpers::bpf_skb_change_tail, programs::TcContext};
use vtep_common::{
    counter,
    outer6::ENCAP6_LEN,
    parse6::{self, DECAP6_MIN},
    wire::{ETH_LEN, ETH_MIN_FRAME},
    Config,
};

use crate::{
    csum,
    decap::{self, Delivery},
    head,
    stats::{drop, Verdict},
};

/// Through 12 bytes of the inner packet, for ECN.
const ECN_VIEW6: usize = DECAP6_MIN + 12;

pub fn tc(ctx: &TcContext, cfg: &Config) -> Verdict<i32> {
    match classify(ctx, cfg) {
        Ok((d, delivery, outer_tos, inner_eth)) => {
            if !matches!(delivery, Delivery::Host) && !padded(ctx) {
                return drop(counter::DROP_DECAP_FAIL);
            }
            decap::finish::<ECN_VIEW6>(ctx, cfg, &d, delivery, ENCAP6_LEN, outer_tos, &inner_eth)
        }
        Err(counter::DROP_UNKNOWN_PEER) => drop(counter::DROP_UNKNOWN_PEER),
        Err(reason) => Verdict::new(TC_ACT_OK, reason),
    }
}

type Found = (vtep_common::wire::Decap, Delivery, u8, [u8; ETH_LEN]);

/// Valid VXLAN over IPv6 for this VTEP (checksum included), where it goes, its outer
/// traffic class and its inner Ethernet header; or the counter of why not.
#[inline(always)]
fn classify(ctx: &TcContext, cfg: &Config) -> Result<Found, u32> {
    if cfg.ready == 0 {
        return Err(counter::PASS_NOT_READY);
    }
    if cfg.local_ip6 == [0; 16] {
        return Err(counter::PASS_NOT_VXLAN);
    }
    let h = head::view::<DECAP6_MIN>(ctx).ok_or(counter::PASS_NOT_VXLAN)?;
    let gso = unsafe { (*ctx.skb.skb).gso_size } != 0;
    let p = parse6::parse_vxlan6(h, ctx.len() as usize, &cfg.local_ip6, cfg.udp_port, gso)
        .map_err(decap::rejected)?;
    let outer_tos = (h[ETH_LEN] & 0x0f) << 4 | h[ETH_LEN + 1] >> 4;
    let mut inner_eth = [0u8; ETH_LEN];
    inner_eth.copy_from_slice(&h[ENCAP6_LEN..]);
    // A super-packet's checksum is a template, like its lengths: it was made on this
    // machine (a veth peer) or merged by GRO after its checksums were verified.
    if !gso {
        let ok = match p.csum {
            0 => cfg.udp6_zero_csum_rx != 0,
            _ => p.offloaded || checksum_ok(ctx, &p, &inner_eth),
        };
        if !ok {
            return Err(counter::PASS_BAD_VXLAN);
        }
    }
    let delivery = decap::delivery(cfg, &p.decap)?;
    Ok((p.decap, delivery, outer_tos, inner_eth))
}

/// Whether the outer UDP checksum verifies (see `parse6`): over the headers and the inner
/// packet's L4 checksum when it has one, else over every byte.
#[inline(always)]
fn checksum_ok(ctx: &TcContext, p: &parse6::Decap6, inner_eth: &[u8; ETH_LEN]) -> bool {
    let mut l3 = [0u8; 40];
    let loaded = csum::load_l3(ctx, DECAP6_MIN as u32, &mut l3);
    let ethertype = u16::from_be_bytes([inner_eth[12], inner_eth[13]]);
    let inner = match loaded.then(|| parse6::inner_part(ethertype, &l3)) {
        Some(Some(sum)) => Some(sum),
        // Summed to the frame's end: a VXLAN frame over IPv6 (84 bytes at least) is never
        // padded to Ethernet's minimum, and other padding fails the check.
        _ => csum::sum_from(ctx, DECAP6_MIN as u32),
    };
    inner.is_some_and(|sum| parse6::csum_ok(p.head_sum, sum))
}

/// Pads an inner frame shorter than the Ethernet minimum (an unpadded ARP request from a
/// virtual device), which the kernel would refuse to shrink to below an IPv6 header after
/// its MAC header; the padding is what a wire would have added.
#[inline(always)]
fn padded(ctx: &TcContext) -> bool {
    let want = (ENCAP6_LEN + ETH_MIN_FRAME) as u32;
    ctx.len() >= want || unsafe { bpf_skb_change_tail(ctx.skb.skb, want, 0) } == 0
}
