//! The underlay device: VXLAN decapsulation (TC ingress, optionally XDP in front of it) and
//! the last hop of frames the port program sends through here for neighbour resolution.
//!
//! Only well-formed VXLAN for this VTEP, in a VNI with local ports, is taken; every other
//! frame goes on to the host unchanged, so the host's own traffic never breaks. TC keeps the
//! skb, so checksum-offload state and GSO super-packets from a veth underlay survive; XDP is
//! faster on a NIC, but on veth it turns skbs into frames and drops CHECKSUM_PARTIAL, which
//! breaks TCP from senders on the same machine.

use aya_ebpf::{
    bindings::{
        bpf_adj_room_mode::BPF_ADJ_ROOM_MAC,
        xdp_action::{XDP_ABORTED, XDP_PASS},
        BPF_F_ADJ_ROOM_DECAP_L3_IPV6, BPF_F_ADJ_ROOM_FIXED_GSO, TC_ACT_OK, TC_ACT_SHOT,
    },
    helpers::{
        bpf_redirect, bpf_redirect_neigh, bpf_redirect_peer, bpf_xdp_adjust_head,
        bpf_xdp_adjust_tail,
    },
    programs::{TcContext, XdpContext},
};
use vtep_common::{
    counter,
    wire::{self, Decap, Reject, DECAP_MIN, ENCAP_LEN, ETH_LEN, ETH_P_IP, ETH_P_IPV6},
    Config, MacVni, REFLECT_MARK,
};

use crate::{
    fdb, flood, head,
    maps::{CONFIG, LOCAL, VNIS},
    stats::count,
};

enum Delivery {
    /// To one local port.
    Port(u32),
    /// Broadcast or multicast: to every local port of the VNI.
    Flood,
}

/// Where a received frame goes, or the counter of why the host keeps it. Learns the
/// sender of every valid VXLAN frame, as the kernel does.
#[inline(always)]
fn classify(
    cfg: &Config,
    h: &[u8; DECAP_MIN],
    frame_len: usize,
    gso: bool,
) -> Result<(Decap, Delivery), u32> {
    if cfg.ready == 0 {
        return Err(counter::PASS_NOT_VXLAN);
    }
    let d = match wire::parse_vxlan(h, frame_len, cfg.local_ip, cfg.udp_port, gso) {
        Ok(d) => d,
        Err(Reject::NotVxlan) => return Err(counter::PASS_NOT_VXLAN),
        Err(Reject::BadVxlan) => return Err(counter::PASS_BAD_VXLAN),
    };
    // A local port found for the destination also proves the VNI is served here, which
    // saves the per-VNI lookup on the common path.
    let delivery = match unsafe { LOCAL.get(MacVni::new(d.inner_dst, d.vni)) } {
        Some(&port) => Some(Delivery::Port(port)),
        None if wire::is_multicast(&d.inner_dst) => Some(Delivery::Flood),
        None => None,
    };
    // A VNI without local ports is not this VTEP's business: no learning, no delivery.
    if !matches!(delivery, Some(Delivery::Port(_)))
        && unsafe { VNIS.get(d.vni) }.is_none_or(|l| l.ports == 0)
    {
        return Err(counter::PASS_NO_PORT);
    }
    if !fdb::peer_allowed(cfg, d.vni, d.remote_ip) {
        return Err(counter::DROP_UNKNOWN_PEER);
    }
    fdb::learn(cfg, d.vni, d.inner_src, d.remote_ip);
    match delivery {
        Some(delivery) => Ok((d, delivery)),
        None => Err(counter::PASS_NO_PORT),
    }
}

