//! IPv6 frames a container could send, built byte by byte (neighbour discovery, router and
//! multicast listener messages, echo requests) for tests that judge what vtep does with them.

use std::net::Ipv6Addr;

use crate::inject::checksum;

pub const ICMPV6: u8 = 58;
pub const HOP_BY_HOP: u8 = 0;

pub fn mac(s: &str) -> [u8; 6] {
    let v: Vec<u8> = s
        .split(':')
        .map(|b| u8::from_str_radix(b, 16).expect("MAC"))
        .collect();
    v.try_into().expect("6 bytes")
}

pub fn ip6(s: &str) -> [u8; 16] {
    s.parse::<Ipv6Addr>().expect("IPv6").octets()
}

/// The solicited-node multicast group of `target` (RFC 4291 2.7.1) and its MAC.
pub fn solicited_node(target: [u8; 16]) -> ([u8; 16], [u8; 6]) {
    let mut g = ip6("ff02::1:ff00:0");
    g[13..].copy_from_slice(&target[13..]);
    (g, [0x33, 0x33, 0xff, target[13], target[14], target[15]])
}

/// An IPv6 packet in an Ethernet frame: `upper` (next header `proto`) behind `ext`, a chain
/// of extension headers whose first one is `first` (`proto` itself when `ext` is empty). The
/// ICMPv6 checksum is filled in when `proto` is ICMPv6.
#[allow(clippy::too_many_arguments)]
pub fn packet(
    dst_mac: [u8; 6],
    src_mac: [u8; 6],
    src: [u8; 16],
    dst: [u8; 16],
    hop_limit: u8,
    first: u8,
    ext: &[u8],
    proto: u8,
    upper: &[u8],
) -> Vec<u8> {
    let mut upper = upper.to_vec();
    if proto == ICMPV6 && upper.len() >= 4 {
        upper[2..4].fill(0);
        let len = (upper.len() as u32).to_be_bytes();
        let padded = [&upper[..], &[0][..upper.len() % 2]].concat();
        let pseudo = [&src[..], &dst[..], &len, &[0, 0, 0, ICMPV6], &padded].concat();
        upper[2..4].copy_from_slice(&checksum(&pseudo).to_be_bytes());
    }
    let plen = (ext.len() + upper.len()) as u16;
    let mut f = [&dst_mac[..], &src_mac[..], &[0x86, 0xdd]].concat();
    f.extend_from_slice(&[0x60, 0, 0, 0]);
    f.extend_from_slice(&plen.to_be_bytes());
    f.extend_from_slice(&[if ext.is_empty() { proto } else { first }, hop_limit]);
    f.extend_from_slice(&src);
    f.extend_from_slice(&dst);
    f.extend_from_slice(ext);
    f.extend_from_slice(&upper);
    f
}

/// An ICMPv6 message straight after the IPv6 header.
pub fn icmp6(
    dst_mac: [u8; 6],
    src_mac: [u8; 6],
    src: [u8; 16],
    dst: [u8; 16],
    hop_limit: u8,
    msg: &[u8],
) -> Vec<u8> {
    packet(
        dst_mac,
        src_mac,
        src,
        dst,
        hop_limit,
        ICMPV6,
        &[],
        ICMPV6,
        msg,
    )
}

/// A hop-by-hop header with a router alert (what MLD carries), followed by `next`.
pub fn router_alert(next: u8) -> [u8; 8] {
    [next, 0, 5, 2, 0, 0, 1, 0]
}

/// A link-layer address option (1: source, 2: target).
pub fn lladdr_option(kind: u8, mac: [u8; 6]) -> Vec<u8> {
    [&[kind, 1][..], &mac].concat()
}

/// Neighbour solicitation for `target` with `options`.
pub fn ns_msg(target: [u8; 16], options: &[u8]) -> Vec<u8> {
    [&[135, 0, 0, 0, 0, 0, 0, 0][..], &target, options].concat()
}

/// Neighbour advertisement (solicited and override) for `target` with `options`.
pub fn na_msg(target: [u8; 16], options: &[u8]) -> Vec<u8> {
    [&[136, 0, 0, 0, 0x60, 0, 0, 0][..], &target, options].concat()
}

/// Router solicitation with `options`.
pub fn rs_msg(options: &[u8]) -> Vec<u8> {
    [&[133, 0, 0, 0, 0, 0, 0, 0][..], options].concat()
}

/// MLDv2 report joining `group` (change to exclude, no sources).
pub fn mld2_report(group: [u8; 16]) -> Vec<u8> {
    [&[143, 0, 0, 0, 0, 0, 0, 1, 4, 0, 0, 0][..], &group].concat()
}

/// Echo request `id`, sequence 1, with a little payload.
pub fn echo_msg(id: u8) -> Vec<u8> {
    vec![128, 0, 0, 0, 0, id, 0, 1, b'v', b't', b'e', b'p']
}

/// `ff02::1`, `ff02::2` and their MACs.
pub const ALL_NODES: ([u8; 16], [u8; 6]) = (
    [0xff, 2, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1],
    [0x33, 0x33, 0, 0, 0, 1],
);
pub const ALL_ROUTERS: ([u8; 16], [u8; 6]) = (
    [0xff, 2, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 2],
    [0x33, 0x33, 0, 0, 0, 2],
);
pub const MLDV2_ROUTERS: ([u8; 16], [u8; 6]) = (
    [0xff, 2, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x16],
    [0x33, 0x33, 0, 0, 0, 0x16],
);
