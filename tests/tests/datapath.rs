//! Frame-by-frame parity with the kernel's vxlan device and bridge: VLAN tags, ECN (RFC
//! 6040), the MTU with ICMP "fragmentation needed" and ICMPv6 "packet too big", counters
//! that add up, and TCP and UDP through XDP decap on veth. Each case is checked against a
//! kernel vxlan peer where the kernel has something to compare.

use anyhow::{Context, Result};
use serde_json::Value;
use vtep_testbed::{
    capture::Capture,
    cmd::{in_ns, output, run, vtep_output},
    inject, iperf,
    netns::unique_tag,
    ping, scenario, Host, Stack, Testbed,
};

const ECT_0: u8 = 2;
const CE: u8 = 3;

fn mac(s: &str) -> [u8; 6] {
    let mut m = [0u8; 6];
    for (b, part) in m.iter_mut().zip(s.split(':')) {
        *b = u8::from_str_radix(part, 16).expect("MAC");
    }
    m
}

fn ip4(s: &str) -> [u8; 4] {
    s.parse::<std::net::Ipv4Addr>().expect("IPv4").octets()
}

fn counters(h: &Host) -> Result<Value> {
    Ok(serde_json::from_str(&h.vtep(&["-j", "stats"])?)?)
}

/// Sum of the named counters' growth between two `vtep -j stats`.
fn grown(before: &Value, after: &Value, names: &[&str]) -> u64 {
    names
        .iter()
        .map(|n| after[n].as_u64().unwrap_or(0) - before[n].as_u64().unwrap_or(0))
        .sum()
}

/// One big ping (`-s 1400`) from `ns` to `dst` with path MTU discovery `pmtudisc` (`do`,
/// `dont`) and `extra` arguments (`-6`); what ping printed, replies and errors alike.
fn big_ping(ns: &str, dst: &str, pmtudisc: &str, extra: &[&str]) -> Result<String> {
    let mut args = vec![
        "netns", "exec", ns, "ping", "-c", "1", "-W", "2", "-s", "1400",
    ];
    args.extend_from_slice(&["-M", pmtudisc]);
    args.extend_from_slice(extra);
    args.push(dst);
    Ok(String::from_utf8_lossy(&output("ip", &args)?.stdout).into_owned())
}

/// Pings until one reply comes back (five tries): a fresh path's first frames can be lost
/// outside vtep (the host-wide neighbour table of a busy test machine overflows).
fn reachable(ns: &str, dst: &str) -> Result<bool> {
    for _ in 0..5 {
        if ping(ns, dst, 1)? {
            return Ok(true);
        }
    }
    Ok(false)
}

fn counter(h: &Host, name: &str) -> Result<u64> {
    counters(h)?[name]
        .as_u64()
        .with_context(|| format!("counter {name}"))
}

/// The VXLAN frames of a capture on eth1: (outer ether type, inner frame).
fn vxlan_frames(frames: &[Vec<u8>]) -> Vec<(u16, Vec<u8>)> {
    frames
        .iter()
        .filter(|f| f.len() > 50 && f[23] == 17 && f[36..38] == [0x12, 0xb5])
        .map(|f| (u16::from_be_bytes([f[12], f[13]]), f[50..].to_vec()))
        .collect()
}

/// A tagged ICMP echo request from `from`'s container to `to`'s, with id `id`.
fn tagged_echo(from: &Host, to: &Host, src_ip: &str, tags: &[[u8; 4]], id: u8) -> Vec<u8> {
    let mut frame = inject::icmp_echo(
        mac(&to.mac),
        mac(&from.mac),
        ip4(src_ip),
        ip4(&to.container_ip),
        0,
    );
    // A distinct id (the echo checksum is not checked anywhere on the way).
    frame[38] = id;
    inject::tagged(&frame, tags)
}

/// The frames for `dst` whose bytes after the MACs start with `tags`.
fn received_tagged(frames: &[Vec<u8>], dst: &str, tags: &[[u8; 4]]) -> Vec<Vec<u8>> {
    let t: Vec<u8> = tags.concat();
    frames
        .iter()
        .filter(|f| f.len() > 12 + t.len() && f[..6] == mac(dst) && f[12..12 + t.len()] == t[..])
        .cloned()
        .collect()
}

