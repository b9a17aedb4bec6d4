//! VXLAN over IPv6 as received on the underlay (RFC 7348 over IPv6): the same checks as
//! `wire::parse_vxlan` for IPv4, and the outer UDP checksum, which IPv6 makes mandatory
//! (RFC 8200; a zero one only where `--udp6zerocsumrx` allows it, RFC 6936).
//!
//! The checksum is verified the way `outer6::inner` lets the sender compute it: an inner
//! TCP, UDP or ICMP packet's own L4 region sums to the complement of its pseudo-header when
//! its checksum is right, so the outer sum is checked over the headers and that
//! complement, and the inner checksum, which the container's stack verifies (the kernel
//! trusts only frames a NIC or the local stack vouched for), covers the payload. This is
//! also what makes frames from a kernel vxlan on the same machine verify: they arrive
//! CHECKSUM_PARTIAL over a veth, their inner checksum not yet filled in and their outer one
//! computed by local checksum offload (`lco_csum`) on that same assumption. Frames without
//! such an inner checksum are summed whole by the data path. A local kernel sender leaves
//! even the outer checksum to offload when the inner one is done (`udp6_set_csum`: the
//! field holds only the pseudo-header's sum, and a veth never fills it in); such a frame
//! is taken as the kernel's receiver takes it, the inner packet's own checksum still
//! guarding it.

use crate::{
    outer6::{self, Inner, ENCAP6_LEN, IPV6_LEN, UDP6_OFF},
    wire::{
        vxlan_vni, Decap, Reject, ETH_LEN, ETH_P_IPV6, IPPROTO_UDP, MIN_INNER, UDP_LEN, VXLAN_LEN,
    },
    Addr,
};

/// Outer headers plus the inner Ethernet header: the least a decapsulable frame holds.
pub const DECAP6_MIN: usize = ENCAP6_LEN + ETH_LEN;

/// A VXLAN frame over IPv6 this VTEP accepts, and what verifying its checksum takes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Decap6 {
    pub decap: Decap,
    /// The outer UDP checksum as received (0: none).
    pub csum: u16,
    /// The checksum field holds only the pseudo-header's sum: left to offload by a sender
    /// on this machine.
    pub offloaded: bool,
    /// The one's-complement sum of the pseudo-header, the UDP and VXLAN headers and the
    /// inner Ethernet header: what `csum_ok` adds the inner packet's sum to.
    pub head_sum: u32,
}

/// Checks the first `DECAP6_MIN` bytes of a frame of `frame_len` bytes received on the
/// underlay for this VTEP's `local` address and `udp_port`. `gso` as for IPv4: a super-packet's
/// lengths are a template. The checksum is left to `csum_ok`.
#[inline(always)]
pub fn parse_vxlan6(
    h: &[u8; DECAP6_MIN],
    frame_len: usize,
    local: &[u8; 16],
    udp_port: u16,
    gso: bool,
) -> Result<Decap6, Reject> {
    const IP: usize = ETH_LEN;
    const UDP: usize = UDP6_OFF;
    const VX: usize = UDP + UDP_LEN;
    // Extension headers are the host's to walk: only UDP right after the fixed header.
    let to_us = u16::from_be_bytes([h[12], h[13]]) == ETH_P_IPV6
        && h[IP] >> 4 == 6
        && h[IP + 6] == IPPROTO_UDP
        && h[IP + 24..IP + 40] == *local
        && u16::from_be_bytes([h[UDP + 2], h[UDP + 3]]) == udp_port;
    if !to_us {
        return Err(Reject::NotVxlan);
    }
    let mut vx = [0u8; VXLAN_LEN];
    vx.copy_from_slice(&h[VX..VX + VXLAN_LEN]);
    let vni = vxlan_vni(&vx).ok_or(Reject::BadVxlan)?;
    let mut src = [0u8; 16];
    src.copy_from_slice(&h[IP + 8..IP + 24]);
    // No packet comes from a multicast or the unspecified address (RFC 4291).
    if src[0] == 0xff || src == [0; 16] {
        return Err(Reject::BadVxlan);
    }
    let payload_len = u16::from_be_bytes([h[IP + 4], h[IP + 5]]) as usize;
    let udp_len = u16::from_be_bytes([h[UDP + 4], h[UDP + 5]]) as usize;
    let mut padding = 0;
    if !gso {
        if payload_len < UDP_LEN + VXLAN_LEN + MIN_INNER
            || ETH_LEN + IPV6_LEN + payload_len > frame_len
            || udp_len != payload_len
        {
            return Err(Reject::BadVxlan);
        }
        padding = frame_len - ETH_LEN - IPV6_LEN - payload_len;
    }
    let csum = u16::from_ne_bytes([h[UDP + 6], h[UDP + 7]]);
    let mut pseudo = outer6::sum16(&h[IP + 8..IP + 40], 0);
    pseudo += ne(udp_len as u16) as u32 + ne(IPPROTO_UDP as u16) as u32;
    let mut inner_dst = [0u8; 6];
    inner_dst.copy_from_slice(&h[ENCAP6_LEN..ENCAP6_LEN + 6]);
    let mut inner_src = [0u8; 6];
    inner_src.copy_from_slice(&h[ENCAP6_LEN + 6..ENCAP6_LEN + 12]);
    Ok(Decap6 {
        decap: Decap {
            vni,
            remote_ip: Addr::v6(src),
            inner_dst,
            inner_src,
            padding,
        },
        csum,
        offloaded: csum == outer6::fold(pseudo),
        head_sum: outer6::sum16(&h[UDP..DECAP6_MIN], pseudo),
    })
}

