//! IPv6 inside the tunnel, over the IPv4 underlay: containers with IPv6 addresses, neighbour
//! discovery answered from vtep's neighbour table (the vxlan device's `proxy`), IPv6
//! anti-spoofing, router and multicast listener messages flooded and counted.

use std::time::Duration;

use anyhow::{Context, Result};
use serde_json::Value;
use vtep_testbed::{
    capture::Capture,
    cmd::{in_ns, output, vtep_output},
    inject::send_frames,
    iperf,
    ipv6::*,
    monitor::Monitor,
    netns::unique_tag,
    wait, Host, Stack, Testbed,
};

fn stats(h: &Host) -> Result<Value> {
    Ok(serde_json::from_str(&h.vtep(&["-j", "stats"])?)?)
}

fn grown(before: &Value, after: &Value, name: &str) -> u64 {
    after[name].as_u64().unwrap_or(0) - before[name].as_u64().unwrap_or(0)
}

fn ping6(ns: &str, dst: &str) -> Result<bool> {
    let out = output(
        "ip",
        &[
            "netns", "exec", ns, "ping", "-6", "-c", "2", "-i", "0.2", "-W", "2", dst,
        ],
    )?;
    Ok(out.status.success())
}

/// The ICMPv6 type of a captured IPv6 frame (no extension headers).
fn icmp6_type(f: &[u8]) -> Option<u8> {
    (f.len() > 54 && f[12..14] == [0x86, 0xdd] && f[20] == ICMPV6).then(|| f[54])
}

#[test]
fn ipv6_ping_both_ways_is_resolved_by_the_data_path() -> Result<()> {
    let bed = Testbed::dual_stack(&unique_tag("v6p"), [Stack::vtep(), Stack::vtep()])?;
    let (h1, h2) = (bed.c1(), bed.c2());
    let at_c1 = Capture::start(&h1.container, "eth0", "icmp6")?;
    let at_c2 = Capture::start(&h2.container, "eth0", "icmp6")?;
    let before = stats(h1)?;
    assert!(ping6(&h1.container, &h2.container_ip6())?, "c1 -> c2");
    assert!(ping6(&h2.container, &h1.container_ip6())?, "c2 -> c1");
    assert!(grown(&before, &stats(h1)?, "nd_reply") >= 1);
    let (c1, c2) = (at_c1.stop()?, at_c2.stop()?);
    // c2 never saw c1's solicitation for it: h1's data path answered it.
    let target = ip6(&h2.container_ip6());
    let solicited_c2 = c2
        .iter()
        .filter(|f| icmp6_type(f) == Some(135) && f[62..78] == target)
        .count();
    assert_eq!(solicited_c2, 0, "an NS for c2 reached c2");
    let na = c1
        .iter()
        .find(|f| icmp6_type(f) == Some(136) && f[62..78] == target)
        .context("c1 got no NA for c2")?;
    assert_eq!(
        &na[6..12],
        &mac(&h2.mac),
        "NA from the neighbour entry's MAC"
    );
    assert_eq!(&na[..6], &mac(&h1.mac));
    assert_eq!(na[21], 255, "hop limit");
    assert_eq!(na[58] & 0x60, 0x60, "solicited and override");
    assert_eq!(&na[78..86], &lladdr_option(2, mac(&h2.mac))[..]);
    // The container's kernel took it: the neighbour is reachable by the entry's MAC.
    let neigh = in_ns(
        &h1.container,
        &["ip", "-6", "neigh", "show", &h2.container_ip6()],
    )?;
    assert!(neigh.contains(&h2.mac), "{neigh}");
    Ok(())
}

#[test]
fn link_local_ping_works_with_neighbour_entries() -> Result<()> {
    let bed = Testbed::dual_stack(&unique_tag("v6l"), [Stack::vtep(), Stack::vtep()])?;
    let (h1, h2) = (bed.c1(), bed.c2());
    for (h, p) in [(h1, h2), (h2, h1)] {
        h.vtep(&[
            "neigh",
            "add",
            &p.container_ll(),
            "lladdr",
            &p.mac,
            "vni",
            "42",
        ])?;
    }
    assert!(ping6(
        &h1.container,
        &format!("{}%eth0", h2.container_ll())
    )?);
    assert!(ping6(
        &h2.container,
        &format!("{}%eth0", h1.container_ll())
    )?);
    Ok(())
}