/// Tagged frames (as a container's VLAN device sends them: the kernel takes the outer tag
/// into skb metadata on the host) between a vtep host and a kernel vxlan + bridge host,
/// both ways: each arrives in the other container byte for byte, and on eth1 the tags ride
/// inside the tunnel exactly where the kernel puts them, never on the outer header.
fn vlan_case(tags: &[[u8; 4]]) -> Result<()> {
    let bed = Testbed::new(&unique_tag("vl"), [Stack::vtep(), Stack::Kernel])?;
    let (h1, h2) = (bed.c1(), bed.c2());
    assert!(reachable(&h1.container, &h2.container_ip)?);
    assert!(reachable(&h2.container, &h1.container_ip)?);
    let wire = Capture::start(&h1.ns, "eth1", "")?;
    let at_c1 = Capture::start(&h1.container, "eth0", "")?;
    let at_c2 = Capture::start(&h2.container, "eth0", "")?;
    let to_kernel: Vec<Vec<u8>> = (1..=3)
        .map(|id| tagged_echo(h1, h2, &h1.container_ip, tags, id))
        .collect();
    let to_vtep: Vec<Vec<u8>> = (4..=6)
        .map(|id| tagged_echo(h2, h1, &h2.container_ip, tags, id))
        .collect();
    inject::send_frames(&h1.container, "eth0", to_kernel.clone())?;
    inject::send_frames(&h2.container, "eth0", to_vtep.clone())?;
    // Untagged pings both ways after them: when they are answered, the tagged frames
    // (sent earlier on the same paths) have arrived.
    assert!(ping(&h1.container, &h2.container_ip, 1)?);
    assert!(ping(&h2.container, &h1.container_ip, 1)?);
    assert_eq!(
        received_tagged(&at_c2.stop()?, &h2.mac, tags),
        to_kernel,
        "vtep -> kernel"
    );
    assert_eq!(
        received_tagged(&at_c1.stop()?, &h1.mac, tags),
        to_vtep,
        "kernel -> vtep"
    );

    let frames = wire.stop()?;
    assert!(
        frames
            .iter()
            .all(|f| !matches!(u16::from_be_bytes([f[12], f[13]]), 0x8100 | 0x88a8)),
        "a tag on the outer header"
    );
    let inner: Vec<Vec<u8>> = vxlan_frames(&frames)
        .into_iter()
        .filter(|(outer, _)| *outer == 0x0800)
        .map(|(_, f)| f)
        .collect();
    // Both directions' tagged frames crossed eth1 as VXLAN, the tags inside.
    let mut crossed = [
        received_tagged(&inner, &h1.mac, tags),
        received_tagged(&inner, &h2.mac, tags),
    ]
    .concat();
    crossed.sort();
    let mut sent = [to_kernel, to_vtep].concat();
    sent.sort();
    assert_eq!(crossed, sent, "tagged frames inside VXLAN on eth1");
    Ok(())
}

#[test]
fn tagged_frames_carry_their_tag_inside_the_tunnel_both_ways_with_a_kernel_peer() -> Result<()> {
    vlan_case(&[[0x81, 0x00, 0, 100]])
}

#[test]
fn qinq_frames_carry_both_tags_inside_the_tunnel_both_ways_with_a_kernel_peer() -> Result<()> {
    vlan_case(&[[0x88, 0xa8, 0, 200], [0x81, 0x00, 0x01, 0x2c]])
}

