//! IPv6 neighbour discovery (RFC 4861) as the kernel vxlan device's `proxy` does it
//! (`neigh_reduce`, `vxlan_na_create`): which solicitations to answer, and the advertisement
//! that answers them, built in place. Pure, so the host tests check it byte for byte.

use crate::{
    icmp::{IPPROTO_ICMPV6, IPV6_LEN},
    wire::{fold, ETH_LEN, ETH_P_IPV6},
};

pub const ICMP6_OFF: usize = ETH_LEN + IPV6_LEN;
/// An NS without options: ICMPv6 header, reserved word, target.
pub const NS_LEN: usize = ICMP6_OFF + 24;
/// An NS with one 8-byte option (Linux always sends its source link-layer address), and the
/// NA the proxy sends (with the target link-layer address).
pub const NA_FRAME_LEN: usize = NS_LEN + 8;

pub const MLD_QUERY: u8 = 130;
pub const MLD_REPORT: u8 = 131;
pub const MLD_DONE: u8 = 132;
pub const MLD2_REPORT: u8 = 143;
pub const ROUTER_SOLICIT: u8 = 133;
pub const ROUTER_ADVERT: u8 = 134;
pub const NEIGH_SOLICIT: u8 = 135;
pub const NEIGH_ADVERT: u8 = 136;
/// Option types of a link-layer address: the sender's (NS, RS, RA) and the target's (NA).
pub const OPT_SOURCE_LLADDR: u8 = 1;
pub const OPT_TARGET_LLADDR: u8 = 2;
/// RFC 4861: every ND message is sent with hop limit 255, so none crossed a router.
pub const ND_HOP_LIMIT: u8 = 255;
/// NA flags byte: solicited and override (router only for an FDB entry flagged router,
/// which vtep's FDB has no flag for).
const NA_SOLICITED_OVERRIDE: u8 = 0x60;

/// What the proxy needs of a solicitation it may answer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Solicitation {
    pub target: [u8; 16],
    /// The NS carries its source link-layer address (the option), where the NA goes; else
    /// the NA goes to the frame's source MAC.
    pub lladdr_option: bool,
}

/// Where the ICMPv6 checksum's bytes in the frame begin: the addresses, then the message up
/// to the frame's end (the pseudo-header's length and next header are added apart).
pub const SUMMED_FROM: usize = ETH_LEN + 8;

/// The ICMPv6 checksum of the message that fills the rest of an `N`-byte frame, from `sum`,
/// the one's-complement sum of the frame's bytes from `SUMMED_FROM` on as native-endian
/// words (what `bpf_csum_diff` returns). Native-endian, and 0 when a received one verifies.
#[inline(always)]
fn icmp6_checksum<const N: usize>(sum: u32) -> u16 {
    let len = ((N - ICMP6_OFF) as u16).to_be_bytes();
    fold(
        [
            (sum >> 16) as u16,
            sum as u16,
            u16::from_ne_bytes(len),
            u16::from_ne_bytes([0, IPPROTO_ICMPV6]),
        ]
        .into_iter(),
    )
}

/// A neighbour solicitation that is exactly the frame `f` (`NS_LEN` or `NA_FRAME_LEN`
/// bytes), valid as RFC 4861 7.1.1 has receivers check it: hop limit 255, code 0, a correct
/// checksum, a unicast target, options of non-zero length. Solicitations from `::` (duplicate
/// address detection) are left to the address's owner. `sum` as for `icmp6_checksum`.
#[inline(always)]
pub fn solicitation<const N: usize>(f: &[u8; N], sum: u32) -> Option<Solicitation> {
    let ip = ETH_LEN;
    let icmp = ICMP6_OFF;
    if N < NS_LEN
        || u16::from_be_bytes([f[12], f[13]]) != ETH_P_IPV6
        || f[ip] >> 4 != 6
        || u16::from_be_bytes([f[ip + 4], f[ip + 5]]) as usize != N - ICMP6_OFF
        || f[ip + 6] != IPPROTO_ICMPV6
        || f[ip + 7] != ND_HOP_LIMIT
        || f[icmp] != NEIGH_SOLICIT
        || f[icmp + 1] != 0
        || f[icmp + 8] == 0xff
        || f[ip + 8..ip + 24].iter().all(|&b| b == 0)
        || icmp6_checksum::<N>(sum) != 0
    {
        return None;
    }
    let mut lladdr_option = false;
    if N == NA_FRAME_LEN {
        let o = NS_LEN;
        // One option fills the rest: its length is one 8-byte unit.
        if f[o + 1] != 1 {
            return None;
        }
        lladdr_option = f[o] == OPT_SOURCE_LLADDR;
    }
    let mut target = [0u8; 16];
    target.copy_from_slice(&f[icmp + 8..icmp + 24]);
    Some(Solicitation {
        target,
        lladdr_option,
    })
}

