//! The frames the program-cost probes hand to BPF_PROG_TEST_RUN, built with the wire helpers
//! the data path itself uses and addressed as in the reference scenario: this host is
//! 192.168.104.2 with container 12.12.12.2, the remote one .3 / 12.12.12.3, VNI 42.

use vtep_common::wire::{
    self, Outer, ENCAP_LEN, ETH_LEN, ETH_P_ARP, ETH_P_IP, IPPROTO_UDP, IPV4_LEN, UDP_LEN,
    VXLAN_PORT,
};

pub const VNI: u32 = 42;
pub const LOCAL_VTEP: &str = "192.168.104.2";
pub const REMOTE_VTEP: &str = "192.168.104.3";
const LOCAL_MAC: [u8; 6] = [0x02, 0x42, 0xc0, 0xa8, 0x00, 0x02];
pub const REMOTE_MAC: [u8; 6] = [0x02, 0x42, 0xc0, 0xa8, 0x00, 0x03];
const LOCAL_IP: [u8; 4] = [12, 12, 12, 2];
const REMOTE_IP: [u8; 4] = [12, 12, 12, 3];
/// The outer MACs of tunnelled frames (nothing checks them).
const REMOTE_VTEP_MAC: [u8; 6] = [0x02, 0x00, 0x00, 0x00, 0x01, 0x03];
const LOCAL_VTEP_MAC: [u8; 6] = [0x02, 0x00, 0x00, 0x00, 0x01, 0x02];
/// The datagram size of the pps measurement.
const PAYLOAD: usize = 64;

/// The local container's 64-byte UDP datagram to the remote one: the port program
/// encapsulates it.
pub fn container_udp() -> Vec<u8> {
    udp_frame(REMOTE_MAC, LOCAL_MAC, LOCAL_IP, REMOTE_IP)
}

/// The local container's 64-byte UDP datagram to everyone: the port program floods it.
pub fn container_broadcast() -> Vec<u8> {
    udp_frame([0xff; 6], LOCAL_MAC, LOCAL_IP, [12, 12, 12, 255])
}

/// The remote container's datagram to the local one, tunnelled by the remote VTEP: the
/// underlay program decapsulates it.
pub fn tunnelled_udp() -> Vec<u8> {
    tunnelled(VXLAN_PORT)
}

/// The same tunnelled frame to UDP port 4790: not VXLAN for this VTEP, so the underlay
/// program passes it on untouched.
pub fn tunnelled_elsewhere() -> Vec<u8> {
    tunnelled(VXLAN_PORT + 1)
}

/// The inner frame of `tunnelled_udp`: what decapsulation must leave.
fn inner_of_tunnelled() -> Vec<u8> {
    udp_frame(LOCAL_MAC, REMOTE_MAC, REMOTE_IP, LOCAL_IP)
}

fn tunnelled(dst_port: u16) -> Vec<u8> {
    let inner = inner_of_tunnelled();
    let outer = wire::outer_headers(&Outer {
        dst_mac: LOCAL_VTEP_MAC,
        src_mac: REMOTE_VTEP_MAC,
        src_ip: parse_ip(REMOTE_VTEP),
        dst_ip: parse_ip(LOCAL_VTEP),
        src_port: 50_000,
        dst_port,
        vni: VNI,
        ttl: wire::DEFAULT_TTL,
        tos: 0,
        inner_len: inner.len() as u16,
    });
    [&outer[..], &inner].concat()
}

/// The local container asking, by broadcast, who has the remote container's address: the
/// port program answers from the neighbour table.
pub fn arp_request() -> Vec<u8> {
    let mut f = ethernet([0xff; 6], LOCAL_MAC, ETH_P_ARP);
    // Ethernet/IPv4, request: sender MAC and IP, unknown target MAC, target IP.
    f.extend_from_slice(&[0, 1, 0x08, 0x00, 6, 4, 0, 1]);
    f.extend_from_slice(&LOCAL_MAC);
    f.extend_from_slice(&LOCAL_IP);
    f.extend_from_slice(&[0; 6]);
    f.extend_from_slice(&REMOTE_IP);
    f
}

fn udp_frame(dst_mac: [u8; 6], src_mac: [u8; 6], src_ip: [u8; 4], dst_ip: [u8; 4]) -> Vec<u8> {
    let mut ip = [0u8; IPV4_LEN];
    ip[0] = 0x45;
    ip[2..4].copy_from_slice(&((IPV4_LEN + UDP_LEN + PAYLOAD) as u16).to_be_bytes());
    ip[8] = wire::DEFAULT_TTL;
    ip[9] = IPPROTO_UDP;
    ip[12..16].copy_from_slice(&src_ip);
    ip[16..20].copy_from_slice(&dst_ip);
    let csum = wire::ipv4_checksum(&ip);
    ip[10..12].copy_from_slice(&csum.to_be_bytes());

    let mut f = ethernet(dst_mac, src_mac, ETH_P_IP);
    f.extend_from_slice(&ip);
    // iperf3's ports; UDP checksum 0 (none), as an offloading sender leaves it to no one.
    f.extend_from_slice(&40_000u16.to_be_bytes());
    f.extend_from_slice(&5201u16.to_be_bytes());
    f.extend_from_slice(&((UDP_LEN + PAYLOAD) as u16).to_be_bytes());
    f.extend_from_slice(&[0, 0]);
    f.resize(f.len() + PAYLOAD, 0x5a);
    f
}

fn ethernet(dst: [u8; 6], src: [u8; 6], ethertype: u16) -> Vec<u8> {
    let mut f = Vec::with_capacity(ENCAP_LEN + ETH_LEN + IPV4_LEN + UDP_LEN + PAYLOAD);
    f.extend_from_slice(&dst);
    f.extend_from_slice(&src);
    f.extend_from_slice(&ethertype.to_be_bytes());
    f
}

pub fn parse_ip(s: &str) -> [u8; 4] {
    s.parse::<std::net::Ipv4Addr>()
        .expect("a literal IPv4 address")
        .octets()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_tunnelled_frame_is_one_this_vtep_decapsulates() {
        let f = tunnelled_udp();
        let head: [u8; wire::DECAP_MIN] = f[..wire::DECAP_MIN].try_into().unwrap();
        let d = wire::parse_vxlan(&head, f.len(), parse_ip(LOCAL_VTEP), VXLAN_PORT, false).unwrap();
        assert_eq!((d.vni, d.inner_dst, d.padding), (VNI, LOCAL_MAC, 0));
        assert_eq!(&f[ENCAP_LEN..], &inner_of_tunnelled()[..]);
        let other: [u8; wire::DECAP_MIN] =
            tunnelled_elsewhere()[..wire::DECAP_MIN].try_into().unwrap();
        assert!(
            wire::parse_vxlan(&other, f.len(), parse_ip(LOCAL_VTEP), VXLAN_PORT, false).is_err()
        );
    }

    #[test]
    fn the_arp_request_asks_for_the_remote_container() {
        let f: [u8; wire::ARP_FRAME_LEN] = arp_request().try_into().unwrap();
        assert_eq!(wire::arp_request_target(&f), Some(REMOTE_IP));
    }

    #[test]
    fn the_container_datagram_is_64_bytes_of_udp_in_valid_ipv4() {
        let f = container_udp();
        assert_eq!(f.len(), ETH_LEN + IPV4_LEN + UDP_LEN + 64);
        assert!(wire::ipv4_checksum_ok(
            &f[ETH_LEN..ETH_LEN + IPV4_LEN].try_into().unwrap()
        ));
    }
}
