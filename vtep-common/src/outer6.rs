//! VXLAN over IPv6 (RFC 7348 section 5 over IPv6): the outer headers and their UDP checksum.
//!
//! Unlike IPv4, IPv6 forbids a zero UDP checksum (RFC 8200; RFC 6935/6936 allow one for
//! tunnels only where both ends agree, the kernel's `udp6zerocsumtx`/`udp6zerocsumrx`), so
//! the outer checksum covers the whole inner frame. Summing it byte by byte in a TC program
//! would cost every packet its length; instead the inner packet's own valid (or pending)
//! L4 checksum stands in for its L4 region, the kernel's local checksum offload
//! (include/linux/skbuff.h `lco_csum`): a region with a correct checksum sums to the
//! complement of its pseudo-header. Only frames without such a checksum (ARP, fragments,
//! other protocols) are summed in full.
//!
//! Sums here are one's-complement sums of native-endian 16-bit words, as `bpf_csum_diff`
//! returns them, and checksums are stored native-endian: the byte order of a
//! one's-complement sum only swaps its two bytes.

use crate::wire::{ETH_LEN, ETH_P_IP, ETH_P_IPV6, IPPROTO_UDP, UDP_LEN, VXLAN_FLAG_VNI, VXLAN_LEN};

pub const IPV6_LEN: usize = 40;
/// Outer Ethernet + IPv6 + UDP + VXLAN: what encapsulation over IPv6 adds.
pub const ENCAP6_LEN: usize = ETH_LEN + IPV6_LEN + UDP_LEN + VXLAN_LEN;
/// Where the outer UDP header starts.
pub const UDP6_OFF: usize = ETH_LEN + IPV6_LEN;
/// What IPv6 adds over IPv4 outside.
pub const EXTRA6: usize = IPV6_LEN - crate::wire::IPV4_LEN;

const IPPROTO_TCP: u8 = 6;
const IPPROTO_ICMP: u8 = 1;
const IPPROTO_ICMPV6: u8 = 58;

/// What the outer headers of one frame sent to an IPv6 VTEP carry.
#[derive(Clone, Copy, Debug)]
pub struct Outer6 {
    pub dst_mac: [u8; 6],
    pub src_mac: [u8; 6],
    pub src_ip: [u8; 16],
    pub dst_ip: [u8; 16],
    pub src_port: u16,
    pub dst_port: u16,
    pub vni: u32,
    pub hop_limit: u8,
    pub tclass: u8,
    /// 20 bits.
    pub flow_label: u32,
    /// Length of the inner Ethernet frame.
    pub inner_len: u16,
}

/// The flow label of a flow whose hash is `hash`, as the kernel derives it from skb->hash
/// (`ip6_make_flowlabel`: rotated so the bits on the wire are not the hash's low ones).
#[inline(always)]
pub const fn flow_label(hash: u32) -> u32 {
    hash.rotate_left(16) & 0x000f_ffff
}

/// Writes the outer headers into `h` (every byte: a flood copy's room may hold an earlier
/// copy's) with `csum` as the UDP checksum, native-endian (0: none).
#[inline(always)]
pub fn write_outer6(h: &mut [u8; ENCAP6_LEN], o: &Outer6, csum: u16) {
    h[0..6].copy_from_slice(&o.dst_mac);
    h[6..12].copy_from_slice(&o.src_mac);
    h[12..14].copy_from_slice(&ETH_P_IPV6.to_be_bytes());
    let ip = ETH_LEN;
    let first = 6 << 28 | (o.tclass as u32) << 20 | (o.flow_label & 0x000f_ffff);
    h[ip..ip + 4].copy_from_slice(&first.to_be_bytes());
    h[ip + 4..ip + 6].copy_from_slice(&udp_len(o).to_be_bytes());
    h[ip + 6] = IPPROTO_UDP;
    h[ip + 7] = o.hop_limit;
    h[ip + 8..ip + 24].copy_from_slice(&o.src_ip);
    h[ip + 24..ip + 40].copy_from_slice(&o.dst_ip);
    let udp = UDP6_OFF;
    h[udp..udp + 2].copy_from_slice(&o.src_port.to_be_bytes());
    h[udp + 2..udp + 4].copy_from_slice(&o.dst_port.to_be_bytes());
    h[udp + 4..udp + 6].copy_from_slice(&udp_len(o).to_be_bytes());
    h[udp + 6..udp + 8].copy_from_slice(&csum.to_ne_bytes());
    let vx = udp + UDP_LEN;
    h[vx..vx + 4].copy_from_slice(&[VXLAN_FLAG_VNI, 0, 0, 0]);
    h[vx + 4..vx + 8].copy_from_slice(&(o.vni << 8).to_be_bytes());
}