/// Turns the NS `ns` in the frame `f` (grown to `NA_FRAME_LEN` if it had no option) into the
/// NA `mac` would send, in place, as the kernel does: to the solicitor's link-layer address,
/// from the target address to the solicitor's, its traffic class priority kept, hop limit
/// 255, solicited and override, with the target link-layer address. Copied in an order that
/// needs no copy of an address on the stack. The checksum is left 0 for `set_checksum`.
#[inline(always)]
pub fn advertise(f: &mut [u8; NA_FRAME_LEN], ns: &Solicitation, mac: &[u8; 6]) {
    let ip = ETH_LEN;
    let icmp = ICMP6_OFF;
    for i in 0..6 {
        f[i] = if ns.lladdr_option {
            f[NS_LEN + 2 + i]
        } else {
            f[6 + i]
        };
    }
    f[6..12].copy_from_slice(mac);
    let priority = f[ip] & 0x0f;
    f[ip..ip + 8].copy_from_slice(&[
        0x60 | priority,
        0,
        0,
        0,
        0,
        (NA_FRAME_LEN - ICMP6_OFF) as u8,
        IPPROTO_ICMPV6,
        ND_HOP_LIMIT,
    ]);
    // Destination: the solicitor; source: the target, which the NA keeps.
    for i in 0..16 {
        f[ip + 24 + i] = f[ip + 8 + i];
        f[ip + 8 + i] = f[icmp + 8 + i];
    }
    f[icmp..icmp + 8].copy_from_slice(&[NEIGH_ADVERT, 0, 0, 0, NA_SOLICITED_OVERRIDE, 0, 0, 0]);
    f[NS_LEN] = OPT_TARGET_LLADDR;
    f[NS_LEN + 1] = 1;
    f[NS_LEN + 2..NS_LEN + 8].copy_from_slice(mac);
}

/// Stores the NA's checksum, `sum` as for `icmp6_checksum` over the NA `advertise` wrote.
#[inline(always)]
pub fn set_checksum(f: &mut [u8; NA_FRAME_LEN], sum: u32) {
    let c = icmp6_checksum::<NA_FRAME_LEN>(sum);
    f[ICMP6_OFF + 2..ICMP6_OFF + 4].copy_from_slice(&c.to_ne_bytes());
}

/// The IPv6 link-local address the kernel derives from a MAC (modified EUI-64, RFC 4291
/// appendix A), as its default `addr_gen_mode` does.
pub fn link_local(mac: [u8; 6]) -> [u8; 16] {
    let mut a = [0u8; 16];
    a[0] = 0xfe;
    a[1] = 0x80;
    a[8] = mac[0] ^ 0x02;
    a[9] = mac[1];
    a[10] = mac[2];
    a[11] = 0xff;
    a[12] = 0xfe;
    a[13] = mac[3];
    a[14] = mac[4];
    a[15] = mac[5];
    a
}

/// Extension headers a port's IPv6 packet may carry before its upper layer for vtep to see
/// through (hop-by-hop, routing, destination options); past that the packet is not judged.
pub const MAX_EXT_HEADERS: usize = 4;

/// Options of one NS or NA anti-spoofing reads; a message with more is refused.
pub const MAX_ND_OPTIONS: usize = 4;

/// Whether `proto` is an extension header vtep sees through: hop-by-hop, routing,
/// destination options (a fragment header ends the walk: fragmented ND messages are ignored
/// by receivers, RFC 6980).
#[inline(always)]
pub fn is_ext(proto: u8) -> bool {
    matches!(proto, 0 | 43 | 60)
}

/// The length of such a header from its second byte (8-byte units beyond the first 8).
#[inline(always)]
pub fn ext_len(units: u8) -> usize {
    (units as usize + 1) * 8
}

#[cfg(test)]
mod tests {
    use super::*;

    const PORT_MAC: [u8; 6] = [0x02, 0x42, 0xc0, 0xa8, 0x00, 0x02];
    const NEIGH_MAC: [u8; 6] = [0x02, 0x42, 0xc0, 0xa8, 0x00, 0x03];
    const SRC: [u8; 16] = [0xfd, 0, 0, 0x12, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 2];
    const TARGET: [u8; 16] = [0xfd, 0, 0, 0x12, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 3];

    /// What bpf_csum_diff returns for the checksummed bytes.
    fn sum<const N: usize>(f: &[u8; N]) -> u32 {
        f[SUMMED_FROM..]
            .chunks(2)
            .map(|w| u32::from(u16::from_ne_bytes([w[0], w[1]])))
            .sum()
    }

