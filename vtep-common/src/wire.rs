//! On-the-wire layout (RFC 7348 over IPv4, RFC 826 ARP) and the pure helpers that build and
//! check headers. The eBPF programs call these on stack copies of packet bytes, and the
//! host tests call them directly, so both sides agree on every byte.

pub const ETH_LEN: usize = 14;
pub const IPV4_LEN: usize = 20;
pub const UDP_LEN: usize = 8;
pub const VXLAN_LEN: usize = 8;
/// Outer Ethernet + IPv4 + UDP + VXLAN: what encapsulation adds in front of the inner frame.
pub const ENCAP_LEN: usize = ETH_LEN + IPV4_LEN + UDP_LEN + VXLAN_LEN;
/// An Ethernet frame carrying an IPv4-over-Ethernet ARP packet.
pub const ARP_FRAME_LEN: usize = ETH_LEN + 28;

pub const ETH_P_IP: u16 = 0x0800;
pub const ETH_P_ARP: u16 = 0x0806;
pub const ETH_P_IPV6: u16 = 0x86dd;
pub const ETH_P_8021Q: u16 = 0x8100;
pub const ETH_P_8021AD: u16 = 0x88a8;
/// One 802.1Q/802.1ad tag: TPID and TCI.
pub const VLAN_LEN: usize = 4;
/// Tags a frame from a port may carry (QinQ); deeper stacks are dropped.
pub const MAX_VLAN_TAGS: usize = 2;
pub const IPPROTO_ICMP: u8 = 1;
pub const IPPROTO_UDP: u8 = 17;
pub const VXLAN_PORT: u16 = 4789;
/// The I flag: the VNI field is valid. All other flag bits are reserved.
pub const VXLAN_FLAG_VNI: u8 = 0x08;
pub const DEFAULT_TTL: u8 = 64;
/// The kernel's default source port range (IANA dynamic ports).
pub const SRCPORT_MIN: u16 = 49152;
pub const SRCPORT_MAX: u16 = 65535;

const ARP_OP_REQUEST: u16 = 1;
const ARP_OP_REPLY: u16 = 2;

#[inline(always)]
pub const fn is_multicast(mac: &[u8; 6]) -> bool {
    mac[0] & 1 == 1
}

/// Internet checksum of a 20-byte IPv4 header (its checksum field taken as zero), ready to
/// store big-endian.
#[inline(always)]
pub fn ipv4_checksum(hdr: &[u8; IPV4_LEN]) -> u16 {
    // The checksum field itself (word 5) counts as zero.
    fold((0..IPV4_LEN / 2).map(|i| {
        if i == 5 {
            0
        } else {
            u16::from_be_bytes([hdr[2 * i], hdr[2 * i + 1]])
        }
    }))
}

/// True when a received IPv4 header's checksum verifies.
#[inline(always)]
pub fn ipv4_checksum_ok(hdr: &[u8; IPV4_LEN]) -> bool {
    ipv4_checksum(hdr) == u16::from_be_bytes([hdr[10], hdr[11]])
}

/// True when `ip` lies in the `prefix`-bit subnet of `local` (a prefix of 0 matches none).
#[inline(always)]
pub fn same_subnet(local: [u8; 4], ip: [u8; 4], prefix: u8) -> bool {
    if prefix == 0 || prefix > 32 {
        return false;
    }
    let mask = u32::MAX << (32 - prefix as u32);
    u32::from_be_bytes(local) & mask == u32::from_be_bytes(ip) & mask
}

/// Hash of an inner IPv4 flow from its first 38 bytes (Ethernet + IPv4 without options +
/// L4 ports): addresses, protocol and, for unfragmented TCP and UDP, the ports. Stands in
/// for the kernel's flow dissector when the skb carries no hash.
#[inline(always)]
pub fn ipv4_flow_hash(f: &[u8; 38]) -> u32 {
    let w = |i: usize| u32::from_be_bytes([f[i], f[i + 1], f[i + 2], f[i + 3]]);
    let proto = f[ETH_LEN + 9];
    let fragment = u16::from_be_bytes([f[20], f[21]]) & 0x3fff != 0;
    let ports = if f[ETH_LEN] == 0x45 && !fragment && (proto == 6 || proto == 17) {
        w(34)
    } else {
        0
    };
    let mut h = w(26) ^ w(30).rotate_left(16) ^ ports.wrapping_mul(0x9e37_79b9) ^ proto as u32;
    // murmur3's finaliser: every input bit reaches every output bit.
    h ^= h >> 16;
    h = h.wrapping_mul(0x85eb_ca6b);
    h ^= h >> 13;
    h = h.wrapping_mul(0xc2b2_ae35);
    h ^ (h >> 16)
}

