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

/// An Ethernet/IPv4 ICMP echo request with DS field `tos` (DSCP and ECN), checksums valid.
pub fn icmp_echo(dst: [u8; 6], src: [u8; 6], from: [u8; 4], to: [u8; 4], tos: u8) -> Vec<u8> {
    let mut icmp = vec![8, 0, 0, 0, 0x12, 0x34, 0, 1];
    icmp.extend_from_slice(&[0xa5; 56]);
    let c = checksum(&icmp);
    icmp[2..4].copy_from_slice(&c.to_be_bytes());
    let total = (20 + icmp.len()) as u16;
    let mut ip = vec![0x45, tos];
    ip.extend_from_slice(&total.to_be_bytes());
    ip.extend_from_slice(&[0, 0, 0x40, 0, 64, 1, 0, 0]);
    ip.extend_from_slice(&from);
    ip.extend_from_slice(&to);
    let c = checksum(&ip);
    ip[10..12].copy_from_slice(&c.to_be_bytes());
    [&dst[..], &src[..], &[0x08, 0x00], &ip, &icmp].concat()
}

/// The Internet checksum of `bytes` (even length).
pub fn checksum(bytes: &[u8]) -> u16 {
    let mut sum: u32 = bytes
        .chunks(2)
        .map(|w| u32::from(u16::from_be_bytes([w[0], w[1]])))
        .sum();
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}

/// Sends each inner frame as VXLAN in `vni` from `src_ip` (an address in namespace `ns`) to
/// `dst_ip`:4789. Returns how many datagrams went out.
pub fn send(ns: &str, src_ip: &str, dst_ip: &str, vni: u32, frames: Vec<Vec<u8>>) -> Result<usize> {
    let datagrams = frames
        .into_iter()
        .map(|f| [&vxlan_header(vni)[..], &f].concat())
        .collect();
    send_datagrams(ns, src_ip, dst_ip, 0, datagrams)
}

/// Sends each datagram (VXLAN header and inner frame, as given) from `src_ip` in namespace
/// `ns` to `dst_ip`:4789, in IPv4 packets whose TOS byte (DSCP and ECN) is `tos`. Returns
/// how many went out.
pub fn send_datagrams(
    ns: &str,
    src_ip: &str,
    dst_ip: &str,
    tos: u8,
    datagrams: Vec<Vec<u8>>,
) -> Result<usize> {
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
        if tos != 0 {
            set_tos(&sock, tos)?;
        }
        let mut sent = 0;
        for datagram in datagrams {
            sent += usize::from(sock.send_to(&datagram, &dst).is_ok());
        }
        Ok(sent)
    })
    .join()
    .map_err(|_| anyhow::anyhow!("sender thread panicked"))?
}

/// IP_TOS on a UDP socket sets the whole byte, ECN bits included (Linux keeps them for UDP).
fn set_tos(sock: &UdpSocket, tos: u8) -> Result<()> {
    use std::os::fd::AsRawFd;
    let v = libc::c_int::from(tos);
    // SAFETY: a live socket, and a pointer to a c_int of the size passed, read during the call.
    let rc = unsafe {
        libc::setsockopt(
            sock.as_raw_fd(),
            libc::IPPROTO_IP,
            libc::IP_TOS,
            (&v as *const libc::c_int).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    if rc != 0 {
        anyhow::bail!("IP_TOS: {}", std::io::Error::last_os_error());
    }
    Ok(())
}

/// Sends each Ethernet frame as it is, VLAN tags included, out of `ifname` in namespace `ns`
/// through a packet socket: what a container with a VLAN device would put on its wire.
pub fn send_frames(ns: &str, ifname: &str, frames: Vec<Vec<u8>>) -> Result<usize> {
    let (ns, ifname) = (ns.to_string(), ifname.to_string());
    std::thread::spawn(move || -> Result<usize> {
        let _inside = netns::enter(&ns)?;
        let name = std::ffi::CString::new(ifname.as_str())?;
        // SAFETY: a NUL-terminated name that outlives the call.
        let ifindex = unsafe { libc::if_nametoindex(name.as_ptr()) };
        if ifindex == 0 {
            anyhow::bail!("no interface {ifname} in {ns}");
        }
        // SAFETY: no pointers; the descriptor is checked and owned below.
        let fd = unsafe { libc::socket(libc::AF_PACKET, libc::SOCK_RAW, 0) };
        if fd < 0 {
            anyhow::bail!("packet socket: {}", std::io::Error::last_os_error());
        }
        // SAFETY: a descriptor we just opened and own.
        let fd = unsafe { <std::os::fd::OwnedFd as std::os::fd::FromRawFd>::from_raw_fd(fd) };
        // SAFETY: sockaddr_ll is plain integers: all zeroes is a valid value.
        let mut addr: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
        addr.sll_family = libc::AF_PACKET as u16;
        addr.sll_ifindex = ifindex as i32;
        addr.sll_halen = 6;
        let mut sent = 0;
        for frame in frames {
            // SAFETY: the frame and the address are live for the call, with the lengths given.
            let rc = unsafe {
                libc::sendto(
                    std::os::fd::AsRawFd::as_raw_fd(&fd),
                    frame.as_ptr().cast(),
                    frame.len(),
                    0,
                    (&addr as *const libc::sockaddr_ll).cast(),
                    std::mem::size_of::<libc::sockaddr_ll>() as libc::socklen_t,
                )
            };
            sent += usize::from(rc == frame.len() as isize);
        }
        Ok(sent)
    })
    .join()
    .map_err(|_| anyhow::anyhow!("sender thread panicked"))?
}

/// `frame` with `tags` (TPID and TCI each) inserted after its MAC addresses.
pub fn tagged(frame: &[u8], tags: &[[u8; 4]]) -> Vec<u8> {
    let mut out = frame[..12].to_vec();
    for t in tags {
        out.extend_from_slice(t);
    }
    out.extend_from_slice(&frame[12..]);
    out
}