#[inline(always)]
const fn udp_len(o: &Outer6) -> u16 {
    (UDP_LEN + VXLAN_LEN) as u16 + o.inner_len
}

/// The outer UDP checksum, native-endian, given `inner` = the sum of the inner Ethernet
/// frame (from `inner_sum` or summed in full). Never 0: a computed 0 is sent as 0xffff
/// (RFC 768), 0 meaning "none".
#[inline(always)]
pub fn udp6_checksum(o: &Outer6, inner: u32) -> u16 {
    let len = udp_len(o);
    let mut sum = addr_sum(&o.src_ip) + addr_sum(&o.dst_ip) + inner;
    // Pseudo-header length and next header, then UDP (checksum 0) and VXLAN.
    for w in [len, IPPROTO_UDP as u16, o.src_port, o.dst_port, len] {
        sum += ne(w) as u32;
    }
    sum += ne((VXLAN_FLAG_VNI as u16) << 8) as u32;
    sum += ne((o.vni >> 8) as u16) as u32 + ne((o.vni << 8) as u16) as u32;
    match fold(sum) {
        0xffff => 0xffff,
        s => !s,
    }
}

/// A big-endian word as the native-endian word its bytes make.
#[inline(always)]
const fn ne(w: u16) -> u16 {
    u16::from_ne_bytes(w.to_be_bytes())
}

#[inline(always)]
fn addr_sum(a: &[u8; 16]) -> u32 {
    sum16(a, 0)
}

/// `seed` plus the native-endian 16-bit words of `bytes` (an odd last byte padded with
/// zero), unfolded.
#[inline(always)]
pub fn sum16(bytes: &[u8], seed: u32) -> u32 {
    let mut sum = seed;
    let mut words = bytes.chunks_exact(2);
    for w in &mut words {
        sum += u16::from_ne_bytes([w[0], w[1]]) as u32;
    }
    if let [last] = words.remainder() {
        sum += u16::from_ne_bytes([*last, 0]) as u32;
    }
    sum
}

/// Folds a 32-bit one's-complement sum to 16 bits (not complemented).
#[inline(always)]
pub const fn fold(sum: u32) -> u16 {
    let s = (sum & 0xffff) + (sum >> 16);
    ((s & 0xffff) + (s >> 16)) as u16
}

/// How much of an inner packet must be summed for the outer checksum.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Inner {
    /// Its L4 checksum vouches for the rest: sum `ip_len` header bytes and add `l4`.
    Headers { ip_len: usize, l4: u32 },
    /// No checksum covers its payload: sum every byte.
    Whole,
}

/// What the outer checksum needs of an IP packet of type `ethertype` whose first bytes are
/// `l3` (40 bytes: an IPv6 header, or an IPv4 header and what follows it).
///
/// The L4 region of TCP, UDP with a checksum, ICMP and ICMPv6 sums to the complement of
/// its pseudo-header once its checksum is right: either already (CHECKSUM_NONE or
/// forwarded) or once the stack or NIC fills it in (CHECKSUM_PARTIAL, whose checksum field
/// still holds the pseudo-header sum). Fragments, IPv4 options, IPv6 extension headers
/// and other protocols are summed whole.
#[inline(always)]
pub fn inner(ethertype: u16, l3: &[u8; 40]) -> Inner {
    let word = |i: usize| u16::from_be_bytes([l3[i], l3[i + 1]]);
    let (ip_len, proto, l4_len, addrs) = match ethertype {
        ETH_P_IP if l3[0] == 0x45 && word(6) & 0x3fff == 0 => {
            (20, l3[9], word(2).wrapping_sub(20), &l3[12..20])
        }
        ETH_P_IPV6 if l3[0] >> 4 == 6 => (IPV6_LEN, l3[6], word(4), &l3[8..40]),
        _ => return Inner::Whole,
    };
    let l4 = match proto {
        // ICMP's checksum has no pseudo-header: its region sums to zero.
        IPPROTO_ICMP if ethertype == ETH_P_IP => 0,
        IPPROTO_TCP | IPPROTO_ICMPV6 => pseudo_complement(addrs, proto, l4_len),
        // A zero UDP checksum (IPv4's "none") vouches for nothing. Over IPv6 it is
        // mandatory (RFC 8200), and its header lies beyond these 40 bytes.
        IPPROTO_UDP if ethertype == ETH_P_IPV6 || word(26) != 0 => {
            pseudo_complement(addrs, proto, l4_len)
        }
        _ => return Inner::Whole,
    };
    Inner::Headers { ip_len, l4 }
}

