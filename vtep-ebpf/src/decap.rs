//! The underlay device: VXLAN decapsulation (TC ingress, optionally XDP in front of it);
//! the TC program also finishes the port program's detours (`encap::reflected`).
//!
//! Only well-formed VXLAN for this VTEP, in a VNI with local ports, is taken; every other
//! frame goes on to the host unchanged, so the host's own traffic never breaks. TC keeps the
//! skb, so checksum-offload state and GSO super-packets from a veth underlay survive; XDP is
//! faster on a NIC, but on veth its redirect turns skbs into frames and drops
//! CHECKSUM_PARTIAL, so there XDP decapsulates and hands the frame to TC to deliver.

use aya_ebpf::{
    bindings::{
        bpf_adj_room_mode::BPF_ADJ_ROOM_MAC,
        xdp_action::{XDP_ABORTED, XDP_DROP, XDP_PASS},
        BPF_F_ADJ_ROOM_DECAP_L3_IPV4, BPF_F_ADJ_ROOM_DECAP_L3_IPV6, BPF_F_ADJ_ROOM_FIXED_GSO,
        TC_ACT_OK, TC_ACT_SHOT,
    },
    helpers::{
        bpf_redirect, bpf_redirect_peer, bpf_xdp_adjust_head, bpf_xdp_adjust_meta,
        bpf_xdp_adjust_tail,
    },
    programs::{TcContext, XdpContext},
};
use vtep_common::{
    counter, ecn,
    wire::{self, Decap, Reject, DECAP_MIN, ENCAP_LEN, ETH_LEN, ETH_P_IP, ETH_P_IPV6},
    Config, MacVni, XdpHandoff, XDP_HANDOFF_MAGIC,
};

use crate::{
    encap, fdb, flood, head,
    maps::{CONFIG, LOCAL, VNIS},
    stats::{drop, Verdict},
};

pub(crate) enum Delivery {
    /// To one local port.
    Port(u32),
    /// Broadcast or multicast: to every local port of the VNI.
    Flood,
    /// Nobody here: the host keeps it (`pass_no_port`), after learning its sender.
    Host,
}

/// Valid VXLAN for this VTEP, from an allowed peer, in a VNI with local ports, and where it
/// goes; or the counter of why not (`drop_unknown_peer` is a drop, the rest pass to the
/// host). Learns nothing: the caller learns once, where it finishes the frame.
#[inline(always)]
fn classify(
    cfg: &Config,
    h: &[u8; DECAP_MIN],
    frame_len: usize,
    gso: bool,
) -> Result<(Decap, Delivery), u32> {
    if cfg.ready == 0 {
        return Err(counter::PASS_NOT_READY);
    }
    let d = wire::parse_vxlan(h, frame_len, cfg.local_ip, cfg.udp_port, gso).map_err(rejected)?;
    Ok((d, delivery(cfg, &d)?))
}

/// The counter of a frame the parser refused.
#[inline(always)]
pub(crate) fn rejected(r: Reject) -> u32 {
    match r {
        Reject::NotVxlan => counter::PASS_NOT_VXLAN,
        Reject::BadVxlan => counter::PASS_BAD_VXLAN,
    }
}

/// Where a valid VXLAN frame of either family goes, or the counter of why it does not.
#[inline(always)]
pub(crate) fn delivery(cfg: &Config, d: &Decap) -> Result<Delivery, u32> {
    // A local port found for the destination also proves the VNI is served here, which
    // saves the per-VNI lookup on the common path.
    let delivery = match unsafe { LOCAL.get(MacVni::new(d.inner_dst, d.vni)) } {
        Some(&port) => Delivery::Port(port),
        None if wire::is_multicast(&d.inner_dst) => Delivery::Flood,
        None => Delivery::Host,
    };
    // A VNI without local ports is not this VTEP's business: no learning, no delivery.
    if !matches!(delivery, Delivery::Port(_))
        && unsafe { VNIS.get(d.vni) }.is_none_or(|l| l.ports == 0)
    {
        return Err(counter::PASS_NO_PORT);
    }
    if !fdb::peer_allowed(cfg, d.vni, d.remote_ip) {
        return Err(counter::DROP_UNKNOWN_PEER);
    }
    Ok(delivery)
}

/// The first bytes of a VXLAN frame through the inner packet's ECN-bearing header bytes.
const ECN_VIEW: usize = DECAP_MIN + 12;

