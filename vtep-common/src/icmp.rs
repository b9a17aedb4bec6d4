//! ICMP "fragmentation needed" (IPv4) and ICMPv6 "packet too big" for frames too big for
//! the underlay, as the kernel's vxlan device answers bridged traffic since Linux 5.9
//! (`iptunnel_pmtud_build_icmp`, `iptunnel_pmtud_build_icmpv6`), so path MTU discovery works
//! through the overlay.

use crate::wire::{fold, ETH_LEN, ETH_P_IP, ETH_P_IPV6, IPPROTO_ICMP, IPV4_LEN};

/// Bytes of the original datagram the reply quotes: the kernel trims the reply to 576
/// bytes, less its own IPv4 and ICMP headers.
pub const QUOTE_LEN: usize = 576 - IPV4_LEN - ICMP_LEN;
pub const ICMP_LEN: usize = 8;
/// The reply's headers: Ethernet, IPv4, ICMP.
pub const REPLY_HEAD: usize = ETH_LEN + IPV4_LEN + ICMP_LEN;
/// The kernel reports no MTU below this (and then sends no ICMP).
pub const MIN_MTU: u32 = 576;

const DEST_UNREACH: u8 = 3;
const FRAG_NEEDED: u8 = 4;
const DF: u16 = 0x4000;

/// Whether the kernel would answer this IPv4 header (and the first byte after a 20-byte
/// one: the ICMP type) with "fragmentation needed": DF alone set, unicast addresses, not an
/// ICMP error itself.
#[inline(always)]
pub fn may_answer(ip: &[u8; IPV4_LEN + 1]) -> bool {
    let df_only = u16::from_be_bytes([ip[6], ip[7]]) == DF;
    let (src, dst) = (
        [ip[12], ip[13], ip[14], ip[15]],
        [ip[16], ip[17], ip[18], ip[19]],
    );
    let special = |a: [u8; 4], zero_ok: bool| {
        a == [255; 4] || (a[0] & 0xf0) == 0xe0 || (!zero_ok && (a[0] == 0 || a[0] == 127))
    };
    // With IP options the ICMP type lies further in; such rare packets are not answered
    // rather than risking an error answering an error.
    let icmp_error =
        ip[9] == IPPROTO_ICMP && (ip[0] != 0x45 || matches!(ip[20], 3 | 4 | 5 | 11 | 12));
    df_only && !special(dst, true) && !special(src, false) && !icmp_error
}

/// Builds the reply in place: `h` holds the frame's Ethernet header, room for the reply's
/// IPv4 and ICMP headers, then the frame's own IPv4 header (the start of the quote). The
/// reply goes back to the sender from its destination, TTL kept, reporting `mtu`.
/// `quote_sum` is the one's-complement sum of the `QUOTE_LEN` quoted bytes as native-endian
/// 16-bit words (what `bpf_csum_diff` returns), so the checksum is stored native-endian too.
#[inline(always)]
pub fn frag_needed(h: &mut [u8; REPLY_HEAD + IPV4_LEN], mtu: u16, quote_sum: u32) {
    let ip = REPLY_HEAD;
    swap_macs(h);
    h[12..14].copy_from_slice(&ETH_P_IP.to_be_bytes());
    let o = ETH_LEN;
    let tot_len = (IPV4_LEN + ICMP_LEN + QUOTE_LEN) as u16;
    h[o..o + 12].copy_from_slice(&[0x45, 0, 0, 0, 0, 0, 0, 0, 0, IPPROTO_ICMP, 0, 0]);
    h[o + 2..o + 4].copy_from_slice(&tot_len.to_be_bytes());
    h[o + 6..o + 8].copy_from_slice(&DF.to_be_bytes());
    h[o + 8] = h[ip + 8];
    let (src, dst) = (
        [h[ip + 16], h[ip + 17], h[ip + 18], h[ip + 19]],
        [h[ip + 12], h[ip + 13], h[ip + 14], h[ip + 15]],
    );
    h[o + 12..o + 16].copy_from_slice(&src);
    h[o + 16..o + 20].copy_from_slice(&dst);
    let mut outer = [0u8; IPV4_LEN];
    outer.copy_from_slice(&h[o..o + IPV4_LEN]);
    h[o + 10..o + 12].copy_from_slice(&crate::wire::ipv4_checksum(&outer).to_be_bytes());

    let i = o + IPV4_LEN;
    h[i..i + ICMP_LEN].copy_from_slice(&[DEST_UNREACH, FRAG_NEEDED, 0, 0, 0, 0, 0, 0]);
    h[i + 6..i + 8].copy_from_slice(&mtu.to_be_bytes());
    let words = [
        u16::from_ne_bytes([h[i], h[i + 1]]),
        u16::from_ne_bytes([h[i + 6], h[i + 7]]),
        (quote_sum >> 16) as u16,
        quote_sum as u16,
    ];
    h[i + 2..i + 4].copy_from_slice(&fold(words.into_iter()).to_ne_bytes());
}