/// True when `ip` lies in the `prefix`-bit subnet of `local` (a prefix of 0 matches none).
#[inline(always)]
pub fn same_subnet6(local: &[u8; 16], ip: &[u8; 16], prefix: u8) -> bool {
    if prefix == 0 || prefix > 128 {
        return false;
    }
    // Word by word and without early exits: BPF has no 128-bit shifts, and every branch
    // would multiply the verifier's states.
    let word = |a: &[u8; 16], i: usize| {
        u32::from_be_bytes([a[4 * i], a[4 * i + 1], a[4 * i + 2], a[4 * i + 3]])
    };
    let mut diff = 0;
    for i in 0..4 {
        let bits = (prefix as u32).saturating_sub(32 * i as u32).min(32);
        let mask = (u64::MAX << (32 - bits)) as u32;
        diff |= (word(local, i) ^ word(ip, i)) & mask;
    }
    diff == 0
}

/// The complement of an inner pseudo-header's sum: what a valid L4 region sums to.
#[inline(always)]
fn pseudo_complement(addrs: &[u8], proto: u8, l4_len: u16) -> u32 {
    let sum = sum16(addrs, ne(proto as u16) as u32 + ne(l4_len) as u32);
    !fold(sum) as u32
}

#[cfg(test)]
mod tests {
    extern crate std;
    use super::*;
    use std::{vec, vec::Vec};

    /// The Internet checksum of `bytes` verifies (big-endian, the wire's view).
    fn verifies(bytes: &[u8]) -> bool {
        let mut sum: u32 = 0;
        for w in bytes.chunks(2) {
            sum += u16::from_be_bytes([w[0], *w.get(1).unwrap_or(&0)]) as u32;
        }
        fold(sum) == 0xffff
    }

    fn sample(inner_len: u16) -> Outer6 {
        Outer6 {
            dst_mac: [2, 0, 0, 0, 0, 3],
            src_mac: [2, 0, 0, 0, 0, 2],
            src_ip: [0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 2],
            dst_ip: [0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 3],
            src_port: 51234,
            dst_port: 4789,
            vni: 42,
            hop_limit: 17,
            tclass: 0xb9,
            flow_label: 0xabcde,
            inner_len,
        }
    }

    /// The UDP datagram with its pseudo-header, as a receiver verifies it.
    fn pseudo_and_udp(frame: &[u8]) -> Vec<u8> {
        let udp = &frame[UDP6_OFF..];
        let mut v = frame[ETH_LEN + 8..ETH_LEN + 40].to_vec();
        v.extend_from_slice(&(udp.len() as u32).to_be_bytes());
        v.extend_from_slice(&[0, 0, 0, IPPROTO_UDP]);
        v.extend_from_slice(udp);
        v
    }

    fn frame(o: &Outer6, inner: &[u8], csum: u16) -> Vec<u8> {
        let mut h = [0u8; ENCAP6_LEN];
        write_outer6(&mut h, o, csum);
        [&h[..], inner].concat()
    }

    fn eth(ty: u16) -> Vec<u8> {
        let mut e = vec![2, 0, 0, 0, 0, 0xaa, 2, 0, 0, 0, 0, 0xbb];
        e.extend_from_slice(&ty.to_be_bytes());
        e
    }

    /// An inner IPv4 TCP packet with a correct TCP checksum (`partial`: the checksum field
    /// holding the pseudo-header sum instead, as CHECKSUM_PARTIAL leaves it).
    fn tcp4(payload: &[u8], partial: bool) -> Vec<u8> {
        let l4_len = 20 + payload.len();
        let mut ip = vec![
            0x45, 0, 0, 0, 0, 1, 0x40, 0, 64, 6, 0, 0, 12, 12, 12, 2, 12, 12, 12, 3,
        ];
        ip[2..4].copy_from_slice(&((20 + l4_len) as u16).to_be_bytes());
        let mut tcp = vec![
            0x9c, 0x40, 0x14, 0x51, 0, 0, 0, 1, 0, 0, 0, 0, 0x50, 0x18, 0xff, 0xff,
        ];
        tcp.extend_from_slice(&[0, 0, 0, 0]);
        tcp.extend_from_slice(payload);
        let mut pseudo = ip[12..20].to_vec();
        pseudo.extend_from_slice(&[0, 6]);
        pseudo.extend_from_slice(&(l4_len as u16).to_be_bytes());
        let pseudo_sum = sum16(&pseudo, 0);
        let check = if partial {
            fold(pseudo_sum)
        } else {
            !fold(sum16(&tcp, pseudo_sum))
        };
        tcp[16..18].copy_from_slice(&check.to_ne_bytes());
        [eth(ETH_P_IP), ip, tcp].concat()
    }

