//! The reference scenario over an IPv6 underlay (2001:db8::2 and ::3 on the hosts' eth1s):
//! vtep to vtep, and vtep with the kernel's vxlan device (`local 2001:db8::3`) both ways.

use anyhow::Result;
use vtep_testbed::{iperf, netns::unique_tag, ping, Stack, Testbed, Underlay};

fn pings_and_tcp_both_ways(stacks: [Stack; 2]) -> Result<()> {
    let bed = Testbed::new_on(&unique_tag("u6"), stacks, Underlay::V6)?;
    let (c1, c2) = (bed.c1(), bed.c2());
    assert!(
        ping(&c1.container, &c2.container_ip, 3)?,
        "12.12.12.2 -> 12.12.12.3 over IPv6 failed"
    );
    assert!(
        ping(&c2.container, &c1.container_ip, 3)?,
        "12.12.12.3 -> 12.12.12.2 over IPv6 failed"
    );
    for (from, to) in [(c1, c2), (c2, c1)] {
        let r = iperf::tcp(&from.container, &to.container, &to.container_ip, 3, 1)?;
        assert!(
            r.gbits > 1.0 && r.retransmit_ratio() < 0.01,
            "TCP {} -> {} over IPv6: {:.2} Gbit/s, {:.2}% retransmitted",
            from.container_ip,
            to.container_ip,
            r.gbits,
            100.0 * r.retransmit_ratio()
        );
    }
    let decap = c1.counter("decap")?;
    assert!(decap > 0, "host 1 decapsulated nothing");
    Ok(())
}

#[test]
fn vtep_to_vtep_over_ipv6_pings_and_carries_tcp() -> Result<()> {
    pings_and_tcp_both_ways([Stack::vtep(), Stack::vtep()])
}

#[test]
fn vtep_and_the_kernel_vxlan_over_ipv6_interoperate() -> Result<()> {
    pings_and_tcp_both_ways([Stack::vtep(), Stack::Kernel])
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

#[test]
fn the_outer_udp_checksum_is_verified_and_zero_is_refused_unless_udp6zerocsumrx() -> Result<()> {
    let bed = Testbed::new_on(&unique_tag("u6c"), [Stack::vtep(), Stack::vtep()], Underlay::V6)?;
    let (h1, h2) = (bed.c1(), bed.c2());
    let parse_mac = |m: &str| -> [u8; 6] {
        let b: Vec<u8> = m.split(':').map(|x| u8::from_str_radix(x, 16).unwrap()).collect();
        b.try_into().unwrap()
    };
    let inner = vtep_testbed::inject::icmp_echo(
        parse_mac(&h2.mac),
        parse_mac(&h1.mac),
        [12, 12, 12, 2],
        [12, 12, 12, 3],
        0,
    );
    let macs = (mac_of(&h2.ns, "eth1")?, mac_of(&h1.ns, "eth1")?);
    let (src, dst) = (v6(&h1.ip6), v6(&h2.ip6));
    let send = |csum: &dyn Fn(u16) -> u16| -> Result<()> {
        let f = vxlan6(macs, src, dst, &inner, csum);
        vtep_testbed::inject::send_frames(&h1.ns, "eth1", vec![f])?;
        Ok(())
    };
    let settled = |name: &str, want: u64| -> Result<()> {
        vtep_testbed::wait::until(name, std::time::Duration::from_secs(5), || {
            Ok(h2.counter(name)? >= want)
        })
        .map(|_| ())
    };
    let (decap, bad) = (h2.counter("decap")?, h2.counter("pass_bad_vxlan")?);
    send(&|c| c)?;
    settled("decap", decap + 1)?;
    send(&|c| c ^ 0x0100)?;
    settled("pass_bad_vxlan", bad + 1)?;
    send(&|_| 0)?;
    settled("pass_bad_vxlan", bad + 2)?;
    assert_eq!(h2.counter("decap")?, decap + 1, "a bad or zero checksum decapsulated");
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
    for h in [h1, h2] {
        h.port(&h.container, &h.mac, &h.container_ip, 42)?;
    }
    h1.vtep(&["fdb", "add", &h2.mac, "dst", &h2.ip6, "vni", "42"])?;
    for (h, p) in [(h1, h2), (h2, h1)] {
        h.vtep(&["neigh", "add", &p.container_ip, "lladdr", &p.mac, "vni", "42"])?;
    }
    // Host 2 knows no peer: strict, it refuses host 1's frames.
    let refused = h2.counter("drop_unknown_peer")?;
    assert!(!ping(&h1.container, &h2.container_ip, 1)?);
    assert!(h2.counter("drop_unknown_peer")? > refused, "not counted");
    // A flood-list slot names host 1: accepted, and its MAC learned behind its IPv6 address.
    h2.vtep(&["fdb", "append", "00:00:00:00:00:00", "dst", &h1.ip6, "vni", "42"])?;
    assert!(ping(&h1.container, &h2.container_ip, 2)?, "no reply once host 1 is a peer");
    let text = h2.vtep(&["fdb", "show"])?;
    assert!(
        text.contains(&format!("{} dst {} vni 42 port 4789 learned", h1.mac, h1.ip6)),
        "{text}"
    );
    Ok(())
}
