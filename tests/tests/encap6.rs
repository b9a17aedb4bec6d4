//! VXLAN over IPv6, vtep sending (RFC 7348 over IPv6): what the kernel's vxlan over IPv6
//! accepts and tshark decodes, TCP with GSO, `--udp6zerocsumtx`, a dual host's flood list of
//! both families, and the MTU VXLAN over IPv6 leaves.
//!
//! The kernel peer answers over IPv4 where a round trip is needed (`ipv6_sender_with_kernel`):
//! these tests judge only what vtep sends over IPv6.

use anyhow::{Context, Result};
use vtep_testbed::{
    capture::Capture,
    cmd::{in_ns, output, run, vtep_output},
    iperf,
    netns::unique_tag,
    ping,
    scenario::{ipv6_sender_with_kernel, Underlay},
    Host, Stack, Testbed,
};

/// `name`'s value in the host's /proc/net/snmp6.
fn snmp6(h: &Host, name: &str) -> Result<u64> {
    let text = in_ns(&h.ns, &["cat", "/proc/net/snmp6"])?;
    text.lines()
        .find_map(|l| {
            let mut cols = l.split_whitespace();
            (cols.next() == Some(name)).then(|| cols.next()?.parse().ok())?
        })
        .with_context(|| format!("{name} in /proc/net/snmp6"))
}

/// Receive errors of the kernel's vxlan device `dev` on host `h`.
fn rx_errors(h: &Host, dev: &str) -> Result<u64> {
    let link: serde_json::Value =
        serde_json::from_str(&run("ip", &["-n", &h.ns, "-s", "-j", "link", "show", dev])?)?;
    link[0]["stats64"]["rx"]["errors"]
        .as_u64()
        .context("rx errors")
}

/// tshark's fields of the VXLAN frames vtep sent, one line per frame.
fn dissect(cap: Capture, fields: &[&str]) -> Result<Vec<Vec<String>>> {
    let mut args = vec!["-o", "udp.check_checksum:TRUE", "-T", "fields"];
    for f in fields {
        args.extend(["-e", f]);
    }
    let text = cap.stop_and_dissect(&args)?;
    Ok(text
        .lines()
        .map(|l| l.split('\t').map(str::to_string).collect())
        .collect())
}

#[test]
fn the_kernel_vxlan_over_ipv6_accepts_what_vtep_sends_and_tshark_finds_it_valid() -> Result<()> {
    let bed = ipv6_sender_with_kernel(&unique_tag("e6"), &["--ttl", "17"], &[])?;
    let (h1, h2) = (bed.c1(), bed.c2());
    let got = Capture::start(&h2.container, "eth0", "icmp and src host 12.12.12.2")?;
    let wire = Capture::start(&h1.ns, "eth1", "ip6 and udp port 4789")?;
    let (csum_errors, rx) = (snmp6(h2, "Udp6InCsumErrors")?, rx_errors(h2, "vxlan6")?);
    assert!(
        ping(&h1.container, &h2.container_ip, 3)?,
        "over IPv6 there, IPv4 back"
    );
    assert_eq!(
        got.stop()?.len(),
        3,
        "the kernel's container got every request"
    );
    let frames = dissect(
        wire,
        &[
            "ipv6.src",
            "ipv6.dst",
            "ipv6.hlim",
            "ipv6.flow",
            "udp.checksum.status",
            "vxlan.vni",
            "icmp.type",
        ],
    )?;
    assert_eq!(frames.len(), 3, "{frames:?}");
    for f in &frames {
        assert_eq!(&f[..3], ["2001:db8::2", "2001:db8::3", "17"], "{f:?}");
        assert_ne!(f[3], "0x00000", "flow label set: {f:?}");
        assert_eq!(f[4], "1", "tshark: UDP checksum good (1): {f:?}");
        assert_eq!((f[5].as_str(), f[6].as_str()), ("42", "8"), "{f:?}");
    }
    // One flow, one label (the kernel's ip6_make_flowlabel: stable per flow).
    assert!(frames.iter().all(|f| f[3] == frames[0][3]), "{frames:?}");
    assert_eq!(snmp6(h2, "Udp6InCsumErrors")?, csum_errors);
    assert_eq!(rx_errors(h2, "vxlan6")?, rx);
    Ok(())
}