#[test]
fn solicitation_for_an_unknown_target_is_flooded_or_dropped_and_reported() -> Result<()> {
    let bed = Testbed::dual_stack(&unique_tag("v6m"), [Stack::vtep(), Stack::vtep()])?;
    let (h1, h2) = (bed.c1(), bed.c2());
    let monitor = Monitor::start(&h1.ns)?;
    let before = stats(h1)?;
    assert!(!ping6(&h1.container, "fd00:12::9")?);
    assert!(grown(&before, &stats(h1)?, "drop_nd_miss") >= 1);
    let event = monitor
        .next(Duration::from_secs(10))?
        .context("no miss reported")?;
    assert_eq!(event["miss"], "neigh", "{event}");
    assert_eq!(event["dst"], "fd00:12::9", "{event}");
    assert_eq!(event["vni"], 42, "{event}");
    drop(monitor);

    h1.vtep(&[
        "fdb",
        "append",
        "00:00:00:00:00:00",
        "dst",
        &h2.ip,
        "vni",
        "42",
    ])?;
    let at_c2 = Capture::start(&h2.container, "eth0", "icmp6")?;
    let before = stats(h1)?;
    assert!(!ping6(&h1.container, "fd00:12::8")?);
    let frames = at_c2.stop()?;
    let target = ip6("fd00:12::8");
    assert!(
        frames
            .iter()
            .any(|f| icmp6_type(f) == Some(135) && f[62..78] == target),
        "the NS did not reach the other host's container"
    );
    let after = stats(h1)?;
    assert!(grown(&before, &after, "flood") >= 1);
    assert_eq!(grown(&before, &after, "drop_nd_miss"), 0);
    Ok(())
}

/// Frames a port may not send, and whether each is refused by anti-spoofing.
fn spoofs(h: &Host) -> Vec<(&'static str, Vec<u8>)> {
    let me = mac(&h.mac);
    let own = ip6(&h.container_ip6());
    let other = ip6("fd00:12::77");
    let (group, group_mac) = solicited_node(ip6("fd00:12::3"));
    let peer_mac = mac("02:42:c0:a8:00:03");
    vec![
        (
            "echo from an address not the port's",
            icmp6(peer_mac, me, other, ip6("fd00:12::3"), 64, &echo_msg(1)),
        ),
        (
            "NA for a target not the port's",
            icmp6(
                group_mac,
                me,
                own,
                ALL_NODES.0,
                255,
                &na_msg(other, &lladdr_option(2, me)),
            ),
        ),
        (
            "NA with another MAC in its option",
            icmp6(
                ALL_NODES.1,
                me,
                own,
                ALL_NODES.0,
                255,
                &na_msg(own, &lladdr_option(2, peer_mac)),
            ),
        ),
        (
            "NS with another MAC in its option",
            icmp6(
                group_mac,
                me,
                own,
                group,
                255,
                &ns_msg(ip6("fd00:12::3"), &lladdr_option(1, peer_mac)),
            ),
        ),
        (
            "echo from :: (not DAD)",
            icmp6(peer_mac, me, [0; 16], ip6("fd00:12::3"), 64, &echo_msg(2)),
        ),
        (
            "NA behind a hop-by-hop header, target not the port's",
            packet(
                ALL_NODES.1,
                me,
                own,
                ALL_NODES.0,
                255,
                HOP_BY_HOP,
                &router_alert(ICMPV6),
                ICMPV6,
                &na_msg(other, &[]),
            ),
        ),
    ]
}