#[test]
fn tagged_broadcasts_flood_with_their_tags_inside_both_ways_with_a_kernel_peer() -> Result<()> {
    // Flood lists and learning only, on both sides: broadcasts take the replication paths.
    let bed = scenario::flooding_with_kernel(&unique_tag("vf"))?;
    let (h1, h2) = (&bed.hosts[0], &bed.hosts[1]);
    assert!(reachable(&h1.container, &h2.container_ip)?);
    let tags = [[0x88, 0xa8, 0, 200], [0x81, 0x00, 0, 100]];
    let broadcast = |from: &Host, id: u8| {
        let mut f = inject::junk_frame([0xff; 6], mac(&from.mac), &[id; 46]);
        f = inject::tagged(&f, &tags[..usize::from(id % 2) + 1]);
        f
    };
    let at_c1 = Capture::start(&h1.container, "eth0", "")?;
    let at_c2 = Capture::start(&h2.container, "eth0", "")?;
    let from_vtep: Vec<Vec<u8>> = (1..=2).map(|id| broadcast(h1, id)).collect();
    let from_kernel: Vec<Vec<u8>> = (3..=4).map(|id| broadcast(h2, id)).collect();
    inject::send_frames(&h1.container, "eth0", from_vtep.clone())?;
    inject::send_frames(&h2.container, "eth0", from_kernel.clone())?;
    assert!(reachable(&h1.container, &h2.container_ip)?);
    assert!(reachable(&h2.container, &h1.container_ip)?);
    let arrived = |frames: Vec<Vec<u8>>, from: &Host| -> Vec<Vec<u8>> {
        frames
            .into_iter()
            .filter(|f| f.len() > 12 && f[..6] == [0xff; 6] && f[6..12] == mac(&from.mac))
            .filter(|f| f[12..14] == [0x88, 0xa8])
            .collect()
    };
    assert_eq!(arrived(at_c2.stop()?, h1), from_vtep, "vtep -> kernel");
    assert_eq!(arrived(at_c1.stop()?, h2), from_kernel, "kernel -> vtep");
    Ok(())
}

#[test]
fn tagged_frames_are_dissected_by_tshark_as_vlan_inside_vxlan_and_spoofing_stays_blocked(
) -> Result<()> {
    let bed = Testbed::new(&unique_tag("vs"), [Stack::vtep(), Stack::vtep()])?;
    let (h1, h2) = (bed.c1(), bed.c2());
    assert!(reachable(&h1.container, &h2.container_ip)?);
    let tags = [[0x81, 0x00, 0, 100]];
    let cap = Capture::start(&h1.ns, "eth1", "udp port 4789")?;
    let frames = (1..=2)
        .map(|id| tagged_echo(h1, h2, &h1.container_ip, &tags, id))
        .collect();
    inject::send_frames(&h1.container, "eth0", frames)?;
    assert!(ping(&h1.container, &h2.container_ip, 1)?);
    let fields = cap.stop_and_dissect(&["-T", "fields", "-e", "eth.type", "-e", "vlan.id"])?;
    let tagged: Vec<&str> = fields.lines().filter(|l| l.contains('\t')).collect();
    let with_vlan: Vec<&&str> = tagged.iter().filter(|l| !l.ends_with('\t')).collect();
    assert_eq!(with_vlan.len(), 2, "{fields}");
    for l in with_vlan {
        // Outer IPv4, then the inner frame's tag: one VLAN id, 100, below the VXLAN header.
        let mut cols = l.split('\t');
        assert!(
            cols.next().unwrap_or_default().starts_with("0x0800,0x8100"),
            "{l}"
        );
        assert_eq!(cols.next(), Some("100"), "{l}");
    }

    // Anti-spoofing reads through the tags: another source address is dropped.
    for t in [&tags[..], &[[0x88, 0xa8, 0, 200], [0x81, 0x00, 0, 100]][..]] {
        let before = counters(h1)?;
        let spoofed = (1..=3)
            .map(|id| tagged_echo(h1, h2, "12.12.12.9", t, id))
            .collect();
        let cap = Capture::start(&h1.ns, "eth1", "udp port 4789")?;
        inject::send_frames(&h1.container, "eth0", spoofed)?;
        assert!(ping(&h1.container, &h2.container_ip, 1)?);
        let after = counters(h1)?;
        assert_eq!(grown(&before, &after, &["drop_spoof"]), 3, "{after}");
        // Only the ping's request went out.
        let out: Vec<Vec<u8>> = cap
            .stop()?
            .into_iter()
            .filter(|f| f.len() > 30 && f[26..30] == ip4(&h1.ip))
            .collect();
        assert_eq!(vxlan_frames(&out).len(), 1);
    }
    Ok(())
}