#[test]
fn the_kernel_vxlan_over_ipv6_replies_over_ipv6() -> Result<()> {
    // The kernel peer on an IPv6-only underlay: its replies are VXLAN over IPv6 too.
    let bed = Testbed::new_on(
        &unique_tag("r6"),
        [Stack::vtep(), Stack::Kernel],
        Underlay::V6,
    )?;
    let (h1, h2) = (bed.c1(), bed.c2());
    let got = Capture::start(&h2.container, "eth0", "icmp and src host 12.12.12.2")?;
    let back = Capture::start(
        &h1.ns,
        "eth1",
        "ip6 and udp port 4789 and src host 2001:db8::3",
    )?;
    ping(&h1.container, &h2.container_ip, 2)?;
    assert_eq!(
        got.stop()?.len(),
        2,
        "the kernel's container got the requests"
    );
    let replies = dissect(back, &["vxlan.vni", "icmp.type"])?;
    assert!(
        replies.iter().filter(|f| f[..] == ["42", "0"]).count() >= 2,
        "the kernel's replies come back as VXLAN over IPv6: {replies:?}"
    );
    Ok(())
}

#[test]
fn tcp_to_a_kernel_vxlan_over_ipv6_keeps_gso() -> Result<()> {
    let bed = ipv6_sender_with_kernel(&unique_tag("t6"), &[], &[])?;
    let (h1, h2) = (bed.c1(), bed.c2());
    let csum_errors = snmp6(h2, "Udp6InCsumErrors")?;
    let r = iperf::tcp(&h1.container, &h2.container, &h2.container_ip, 3, 1)?;
    eprintln!(
        "vtep over IPv6 -> kernel: {:.2} Gbit/s, {} retransmits ({:.3}%)",
        r.gbits,
        r.retransmits,
        100.0 * r.retransmit_ratio()
    );
    assert!(r.gbits > 1.0, "{:.2} Gbit/s", r.gbits);
    assert!(r.retransmit_ratio() < 0.01, "{r:?}");
    assert_eq!(snmp6(h2, "Udp6InCsumErrors")?, csum_errors);
    Ok(())
}

#[test]
fn udp6zerocsumtx_sends_zero_checksums_only_udp6zerocsumrx_receivers_take() -> Result<()> {
    // Without udp6zerocsumrx the kernel drops them, as it does for its own vxlan devices.
    let bed = ipv6_sender_with_kernel(&unique_tag("z6"), &["--udp6zerocsumtx"], &[])?;
    let (h1, h2) = (bed.c1(), bed.c2());
    let wire = Capture::start(&h1.ns, "eth1", "ip6 and udp port 4789")?;
    assert!(
        !ping(&h1.container, &h2.container_ip, 2)?,
        "dropped by the kernel"
    );
    let frames = dissect(wire, &["udp.checksum", "vxlan.vni"])?;
    assert!(frames.len() >= 2, "{frames:?}");
    assert!(
        frames.iter().all(|f| f[..] == ["0x0000", "42"]),
        "{frames:?}"
    );
    drop(bed);

    let bed = ipv6_sender_with_kernel(
        &unique_tag("z6"),
        &["--udp6zerocsumtx"],
        &["udp6zerocsumrx"],
    )?;
    let (h1, h2) = (bed.c1(), bed.c2());
    assert!(ping(&h1.container, &h2.container_ip, 2)?, "udp6zerocsumrx");
    Ok(())
}

#[test]
fn a_dual_host_floods_one_copy_per_family_and_reaches_either() -> Result<()> {
    let bed = ipv6_sender_with_kernel(&unique_tag("d6"), &[], &[])?;
    let (h1, h2) = (bed.c1(), bed.c2());
    for dst in [&h2.ip, &h2.ip6] {
        h1.vtep(&[
            "fdb",
            "append",
            "00:00:00:00:00:00",
            "dst",
            dst,
            "vni",
            "42",
        ])?;
    }
    let wire = Capture::start(
        &h1.ns,
        "eth1",
        "udp port 4789 and (src host 192.168.104.2 or src host 2001:db8::2)",
    )?;
    // A broadcast IPv4 frame (grown with its protocol changed) and an ARP request (grown
    // in front): each once per family.
    in_ns(
        &h1.container,
        &["ping", "-b", "-c", "1", "-W", "1", "12.12.12.255"],
    )
    .ok();
    in_ns(&h1.container, &["ping", "-c", "1", "-W", "1", "12.12.12.9"]).ok();
    let frames = dissect(
        wire,
        &[
            "ip.dst",
            "ipv6.dst",
            "udp.checksum.status",
            "vxlan.vni",
            "eth.dst",
            "frame.protocols",
        ],
    )?;
    // A copy whose next hop the FIB did not know is seen twice: on its detour through
    // eth1's ingress with no outer MACs yet, then going out. Only the latter counts.
    let sent: Vec<&Vec<String>> = frames
        .iter()
        .filter(|f| f[4].ends_with("ff:ff:ff:ff:ff:ff") && !f[4].starts_with("00:00:00:00:00:00"))
        .collect();
    for (what, proto) in [
        ("ICMP broadcast", ":vxlan:eth:ethertype:ip:icmp"),
        ("ARP request", ":vxlan:eth:ethertype:arp"),
    ] {
        let copies: Vec<_> = sent.iter().filter(|f| f[5].contains(proto)).collect();
        assert_eq!(copies.len(), 2, "{what}: {frames:?}");
        assert!(
            copies
                .iter()
                .any(|f| f[0].split(',').next() == Some("192.168.104.3")),
            "{what} over IPv4: {copies:?}"
        );
        assert!(
            copies.iter().any(|f| f[1] == "2001:db8::3" && f[2] == "1"),
            "{what} over IPv6 with a good checksum: {copies:?}"
        );
        assert!(copies.iter().all(|f| f[3] == "42"), "{copies:?}");
    }
    for dst in [&h2.ip, &h2.ip6] {
        h1.vtep(&["fdb", "replace", &h2.mac, "dst", dst, "vni", "42"])?;
        assert!(
            ping(&h1.container, &h2.container_ip, 2)?,
            "unicast over {dst}"
        );
    }
    Ok(())
}