#[test]
fn spoofed_ipv6_is_dropped_and_counted_unless_spoofing_is_allowed() -> Result<()> {
    let bed = Testbed::dual_stack(&unique_tag("v6s"), [Stack::vtep(), Stack::vtep()])?;
    let (h1, h2) = (bed.c1(), bed.c2());
    // A flood list, so that what gets through is seen to go on.
    h1.vtep(&[
        "fdb",
        "append",
        "00:00:00:00:00:00",
        "dst",
        &h2.ip,
        "vni",
        "42",
    ])?;
    for (what, frame) in spoofs(h1) {
        let before = stats(h1)?;
        send_frames(&h1.container, "eth0", vec![frame])?;
        let counted = wait::until("counters", Duration::from_secs(5), || {
            Ok(grown(&before, &stats(h1)?, "drop_spoof") == 1)
        });
        assert!(counted.is_ok(), "{what}: not counted as drop_spoof");
    }
    // DAD is allowed from ::: an NS for the port's own address and an MLD report.
    let me = mac(&h1.mac);
    let own = ip6(&h1.container_ip6());
    let (group, group_mac) = solicited_node(own);
    let dad = [
        icmp6(group_mac, me, [0; 16], group, 255, &ns_msg(own, &[])),
        packet(
            MLDV2_ROUTERS.1,
            me,
            [0; 16],
            MLDV2_ROUTERS.0,
            1,
            HOP_BY_HOP,
            &router_alert(ICMPV6),
            ICMPV6,
            &mld2_report(group),
        ),
    ];
    let before = stats(h1)?;
    send_frames(&h1.container, "eth0", dad.to_vec())?;
    wait::until("counters", Duration::from_secs(5), || {
        Ok(grown(&before, &stats(h1)?, "flood") >= 2)
    })?;
    assert_eq!(grown(&before, &stats(h1)?, "drop_spoof"), 0);

    // The same frames from a port that may spoof go on.
    h1.vtep(&["port", "del", &h1.container])?;
    h1.vtep(&[
        "port",
        "add",
        &h1.container,
        "--mac",
        &h1.mac,
        "--addr",
        &format!("{}/64", h1.container_ip6()),
        "--vni",
        "42",
        "--allow-spoofing",
    ])?;
    let before = stats(h1)?;
    let frames: Vec<Vec<u8>> = spoofs(h1).into_iter().map(|(_, f)| f).collect();
    let n = frames.len() as u64;
    send_frames(&h1.container, "eth0", frames)?;
    wait::until("counters", Duration::from_secs(5), || {
        let after = stats(h1)?;
        Ok(grown(&before, &after, "flood") + grown(&before, &after, "encap") >= n)
    })?;
    assert_eq!(grown(&before, &stats(h1)?, "drop_spoof"), 0);
    Ok(())
}

#[test]
fn router_solicitations_and_mld_are_flooded_and_counted() -> Result<()> {
    let bed = Testbed::dual_stack(&unique_tag("v6r"), [Stack::vtep(), Stack::vtep()])?;
    let (h1, h2) = (bed.c1(), bed.c2());
    let me = mac(&h1.mac);
    let ll = ip6(&h1.container_ll());
    let rs = icmp6(
        ALL_ROUTERS.1,
        me,
        ll,
        ALL_ROUTERS.0,
        255,
        &rs_msg(&lladdr_option(1, me)),
    );
    let mld = packet(
        MLDV2_ROUTERS.1,
        me,
        ll,
        MLDV2_ROUTERS.0,
        1,
        HOP_BY_HOP,
        &router_alert(ICMPV6),
        ICMPV6,
        &mld2_report(solicited_node(ll).0),
    );
    // No flood list: nowhere to go, dropped as any multicast, and still counted.
    let before = stats(h1)?;
    send_frames(&h1.container, "eth0", vec![rs.clone(), mld.clone()])?;
    wait::until("counters", Duration::from_secs(5), || {
        Ok(grown(&before, &stats(h1)?, "drop_bum") >= 2)
    })?;
    let after = stats(h1)?;
    assert!(grown(&before, &after, "router_solicit") >= 1);
    assert!(grown(&before, &after, "mld") >= 1);

    // With one, both reach the other host's container.
    h1.vtep(&[
        "fdb",
        "append",
        "00:00:00:00:00:00",
        "dst",
        &h2.ip,
        "vni",
        "42",
    ])?;
    let at_c2 = Capture::start(&h2.container, "eth0", "icmp6 or ip6 proto 0")?;
    let before = stats(h1)?;
    send_frames(&h1.container, "eth0", vec![rs, mld])?;
    wait::until("counters", Duration::from_secs(5), || {
        Ok(grown(&before, &stats(h1)?, "flood_remote") >= 2)
    })?;
    let frames = at_c2.wait_for(2, Duration::from_secs(5))?;
    let from_c1 = |f: &&Vec<u8>| f.len() > 38 && f[22..38] == ll;
    assert!(frames
        .iter()
        .filter(from_c1)
        .any(|f| icmp6_type(f) == Some(133)));
    assert!(frames
        .iter()
        .filter(from_c1)
        .any(|f| f[20] == HOP_BY_HOP && f.get(62) == Some(&143)));
    let after = stats(h1)?;
    assert!(grown(&before, &after, "router_solicit") >= 1);
    assert!(grown(&before, &after, "mld") >= 1);
    Ok(())
}

