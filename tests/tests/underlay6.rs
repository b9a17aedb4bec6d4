//! Receiving VXLAN over an IPv6 underlay (2001:db8::2 and ::3 on the hosts' eth1s): from the
//! kernel's vxlan device (`local 2001:db8::3`) as a real peer, and crafted frames with good,
//! damaged and zero UDP checksums. (vtep's own send side over IPv6 is not in this version:
//! its frames to IPv6 VTEPs are dropped as `drop_no_route`.)

use std::time::Duration;

use anyhow::{Context, Result};
use vtep_testbed::{cmd::in_ns, netns::unique_tag, ping, Host, Stack, Testbed, Underlay};

#[test]
fn the_kernel_vxlan_over_ipv6_reaches_a_vtep_container() -> Result<()> {
    let bed = Testbed::new_on(
        &unique_tag("u6k"),
        [Stack::vtep(), Stack::Kernel],
        Underlay::V6,
    )?;
    let (c1, c2) = (bed.c1(), bed.c2());
    let decap = c1.counter("decap")?;
    // Requests over IPv6 to vtep, replies over IPv6 from it.
    assert!(ping(&c2.container, &c1.container_ip, 3)?);
    assert!(
        c1.counter("decap")? >= decap + 3,
        "host 1 decapsulated fewer than the 3 echo requests"
    );
    // UDP from the kernel's container crosses the veth with its checksums left to
    // offload (CHECKSUM_PARTIAL, the outer one by local checksum offload): delivered, not
    // refused as a bad checksum.
    let receive = format!(
        "import socket; s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); \
         s.bind(('{}', 5555)); s.settimeout(5); n = 0\n\
         try:\n    while n < 20: s.recv(2000); n += 1\n\
         except socket.timeout: pass\nprint(n)",
        c1.container_ip
    );
    let receiver = std::process::Command::new("ip")
        .args(["netns", "exec", &c1.container, "python3", "-c", &receive])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .context("starting the UDP receiver")?;
    vtep_testbed::wait::until("the UDP receiver", Duration::from_secs(5), || {
        Ok(in_ns(&c1.container, &["ss", "-Huln", "sport = :5555"])?.contains("5555"))
    })?;
    let send = format!(
        "import socket; s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)\n\
         for i in range(20): s.sendto(bytes(1000), ('{}', 5555))",
        c1.container_ip
    );
    in_ns(&c2.container, &["python3", "-c", &send])?;
    let out = receiver.wait_with_output()?;
    let got: u32 = String::from_utf8_lossy(&out.stdout)
        .trim()
        .parse()
        .unwrap_or(0);
    assert_eq!(got, 20, "datagrams from the kernel's container received");
    assert_eq!(c1.counter("pass_bad_vxlan")?, 0, "valid frames refused");
    Ok(())
}

/// The MAC of `dev` in namespace `ns`.
fn mac_of(ns: &str, dev: &str) -> Result<[u8; 6]> {
    let link: serde_json::Value = serde_json::from_str(&vtep_testbed::cmd::run(
        "ip",
        &["-n", ns, "-j", "link", "show", dev],
    )?)?;
    let text = link[0]["address"].as_str().unwrap_or_default();
    let bytes: Vec<u8> = text
        .split(':')
        .filter_map(|b| u8::from_str_radix(b, 16).ok())
        .collect();
    bytes
        .try_into()
        .map_err(|_| anyhow::anyhow!("no MAC on {dev} in {ns}"))
}

fn v6(s: &str) -> [u8; 16] {
    s.parse::<std::net::Ipv6Addr>().expect("IPv6").octets()
}

/// An Ethernet/IPv6/UDP/VXLAN frame around `inner` from `src` to `dst`:4789 whose UDP
/// checksum is computed here (RFC 8200 8.1, independently of vtep's), then passed through
/// `csum` (to damage or zero it).
fn vxlan6(
    macs: ([u8; 6], [u8; 6]),
    src: [u8; 16],
    dst: [u8; 16],
    inner: &[u8],
    csum: impl Fn(u16) -> u16,
) -> Vec<u8> {
    let udp_len = (8 + 8 + inner.len()) as u16;
    let mut udp = vec![0xc3, 0x50, 0x12, 0xb5];
    udp.extend_from_slice(&udp_len.to_be_bytes());
    udp.extend_from_slice(&[0, 0]);
    udp.extend_from_slice(&vtep_testbed::inject::vxlan_header(42));
    udp.extend_from_slice(inner);
    let mut pseudo = [&src[..], &dst[..]].concat();
    pseudo.extend_from_slice(&u32::from(udp_len).to_be_bytes());
    pseudo.extend_from_slice(&[0, 0, 0, 17]);
    pseudo.extend_from_slice(&udp);
    if pseudo.len() % 2 == 1 {
        pseudo.push(0);
    }
    let c = match vtep_testbed::inject::checksum(&pseudo) {
        0 => 0xffff,
        c => c,
    };
    udp[6..8].copy_from_slice(&csum(c).to_be_bytes());
    let mut ip = vec![0x60, 0, 0, 0];
    ip.extend_from_slice(&udp_len.to_be_bytes());
    ip.extend_from_slice(&[17, 64]);
    ip.extend_from_slice(&src);
    ip.extend_from_slice(&dst);
    [&macs.0[..], &macs.1[..], &[0x86, 0xdd], &ip, &udp].concat()
}

