//! A VTEP that is not vtep: VXLAN built by hand and sent from a plain UDP socket in a host
//! namespace, to play an unknown peer or a flood of fake MACs.

use std::net::UdpSocket;

use anyhow::{Context, Result};

use crate::netns;

/// The 8-byte VXLAN header for `vni` (I flag set).
pub fn vxlan_header(vni: u32) -> [u8; 8] {
    let mut h = [0u8; 8];
    h[0] = 0x08;
    h[4..8].copy_from_slice(&(vni << 8).to_be_bytes());
    h
}

/// An inner Ethernet frame of an ethertype no stack handles (IEEE local experimental), so
/// the receiving container drops it quietly; padded to Ethernet's 60-byte minimum.
pub fn junk_frame(dst: [u8; 6], src: [u8; 6], payload: &[u8]) -> Vec<u8> {
    let mut frame = [&dst[..], &src[..], &[0x88, 0xb5], payload].concat();
    frame.resize(frame.len().max(60), 0);
    frame
}

/// Sends each inner frame as VXLAN in `vni` from `src_ip` (an address in namespace `ns`) to
/// `dst_ip`:4789. Returns how many datagrams went out.
pub fn send(ns: &str, src_ip: &str, dst_ip: &str, vni: u32, frames: Vec<Vec<u8>>) -> Result<usize> {
    let (ns, src, dst) = (
        ns.to_string(),
        format!("{src_ip}:0"),
        format!("{dst_ip}:4789"),
    );
    // The socket must be born inside the namespace; a thread of its own keeps the test's
    // thread where it is.
    std::thread::spawn(move || -> Result<usize> {
        let _inside = netns::enter(&ns)?;
        let sock = UdpSocket::bind(&src).with_context(|| format!("binding {src}"))?;
        let mut sent = 0;
        for frame in frames {
            let datagram = [&vxlan_header(vni)[..], &frame].concat();
            sent += usize::from(sock.send_to(&datagram, &dst).is_ok());
        }
        Ok(sent)
    })
    .join()
    .map_err(|_| anyhow::anyhow!("sender thread panicked"))?
}
