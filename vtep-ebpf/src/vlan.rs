//! 802.1Q / 802.1ad tags of frames from a port. Before TC sees a frame the kernel moves its
//! outer tag into skb metadata, where a redirect would put it on the *outer* header of the
//! tunnel; the kernel's vxlan device pushes it back into the frame first
//! (`vlan_hwaccel_push_inside`), so tags travel inside the tunnel. vtep does the same.

use aya_ebpf::{helpers::bpf_skb_vlan_pop, programs::TcContext};
use vtep_common::wire::{is_vlan, ETH_LEN, MAX_VLAN_TAGS, VLAN_LEN};

use crate::head;

/// The tags of a frame in wire order (TPID then TCI, each big-endian).
pub struct Tags {
    pub n: usize,
    pub tag: [[u8; VLAN_LEN]; MAX_VLAN_TAGS],
}

#[inline(always)]
fn in_metadata(ctx: &TcContext) -> bool {
    unsafe { (*ctx.skb.skb).vlan_present != 0 }
}

/// How many tags a frame starting with `eth` carries in all (in metadata and in its
/// bytes), or None beyond `MAX_VLAN_TAGS`.
#[inline(always)]
pub fn count(ctx: &TcContext, eth: &[u8; ETH_LEN]) -> Option<usize> {
    let meta = usize::from(in_metadata(ctx));
    if !is_vlan(u16::from_be_bytes([eth[12], eth[13]])) {
        return Some(meta);
    }
    let h = head::view::<{ ETH_LEN + 2 * VLAN_LEN }>(ctx)?;
    let in_packet = if is_vlan(u16::from_be_bytes([h[16], h[17]])) {
        if is_vlan(u16::from_be_bytes([h[20], h[21]])) {
            return None;
        }
        2
    } else {
        1
    };
    (meta + in_packet <= MAX_VLAN_TAGS).then_some(meta + in_packet)
}

/// The offset of the network header and its ether type, past the tags in the frame's
/// bytes (those in metadata take no room).
#[inline(always)]
pub fn network(ctx: &TcContext, eth: &[u8; ETH_LEN]) -> Option<(usize, u16)> {
    let ty = u16::from_be_bytes([eth[12], eth[13]]);
    if !is_vlan(ty) {
        return Some((ETH_LEN, ty));
    }
    let h = head::view::<{ ETH_LEN + 2 * VLAN_LEN }>(ctx)?;
    let ty = u16::from_be_bytes([h[16], h[17]]);
    if !is_vlan(ty) {
        return Some((ETH_LEN + VLAN_LEN, ty));
    }
    Some((ETH_LEN + 2 * VLAN_LEN, u16::from_be_bytes([h[20], h[21]])))
}

/// Takes the frame's tags out of metadata, leaving it untagged: `bpf_skb_vlan_pop` also
/// moves the next tag in the bytes into metadata (QinQ), so a second round takes that one.
/// None with more tags than `MAX_VLAN_TAGS`.
#[inline(always)]
pub fn take(ctx: &TcContext) -> Option<Tags> {
    let mut tags = Tags {
        n: 0,
        tag: [[0; VLAN_LEN]; MAX_VLAN_TAGS],
    };
    for slot in tags.tag.iter_mut() {
        if !in_metadata(ctx) {
            return Some(tags);
        }
        let (proto, tci) = unsafe { ((*ctx.skb.skb).vlan_proto, (*ctx.skb.skb).vlan_tci) };
        // vlan_proto is in network order, vlan_tci in host order.
        let proto = (proto as u16).to_ne_bytes();
        let tci = (tci as u16).to_be_bytes();
        *slot = [proto[0], proto[1], tci[0], tci[1]];
        if unsafe { bpf_skb_vlan_pop(ctx.skb.skb) } != 0 {
            return None;
        }
        tags.n += 1;
    }
    (!in_metadata(ctx)).then_some(tags)
}