/// The outer ECN field of the frames a host's container sends with `ping -Q tos`.
fn outer_ecn_of_ping(bed: &Testbed, tos: u8) -> Result<Vec<u8>> {
    let (h1, h2) = (bed.c1(), bed.c2());
    assert!(reachable(&h1.container, &h2.container_ip)?);
    let cap = Capture::start(&h1.ns, "eth1", "udp port 4789")?;
    in_ns(
        &h1.container,
        &[
            "ping",
            "-c",
            "3",
            "-i",
            "0.2",
            "-Q",
            &tos.to_string(),
            &h2.container_ip,
        ],
    )?;
    let frames = cap.stop()?;
    Ok(frames
        .iter()
        .filter(|f| f.len() > 50 && f[26..30] == ip4(&h1.ip))
        .map(|f| f[15] & 3)
        .collect())
}

#[test]
fn encapsulation_copies_the_inner_ecn_field_outside_like_the_kernel() -> Result<()> {
    let vtep = Testbed::new(&unique_tag("ee"), [Stack::vtep(), Stack::vtep()])?;
    let kernel = Testbed::new(&unique_tag("ek"), [Stack::Kernel, Stack::vtep()])?;
    for (tos, outer) in [(ECT_0, ECT_0), (1, 1), (CE, ECT_0), (0xb8, 0)] {
        let ours = outer_ecn_of_ping(&vtep, tos)?;
        let theirs = outer_ecn_of_ping(&kernel, tos)?;
        assert!(!ours.is_empty() && !theirs.is_empty(), "nothing captured");
        assert!(
            ours.iter().all(|&e| e == outer),
            "vtep, inner tos {tos:#x}: {ours:?}"
        );
        assert!(
            theirs.iter().all(|&e| e == outer),
            "kernel, inner tos {tos:#x}: {theirs:?}"
        );
    }
    Ok(())
}

/// Sends one crafted frame from `from` to `to`'s container with outer ECN `outer` and inner
/// DS field `inner`; returns the inner DS field of what the container received, if anything.
fn ecn_delivered(from: &Host, to: &Host, outer: u8, inner: u8) -> Result<Option<u8>> {
    let cap = Capture::start(&to.container, "eth0", "icmp[icmptype] == 8")?;
    let frame = inject::icmp_echo(
        mac(&to.mac),
        mac(&from.mac),
        ip4(&from.container_ip),
        ip4(&to.container_ip),
        inner,
    );
    let datagram = [&inject::vxlan_header(42)[..], &frame].concat();
    inject::send_datagrams(&from.ns, &from.ip, &to.ip, outer, vec![datagram])?;
    // The echo reply proves the request was delivered (or not) before the capture stops.
    assert!(reachable(&from.container, &to.container_ip)?);
    let frames = cap.stop()?;
    let got: Vec<&Vec<u8>> = frames
        .iter()
        .filter(|f| f.len() > 40 && f[38..40] == [0x12, 0x34])
        .collect();
    assert!(got.len() <= 1, "{} copies", got.len());
    Ok(got.first().map(|f| {
        assert_eq!(inject::checksum(&f[14..34]), 0, "inner IPv4 checksum");
        f[15]
    }))
}