/// How much of the inner packet (of type `ethertype`, whose first 40 network-header bytes
/// are `l3`) the checksum needs summed beyond the headers: the sum when its L4 checksum
/// stands in for the rest, None when every byte after the inner Ethernet header must be
/// summed.
#[inline(always)]
pub fn inner_part(ethertype: u16, l3: &[u8; 40]) -> Option<u32> {
    match outer6::inner(ethertype, l3) {
        Inner::Headers { ip_len, l4 } => Some(outer6::sum16(&l3[..ip_len.min(40)], l4)),
        Inner::Whole => None,
    }
}

/// Whether the checksum verifies, given the headers' sum and the inner packet's.
#[inline(always)]
pub const fn csum_ok(head_sum: u32, inner: u32) -> bool {
    outer6::fold(head_sum + outer6::fold(inner) as u32) == 0xffff
}

/// A big-endian word as the native-endian word its bytes make.
#[inline(always)]
const fn ne(w: u16) -> u16 {
    u16::from_ne_bytes(w.to_be_bytes())
}

#[cfg(test)]
mod tests {
    extern crate std;
    use super::*;
    use crate::outer6::{udp6_checksum, write_outer6, Outer6};

    const LOCAL: [u8; 16] = [0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 3];
    const REMOTE: [u8; 16] = [0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 2];

    /// A VXLAN-over-IPv6 frame around an inner Ethernet/IPv4/UDP packet whose UDP checksum is
    /// right, built with the sender's own helpers.
    fn frame() -> std::vec::Vec<u8> {
        let mut inner = std::vec![0u8; 14 + 20 + 8 + 12];
        inner[..6].copy_from_slice(&[2, 0x42, 0xc0, 0xa8, 0, 3]);
        inner[6..12].copy_from_slice(&[2, 0x42, 0xc0, 0xa8, 0, 2]);
        inner[12..14].copy_from_slice(&[0x08, 0x00]);
        let ip = &mut inner[14..34];
        ip.copy_from_slice(&[
            0x45, 0, 0, 40, 0, 0, 0x40, 0, 64, 17, 0, 0, 12, 12, 12, 2, 12, 12, 12, 3,
        ]);
        let c = crate::wire::ipv4_checksum(&<[u8; 20]>::try_from(&ip[..]).unwrap());
        ip[10..12].copy_from_slice(&c.to_be_bytes());
        inner[34..42].copy_from_slice(&[0x9c, 0x40, 0x13, 0x88, 0, 20, 0, 0]);
        inner[42..].copy_from_slice(b"hello, ipv6!");
        // The inner UDP checksum over its pseudo-header, big-endian.
        let mut p = std::vec::Vec::new();
        p.extend_from_slice(&inner[26..34]);
        p.extend_from_slice(&[0, 17, 0, 20]);
        p.extend_from_slice(&inner[34..54]);
        let s: u32 = p
            .chunks(2)
            .map(|w| u16::from_be_bytes([w[0], *w.get(1).unwrap_or(&0)]) as u32)
            .sum();
        let c = !outer6::fold(s);
        inner[40..42].copy_from_slice(&c.to_be_bytes());
        let o = Outer6 {
            dst_mac: [2, 0, 0, 0, 0, 3],
            src_mac: [2, 0, 0, 0, 0, 2],
            src_ip: REMOTE,
            dst_ip: LOCAL,
            src_port: 50000,
            dst_port: 4789,
            vni: 42,
            hop_limit: 64,
            tclass: 0,
            flow_label: 7,
            inner_len: inner.len() as u16,
        };
        let whole = outer6::sum16(&inner, 0);
        let mut h = [0u8; ENCAP6_LEN];
        write_outer6(&mut h, &o, udp6_checksum(&o, whole));
        let mut f = h.to_vec();
        f.extend_from_slice(&inner);
        f
    }