pub fn underlay_xdp(ctx: &XdpContext) -> u32 {
    let (start, end) = (ctx.data(), ctx.data_end());
    if start + DECAP_MIN > end {
        count(counter::PASS_NOT_VXLAN);
        return XDP_PASS;
    }
    let Some(cfg) = CONFIG.get(0) else {
        return XDP_PASS;
    };
    // SAFETY: checked against data_end above; a byte array needs no alignment.
    let h = unsafe { &*(start as *const [u8; DECAP_MIN]) };
    let (d, port) = match classify(cfg, h, end - start, false) {
        Ok((d, Delivery::Port(port))) => (d, port),
        // XDP cannot copy a frame to several ports: the TC program behind it floods.
        Ok((_, Delivery::Flood)) => return XDP_PASS,
        // Counted by the TC program behind, which sees every frame XDP passes.
        Err(counter::DROP_UNKNOWN_PEER) => return XDP_PASS,
        Err(reason) => {
            count(reason);
            return XDP_PASS;
        }
    };
    if unsafe { bpf_xdp_adjust_head(ctx.ctx, ENCAP_LEN as i32) } != 0 {
        return XDP_ABORTED;
    }
    if d.padding > 0 && unsafe { bpf_xdp_adjust_tail(ctx.ctx, -(d.padding as i32)) } != 0 {
        return XDP_ABORTED;
    }
    count(counter::DECAP);
    unsafe { bpf_redirect(port, 0) as u32 }
}

pub fn underlay_tc(ctx: &TcContext) -> i32 {
    let Some(cfg) = CONFIG.get(0) else {
        return TC_ACT_OK;
    };
    if unsafe { (*ctx.skb.skb).mark } == REFLECT_MARK {
        // Our own encapsulated frame, now with skb->protocol derived from its outer header.
        ctx.set_mark(0);
        count(counter::REFLECT);
        return unsafe {
            bpf_redirect_neigh(cfg.underlay_ifindex, core::ptr::null_mut(), 0, 0) as i32
        };
    }
    let Some(h) = head::view::<DECAP_MIN>(ctx) else {
        count(counter::PASS_NOT_VXLAN);
        return TC_ACT_OK;
    };
    let gso = unsafe { (*ctx.skb.skb).gso_size } != 0;
    let (d, delivery) = match classify(cfg, h, ctx.len() as usize, gso) {
        Ok(found) => found,
        Err(counter::DROP_UNKNOWN_PEER) => {
            count(counter::DROP_UNKNOWN_PEER);
            return TC_ACT_SHOT;
        }
        Err(reason) => {
            count(reason);
            return TC_ACT_OK;
        }
    };
    let mut inner_eth = [0u8; ETH_LEN];
    inner_eth.copy_from_slice(&h[ENCAP_LEN..]);
    let inner_type = u16::from_be_bytes([inner_eth[12], inner_eth[13]]);
    let mut flags = BPF_F_ADJ_ROOM_FIXED_GSO as u64;
    if inner_type == ETH_P_IPV6 {
        flags |= BPF_F_ADJ_ROOM_DECAP_L3_IPV6 as u64;
    }
    // Removes outer IPv4, UDP, VXLAN and the inner Ethernet header; the outer Ethernet
    // header then becomes the inner one.
    if ctx
        .adjust_room(-(ENCAP_LEN as i32), BPF_ADJ_ROOM_MAC, flags)
        .is_err()
        || !head::write(ctx, &inner_eth)
    {
        count(counter::DROP_DECAP_FAIL);
        return TC_ACT_SHOT;
    }
    count(counter::DECAP);
    match delivery {
        Delivery::Flood => {
            flood::local(ctx, d.vni, 0);
            TC_ACT_SHOT
        }
        // Straight into the container's ingress, skipping the veth's backlog queue.
        Delivery::Port(port) if inner_type == ETH_P_IP || inner_type == ETH_P_IPV6 => unsafe {
            bpf_redirect_peer(port, 0) as i32
        },
        // Through the veth, which re-derives skb->protocol for non-IP frames (ARP).
        Delivery::Port(port) => unsafe { bpf_redirect(port, 0) as i32 },
    }
}
