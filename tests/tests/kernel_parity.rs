//! What the kernel's `vxlan ... learning` + bridge does, done by vtep: learning and ageing,
//! flood lists, many VNIs and hosts, local switching, miss events, tunnel knobs.

use std::{
    collections::HashMap,
    time::{Duration, Instant},
};

use anyhow::{bail, Context, Result};
use serde_json::Value;
use vtep_testbed::{
    capture::Capture,
    cmd::{in_ns, in_ns_line},
    iperf,
    monitor::Monitor,
    netns::unique_tag,
    ping,
    scenario::flooding_with_kernel,
    Host, Stack, Testbed,
};

fn fdb_entry(host: &Host, mac: &str) -> Result<Option<Value>> {
    let fdb: Value = serde_json::from_str(&host.vtep(&["-j", "fdb", "show"])?)?;
    Ok(fdb
        .as_array()
        .context("fdb show -j")?
        .iter()
        .find(|e| e["mac"] == mac && e["dst"].is_string())
        .cloned())
}

/// Both hosts with their reference container, and only what `statics` asks for.
fn two_hosts(tag: &str, stacks: Vec<Stack>) -> Result<Testbed> {
    let bed = Testbed::underlay(tag, stacks)?;
    for h in &bed.hosts {
        h.port(&h.container, &h.mac, &h.container_ip, 42)?;
    }
    Ok(bed)
}

#[test]
fn learning_fills_the_fdb_and_deleting_the_learned_entry_breaks_the_way_back() -> Result<()> {
    let bed = two_hosts(&unique_tag("l"), vec![Stack::vtep(), Stack::vtep()])?;
    let (h1, h2) = (&bed.hosts[0], &bed.hosts[1]);
    // Only host 1 knows where 02:42:c0:a8:00:03 is; both answer ARP for the other side.
    h1.vtep(&["fdb", "add", &h2.mac, "dst", &h2.ip, "vni", "42"])?;
    h1.vtep(&[
        "neigh",
        "add",
        &h2.container_ip,
        "lladdr",
        &h2.mac,
        "vni",
        "42",
    ])?;
    h2.vtep(&[
        "neigh",
        "add",
        &h1.container_ip,
        "lladdr",
        &h1.mac,
        "vni",
        "42",
    ])?;

    assert!(
        ping(&h1.container, &h2.container_ip, 2)?,
        "12.12.12.2 -> 12.12.12.3"
    );
    let learned = fdb_entry(h2, &h1.mac)?.context("host 2 learned nothing")?;
    assert_eq!(learned["dst"], "192.168.104.2");
    assert_eq!(learned["origin"], "learned");
    assert_eq!(learned["port"], 4789);
    let text = h2.vtep(&["fdb", "show"])?;
    assert!(
        text.contains("02:42:c0:a8:00:02 dst 192.168.104.2 vni 42 port 4789 learned age"),
        "{text}"
    );

    h2.vtep(&["fdb", "del", &h1.mac, "vni", "42"])?;
    assert!(
        !ping(&h2.container, &h1.container_ip, 2)?,
        "12.12.12.3 -> 12.12.12.2 must fail without the entry"
    );
    h2.vtep(&["fdb", "replace", &h1.mac, "dst", &h1.ip, "vni", "42"])?;
    assert!(
        ping(&h2.container, &h1.container_ip, 2)?,
        "fdb replace restores the way back"
    );
    assert_eq!(
        fdb_entry(h2, &h1.mac)?.context("entry")?["state"],
        "permanent"
    );
    // Learning never overwrites a permanent entry.
    assert!(ping(&h1.container, &h2.container_ip, 1)?);
    assert_eq!(
        fdb_entry(h2, &h1.mac)?.context("entry")?["state"],
        "permanent"
    );
    Ok(())
}