#[test]
fn decapsulation_applies_rfc6040_like_a_kernel_receiver() -> Result<()> {
    // Host 1 runs vtep, host 2 the kernel; each receives frames crafted by the other's host.
    let bed = Testbed::new(&unique_tag("ed"), [Stack::vtep(), Stack::Kernel])?;
    let (h1, h2) = (bed.c1(), bed.c2());
    // The crafted frames leave from the hosts' own stacks: resolve the underlay first.
    assert!(reachable(&h1.ns, &h2.ip)? && reachable(&h2.ns, &h1.ip)?);
    let cases = [
        (CE, ECT_0, Some(CE)),
        (CE, 1, Some(CE)),
        (CE, 0xb8 | ECT_0, Some(0xb8 | CE)),
        (ECT_0, ECT_0, Some(ECT_0)),
        (0, CE, Some(CE)),
        (CE, 0, None),
    ];
    for (outer, inner, want) in cases {
        let drops = counter(h1, "drop_ecn")?;
        let ours = ecn_delivered(h2, h1, outer, inner)?;
        let theirs = ecn_delivered(h1, h2, outer, inner)?;
        assert_eq!(ours, want, "vtep: outer {outer:#x} inner {inner:#x}");
        assert_eq!(
            theirs, ours,
            "kernel vs vtep: outer {outer:#x} inner {inner:#x}"
        );
        let dropped = counter(h1, "drop_ecn")? - drops;
        assert_eq!(dropped, u64::from(want.is_none()), "drop_ecn");
    }
    Ok(())
}

#[test]
fn a_port_mtu_the_underlay_cannot_carry_is_refused_and_changes_nothing() -> Result<()> {
    let bed = Testbed::underlay(&unique_tag("mr"), vec![Stack::vtep(), Stack::vtep()])?;
    let h1 = &bed.hosts[0];
    let ns = format!("{}x", h1.container);
    let out = vtep_output(&[
        "-n",
        &h1.ns,
        "port",
        "add",
        &ns,
        "--mac",
        &h1.mac,
        "--addr",
        "12.12.12.2/24",
        "--vni",
        "42",
        "--mtu",
        "1500",
    ])?;
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert_eq!(err.trim().lines().count(), 1, "{err}");
    assert!(err.contains("1450"), "{err}");
    assert!(!std::path::Path::new(&format!("/run/netns/{ns}")).exists());
    assert_eq!(h1.vtep(&["-j", "port", "show"])?.trim(), "[]");
    h1.port(&h1.container, &h1.mac, &h1.container_ip, 42)?;
    Ok(())
}

#[test]
fn frames_too_big_for_the_underlay_get_icmp_too_big_and_tcp_still_flows() -> Result<()> {
    let bed = Testbed::dual_stack(&unique_tag("mt"), [Stack::vtep(), Stack::vtep()])?;
    let (h1, h2) = (bed.c1(), bed.c2());
    for h in [h1, h2] {
        run("ip", &["-n", &h.ns, "link", "set", "eth1", "mtu", "1400"])?;
    }
    // `up` again learns the new MTU and says the ports no longer fit.
    let out = vtep_output(&["-n", &h1.ns, "up"])?;
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{err}");
    assert!(err.contains("MTU 1400") && err.contains("1350"), "{err}");
    h2.vtep(&["up"])?;
    assert!(reachable(&h1.container, &h2.container_ip)?);

    let before = counters(h1)?;
    let text = big_ping(&h1.container, &h2.container_ip, "do", &[])?;
    assert!(
        text.contains("Frag needed and DF set (mtu = 1350)"),
        "{text:?}"
    );
    assert_eq!(grown(&before, &counters(h1)?, &["icmp_too_big"]), 1);
    assert_eq!(grown(&before, &counters(h1)?, &["encap"]), 0);
    // The container's route now carries the path MTU.
    let route = in_ns(&h1.container, &["ip", "route", "get", &h2.container_ip])?;
    assert!(route.contains("mtu 1350"), "{route}");
    assert!(
        ping(&h1.container, &h2.container_ip, 1)?,
        "small frames still pass"
    );

    // IPv6: ICMPv6 "packet too big" with the same MTU (neighbour discovery answered from
    // vtep's neighbour table).
    let before = counters(h1)?;
    let text = big_ping(&h1.container, &h2.container_ip6(), "do", &["-6"])?;
    assert!(
        text.contains("Packet too big") && text.contains("mtu=1350"),
        "{text:?}"
    );
    assert_eq!(grown(&before, &counters(h1)?, &["icmp_too_big"]), 1);

    // Without DF: dropped and counted, never sent to be lost.
    let before = counters(h1)?;
    big_ping(&h2.container, &h1.container_ip, "dont", &[])?;
    assert!(counter(h2, "drop_too_big")? >= 1);
    assert_eq!(grown(&before, &counters(h1)?, &["decap"]), 0);

    // TCP finds the path MTU through the ICMP and completes.
    let report = iperf::exchange(&h1.container, &h2.container, &h2.container_ip, &["-t", "1"])?;
    let bytes = report["end"]["sum_received"]["bytes"]
        .as_f64()
        .context("received bytes")?;
    assert!(bytes >= 1024.0 * 1024.0, "{bytes} bytes arrived in 1 s");
    Ok(())
}