#[test]
fn dual_stack_tcp_over_ipv6_keeps_gso() -> Result<()> {
    let bed = Testbed::dual_stack(&unique_tag("v6t"), [Stack::vtep(), Stack::vtep()])?;
    let (c1, c2) = (bed.c1(), bed.c2());
    assert!(ping6(&c1.container, &c2.container_ip6())?);
    let r = iperf::tcp(&c1.container, &c2.container, &c2.container_ip6(), 3, 1)?;
    eprintln!(
        "vtep TCP over inner IPv6: {:.2} Gbit/s, {} retransmits ({:.3}%)",
        r.gbits,
        r.retransmits,
        100.0 * r.retransmit_ratio()
    );
    assert!(r.gbits > 1.0, "{:.2} Gbit/s", r.gbits);
    assert!(r.retransmit_ratio() < 0.01, "{} retransmits", r.retransmits);
    Ok(())
}

fn strs(v: &[String]) -> Vec<&str> {
    v.iter().map(String::as_str).collect()
}

fn error_of(h: &Host, args: &[&str]) -> Result<String> {
    let mut all = vec!["-n", h.ns.as_str()];
    all.extend_from_slice(args);
    let out = vtep_output(&all)?;
    assert!(!out.status.success(), "{args:?} succeeded");
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    assert_eq!(err.trim().lines().count(), 1, "{err}");
    assert!(
        err.starts_with("vtep: ") || err.starts_with("error: "),
        "{err}"
    );
    Ok(err)
}

