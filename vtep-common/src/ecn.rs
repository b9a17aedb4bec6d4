//! ECN across the tunnel, as RFC 6040's normal mode and the kernel's vxlan device apply it
//! (`INET_ECN_encapsulate`, `INET_ECN_decapsulate`): congestion marks made on the underlay
//! reach the inner packet, so DCTCP and L4S work across the overlay.

use crate::wire::{ETH_P_IP, ETH_P_IPV6};

pub const MASK: u8 = 0b11;
pub const NOT_ECT: u8 = 0b00;
pub const ECT_1: u8 = 0b01;
pub const ECT_0: u8 = 0b10;
pub const CE: u8 = 0b11;

/// The outer TOS: `dscp_from`'s DSCP (the configured TOS, or the inner one under `tos
/// inherit`) with the inner ECN field, except that an inner CE goes out as ECT(0): a mark
/// made before the tunnel is not the tunnel's congestion.
#[inline(always)]
pub const fn encap_tos(dscp_from: u8, inner: u8) -> u8 {
    let ecn = match inner & MASK {
        CE => ECT_0,
        e => e,
    };
    (dscp_from & !MASK) | ecn
}

/// What decapsulation does to the inner packet's ECN field.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Decap {
    Keep,
    /// Set the inner ECN field to this.
    Mark(u8),
    /// Outer CE around a Not-ECT packet: the congestion cannot be signalled, so the packet
    /// is dropped as the congested router would have.
    Drop,
}

#[inline(always)]
pub const fn decap(outer: u8, inner: u8) -> Decap {
    match (outer & MASK, inner & MASK) {
        (CE, NOT_ECT) => Decap::Drop,
        (_, NOT_ECT) | (_, CE) => Decap::Keep,
        (CE, _) => Decap::Mark(CE),
        // RFC 6040 with its ECT(1) update, as the kernel (INET_ECN_set_ect1).
        (ECT_1, ECT_0) => Decap::Mark(ECT_1),
        _ => Decap::Keep,
    }
}

/// The DS field (DSCP and ECN) of an IPv4 or IPv6 packet whose first bytes are `l3`.
#[inline(always)]
pub const fn dsfield(ethertype: u16, l3: &[u8; 2]) -> Option<u8> {
    match ethertype {
        ETH_P_IP => Some(l3[1]),
        ETH_P_IPV6 => Some((l3[0] << 4) | (l3[1] >> 4)),
        _ => None,
    }
}

/// Sets the ECN field of the IPv4 or IPv6 header `l3` (its first 12 bytes) in place; the
/// IPv4 header checksum is updated incrementally (RFC 1624).
#[inline(always)]
pub fn set(ethertype: u16, l3: &mut [u8; 12], ecn: u8) {
    match ethertype {
        ETH_P_IP => {
            let old = u16::from_be_bytes([l3[0], l3[1]]);
            l3[1] = (l3[1] & !MASK) | ecn;
            let new = u16::from_be_bytes([l3[0], l3[1]]);
            let check = u16::from_be_bytes([l3[10], l3[11]]);
            let mut sum = u32::from(!check) + u32::from(!old) + u32::from(new);
            sum = (sum & 0xffff) + (sum >> 16);
            sum = (sum & 0xffff) + (sum >> 16);
            l3[10..12].copy_from_slice(&(!(sum as u16)).to_be_bytes());
        }
        ETH_P_IPV6 => l3[1] = (l3[1] & !(MASK << 4)) | (ecn << 4),
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::{ipv4_checksum, ipv4_checksum_ok, IPV4_LEN};

    #[test]
    fn encap_copies_inner_ecn_and_turns_ce_into_ect0() {
        assert_eq!(encap_tos(0, ECT_0), ECT_0);
        assert_eq!(encap_tos(0, ECT_1), ECT_1);
        assert_eq!(encap_tos(0xb8, CE), 0xb8 | ECT_0);
        assert_eq!(encap_tos(0xbb, NOT_ECT), 0xb8);
    }

    #[test]
    fn decap_follows_rfc6040() {
        for inner in [NOT_ECT, ECT_0, ECT_1, CE] {
            assert_eq!(decap(NOT_ECT, inner), Decap::Keep);
        }
        assert_eq!(decap(CE, NOT_ECT), Decap::Drop);
        assert_eq!(decap(CE, ECT_0), Decap::Mark(CE));
        assert_eq!(decap(CE, ECT_1), Decap::Mark(CE));
        assert_eq!(decap(CE, CE), Decap::Keep);
        assert_eq!(decap(ECT_0, NOT_ECT), Decap::Keep);
        assert_eq!(decap(ECT_1, ECT_0), Decap::Mark(ECT_1));
        assert_eq!(decap(ECT_0, ECT_1), Decap::Keep);
    }

    #[test]
    fn setting_ce_keeps_the_ipv4_checksum_valid() {
        let mut h = [
            0x45, 0x02, 0, 84, 0, 0, 0x40, 0, 64, 1, 0, 0, 10, 0, 0, 1, 10, 0, 0, 2,
        ];
        let c = ipv4_checksum(&h);
        h[10..12].copy_from_slice(&c.to_be_bytes());
        let mut head = [0u8; 12];
        head.copy_from_slice(&h[..12]);
        set(ETH_P_IP, &mut head, CE);
        h[..12].copy_from_slice(&head);
        assert_eq!(h[1], 0x03);
        let mut full = [0u8; IPV4_LEN];
        full.copy_from_slice(&h);
        assert!(ipv4_checksum_ok(&full));
    }

    #[test]
    fn ipv6_traffic_class_spans_two_bytes() {
        let mut h = [0x6b, 0x80, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0];
        assert_eq!(dsfield(ETH_P_IPV6, &[h[0], h[1]]), Some(0xb8));
        set(ETH_P_IPV6, &mut h, CE);
        assert_eq!(dsfield(ETH_P_IPV6, &[h[0], h[1]]), Some(0xbb));
        assert_eq!(h[0], 0x6b);
    }
}