/// Outer UDP source port from the inner flow hash, spread over `min..=max` the way the kernel
/// does (multiply-shift, no division), so ECMP in the underlay sees per-flow entropy.
#[inline(always)]
pub fn src_port(hash: u32, min: u16, max: u16) -> u16 {
    if max <= min {
        return min;
    }
    let span = (max - min) as u64 + 1;
    (((hash as u64) * span) >> 32) as u16 + min
}

/// What the outer headers of one encapsulated frame carry.
#[derive(Clone, Copy, Debug)]
pub struct Outer {
    pub dst_mac: [u8; 6],
    pub src_mac: [u8; 6],
    pub src_ip: [u8; 4],
    pub dst_ip: [u8; 4],
    pub src_port: u16,
    pub dst_port: u16,
    pub vni: u32,
    pub ttl: u8,
    pub tos: u8,
    /// Length of the inner Ethernet frame.
    pub inner_len: u16,
}

/// Outer Ethernet, IPv4 (DF, valid checksum), UDP (checksum 0, as RFC 7348 allows on IPv4)
/// and VXLAN headers for `o`, in wire order.
pub fn outer_headers(o: &Outer) -> [u8; ENCAP_LEN] {
    let mut h = [0u8; ENCAP_LEN];
    write_outer(&mut h, o);
    h
}

/// `outer_headers` written straight into `h` (packet memory, in the data path), every byte
/// set: a frame's room may hold the headers of an earlier flood copy.
#[inline(always)]
pub fn write_outer(h: &mut [u8; ENCAP_LEN], o: &Outer) {
    h[0..6].copy_from_slice(&o.dst_mac);
    h[6..12].copy_from_slice(&o.src_mac);
    h[12..14].copy_from_slice(&ETH_P_IP.to_be_bytes());

    let udp_len = (UDP_LEN + VXLAN_LEN) as u16 + o.inner_len;
    let tot_len = IPV4_LEN as u16 + udp_len;
    const DF: u16 = 0x4000; // a VTEP never fragments (RFC 7348 section 4.3)
    let version_tos = 0x4500 | o.tos as u16;
    let ttl_proto = (o.ttl as u16) << 8 | IPPROTO_UDP as u16;
    // Summed from the fields, not read back from the bytes: cheaper, and the same sum.
    let words = [version_tos, tot_len, 0, DF, ttl_proto]
        .into_iter()
        .chain(ip_words(o.src_ip))
        .chain(ip_words(o.dst_ip));
    let ip = ETH_LEN;
    h[ip..ip + 2].copy_from_slice(&version_tos.to_be_bytes());
    h[ip + 2..ip + 4].copy_from_slice(&tot_len.to_be_bytes());
    h[ip + 4..ip + 6].copy_from_slice(&[0, 0]);
    h[ip + 6..ip + 8].copy_from_slice(&DF.to_be_bytes());
    h[ip + 8..ip + 10].copy_from_slice(&ttl_proto.to_be_bytes());
    h[ip + 10..ip + 12].copy_from_slice(&fold(words).to_be_bytes());
    h[ip + 12..ip + 16].copy_from_slice(&o.src_ip);
    h[ip + 16..ip + 20].copy_from_slice(&o.dst_ip);

    let udp = ETH_LEN + IPV4_LEN;
    h[udp..udp + 2].copy_from_slice(&o.src_port.to_be_bytes());
    h[udp + 2..udp + 4].copy_from_slice(&o.dst_port.to_be_bytes());
    h[udp + 4..udp + 6].copy_from_slice(&udp_len.to_be_bytes());
    h[udp + 6..udp + 8].copy_from_slice(&[0, 0]);

    let vx = udp + UDP_LEN;
    h[vx..vx + 4].copy_from_slice(&[VXLAN_FLAG_VNI, 0, 0, 0]);
    h[vx + 4..vx + 8].copy_from_slice(&(o.vni << 8).to_be_bytes());
}

#[inline(always)]
fn ip_words(ip: [u8; 4]) -> [u16; 2] {
    [
        u16::from_be_bytes([ip[0], ip[1]]),
        u16::from_be_bytes([ip[2], ip[3]]),
    ]
}