/// Frames the container sent, by the kernel's count.
fn tx_packets(ns: &str) -> Result<u64> {
    let v: Value = serde_json::from_str(&in_ns(ns, &["ip", "-j", "-s", "link", "show", "eth0"])?)?;
    v[0]["stats64"]["tx"]["packets"]
        .as_u64()
        .context("tx packets")
}

/// Every verdict of the port program, and of the underlay programs on VXLAN for this VTEP.
const PORT_VERDICTS: &[&str] = &[
    "encap",
    "local",
    "arp_reply",
    "flood",
    "drop_no_fdb",
    "drop_arp_miss",
    "drop_bum",
    "drop_malformed",
    "pass_not_port",
    "drop_no_route",
    "drop_encap_fail",
    "drop_not_ready",
    "drop_spoof",
    "icmp_too_big",
    "drop_too_big",
    "drop_vlan",
    "drop_link_local",
];
const VXLAN_VERDICTS: &[&str] = &[
    "decap",
    "pass_bad_vxlan",
    "pass_no_port",
    "drop_unknown_peer",
    "drop_ecn",
    "drop_decap_fail",
];

fn counters_add_up(stack: Stack) -> Result<()> {
    let bed = Testbed::new(&unique_tag("ca"), [stack, Stack::vtep()])?;
    let (h1, h2) = (bed.c1(), bed.c2());
    // No IPv6 chatter from the container while frames are counted.
    in_ns(
        &h1.container,
        &["sysctl", "-q", "-w", "net.ipv6.conf.all.disable_ipv6=1"],
    )?;
    assert!(reachable(&h1.container, &h2.container_ip)?);
    assert!(reachable(&h2.container, &h1.container_ip)?);
    assert!(reachable(&h2.ns, &h1.ip)?);

    let m1 = mac(&h1.mac);
    let (sent, before) = (tx_packets(&h1.container)?, counters(h1)?);
    assert!(ping(&h1.container, &h2.container_ip, 5)?);
    // ARP for an address nobody answers: broadcast with nowhere to flood, not `encap`.
    let _ = ping(&h1.container, "12.12.12.77", 1)?;
    // LLDP, which a bridge never forwards.
    let lldp = inject::junk_frame([0x01, 0x80, 0xc2, 0, 0, 0x0e], m1, b"lldp");
    inject::send_frames(&h1.container, "eth0", vec![lldp])?;
    // The host's program sees a frame a moment after the container counts it sent, and the
    // kernel may still retry the unanswered ARP: poll until both counts settle.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    let (after, sent) = loop {
        let now_sent = tx_packets(&h1.container)? - sent;
        let after = counters(h1)?;
        if grown(&before, &after, PORT_VERDICTS) == now_sent || std::time::Instant::now() > deadline
        {
            break (after, now_sent);
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    };
    assert!(sent >= 5, "{sent}");
    assert_eq!(
        grown(&before, &after, PORT_VERDICTS),
        sent,
        "port verdicts vs frames sent: {after}"
    );

    assert_eq!(grown(&before, &after, &["drop_link_local"]), 1);

    // Crafted VXLAN of every kind, from host 2's address to host 1.
    let m2 = mac(&h2.mac);
    let echo = |dst: [u8; 6], tos| {
        inject::icmp_echo(dst, m2, ip4(&h2.container_ip), ip4(&h1.container_ip), tos)
    };
    let vx = |vni: u32, frame: Vec<u8>| [&inject::vxlan_header(vni)[..], &frame].concat();
    let mut bad_flags = vx(42, echo(m1, 0));
    bad_flags[0] = 0x0c;
    let datagrams = vec![
        vx(42, echo(m1, 0)),
        vx(42, echo(m1, ECT_0)),
        vx(42, echo([2, 0x42, 0, 0, 0, 0x99], 0)),
        vx(42, echo([0xff; 6], 0)),
        vx(77, echo(m1, 0)),
        bad_flags,
    ];
    let n = datagrams.len() as u64;
    let before = counters(h1)?;
    inject::send_datagrams(&h2.ns, &h2.ip, &h1.ip, 0, datagrams)?;
    // A crafted CE frame around Not-ECT: dropped, one verdict too.
    inject::send_datagrams(&h2.ns, &h2.ip, &h1.ip, CE, vec![vx(42, echo(m1, 0))])?;
    // Replies to the echoes prove delivery finished before the counters are read.
    assert!(ping(&h2.container, &h1.container_ip, 1)?);
    let after = counters(h1)?;
    // The ping above adds its own request.
    assert_eq!(
        grown(&before, &after, VXLAN_VERDICTS),
        n + 1 + 1,
        "VXLAN verdicts vs frames injected: {after}"
    );
    assert_eq!(grown(&before, &after, &["drop_ecn"]), 1);
    assert_eq!(grown(&before, &after, &["pass_bad_vxlan"]), 1);
    assert_eq!(grown(&before, &after, &["pass_no_port"]), 2);
    Ok(())
}