/// The reply goes back where the frame came from.
#[inline(always)]
fn swap_macs(h: &mut [u8]) {
    for i in 0..6 {
        h.swap(i, i + 6);
    }
}

pub const IPV6_LEN: usize = 40;
const IPPROTO_TCP: u8 = 6;
const IPPROTO_UDP: u8 = 17;
pub const IPPROTO_ICMPV6: u8 = 58;
const PACKET_TOO_BIG: u8 = 2;
const NDISC_REDIRECT: u8 = 137;
/// IPv6's minimum MTU: the kernel reports none below it, and trims its reply to it.
pub const MIN_MTU6: u32 = 1280;
/// Bytes of the original packet an ICMPv6 "packet too big" quotes.
pub const QUOTE6_LEN: usize = MIN_MTU6 as usize - IPV6_LEN - ICMP_LEN;
/// The ICMPv6 reply's headers: Ethernet, IPv6, ICMPv6.
pub const REPLY6_HEAD: usize = ETH_LEN + IPV6_LEN + ICMP_LEN;

/// Whether the kernel would answer this IPv6 header (and the byte after it: an ICMPv6
/// type) with "packet too big": a unicast, non-loopback source, not an ICMPv6 error or
/// redirect. Packets with extension headers are not answered (the kernel walks them to the
/// upper layer; vtep does not), so no error ever answers an error.
#[inline(always)]
pub fn may_answer6(ip6: &[u8; IPV6_LEN + 1]) -> bool {
    let src = &ip6[8..24];
    let unspecified = src.iter().all(|&b| b == 0);
    let loopback = src[..15].iter().all(|&b| b == 0) && src[15] == 1;
    let upper = match ip6[6] {
        IPPROTO_TCP | IPPROTO_UDP => true,
        IPPROTO_ICMPV6 => ip6[40] >= 128 && ip6[40] != NDISC_REDIRECT,
        _ => false,
    };
    upper && !unspecified && !loopback && src[0] != 0xff
}

