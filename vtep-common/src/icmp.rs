//! ICMP "fragmentation needed" for frames too big for the underlay, as the kernel's vxlan
//! device answers bridged traffic since Linux 5.9 (`iptunnel_pmtud_build_icmp`), so path MTU
//! discovery works through the overlay.

use crate::wire::{fold, ETH_LEN, ETH_P_IP, IPPROTO_ICMP, IPV4_LEN};

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

/// Reply headers for the frame whose Ethernet and IPv4 headers are `eth` and `ip`: back to
/// its sender from its destination, TTL kept, reporting `mtu`. `quote_sum` is the
/// one's-complement sum of the `QUOTE_LEN` quoted bytes as native-endian 16-bit words (what
/// `bpf_csum_diff` returns), so the checksum is stored native-endian too.
#[inline(always)]
pub fn frag_needed(
    eth: &[u8; ETH_LEN],
    ip: &[u8; IPV4_LEN],
    mtu: u16,
    quote_sum: u32,
) -> [u8; REPLY_HEAD] {
    let mut h = [0u8; REPLY_HEAD];
    h[0..6].copy_from_slice(&eth[6..12]);
    h[6..12].copy_from_slice(&eth[0..6]);
    h[12..14].copy_from_slice(&ETH_P_IP.to_be_bytes());
    let o = ETH_LEN;
    let tot_len = (IPV4_LEN + ICMP_LEN + QUOTE_LEN) as u16;
    h[o] = 0x45;
    h[o + 2..o + 4].copy_from_slice(&tot_len.to_be_bytes());
    h[o + 6..o + 8].copy_from_slice(&DF.to_be_bytes());
    h[o + 8] = ip[8];
    h[o + 9] = IPPROTO_ICMP;
    h[o + 12..o + 16].copy_from_slice(&ip[16..20]);
    h[o + 16..o + 20].copy_from_slice(&ip[12..16]);
    let mut outer = [0u8; IPV4_LEN];
    outer.copy_from_slice(&h[o..o + IPV4_LEN]);
    h[o + 10..o + 12].copy_from_slice(&crate::wire::ipv4_checksum(&outer).to_be_bytes());

    let i = o + IPV4_LEN;
    h[i] = DEST_UNREACH;
    h[i + 1] = FRAG_NEEDED;
    h[i + 6..i + 8].copy_from_slice(&mtu.to_be_bytes());
    let words = [
        u16::from_ne_bytes([h[i], h[i + 1]]),
        u16::from_ne_bytes([h[i + 6], h[i + 7]]),
        (quote_sum >> 16) as u16,
        quote_sum as u16,
    ];
    h[i + 2..i + 4].copy_from_slice(&fold(words.into_iter()).to_ne_bytes());
    h
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
        let h = frag_needed(&eth, &o, 1350, native);
        assert_eq!(&h[0..6], &eth[6..12]);
        assert_eq!(&h[ETH_LEN + 12..ETH_LEN + 16], &[12, 12, 12, 3]);
        assert_eq!(sum_be(&h[ETH_LEN..ETH_LEN + IPV4_LEN]), 0, "IPv4 checksum");
        let mut icmp = [0u8; ICMP_LEN + QUOTE_LEN];
        icmp[..ICMP_LEN].copy_from_slice(&h[ETH_LEN + IPV4_LEN..]);
        icmp[ICMP_LEN..].copy_from_slice(&quote);
        assert_eq!(sum_be(&icmp), 0, "ICMP checksum");
        assert_eq!(u16::from_be_bytes([h[40], h[41]]), 1350);
    }
}