#[test]
fn counters_add_up_with_tc_decap() -> Result<()> {
    counters_add_up(Stack::vtep())
}

#[test]
fn counters_add_up_with_native_xdp_decap() -> Result<()> {
    counters_add_up(Stack::vtep_with(&["--xdp-mode", "native"]))
}

#[test]
fn counters_add_up_with_generic_xdp_decap() -> Result<()> {
    counters_add_up(Stack::vtep_with(&["--xdp-mode", "generic"]))
}

/// TCP and UDP from the same machine through XDP decap on a veth underlay: XDP
/// decapsulates and hands the frame to TC, which keeps the skb's checksum state.
fn tcp_and_udp_cross(stack: Stack) -> Result<()> {
    let bed = Testbed::new(&unique_tag("xt"), [stack, Stack::vtep()])?;
    let (h1, h2) = (bed.c1(), bed.c2());
    assert!(reachable(&h2.container, &h1.container_ip)?);
    let before = counters(h1)?;
    let tcp = iperf::exchange(&h2.container, &h1.container, &h1.container_ip, &["-t", "2"])?;
    let bytes = tcp["end"]["sum_received"]["bytes"]
        .as_f64()
        .context("TCP bytes")?;
    assert!(
        bytes >= 10.0 * 1024.0 * 1024.0,
        "{bytes} TCP bytes arrived in 2 s"
    );
    let udp = iperf::exchange(
        &h2.container,
        &h1.container,
        &h1.container_ip,
        &["-u", "-b", "50M", "-t", "2"],
    )?;
    let sum = &udp["end"]["sum"];
    let (packets, lost) = (
        sum["packets"].as_f64().context("UDP packets")?,
        sum["lost_packets"].as_f64().context("UDP lost")?,
    );
    assert!(packets > 0.0 && lost < packets / 2.0, "UDP: {sum}");
    let after = counters(h1)?;
    assert!(grown(&before, &after, &["decap"]) > 1000, "{after}");
    Ok(())
}

#[test]
fn tcp_and_udp_cross_native_xdp_decap_on_veth() -> Result<()> {
    tcp_and_udp_cross(Stack::vtep_with(&["--xdp-mode", "native"]))
}

#[test]
fn tcp_and_udp_cross_generic_xdp_decap_on_veth() -> Result<()> {
    tcp_and_udp_cross(Stack::vtep_with(&["--xdp-mode", "generic"]))
}