#[test]
fn port_add_takes_addresses_of_both_families_and_refuses_bad_ones() -> Result<()> {
    let tag = unique_tag("v6c");
    let bed = Testbed::underlay(&tag, vec![Stack::vtep(), Stack::vtep()])?;
    let h1 = bed.c1();
    let c = format!("{tag}x");
    bed.track(&c);
    let add = |addrs: &[&str]| -> Vec<String> {
        let mut args: Vec<String> = [
            "port",
            "add",
            &c,
            "--mac",
            "02:42:c0:a8:00:02",
            "--vni",
            "42",
        ]
        .map(String::from)
        .to_vec();
        for a in addrs {
            args.extend(["--addr".to_string(), a.to_string()]);
        }
        args
    };

    let many: Vec<String> = (1..=8).map(|i| format!("fd00:12::{i}/64")).collect();
    let many: Vec<&str> = many.iter().map(String::as_str).collect();
    for (addrs, says) in [
        (vec!["fd00:12::2/129"], "prefix length"),
        (vec!["::ffff:12.12.12.2/120"], "IPv4-mapped"),
        (vec!["ff02::1/64"], "unicast"),
        (vec!["224.0.0.5/24"], "unicast"),
        (vec!["12.12.12.2/33"], "prefix length"),
        (vec!["12.12.12.2/24", "12.12.12.2/24"], "twice"),
        (many, "too many addresses"),
    ] {
        let err = error_of(h1, &strs(&add(&addrs)))?;
        assert!(err.contains(says), "{addrs:?}: {err}");
        assert_eq!(h1.vtep(&["-j", "port", "show"])?.trim(), "[]", "{addrs:?}");
        assert!(!std::path::Path::new(&format!("/run/netns/{c}")).exists());
    }
    // No address at all: clap refuses.
    error_of(h1, &strs(&add(&[])))?;

    h1.vtep(&strs(&add(&[
        "12.12.12.2/24",
        "fd00:12::2/64",
        "fe80::2/64",
    ])))?;
    let text = h1.vtep(&["port", "show"])?;
    assert!(
        text.contains("lladdr 02:42:c0:a8:00:02 inet 12.12.12.2/24 inet6 fd00:12::2/64 inet6 fe80::2/64 vni 42"),
        "{text}"
    );
    let rows: Value = serde_json::from_str(&h1.vtep(&["-j", "port", "show"])?)?;
    assert_eq!(rows[0]["addr"], "12.12.12.2/24");
    let info = rows[0]["addr_info"].as_array().context("addr_info")?;
    let listed: Vec<(String, String, u64)> = info
        .iter()
        .map(|a| {
            (
                a["family"].as_str().unwrap_or("").to_string(),
                a["local"].as_str().unwrap_or("").to_string(),
                a["prefixlen"].as_u64().unwrap_or(0),
            )
        })
        .collect();
    assert_eq!(
        listed,
        [
            ("inet".into(), "12.12.12.2".into(), 24),
            ("inet6".into(), "fd00:12::2".into(), 64),
            ("inet6".into(), "fe80::2".into(), 64),
        ]
    );
    // The container has exactly these, none tentative, and no address the kernel made.
    let addrs = in_ns(&c, &["ip", "-o", "addr", "show", "dev", "eth0"])?;
    for a in ["12.12.12.2/24", "fd00:12::2/64", "fe80::2/64"] {
        assert!(addrs.contains(a), "{addrs}");
    }
    assert!(
        !addrs.contains("tentative") && !addrs.contains("fe80::42:"),
        "{addrs}"
    );
    h1.vtep(&["port", "del", &c])?;

    // Without a link-local address, the one derived from the MAC is added and recorded.
    h1.vtep(&strs(&add(&["fd00:12::2/64"])))?;
    let text = h1.vtep(&["port", "show"])?;
    assert!(
        text.contains("inet6 fd00:12::2/64 inet6 fe80::42:c0ff:fea8:2/64"),
        "{text}"
    );
    let addrs = in_ns(&c, &["ip", "-o", "addr", "show", "dev", "eth0"])?;
    assert!(
        addrs.contains("fe80::42:c0ff:fea8:2/64") && !addrs.contains("tentative"),
        "{addrs}"
    );
    Ok(())
}

#[test]
fn neigh_add_show_del_with_ipv6() -> Result<()> {
    let bed = Testbed::underlay(&unique_tag("v6n"), vec![Stack::vtep(), Stack::vtep()])?;
    let h1 = bed.c1();
    h1.vtep(&[
        "neigh",
        "add",
        "fd00:12::3",
        "lladdr",
        "02:42:c0:a8:00:03",
        "vni",
        "42",
    ])?;
    let text = h1.vtep(&["neigh", "show"])?;
    assert!(
        text.contains("fd00:12::3 lladdr 02:42:c0:a8:00:03"),
        "{text}"
    );
    let rows: Value = serde_json::from_str(&h1.vtep(&["-j", "neigh", "show"])?)?;
    assert_eq!(rows[0]["dst"], "fd00:12::3");
    assert_eq!(rows[0]["lladdr"], "02:42:c0:a8:00:03");
    let err = error_of(
        h1,
        &[
            "neigh",
            "add",
            "fd00:12::3",
            "lladdr",
            "02:42:c0:a8:00:03",
            "vni",
            "42",
        ],
    )?;
    assert!(err.contains("exists"), "{err}");
    error_of(
        h1,
        &[
            "neigh",
            "add",
            "::ffff:12.12.12.3",
            "lladdr",
            "02:42:c0:a8:00:03",
            "vni",
            "42",
        ],
    )?;
    h1.vtep(&["neigh", "del", "fd00:12::3", "vni", "42"])?;
    assert_eq!(h1.vtep(&["-j", "neigh", "show"])?.trim(), "[]");
    Ok(())
}