    fn sum_ok<const N: usize>(f: &[u8; N]) -> bool {
        icmp6_checksum::<N>(sum(f)) == 0
    }

    fn seal<const N: usize>(f: &mut [u8; N]) {
        f[56..58].fill(0);
        let c = icmp6_checksum::<N>(sum(f));
        f[56..58].copy_from_slice(&c.to_ne_bytes());
    }

    /// The NS Linux sends to the solicited-node group of TARGET.
    fn ns() -> [u8; NA_FRAME_LEN] {
        let mut f = [0u8; NA_FRAME_LEN];
        f[..6].copy_from_slice(&[0x33, 0x33, 0xff, 0, 0, 3]);
        f[6..12].copy_from_slice(&PORT_MAC);
        f[12..14].copy_from_slice(&ETH_P_IPV6.to_be_bytes());
        f[14..22].copy_from_slice(&[0x60, 0, 0, 0, 0, 32, 58, 255]);
        f[22..38].copy_from_slice(&SRC);
        let mut group = [0u8; 16];
        group[..2].copy_from_slice(&[0xff, 0x02]);
        group[11..].copy_from_slice(&[1, 0xff, 0, 0, 3]);
        f[38..54].copy_from_slice(&group);
        f[54] = NEIGH_SOLICIT;
        f[62..78].copy_from_slice(&TARGET);
        f[78] = OPT_SOURCE_LLADDR;
        f[79] = 1;
        f[80..86].copy_from_slice(&PORT_MAC);
        seal(&mut f);
        f
    }

    #[test]
    fn valid_solicitation_is_read() {
        let s = solicitation(&ns(), sum(&ns())).unwrap();
        assert_eq!((s.target, s.lladdr_option), (TARGET, true));
    }

    #[test]
    fn invalid_solicitations_are_not_answered() {
        let spoil: [fn(&mut [u8; NA_FRAME_LEN]); 8] = [
            |f| f[21] = 64,        // hop limit
            |f| f[55] = 1,         // code
            |f| f[56] ^= 1,        // checksum
            |f| f[62] = 0xff,      // multicast target
            |f| f[79] = 0,         // option length 0
            |f| f[22..38].fill(0), // DAD
            |f| f[19] = 24,        // payload length
            |f| f[20] = 0,         // hop-by-hop header in front
        ];
        for (i, s) in spoil.iter().enumerate() {
            let mut f = ns();
            s(&mut f);
            assert_eq!(solicitation(&f, sum(&f)), None, "spoiler {i}");
        }
    }

    #[test]
    fn solicitation_without_option_replies_to_the_frame_source() {
        let mut f = [0u8; NS_LEN];
        f.copy_from_slice(&ns()[..NS_LEN]);
        f[19] = 24;
        seal(&mut f);
        let s = solicitation(&f, sum(&f)).unwrap();
        assert!(!s.lladdr_option);
        let mut grown = [0u8; NA_FRAME_LEN];
        grown[..NS_LEN].copy_from_slice(&f);
        grown[6..12].copy_from_slice(&[2, 0, 0, 0, 0, 9]);
        advertise(&mut grown, &s, &NEIGH_MAC);
        let s = sum(&grown);
        set_checksum(&mut grown, s);
        assert_eq!(&grown[..6], &[2, 0, 0, 0, 0, 9]);
        assert!(sum_ok(&grown));
    }

    #[test]
    fn advertisement_is_what_the_kernel_sends() {
        let mut f = ns();
        let s = solicitation(&f, sum(&f)).unwrap();
        f[6..12].copy_from_slice(&[2, 0, 0, 0, 0, 9]);
        f[14] = 0x6a;
        advertise(&mut f, &s, &NEIGH_MAC);
        let s = sum(&f);
        set_checksum(&mut f, s);
        assert_eq!(&f[..6], &PORT_MAC);
        assert_eq!(&f[6..12], &NEIGH_MAC);
        assert_eq!(&f[14..22], &[0x6a, 0, 0, 0, 0, 32, 58, 255]);
        assert_eq!(&f[22..38], &TARGET);
        assert_eq!(&f[38..54], &SRC);
        assert_eq!((f[54], f[55], f[58]), (NEIGH_ADVERT, 0, 0x60));
        assert_eq!(&f[62..78], &TARGET);
        assert_eq!(&f[78..80], &[OPT_TARGET_LLADDR, 1]);
        assert_eq!(&f[80..86], &NEIGH_MAC);
        assert!(sum_ok(&f));
    }

    #[test]
    fn link_local_is_eui64() {
        let want: core::net::Ipv6Addr = "fe80::42:c0ff:fea8:2".parse().unwrap();
        assert_eq!(link_local(PORT_MAC), want.octets());
    }
}