#[test]
fn vxlan_over_ipv6_leaves_1430_bytes_and_too_big_frames_learn_it() -> Result<()> {
    let bed = Testbed::underlay_on(&unique_tag("m6"), vec![Stack::vtep()], Underlay::V6)?;
    let h1 = &bed.hosts[0];
    let port = |mtu: &str| {
        vtep_output(&[
            "-n",
            &h1.ns,
            "port",
            "add",
            &h1.container,
            "--mac",
            &h1.mac,
            "--addr",
            "12.12.12.2/24",
            "--vni",
            "42",
            "--mtu",
            mtu,
        ])
    };
    let out = port("1450")?;
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert_eq!(err.trim().lines().count(), 1, "{err}");
    assert!(err.starts_with("vtep: ") && err.contains("1430"), "{err}");
    assert_eq!(h1.vtep(&["-j", "port", "show"])?.trim(), "[]");
    assert!(port("1430")?.status.success());
    drop(bed);

    // A frame too big only inside 70 bytes: a container whose MTU was raised to 1450 by
    // hand (vtep refuses to make such a port here), towards each family.
    let bed = ipv6_sender_with_kernel(&unique_tag("m6"), &[], &[])?;
    let (h1, h2) = (bed.c1(), bed.c2());
    let ports: serde_json::Value = serde_json::from_str(&h1.vtep(&["-j", "port", "show"])?)?;
    let host_if = ports[0]["host_ifname"].as_str().context("host_ifname")?;
    run("ip", &["-n", &h1.ns, "link", "set", host_if, "mtu", "1450"])?;
    run(
        "ip",
        &["-n", &h1.container, "link", "set", "eth0", "mtu", "1450"],
    )?;
    // The kernel peer's container, sized for its IPv6 tunnel too, takes the replies.
    run("ip", &["-n", &h2.ns, "link", "set", "veth1", "mtu", "1450"])?;
    run(
        "ip",
        &["-n", &h2.container, "link", "set", "eth0", "mtu", "1450"],
    )?;
    let big_ping = || -> Result<String> {
        let out = output(
            "ip",
            &[
                "netns",
                "exec",
                &h1.container,
                "ping",
                "-c",
                "1",
                "-W",
                "2",
                "-M",
                "do",
                "-s",
                "1410",
                &h2.container_ip,
            ],
        )?;
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    };
    h1.vtep(&["fdb", "replace", &h2.mac, "dst", &h2.ip, "vni", "42"])?;
    assert!(
        big_ping()?.contains(" 0% packet loss"),
        "1438 bytes fit IPv4's 50"
    );
    h1.vtep(&["fdb", "replace", &h2.mac, "dst", &h2.ip6, "vni", "42"])?;
    let before = h1.counter("icmp_too_big")?;
    let text = big_ping()?;
    assert!(
        text.contains("Frag needed and DF set (mtu = 1430)"),
        "{text}"
    );
    assert_eq!(h1.counter("icmp_too_big")?, before + 1);
    let route = in_ns(&h1.container, &["ip", "route", "get", &h2.container_ip])?;
    assert!(route.contains("mtu 1430"), "{route}");
    assert!(
        ping(&h1.container, &h2.container_ip, 1)?,
        "smaller frames pass"
    );
    Ok(())
}