/// Host 1's container pinging host 2's, as VXLAN over IPv6 from host 1's eth1 with its
/// UDP checksum passed through `csum`.
fn echo_over_ipv6(h1: &Host, h2: &Host, csum: impl Fn(u16) -> u16) -> Result<Vec<u8>> {
    let inner = vtep_testbed::inject::icmp_echo(
        parse_mac(&h2.mac),
        parse_mac(&h1.mac),
        [12, 12, 12, 2],
        [12, 12, 12, 3],
        0,
    );
    let macs = (mac_of(&h2.ns, "eth1")?, mac_of(&h1.ns, "eth1")?);
    Ok(vxlan6(macs, v6(&h1.ip6), v6(&h2.ip6), &inner, csum))
}

/// Waits until counter `name` of host `h` reaches `want`.
fn settled(h: &Host, name: &str, want: u64) -> Result<()> {
    vtep_testbed::wait::until(
        name,
        Duration::from_secs(5),
        || Ok(h.counter(name)? >= want),
    )
    .map(|_| ())
}

#[test]
fn the_outer_udp_checksum_is_verified_and_zero_is_refused_unless_udp6zerocsumrx() -> Result<()> {
    let bed = Testbed::new_on(
        &unique_tag("u6c"),
        [Stack::vtep(), Stack::vtep()],
        Underlay::V6,
    )?;
    let (h1, h2) = (bed.c1(), bed.c2());
    let send = |csum: &dyn Fn(u16) -> u16| -> Result<()> {
        let f = echo_over_ipv6(h1, h2, csum)?;
        vtep_testbed::inject::send_frames(&h1.ns, "eth1", vec![f])?;
        Ok(())
    };
    let settled = |name: &str, want: u64| settled(h2, name, want);
    let (decap, bad) = (h2.counter("decap")?, h2.counter("pass_bad_vxlan")?);
    send(&|c| c)?;
    settled("decap", decap + 1)?;
    send(&|c| c ^ 0x0100)?;
    settled("pass_bad_vxlan", bad + 1)?;
    send(&|_| 0)?;
    settled("pass_bad_vxlan", bad + 2)?;
    assert_eq!(
        h2.counter("decap")?,
        decap + 1,
        "a bad or zero checksum decapsulated"
    );
    h2.vtep(&["up", "--udp6zerocsumrx"])?;
    send(&|_| 0)?;
    settled("decap", decap + 2)?;
    Ok(())
}

#[test]
fn learning_and_strict_peers_work_over_ipv6() -> Result<()> {
    let bed = Testbed::underlay_on(
        &unique_tag("u6l"),
        vec![Stack::vtep(), Stack::vtep_with(&["--strict-peers"])],
        Underlay::V6,
    )?;
    let (h1, h2) = (&bed.hosts[0], &bed.hosts[1]);
    h2.port(&h2.container, &h2.mac, &h2.container_ip, 42)?;
    let frame = echo_over_ipv6(h1, h2, |c| c)?;
    let settled = |name: &str, want: u64| settled(h2, name, want);
    // Host 2 knows no peer: strict, it refuses host 1's frames.
    let refused = h2.counter("drop_unknown_peer")?;
    vtep_testbed::inject::send_frames(&h1.ns, "eth1", vec![frame.clone()])?;
    settled("drop_unknown_peer", refused + 1)?;
    // A flood-list slot names host 1: accepted, and its MAC learned behind its IPv6 address.
    h2.vtep(&[
        "fdb",
        "append",
        "00:00:00:00:00:00",
        "dst",
        &h1.ip6,
        "vni",
        "42",
    ])?;
    let decap = h2.counter("decap")?;
    vtep_testbed::inject::send_frames(&h1.ns, "eth1", vec![frame])?;
    settled("decap", decap + 1)?;
    let text = h2.vtep(&["fdb", "show"])?;
    assert!(
        text.contains(&format!(
            "{} dst {} vni 42 port 4789 learned",
            h1.mac, h1.ip6
        )),
        "{text}"
    );
    Ok(())
}

fn parse_mac(m: &str) -> [u8; 6] {
    let b: Vec<u8> = m
        .split(':')
        .map(|x| u8::from_str_radix(x, 16).unwrap())
        .collect();
    b.try_into().unwrap()
}