/// Applies the outer header's ECN (in `outer_tos`) to the inner IPv4 or IPv6 packet (RFC
/// 6040, as the kernel's vxlan device); false when the frame must be dropped (`drop_ecn`).
/// `h` ends with the inner ether type and 12 bytes of the inner packet; frames with a VLAN
/// tag inside are left alone. `h` must be a valid frame as the parser accepted it.
#[inline(always)]
pub(crate) fn apply_ecn<const N: usize>(h: &mut [u8; N], outer_tos: u8) -> bool {
    let Some(ty) = h.get(N - 14..N - 12) else {
        return true;
    };
    let inner_type = u16::from_be_bytes([ty[0], ty[1]]);
    let Some(l3) = h.last_chunk_mut::<12>() else {
        return true;
    };
    let Some(inner) = ecn::dsfield(inner_type, &[l3[0], l3[1]]) else {
        return true;
    };
    match ecn::decap(outer_tos, inner) {
        ecn::Decap::Keep => true,
        ecn::Decap::Mark(e) => {
            ecn::set(inner_type, l3, e);
            true
        }
        ecn::Decap::Drop => false,
    }
}

pub fn underlay_xdp(ctx: &XdpContext) -> u32 {
    xdp_verdict(ctx).map_or(XDP_PASS, Verdict::finish)
}

/// What XDP finishes itself, or None for frames it passes on uncounted: the TC program
/// behind it sees, counts and learns from every one of those.
#[inline(always)]
fn xdp_verdict(ctx: &XdpContext) -> Option<Verdict<u32>> {
    let (start, end) = (ctx.data(), ctx.data_end());
    if start + ECN_VIEW > end {
        return None;
    }
    let cfg = CONFIG.get(0)?;
    // SAFETY: checked against data_end above; a byte array needs no alignment.
    let h = unsafe { &mut *(start as *mut [u8; ECN_VIEW]) };
    let head = h.first_chunk::<DECAP_MIN>()?;
    let (d, port) = match classify(cfg, head, end - start, false) {
        Ok((d, Delivery::Port(port))) => (d, port),
        Err(counter::DROP_UNKNOWN_PEER) => {
            return Some(Verdict::new(XDP_DROP, counter::DROP_UNKNOWN_PEER))
        }
        // XDP cannot copy a frame to several ports: the TC program behind it floods.
        _ => return None,
    };
    fdb::learn(cfg, d.vni, d.inner_src, d.remote_ip);
    let outer_tos = h[ETH_LEN + 1];
    if !apply_ecn(h, outer_tos) {
        return Some(Verdict::new(XDP_DROP, counter::DROP_ECN));
    }
    let aborted = Verdict::new(XDP_ABORTED, counter::DROP_DECAP_FAIL);
    if unsafe { bpf_xdp_adjust_head(ctx.ctx, ENCAP_LEN as i32) } != 0 {
        return Some(aborted);
    }
    if d.padding > 0 && unsafe { bpf_xdp_adjust_tail(ctx.ctx, -(d.padding as i32)) } != 0 {
        return Some(aborted);
    }
    if cfg.xdp_handoff != 0 {
        // Passed on uncounted: TC delivers it and counts the delivery.
        return (!hand_off(ctx, port)).then_some(aborted);
    }
    Some(Verdict::new(
        unsafe { bpf_redirect(port, 0) as u32 },
        counter::DECAP,
    ))
}

/// Leaves `port` in the metadata of a decapsulated frame for TC (`xdp_handoff`).
#[inline(always)]
fn hand_off(ctx: &XdpContext, port: u32) -> bool {
    if unsafe { bpf_xdp_adjust_meta(ctx.ctx, -(HANDOFF_LEN as i32)) } != 0 {
        return false;
    }
    let (meta, data) = (ctx.metadata(), ctx.data());
    if meta + HANDOFF_LEN > data {
        return false;
    }
    let h = XdpHandoff {
        magic: XDP_HANDOFF_MAGIC,
        port,
    };
    // SAFETY: checked against data above; unaligned, as packet memory may be.
    unsafe { (meta as *mut XdpHandoff).write_unaligned(h) };
    true
}

/// The port a frame was decapsulated for by XDP and handed to TC, if it was.
#[inline(always)]
fn handed_off(ctx: &TcContext) -> Option<u32> {
    let meta = unsafe { (*ctx.skb.skb).data_meta } as usize;
    if meta + HANDOFF_LEN > ctx.data() {
        return None;
    }
    // SAFETY: checked against data above.
    let h = unsafe { (meta as *const XdpHandoff).read_unaligned() };
    (h.magic == XDP_HANDOFF_MAGIC).then_some(h.port)
}

const HANDOFF_LEN: usize = core::mem::size_of::<XdpHandoff>();