    fn head(f: &[u8]) -> [u8; DECAP6_MIN] {
        f[..DECAP6_MIN].try_into().unwrap()
    }

    fn verify(f: &[u8]) -> bool {
        let d = parse_vxlan6(&head(f), f.len(), &LOCAL, 4789, false).unwrap();
        let l3: [u8; 40] = f[DECAP6_MIN..DECAP6_MIN + 40].try_into().unwrap();
        let inner = inner_part(0x0800, &l3).unwrap_or_else(|| outer6::sum16(&f[DECAP6_MIN..], 0));
        csum_ok(d.head_sum, inner)
    }

    #[test]
    fn accepts_what_the_sender_builds_and_its_checksum_verifies() {
        let f = frame();
        let d = parse_vxlan6(&head(&f), f.len(), &LOCAL, 4789, false).unwrap();
        assert_eq!(d.decap.vni, 42);
        assert_eq!(d.decap.remote_ip, Addr::v6(REMOTE));
        assert_eq!(d.decap.padding, 0);
        assert!(verify(&f));
        // Summed whole, the same frame verifies too.
        assert!(csum_ok(d.head_sum, outer6::sum16(&f[DECAP6_MIN..], 0)));
    }

    #[test]
    fn a_damaged_header_or_checksum_does_not_verify() {
        let f = frame();
        // Outer UDP, VXLAN, the inner MACs and the inner TTL. (Damage to the inner packet's
        // addresses or payload shows in its own checksum, which the container verifies.)
        for at in [UDP6_OFF + 1, UDP6_OFF + 6, ENCAP6_LEN + 3, DECAP6_MIN + 8] {
            let mut bad = f.clone();
            bad[at] ^= 0x10;
            assert!(!verify(&bad), "byte {at} changed, checksum still verifies");
        }
    }

    #[test]
    fn other_traffic_and_damage_are_refused() {
        let f = frame();
        let h = head(&f);
        assert_eq!(
            parse_vxlan6(&h, f.len(), &REMOTE, 4789, false),
            Err(Reject::NotVxlan),
            "not to us"
        );
        assert_eq!(
            parse_vxlan6(&h, f.len(), &LOCAL, 8472, false),
            Err(Reject::NotVxlan)
        );
        let mut ext = h;
        ext[ETH_LEN + 6] = 0; // hop-by-hop options first
        assert_eq!(
            parse_vxlan6(&ext, f.len(), &LOCAL, 4789, false),
            Err(Reject::NotVxlan)
        );
        assert_eq!(
            parse_vxlan6(&h, f.len() - 1, &LOCAL, 4789, false),
            Err(Reject::BadVxlan),
            "truncated"
        );
        assert!(parse_vxlan6(&h, f.len() - 1, &LOCAL, 4789, true).is_ok());
        let mut flags = h;
        flags[UDP6_OFF + UDP_LEN] = 0;
        assert_eq!(
            parse_vxlan6(&flags, f.len(), &LOCAL, 4789, false),
            Err(Reject::BadVxlan)
        );
        let mut mcast = h;
        mcast[ETH_LEN + 8] = 0xff;
        assert_eq!(
            parse_vxlan6(&mcast, f.len(), &LOCAL, 4789, false),
            Err(Reject::BadVxlan)
        );
    }
}