    /// What the data path does: the Ethernet header and IP header summed, the L4 region
    /// stood in for by `inner`, or every byte.
    fn inner_sum(inner_frame: &[u8]) -> u32 {
        let ty = u16::from_be_bytes([inner_frame[12], inner_frame[13]]);
        let mut l3 = [0u8; 40];
        let n = (inner_frame.len() - ETH_LEN).min(40);
        l3[..n].copy_from_slice(&inner_frame[ETH_LEN..ETH_LEN + n]);
        match inner(ty, &l3) {
            Inner::Headers { ip_len, l4 } => sum16(&inner_frame[..ETH_LEN + ip_len], l4),
            Inner::Whole => sum16(inner_frame, 0),
        }
    }

    #[test]
    fn headers_follow_rfc7348_over_ipv6() {
        let o = sample(100);
        let f = frame(&o, &[0; 100], 0);
        assert_eq!(f.len(), 70 + 100);
        assert_eq!(&f[12..14], &[0x86, 0xdd]);
        assert_eq!(f[14] >> 4, 6, "version");
        assert_eq!(((f[14] & 0x0f) << 4) | (f[15] >> 4), 0xb9, "traffic class");
        assert_eq!(u32::from_be_bytes([0, f[15] & 0x0f, f[16], f[17]]), 0xabcde);
        assert_eq!(u16::from_be_bytes([f[18], f[19]]), 116, "payload length");
        assert_eq!((f[20], f[21]), (IPPROTO_UDP, 17), "next header, hop limit");
        assert_eq!(u16::from_be_bytes([f[56], f[57]]), 4789);
        assert_eq!(u16::from_be_bytes([f[58], f[59]]), 116, "UDP length");
        assert_eq!(&f[62..70], &[0x08, 0, 0, 0, 0, 0, 42, 0]);
    }

    #[test]
    fn flow_label_is_the_rotated_hash() {
        assert_eq!(flow_label(0x1234_5678), 0x5678_1234 & 0xfffff);
        assert!(flow_label(u32::MAX) <= 0xfffff);
    }

    #[test]
    fn checksum_of_whole_frames_verifies() {
        for len in [42usize, 60, 61, 1000] {
            let inner: Vec<u8> = (0..len).map(|i| (i * 7 + 3) as u8).collect();
            let o = sample(len as u16);
            let csum = udp6_checksum(&o, sum16(&inner, 0));
            assert!(verifies(&pseudo_and_udp(&frame(&o, &inner, csum))), "{len}");
        }
    }

    #[test]
    fn checksum_from_inner_tcp_checksum_verifies() {
        let payload: Vec<u8> = (0..1001).map(|i| (i * 13) as u8).collect();
        let complete = tcp4(&payload, false);
        let o = sample(complete.len() as u16);
        let csum = udp6_checksum(&o, inner_sum(&complete));
        assert!(verifies(&pseudo_and_udp(&frame(&o, &complete, csum))));
        // CHECKSUM_PARTIAL: the same outer checksum, right once the inner one is filled.
        let partial = tcp4(&payload, true);
        assert_eq!(udp6_checksum(&o, inner_sum(&partial)), csum);
    }

    #[test]
    fn icmp_and_fragments() {
        // An echo request with a correct ICMP checksum.
        let mut icmp = vec![8, 0, 0, 0, 0, 1, 0, 1];
        icmp.extend((0..56).map(|i| i as u8));
        let c = !fold(sum16(&icmp, 0));
        icmp[2..4].copy_from_slice(&c.to_ne_bytes());
        let mut ip = vec![
            0x45, 0, 0, 84, 0, 1, 0x40, 0, 64, 1, 0, 0, 12, 12, 12, 2, 12, 12, 12, 3,
        ];
        let f = [eth(ETH_P_IP), ip.clone(), icmp.clone()].concat();
        let o = sample(f.len() as u16);
        assert!(verifies(&pseudo_and_udp(&frame(
            &o,
            &f,
            udp6_checksum(&o, inner_sum(&f))
        ))));
        // A fragment (MF) is summed whole: its ports and checksum are elsewhere.
        ip[6] = 0x20;
        let mut l3 = [0u8; 40];
        l3[..20].copy_from_slice(&ip);
        assert_eq!(inner(ETH_P_IP, &l3), Inner::Whole);
        assert_eq!(inner(0x0806, &l3), Inner::Whole);
    }

    #[test]
    fn subnets6() {
        let a = [0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 2];
        let mut b = a;
        b[15] = 3;
        assert!(same_subnet6(&a, &b, 64));
        b[7] = 1;
        assert!(!same_subnet6(&a, &b, 64));
        assert!(same_subnet6(&a, &b, 48));
        assert!(!same_subnet6(&a, &a, 0));
    }

    #[test]
    fn never_zero() {
        // Whatever the sum, 0 never goes out as a computed checksum.
        for s in [0u32, 1, 0xfffe, 0xffff, 0x1_fffe] {
            assert_ne!(udp6_checksum(&sample(8), s), 0);
        }
    }
}