/// Sends a decapsulated frame into its port.
#[inline(always)]
pub(crate) fn deliver(port: u32, inner_type: u16) -> i32 {
    if inner_type == ETH_P_IP || inner_type == ETH_P_IPV6 {
        // Straight into the container's ingress, skipping the veth's backlog queue.
        unsafe { bpf_redirect_peer(port, 0) as i32 }
    } else {
        // Through the veth, which re-derives skb->protocol for non-IP frames (ARP, tagged).
        unsafe { bpf_redirect(port, 0) as i32 }
    }
}

pub fn underlay_tc(ctx: &TcContext) -> i32 {
    tc_verdict(ctx).finish()
}

#[inline(always)]
fn tc_verdict(ctx: &TcContext) -> Verdict<i32> {
    let Some(cfg) = CONFIG.get(0) else {
        return Verdict::new(TC_ACT_OK, counter::PASS_NOT_READY);
    };
    if let Some(v) = encap::reflected(ctx, cfg) {
        return v;
    }
    if let Some(port) = handed_off(ctx) {
        let Some(eth) = head::view::<ETH_LEN>(ctx) else {
            return drop(counter::DROP_DECAP_FAIL);
        };
        let inner_type = u16::from_be_bytes([eth[12], eth[13]]);
        return Verdict::new(deliver(port, inner_type), counter::DECAP);
    }
    let Some(h) = head::view::<DECAP_MIN>(ctx) else {
        return Verdict::new(TC_ACT_OK, counter::PASS_NOT_VXLAN);
    };
    if u16::from_be_bytes([h[12], h[13]]) == ETH_P_IPV6 {
        return crate::decap6::tc(ctx, cfg);
    }
    let gso = unsafe { (*ctx.skb.skb).gso_size } != 0;
    let (d, delivery) = match classify(cfg, h, ctx.len() as usize, gso) {
        Ok(found) => found,
        Err(counter::DROP_UNKNOWN_PEER) => return drop(counter::DROP_UNKNOWN_PEER),
        Err(reason) => return Verdict::new(TC_ACT_OK, reason),
    };
    let mut inner_eth = [0u8; ETH_LEN];
    inner_eth.copy_from_slice(&h[ENCAP_LEN..]);
    let outer_tos = h[ETH_LEN + 1];
    finish::<ECN_VIEW>(ctx, cfg, &d, delivery, ENCAP_LEN, outer_tos, &inner_eth)
}

/// The rest of a valid frame of either family, whose outer headers take `outer_len` bytes
/// and whose first `VIEW` bytes reach 12 bytes into the inner packet: learns its sender,
/// applies ECN, removes the outer headers and delivers it (or leaves it to the host).
#[inline(always)]
pub(crate) fn finish<const VIEW: usize>(
    ctx: &TcContext,
    cfg: &Config,
    d: &Decap,
    delivery: Delivery,
    outer_len: usize,
    outer_tos: u8,
    inner_eth: &[u8; ETH_LEN],
) -> Verdict<i32> {
    fdb::learn(cfg, d.vni, d.inner_src, d.remote_ip);
    if let Delivery::Host = delivery {
        return Verdict::new(TC_ACT_OK, counter::PASS_NO_PORT);
    }
    // A valid frame holds a whole inner IPv4 header (MIN_INNER).
    if head::view_mut::<VIEW>(ctx).is_some_and(|h| !apply_ecn(h, outer_tos)) {
        return drop(counter::DROP_ECN);
    }
    let inner_type = u16::from_be_bytes([inner_eth[12], inner_eth[13]]);
    let outer_type = if outer_len == ENCAP_LEN {
        ETH_P_IP
    } else {
        ETH_P_IPV6
    };
    let mut flags = BPF_F_ADJ_ROOM_FIXED_GSO as u64;
    // The new network header's family, where it is not the outer one's.
    if inner_type == ETH_P_IPV6 && outer_type == ETH_P_IP {
        flags |= BPF_F_ADJ_ROOM_DECAP_L3_IPV6 as u64;
    } else if inner_type == ETH_P_IP && outer_type == ETH_P_IPV6 {
        flags |= BPF_F_ADJ_ROOM_DECAP_L3_IPV4 as u64;
    }
    // Removes the outer IP, UDP and VXLAN headers and the inner Ethernet header; the outer
    // Ethernet header then becomes the inner one.
    if ctx
        .adjust_room(-(outer_len as i32), BPF_ADJ_ROOM_MAC, flags)
        .is_err()
        || !head::write(ctx, inner_eth)
    {
        return drop(counter::DROP_DECAP_FAIL);
    }
    let action = match delivery {
        Delivery::Port(port) => deliver(port, inner_type),
        _ => {
            flood::local(ctx, d.vni, 0);
            TC_ACT_SHOT
        }
    };
    Verdict::new(action, counter::DECAP)
}