/// The Internet checksum of 16-bit words.
#[inline(always)]
pub(crate) fn fold(words: impl Iterator<Item = u16>) -> u16 {
    let mut sum: u32 = words.map(u32::from).sum();
    sum = (sum & 0xffff) + (sum >> 16);
    sum = (sum & 0xffff) + (sum >> 16);
    !(sum as u16)
}

/// The VNI of a VXLAN header, if it is one this VTEP accepts: I flag set and every reserved
/// bit clear, as the kernel's vxlan driver demands.
#[inline(always)]
pub fn vxlan_vni(h: &[u8; VXLAN_LEN]) -> Option<u32> {
    if h[0] != VXLAN_FLAG_VNI || h[1] != 0 || h[2] != 0 || h[3] != 0 || h[7] != 0 {
        return None;
    }
    Some(u32::from_be_bytes([0, h[4], h[5], h[6]]))
}

/// True for the IEEE 802.1D reserved group addresses (01:80:c2:00:00:00 to 0f), which
/// bridges consume and never forward.
#[inline(always)]
pub fn is_link_local(mac: &[u8; 6]) -> bool {
    mac[..5] == [0x01, 0x80, 0xc2, 0x00, 0x00] && mac[5] & 0xf0 == 0
}

/// True for the ether types of a VLAN tag.
#[inline(always)]
pub const fn is_vlan(ethertype: u16) -> bool {
    ethertype == ETH_P_8021Q || ethertype == ETH_P_8021AD
}

/// Outer headers plus the inner Ethernet header: the least a decapsulable frame holds.
pub const DECAP_MIN: usize = ENCAP_LEN + ETH_LEN;

/// The shortest inner frame taken: an Ethernet header and 20 bytes. Real senders pad to 60
/// bytes, and the kernel refuses to shrink an skb below an IPv4 header after its MAC header.
pub const MIN_INNER: usize = ETH_LEN + 20;

/// The minimum Ethernet frame (without FCS): shorter inner frames (an ARP request from a
/// virtual device) are padded to it before an IPv6 outer header is removed, as the kernel
/// refuses to shrink an skb below its outer family's network header after the MAC header.
pub const ETH_MIN_FRAME: usize = 60;

/// Why a frame on the underlay is not decapsulated.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Reject {
    /// Not IPv4/UDP to this VTEP's address and port: the host's own traffic.
    NotVxlan,
    /// Addressed to the VTEP but malformed: bad flags, checksum, lengths, or a fragment.
    BadVxlan,
}

/// A VXLAN frame this VTEP accepts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Decap {
    pub vni: u32,
    /// The sending VTEP (outer source address).
    pub remote_ip: crate::Addr,
    pub inner_dst: [u8; 6],
    pub inner_src: [u8; 6],
    /// Bytes after the IP datagram (Ethernet padding), not part of the inner frame.
    pub padding: usize,
}

/// Checks the first `DECAP_MIN` bytes of a frame of `frame_len` bytes received on the
/// underlay. `gso` marks a kernel super-packet whose outer lengths are only a template and
/// cannot be checked against the frame.
#[inline(always)]
pub fn parse_vxlan(
    h: &[u8; DECAP_MIN],
    frame_len: usize,
    local_ip: [u8; 4],
    udp_port: u16,
    gso: bool,
) -> Result<Decap, Reject> {
    const IP: usize = ETH_LEN;
    const UDP: usize = IP + IPV4_LEN;
    const VX: usize = UDP + UDP_LEN;
    let to_us = u16::from_be_bytes([h[12], h[13]]) == ETH_P_IP
        && h[IP] == 0x45
        && h[IP + 9] == IPPROTO_UDP
        && h[IP + 16..IP + 20] == local_ip
        && u16::from_be_bytes([h[UDP + 2], h[UDP + 3]]) == udp_port;
    if !to_us {
        return Err(Reject::NotVxlan);
    }
    let mut ip = [0u8; IPV4_LEN];
    ip.copy_from_slice(&h[IP..UDP]);
    let mut vx = [0u8; VXLAN_LEN];
    vx.copy_from_slice(&h[VX..VX + VXLAN_LEN]);
    let vni = vxlan_vni(&vx).ok_or(Reject::BadVxlan)?;
    let fragment = u16::from_be_bytes([ip[6], ip[7]]) & 0x3fff != 0;
    if fragment || !ipv4_checksum_ok(&ip) {
        return Err(Reject::BadVxlan);
    }
    let mut padding = 0;
    if !gso {
        let tot_len = u16::from_be_bytes([ip[2], ip[3]]) as usize;
        let udp_len = u16::from_be_bytes([h[UDP + 4], h[UDP + 5]]) as usize;
        if tot_len < IPV4_LEN + UDP_LEN + VXLAN_LEN + MIN_INNER
            || tot_len + ETH_LEN > frame_len
            || udp_len != tot_len - IPV4_LEN
        {
            return Err(Reject::BadVxlan);
        }
        padding = frame_len - ETH_LEN - tot_len;
    }
    let remote_ip = crate::Addr::v4([ip[12], ip[13], ip[14], ip[15]]);
    let mut inner_dst = [0u8; 6];
    inner_dst.copy_from_slice(&h[ENCAP_LEN..ENCAP_LEN + 6]);
    let mut inner_src = [0u8; 6];
    inner_src.copy_from_slice(&h[ENCAP_LEN + 6..ENCAP_LEN + 12]);
    Ok(Decap {
        vni,
        remote_ip,
        inner_dst,
        inner_src,
        padding,
    })
}