/// Builds the ICMPv6 reply in place, as `frag_needed` does: `h` holds the frame's Ethernet
/// header, room for the reply's IPv6 and ICMPv6 headers, then the frame's own IPv6 header.
/// Hop limit kept; `quote_sum` over the `QUOTE6_LEN` quoted bytes.
#[inline(always)]
pub fn packet_too_big(h: &mut [u8; REPLY6_HEAD + IPV6_LEN], mtu: u32, quote_sum: u32) {
    let ip = REPLY6_HEAD;
    swap_macs(h);
    h[12..14].copy_from_slice(&ETH_P_IPV6.to_be_bytes());
    let o = ETH_LEN;
    let len = (ICMP_LEN + QUOTE6_LEN) as u32;
    h[o..o + 8].copy_from_slice(&[0x60, 0, 0, 0, 0, 0, IPPROTO_ICMPV6, 0]);
    h[o + 4..o + 6].copy_from_slice(&(len as u16).to_be_bytes());
    h[o + 7] = h[ip + 7];
    for k in 0..16 {
        h[o + 8 + k] = h[ip + 24 + k];
        h[o + 24 + k] = h[ip + 8 + k];
    }
    let i = o + IPV6_LEN;
    h[i..i + 4].copy_from_slice(&[PACKET_TOO_BIG, 0, 0, 0]);
    h[i + 4..i + 8].copy_from_slice(&mtu.to_be_bytes());
    // Pseudo-header (addresses, upper-layer length, next header), then the ICMPv6 header.
    let mut pseudo = [0u8; 8];
    pseudo[..4].copy_from_slice(&len.to_be_bytes());
    pseudo[7] = IPPROTO_ICMPV6;
    let words = h[o + 8..o + 40]
        .chunks_exact(2)
        .chain(pseudo.chunks_exact(2))
        .chain(h[i..i + ICMP_LEN].chunks_exact(2))
        .map(|w| u16::from_ne_bytes([w[0], w[1]]))
        .chain([(quote_sum >> 16) as u16, quote_sum as u16]);
    let sum = fold(words);
    h[i + 2..i + 4].copy_from_slice(&sum.to_ne_bytes());
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sum_be(bytes: &[u8]) -> u16 {
        fold(bytes.chunks(2).map(|c| u16::from_be_bytes([c[0], c[1]])))
    }

    fn ip(df: u16, proto: u8, src: [u8; 4], dst: [u8; 4]) -> [u8; IPV4_LEN + 1] {
        let mut h = [0u8; IPV4_LEN + 1];
        h[0] = 0x45;
        h[6..8].copy_from_slice(&df.to_be_bytes());
        h[8] = 64;
        h[9] = proto;
        h[12..16].copy_from_slice(&src);
        h[16..20].copy_from_slice(&dst);
        h[20] = 8;
        h
    }

    #[test]
    fn answers_like_the_kernel() {
        let (a, b) = ([12, 12, 12, 2], [12, 12, 12, 3]);
        assert!(may_answer(&ip(DF, IPPROTO_ICMP, a, b)));
        assert!(!may_answer(&ip(0, IPPROTO_ICMP, a, b)), "no DF");
        assert!(!may_answer(&ip(DF | 0x2000, 17, a, b)), "a fragment");
        assert!(!may_answer(&ip(DF, 17, a, [224, 0, 0, 1])), "multicast");
        assert!(!may_answer(&ip(DF, 17, [0, 0, 0, 0], b)), "zeronet source");
        let mut err = ip(DF, IPPROTO_ICMP, a, b);
        err[20] = 3;
        assert!(!may_answer(&err), "an ICMP error");
    }

    #[test]
    fn ipv6_answers_like_the_kernel() {
        let mut h = [0u8; IPV6_LEN + 1];
        h[0] = 0x60;
        h[6] = IPPROTO_UDP;
        h[8] = 0xfd;
        h[23] = 2;
        assert!(may_answer6(&h));
        h[6] = IPPROTO_ICMPV6;
        h[40] = 128;
        assert!(may_answer6(&h), "an echo request");
        h[40] = 1;
        assert!(!may_answer6(&h), "an ICMPv6 error");
        h[6] = IPPROTO_UDP;
        h[8] = 0xff;
        assert!(!may_answer6(&h), "a multicast source");
    }

    #[test]
    fn ipv6_reply_checksum_verifies() {
        let eth = [2, 0, 0, 0, 0, 3, 2, 0, 0, 0, 0, 2, 0x86, 0xdd];
        let mut ip6 = [0u8; IPV6_LEN];
        ip6[0] = 0x60;
        ip6[7] = 64;
        ip6[8] = 0xfd;
        ip6[23] = 2;
        ip6[24] = 0xfd;
        ip6[39] = 3;
        let mut quote = [0u8; QUOTE6_LEN];
        quote
            .iter_mut()
            .enumerate()
            .for_each(|(i, b)| *b = (i * 13) as u8);
        let native: u32 = quote
            .chunks(2)
            .map(|c| u32::from(u16::from_ne_bytes([c[0], c[1]])))
            .sum();
        let mut h = [0u8; REPLY6_HEAD + IPV6_LEN];
        h[..ETH_LEN].copy_from_slice(&eth);
        h[REPLY6_HEAD..].copy_from_slice(&ip6);
        packet_too_big(&mut h, 1350, native);
        let o = ETH_LEN;
        assert_eq!(h[o + 23], 3, "from the original destination");
        assert_eq!(h[o + 39], 2, "to the original source");
        let mut pseudo = [0u8; 40];
        pseudo[..32].copy_from_slice(&h[o + 8..o + 40]);
        pseudo[32..36].copy_from_slice(&((ICMP_LEN + QUOTE6_LEN) as u32).to_be_bytes());
        pseudo[39] = IPPROTO_ICMPV6;
        let mut all = [0u8; 40 + ICMP_LEN + QUOTE6_LEN];
        all[..40].copy_from_slice(&pseudo);
        all[40..48].copy_from_slice(&h[o + IPV6_LEN..REPLY6_HEAD]);
        all[48..].copy_from_slice(&quote);
        assert_eq!(sum_be(&all), 0, "ICMPv6 checksum");
        assert_eq!(&h[o + 44..o + 48], &1350u32.to_be_bytes());
    }

    #[test]
    fn reply_checksums_verify() {
        let eth = [2, 0, 0, 0, 0, 3, 2, 0, 0, 0, 0, 2, 8, 0];
        let orig = ip(DF, 17, [12, 12, 12, 2], [12, 12, 12, 3]);
        let mut o = [0u8; IPV4_LEN];
        o.copy_from_slice(&orig[..IPV4_LEN]);
        let mut quote = [0u8; QUOTE_LEN];
        quote
            .iter_mut()
            .enumerate()
            .for_each(|(i, b)| *b = (i * 7) as u8);
        let native: u32 = quote
            .chunks(2)
            .map(|c| u32::from(u16::from_ne_bytes([c[0], c[1]])))
            .sum();
        let mut h = [0u8; REPLY_HEAD + IPV4_LEN];
        h[..ETH_LEN].copy_from_slice(&eth);
        h[REPLY_HEAD..].copy_from_slice(&o);
        frag_needed(&mut h, 1350, native);
        assert_eq!(&h[0..6], &eth[6..12]);
        assert_eq!(&h[ETH_LEN + 12..ETH_LEN + 16], &[12, 12, 12, 3]);
        assert_eq!(sum_be(&h[ETH_LEN..ETH_LEN + IPV4_LEN]), 0, "IPv4 checksum");
        let mut icmp = [0u8; ICMP_LEN + QUOTE_LEN];
        icmp[..ICMP_LEN].copy_from_slice(&h[ETH_LEN + IPV4_LEN..REPLY_HEAD]);
        icmp[ICMP_LEN..].copy_from_slice(&quote);
        assert_eq!(sum_be(&icmp), 0, "ICMP checksum");
        assert_eq!(u16::from_be_bytes([h[40], h[41]]), 1350);
    }
}