#[test]
fn learned_entries_age_out() -> Result<()> {
    let bed = two_hosts(
        &unique_tag("age"),
        vec![Stack::vtep(), Stack::vtep_with(&["--ageing", "2"])],
    )?;
    let (h1, h2) = (&bed.hosts[0], &bed.hosts[1]);
    h1.vtep(&["fdb", "add", &h2.mac, "dst", &h2.ip, "vni", "42"])?;
    h1.vtep(&[
        "neigh",
        "add",
        &h2.container_ip,
        "lladdr",
        &h2.mac,
        "vni",
        "42",
    ])?;
    h2.vtep(&[
        "neigh",
        "add",
        &h1.container_ip,
        "lladdr",
        &h1.mac,
        "vni",
        "42",
    ])?;
    assert!(ping(&h1.container, &h2.container_ip, 1)?);
    let seen = Instant::now();
    assert!(fdb_entry(h2, &h1.mac)?.is_some(), "learned");
    let deadline = seen + Duration::from_secs(10);
    while fdb_entry(h2, &h1.mac)?.is_some() {
        if Instant::now() > deadline {
            bail!("the learned entry never aged out");
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let lived = seen.elapsed().as_secs_f64();
    assert!(
        lived > 1.0 && lived < 4.0,
        "aged out after {lived:.1} s with --ageing 2"
    );
    Ok(())
}

#[test]
fn flood_lists_alone_connect_three_hosts_through_learning() -> Result<()> {
    let bed = Testbed::underlay(
        &unique_tag("f"),
        vec![Stack::vtep(), Stack::vtep(), Stack::vtep()],
    )?;
    for h in &bed.hosts {
        h.port(&h.container, &h.mac, &h.container_ip, 42)?;
        for peer in bed.hosts.iter().filter(|p| p.ns != h.ns) {
            h.vtep(&[
                "fdb",
                "append",
                "00:00:00:00:00:00",
                "dst",
                &peer.ip,
                "vni",
                "42",
            ])?;
        }
    }
    for a in &bed.hosts {
        for b in bed.hosts.iter().filter(|b| b.ns != a.ns) {
            assert!(
                ping(&a.container, &b.container_ip, 1)?,
                "{} -> {}",
                a.container_ip,
                b.container_ip
            );
        }
    }
    for h in &bed.hosts {
        for peer in bed.hosts.iter().filter(|p| p.ns != h.ns) {
            let e = fdb_entry(h, &peer.mac)?
                .with_context(|| format!("{} did not learn {}", h.ns, peer.mac))?;
            assert_eq!(
                (e["dst"].as_str(), e["origin"].as_str()),
                (Some(peer.ip.as_str()), Some("learned"))
            );
        }
        let flood: Vec<String> = h
            .vtep(&["fdb", "show"])?
            .lines()
            .filter(|l| l.starts_with("00:00:00:00:00:00"))
            .map(str::to_string)
            .collect();
        assert_eq!(flood.len(), 2, "{flood:?}");
    }
    // A flood-list VTEP can be removed again.
    let (h1, h3) = (&bed.hosts[0], &bed.hosts[2]);
    h1.vtep(&[
        "fdb",
        "del",
        "00:00:00:00:00:00",
        "dst",
        &h3.ip,
        "vni",
        "42",
    ])?;
    assert!(!h1
        .vtep(&["fdb", "show"])?
        .contains(&format!("00:00:00:00:00:00 dst {} ", h3.ip)));
    Ok(())
}

#[test]
fn two_vnis_with_the_same_addresses_never_see_each_other() -> Result<()> {
    let tag = unique_tag("v");
    let bed = Testbed::underlay(&tag, vec![Stack::vtep(), Stack::vtep()])?;
    let (h1, h2) = (&bed.hosts[0], &bed.hosts[1]);
    let pair = |name: &str| (format!("{tag}{name}1"), format!("{tag}{name}2"));
    for (name, vni) in [("a", "42"), ("b", "43")] {
        let (c1, c2) = pair(name);
        h1.port(&c1, &h1.mac, &h1.container_ip, vni.parse()?)?;
        h2.port(&c2, &h2.mac, &h2.container_ip, vni.parse()?)?;
        h1.vtep(&["fdb", "add", &h2.mac, "dst", &h2.ip, "vni", vni])?;
        h2.vtep(&["fdb", "add", &h1.mac, "dst", &h1.ip, "vni", vni])?;
        h1.vtep(&[
            "neigh",
            "add",
            &h2.container_ip,
            "lladdr",
            &h2.mac,
            "vni",
            vni,
        ])?;
        h2.vtep(&[
            "neigh",
            "add",
            &h1.container_ip,
            "lladdr",
            &h1.mac,
            "vni",
            vni,
        ])?;
    }
    for (talk, quiet) in [("a", "b"), ("b", "a")] {
        let (t1, t2) = pair(talk);
        let (q1, q2) = pair(quiet);
        let watch1 = Capture::start(&q1, "eth0", "ip or arp")?;
        let watch2 = Capture::start(&q2, "eth0", "ip or arp")?;
        assert!(ping(&t1, &h2.container_ip, 3)?, "VNI of {talk}: there");
        assert!(ping(&t2, &h1.container_ip, 3)?, "VNI of {talk}: back");
        assert_eq!(
            watch1.stop()?.len(),
            0,
            "frames of {talk} reached {quiet}'s container on host 1"
        );
        assert_eq!(
            watch2.stop()?.len(),
            0,
            "frames of {talk} reached {quiet}'s container on host 2"
        );
    }
    Ok(())
}

#[test]
fn two_containers_on_one_host_talk_without_touching_eth1() -> Result<()> {
    let tag = unique_tag("sw");
    let bed = Testbed::underlay(&tag, vec![Stack::vtep(), Stack::vtep()])?;
    let h1 = &bed.hosts[0];
    let (x, y) = (format!("{tag}x"), format!("{tag}y"));
    h1.port(&x, "02:42:c0:a8:00:02", "12.12.12.2", 42)?;
    h1.port(&y, "02:42:c0:a8:00:04", "12.12.12.4", 42)?;
    let wire = Capture::start(&h1.ns, "eth1", "udp port 4789")?;
    assert!(ping(&x, "12.12.12.4", 3)?);
    assert!(ping(&y, "12.12.12.2", 3)?);
    assert_eq!(wire.stop()?.len(), 0, "local traffic crossed eth1");
    let stats: Value = serde_json::from_str(&h1.vtep(&["-j", "stats"])?)?;
    assert!(stats["local"].as_u64().unwrap() >= 6, "{stats}");
    assert!(
        stats["flood_local"].as_u64().unwrap() >= 1,
        "ARP was flooded locally: {stats}"
    );
    Ok(())
}

#[test]
fn floods_and_learns_with_a_kernel_vxlan_peer() -> Result<()> {
    let bed = flooding_with_kernel(&unique_tag("kf"))?;
    let (h1, h2) = (&bed.hosts[0], &bed.hosts[1]);
    assert!(ping(&h1.container, &h2.container_ip, 2)?, "vtep -> kernel");
    assert!(ping(&h2.container, &h1.container_ip, 2)?, "kernel -> vtep");
    assert_eq!(
        fdb_entry(h1, &h2.mac)?.context("vtep learned the kernel's container")?["origin"],
        "learned"
    );
    let kernel_fdb = in_ns(&h2.ns, &["bridge", "fdb", "show", "dev", "vxlan1"])?;
    assert!(
        kernel_fdb.contains(&format!("{} dst {}", h1.mac, h1.ip)),
        "the kernel learned vtep's container: {kernel_fdb}"
    );
    Ok(())
}

#[test]
fn monitor_reports_fdb_and_neighbour_misses() -> Result<()> {
    let bed = Testbed::underlay(&unique_tag("m"), vec![Stack::vtep(), Stack::vtep()])?;
    let h1 = &bed.hosts[0];
    h1.port(&h1.container, &h1.mac, &h1.container_ip, 42)?;
    let monitor = Monitor::start(&h1.ns)?;

    // An ARP nobody answers, then a frame to a MAC nobody owns.
    in_ns(&h1.container, &["ping", "-c", "1", "-W", "1", "12.12.12.9"]).ok();
    in_ns_line(
        &h1.container,
        "ip neigh replace 12.12.12.8 lladdr 02:42:00:00:00:08 dev eth0",
    )?;
    in_ns(&h1.container, &["ping", "-c", "1", "-W", "1", "12.12.12.8"]).ok();

    let (mut neigh, mut fdb) = (None, None);
    while neigh.is_none() || fdb.is_none() {
        let event = monitor
            .next(Duration::from_secs(10))?
            .context("monitor reported too little")?;
        match event["miss"].as_str() {
            Some("neigh") => neigh = Some(event),
            Some("fdb") => fdb = Some(event),
            _ => bail!("unexpected event {event}"),
        }
    }
    assert!(
        monitor.stop(nix::sys::signal::Signal::SIGINT)?,
        "monitor exits cleanly on Ctrl-C"
    );
    let (neigh, fdb) = (neigh.unwrap(), fdb.unwrap());
    assert_eq!(
        (neigh["dst"].as_str(), neigh["vni"].as_u64()),
        (Some("12.12.12.9"), Some(42))
    );
    assert_eq!(neigh["port"], h1.container.as_str());
    assert_eq!(
        (fdb["lladdr"].as_str(), fdb["vni"].as_u64()),
        (Some("02:42:00:00:00:08"), Some(42))
    );
    Ok(())
}

#[test]
fn source_ports_ttl_and_tos_follow_the_tunnel_knobs() -> Result<()> {
    let knobs = Stack::vtep_with(&[
        "--srcport",
        "40000",
        "49999",
        "--ttl",
        "20",
        "--tos",
        "inherit",
    ]);
    let bed = Testbed::new(&unique_tag("kn"), [knobs, Stack::vtep()])?;
    let (c1, c2) = (bed.c1(), bed.c2());
    let wire = Capture::start(
        &c1.ns,
        "eth1",
        "udp dst port 4789 and src host 192.168.104.2",
    )?;
    iperf::exchange(
        &c1.container,
        &c2.container,
        &c2.container_ip,
        &["-t", "1", "-b", "20M"],
    )?;
    iperf::exchange(
        &c1.container,
        &c2.container,
        &c2.container_ip,
        &["-t", "1", "-u", "-b", "1M"],
    )?;
    in_ns(
        &c1.container,
        &[
            "ping",
            "-c",
            "2",
            "-i",
            "0.2",
            "-Q",
            "0x28",
            &c2.container_ip,
        ],
    )?;
    let frames = wire.stop()?;

    // Outer UDP source ports per inner protocol, counted.
    let mut ports: HashMap<u8, HashMap<u16, usize>> = HashMap::new();
    for f in &frames {
        let (outer_tos, ttl) = (f[15], f[22]);
        let sport = u16::from_be_bytes([f[34], f[35]]);
        assert!(
            (40000..=49999).contains(&sport),
            "source port {sport} outside --srcport"
        );
        assert_eq!(ttl, 20, "outer TTL");
        if u16::from_be_bytes([f[62], f[63]]) != 0x0800 {
            continue;
        }
        let (inner_tos, proto) = (f[65], f[73]);
        assert_eq!(outer_tos, inner_tos, "tos inherit (inner proto {proto})");
        *ports.entry(proto).or_default().entry(sport).or_default() += 1;
    }
    let busiest = |proto: u8| {
        ports
            .get(&proto)
            .and_then(|p| p.iter().max_by_key(|(_, n)| **n))
            .map(|(port, _)| *port)
    };
    let (tcp, udp) = (
        busiest(6).context("no TCP seen")?,
        busiest(17).context("no UDP seen")?,
    );
    assert_ne!(
        tcp, udp,
        "the TCP and the UDP flow share outer source port {tcp}"
    );
    let icmp = frames.iter().filter(|f| f.len() > 73 && f[73] == 1).count();
    assert!(icmp >= 2, "pings with TOS 0x28 seen");
    assert!(
        frames
            .iter()
            .any(|f| f.len() > 73 && f[73] == 1 && f[15] == 0x28),
        "outer TOS 0x28 from the inner ping"
    );
    Ok(())
}