/// The target IP of an Ethernet/IPv4 ARP request, unless it is gratuitous (a host announcing
/// itself must not be answered).
#[inline(always)]
pub fn arp_request_target(f: &[u8; ARP_FRAME_LEN]) -> Option<[u8; 4]> {
    let a = ETH_LEN;
    let well_formed = u16::from_be_bytes([f[12], f[13]]) == ETH_P_ARP
        && u16::from_be_bytes([f[a], f[a + 1]]) == 1
        && u16::from_be_bytes([f[a + 2], f[a + 3]]) == ETH_P_IP
        && f[a + 4] == 6
        && f[a + 5] == 4
        && u16::from_be_bytes([f[a + 6], f[a + 7]]) == ARP_OP_REQUEST;
    let sender_ip = [f[a + 14], f[a + 15], f[a + 16], f[a + 17]];
    let target_ip = [f[a + 24], f[a + 25], f[a + 26], f[a + 27]];
    (well_formed && sender_ip != target_ip).then_some(target_ip)
}

/// Turns an ARP request into the reply `target_mac` would send, in place.
#[inline(always)]
pub fn arp_reply(f: &mut [u8; ARP_FRAME_LEN], target_mac: &[u8; 6]) {
    let a = ETH_LEN;
    let mut requester_mac = [0u8; 6];
    requester_mac.copy_from_slice(&f[a + 8..a + 14]);
    let mut requester_ip = [0u8; 4];
    requester_ip.copy_from_slice(&f[a + 14..a + 18]);
    let mut target_ip = [0u8; 4];
    target_ip.copy_from_slice(&f[a + 24..a + 28]);

    f[0..6].copy_from_slice(&requester_mac);
    f[6..12].copy_from_slice(target_mac);
    f[a + 6..a + 8].copy_from_slice(&ARP_OP_REPLY.to_be_bytes());
    f[a + 8..a + 14].copy_from_slice(target_mac);
    f[a + 14..a + 18].copy_from_slice(&target_ip);
    f[a + 18..a + 24].copy_from_slice(&requester_mac);
    f[a + 24..a + 28].copy_from_slice(&requester_ip);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Outer {
        Outer {
            dst_mac: [2, 0, 0, 0, 0, 3],
            src_mac: [2, 0, 0, 0, 0, 2],
            src_ip: [192, 168, 104, 2],
            dst_ip: [192, 168, 104, 3],
            src_port: 50000,
            dst_port: VXLAN_PORT,
            vni: 42,
            ttl: 64,
            tos: 0,
            inner_len: 98,
        }
    }

    #[test]
    fn outer_headers_follow_rfc7348() {
        let h = outer_headers(&sample());
        assert_eq!(&h[12..14], &[0x08, 0x00]);
        let ip: [u8; 20] = h[14..34].try_into().unwrap();
        assert_eq!(ip[0], 0x45);
        assert_eq!(u16::from_be_bytes([ip[2], ip[3]]), 20 + 8 + 8 + 98);
        assert_eq!(ip[8], 64);
        assert_eq!(ip[9], 17);
        assert!(ipv4_checksum_ok(&ip));
        assert_eq!(u16::from_be_bytes([h[34], h[35]]), 50000);
        assert_eq!(u16::from_be_bytes([h[36], h[37]]), 4789);
        assert_eq!(u16::from_be_bytes([h[38], h[39]]), 8 + 8 + 98);
        assert_eq!(&h[40..42], &[0, 0], "UDP checksum is zero");
        assert_eq!(&h[42..50], &[0x08, 0, 0, 0, 0, 0, 42, 0]);
        assert_eq!(vxlan_vni(&h[42..50].try_into().unwrap()), Some(42));
    }

    #[test]
    fn checksum_matches_a_known_header() {
        // The worked example of the IPv4 header checksum in common references.
        let hdr = [
            0x45, 0x00, 0x00, 0x73, 0x00, 0x00, 0x40, 0x00, 0x40, 0x11, 0xb8, 0x61, 0xc0, 0xa8,
            0x00, 0x01, 0xc0, 0xa8, 0x00, 0xc7,
        ];
        assert_eq!(ipv4_checksum(&hdr), 0xb861);
        assert!(ipv4_checksum_ok(&hdr));
    }

    #[test]
    fn vxlan_rejects_reserved_bits() {
        assert_eq!(
            vxlan_vni(&[0x08, 0, 0, 0, 0xff, 0xff, 0xff, 0]),
            Some(VNI_MAX)
        );
        assert_eq!(vxlan_vni(&[0x00, 0, 0, 0, 0, 0, 42, 0]), None);
        assert_eq!(vxlan_vni(&[0x0c, 0, 0, 0, 0, 0, 42, 0]), None);
        assert_eq!(vxlan_vni(&[0x08, 0, 1, 0, 0, 0, 42, 0]), None);
        assert_eq!(vxlan_vni(&[0x08, 0, 0, 0, 0, 0, 42, 1]), None);
    }

    use crate::VNI_MAX;

    #[test]
    fn flow_hash_separates_flows_and_ignores_fragment_ports() {
        let mut a = [0u8; 38];
        a[12..14].copy_from_slice(&ETH_P_IP.to_be_bytes());
        a[14] = 0x45;
        a[23] = 17;
        a[26..30].copy_from_slice(&[12, 12, 12, 2]);
        a[30..34].copy_from_slice(&[12, 12, 12, 3]);
        a[34..38].copy_from_slice(&[0x9c, 0x40, 0x14, 0x51]);
        let mut b = a;
        b[35] = 0x41;
        assert_ne!(
            ipv4_flow_hash(&a),
            ipv4_flow_hash(&b),
            "other source port, other flow"
        );
        assert_eq!(ipv4_flow_hash(&a), ipv4_flow_hash(&a.clone()));
        let (mut fa, mut fb) = (a, b);
        fa[20] = 0x20; // more fragments: the ports are not ports
        fb[20] = 0x20;
        assert_eq!(ipv4_flow_hash(&fa), ipv4_flow_hash(&fb));
    }

    #[test]
    fn link_local_group_addresses() {
        assert!(is_link_local(&[0x01, 0x80, 0xc2, 0, 0, 0x0e]));
        assert!(!is_link_local(&[0x01, 0x80, 0xc2, 0, 0, 0x10]));
        assert!(!is_link_local(&[0x01, 0, 0x5e, 0, 0, 1]));
    }

    #[test]
    fn subnets() {
        assert!(same_subnet([192, 168, 104, 2], [192, 168, 104, 3], 24));
        assert!(!same_subnet([192, 168, 104, 2], [192, 168, 105, 3], 24));
        assert!(same_subnet([10, 0, 0, 1], [10, 0, 0, 1], 32));
        assert!(!same_subnet([10, 0, 0, 1], [10, 0, 0, 2], 32));
        assert!(!same_subnet([10, 0, 0, 1], [10, 0, 0, 1], 0));
    }

    #[test]
    fn src_port_stays_in_range() {
        for hash in [0, 1, 0x8000_0000, u32::MAX, 0x1234_5678] {
            let p = src_port(hash, SRCPORT_MIN, SRCPORT_MAX);
            assert!((SRCPORT_MIN..=SRCPORT_MAX).contains(&p));
        }
        assert_eq!(src_port(u32::MAX, 1000, 1001), 1001);
        assert_eq!(src_port(0, 1000, 1001), 1000);
        assert_eq!(src_port(7, 5, 5), 5);
    }

    fn vxlan_frame(inner_len: usize) -> [u8; DECAP_MIN] {
        let o = Outer {
            inner_len: inner_len as u16,
            ..sample()
        };
        let mut f = [0u8; DECAP_MIN];
        f[..ENCAP_LEN].copy_from_slice(&outer_headers(&o));
        f[ENCAP_LEN..ENCAP_LEN + 6].copy_from_slice(&[2, 0x42, 0xc0, 0xa8, 0, 3]);
        f[ENCAP_LEN + 6..ENCAP_LEN + 12].copy_from_slice(&[2, 0x42, 0xc0, 0xa8, 0, 2]);
        f
    }

    #[test]
    fn parse_accepts_what_outer_headers_builds() {
        let f = vxlan_frame(98);
        let d = parse_vxlan(&f, ENCAP_LEN + 98, [192, 168, 104, 3], VXLAN_PORT, false).unwrap();
        let expected = Decap {
            vni: 42,
            remote_ip: crate::Addr::v4([192, 168, 104, 2]),
            inner_dst: [2, 0x42, 0xc0, 0xa8, 0, 3],
            inner_src: [2, 0x42, 0xc0, 0xa8, 0, 2],
            padding: 0,
        };
        assert_eq!(d, expected);
        let padded = parse_vxlan(
            &f,
            ENCAP_LEN + 98 + 4,
            [192, 168, 104, 3],
            VXLAN_PORT,
            false,
        )
        .unwrap();
        assert_eq!(padded.padding, 4);
    }

    #[test]
    fn parse_rejects_other_traffic_and_damage() {
        let local = [192, 168, 104, 3];
        let len = ENCAP_LEN + 98;
        let f = vxlan_frame(98);
        assert_eq!(
            parse_vxlan(&f, len, [10, 0, 0, 1], VXLAN_PORT, false),
            Err(Reject::NotVxlan)
        );
        assert_eq!(
            parse_vxlan(&f, len, local, 8472, false),
            Err(Reject::NotVxlan)
        );
        let mut bad = f;
        bad[14 + 8] ^= 1; // TTL changed, checksum stale
        assert_eq!(
            parse_vxlan(&bad, len, local, VXLAN_PORT, false),
            Err(Reject::BadVxlan)
        );
        let mut bad = f;
        bad[42] = 0; // I flag clear
        assert_eq!(
            parse_vxlan(&bad, len, local, VXLAN_PORT, false),
            Err(Reject::BadVxlan)
        );
        assert_eq!(
            parse_vxlan(&f, len - 1, local, VXLAN_PORT, false),
            Err(Reject::BadVxlan),
            "truncated"
        );
        assert!(
            parse_vxlan(&f, len - 1, local, VXLAN_PORT, true).is_ok(),
            "GSO lengths are a template"
        );
    }

    fn request(sender: [u8; 4], target: [u8; 4]) -> [u8; ARP_FRAME_LEN] {
        let mut f = [0u8; ARP_FRAME_LEN];
        f[0..6].copy_from_slice(&[0xff; 6]);
        f[6..12].copy_from_slice(&[2, 0x42, 0xc0, 0xa8, 0, 2]);
        f[12..14].copy_from_slice(&ETH_P_ARP.to_be_bytes());
        f[14..22].copy_from_slice(&[0, 1, 8, 0, 6, 4, 0, 1]);
        f[22..28].copy_from_slice(&[2, 0x42, 0xc0, 0xa8, 0, 2]);
        f[28..32].copy_from_slice(&sender);
        f[38..42].copy_from_slice(&target);
        f
    }

    #[test]
    fn arp_request_is_answered_for_its_target() {
        let mut f = request([12, 12, 12, 2], [12, 12, 12, 3]);
        assert_eq!(arp_request_target(&f), Some([12, 12, 12, 3]));
        let mac = [2, 0x42, 0xc0, 0xa8, 0, 3];
        arp_reply(&mut f, &mac);
        assert_eq!(&f[0..6], &[2, 0x42, 0xc0, 0xa8, 0, 2]);
        assert_eq!(&f[6..12], &mac);
        assert_eq!(&f[20..22], &[0, 2]);
        assert_eq!(&f[22..28], &mac);
        assert_eq!(&f[28..32], &[12, 12, 12, 3]);
        assert_eq!(&f[32..38], &[2, 0x42, 0xc0, 0xa8, 0, 2]);
        assert_eq!(&f[38..42], &[12, 12, 12, 2]);
        assert_eq!(arp_request_target(&f), None, "a reply is not a request");
    }

    #[test]
    fn gratuitous_arp_is_not_answered() {
        assert_eq!(
            arp_request_target(&request([12, 12, 12, 2], [12, 12, 12, 2])),
            None
        );
    }
}