/// Both ends vtep on an IPv6-only underlay: both inner families ping both ways, every frame
/// on the wire is VXLAN over IPv6 with a good checksum, and TCP of both inner families keeps
/// GSO both ways.
#[test]
fn vtep_to_vtep_over_an_ipv6_underlay_carries_both_inner_families() -> Result<()> {
    let bed = Testbed::dual_stack_on(
        &unique_tag("vv6"),
        [Stack::vtep(), Stack::vtep()],
        Underlay::V6,
    )?;
    let (c1, c2) = (bed.c1(), bed.c2());
    let wire = Capture::start(&c1.ns, "eth1", "udp port 4789")?;
    for (a, b) in [(c1, c2), (c2, c1)] {
        for dst in [b.container_ip.clone(), b.container_ip6()] {
            assert!(ping(&a.container, &dst, 2)?, "{} -> {dst}", a.container);
        }
    }
    let frames = dissect(
        wire,
        &["ipv6.src", "ipv6.dst", "udp.checksum.status", "vxlan.vni"],
    )?;
    assert!(frames.len() >= 16, "4 pings of 2, both ways: {frames:?}");
    let vteps = ["2001:db8::2", "2001:db8::3"];
    for f in &frames {
        let (src, dst) = (f[0].split(',').next(), f[1].split(',').next());
        assert!(
            vteps.map(Some).contains(&src) && vteps.map(Some).contains(&dst) && src != dst,
            "{f:?}"
        );
        assert_eq!((f[2].as_str(), f[3].as_str()), ("1", "42"), "{f:?}");
    }
    for (a, b) in [(c1, c2), (c2, c1)] {
        for dst in [b.container_ip.clone(), b.container_ip6()] {
            let r = iperf::tcp(&a.container, &b.container, &dst, 3, 1)?;
            eprintln!(
                "vtep -> vtep over IPv6, to {dst}: {:.2} Gbit/s, {} retransmits ({:.3}%)",
                r.gbits,
                r.retransmits,
                100.0 * r.retransmit_ratio()
            );
            assert!(r.gbits > 1.0, "to {dst}: {:.2} Gbit/s", r.gbits);
            assert!(r.retransmit_ratio() < 0.01, "to {dst}: {r:?}");
        }
    }
    Ok(())
}

/// A flood list of IPv6 VTEPs is all two vtep hosts need: ARP and neighbour solicitations
/// go over IPv6 to the list, and each side learns the other's MAC behind its IPv6 address.
#[test]
fn a_flood_list_of_ipv6_vteps_alone_resolves_and_learns() -> Result<()> {
    let bed = Testbed::underlay_on(
        &unique_tag("fl6"),
        vec![Stack::vtep(), Stack::vtep()],
        Underlay::V6,
    )?;
    let (h1, h2) = (bed.c1(), bed.c2());
    for (h, p) in [(h1, h2), (h2, h1)] {
        let v4 = format!("{}/24", h.container_ip);
        let v6 = format!("{}/64", h.container_ip6());
        h.port_with(&h.container, &h.mac, &[&v4, &v6], 42)?;
        h.vtep(&[
            "fdb",
            "append",
            "00:00:00:00:00:00",
            "dst",
            &p.ip6,
            "vni",
            "42",
        ])?;
    }
    assert!(ping(&h1.container, &h2.container_ip, 2)?, "over ARP");
    assert!(ping(&h1.container, &h2.container_ip6(), 2)?, "over ND");
    let fdb = h1.vtep(&["fdb", "show"])?;
    assert!(
        fdb.lines()
            .any(|l| l.starts_with(h2.mac.as_str()) && l.contains("dst 2001:db8::3")),
        "learned behind the IPv6 VTEP: {fdb}"
    );
    assert!(h1.counter("flood_remote")? >= 1);
    Ok(())
}

/// vtep and the kernel's vxlan on an IPv6-only underlay: TCP both ways keeps GSO, and
/// neither receiver counts a bad outer checksum.
#[test]
fn tcp_both_ways_with_a_kernel_vxlan_on_an_ipv6_underlay() -> Result<()> {
    let bed = Testbed::new_on(
        &unique_tag("k6"),
        [Stack::vtep(), Stack::Kernel],
        Underlay::V6,
    )?;
    let (h1, h2) = (bed.c1(), bed.c2());
    let errors = (snmp6(h2, "Udp6InCsumErrors")?, rx_errors(h2, "vxlan1")?);
    let dropped = h1.counter("pass_bad_vxlan")?;
    for (a, b, what) in [(h1, h2, "vtep -> kernel"), (h2, h1, "kernel -> vtep")] {
        let r = iperf::tcp(&a.container, &b.container, &b.container_ip, 3, 1)?;
        eprintln!(
            "{what} over IPv6: {:.2} Gbit/s, {} retransmits ({:.3}%)",
            r.gbits,
            r.retransmits,
            100.0 * r.retransmit_ratio()
        );
        assert!(r.gbits > 1.0, "{what}: {:.2} Gbit/s", r.gbits);
        assert!(r.retransmit_ratio() < 0.01, "{what}: {r:?}");
    }
    assert_eq!(
        (snmp6(h2, "Udp6InCsumErrors")?, rx_errors(h2, "vxlan1")?),
        errors
    );
    assert_eq!(h1.counter("pass_bad_vxlan")?, dropped);
    Ok(())
}
