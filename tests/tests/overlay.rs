//! The reference scenario end to end on the real kernel: what a user sees with ping,
//! tcpdump, tshark and iperf3.

use anyhow::Result;
use vtep_testbed::{
    capture::Capture,
    cmd::{in_ns, run},
    iperf,
    netns::unique_tag,
    ping,
    scenario::links_of_kind,
    Stack, Testbed,
};

fn pings_both_ways(stacks: [Stack; 2]) -> Result<()> {
    let bed = Testbed::new(&unique_tag("p"), stacks)?;
    let (c1, c2) = (bed.c1(), bed.c2());
    assert!(
        ping(&c1.container, &c2.container_ip, 3)?,
        "12.12.12.2 -> 12.12.12.3 failed"
    );
    assert!(
        ping(&c2.container, &c1.container_ip, 3)?,
        "12.12.12.3 -> 12.12.12.2 failed"
    );
    Ok(())
}

#[test]
fn ping_both_ways_with_tc_decap_and_no_bridge_or_vxlan_device() -> Result<()> {
    let bed = Testbed::new(&unique_tag("p"), [Stack::vtep(), Stack::vtep()])?;
    let (c1, c2) = (bed.c1(), bed.c2());
    assert!(
        ping(&c1.container, &c2.container_ip, 3)?,
        "12.12.12.2 -> 12.12.12.3 failed"
    );
    assert!(
        ping(&c2.container, &c1.container_ip, 3)?,
        "12.12.12.3 -> 12.12.12.2 failed"
    );
    for ns in [&c1.ns, &c2.ns, &c1.container, &c2.container] {
        for kind in ["vxlan", "bridge"] {
            assert_eq!(
                links_of_kind(ns, kind)?.trim(),
                "",
                "a {kind} device exists in {ns}"
            );
        }
    }
    let stats = c1.vtep(&["-j", "stats"])?;
    let stats: serde_json::Value = serde_json::from_str(&stats)?;
    assert!(stats["encap"].as_u64().unwrap() >= 3, "{stats}");
    assert!(stats["decap"].as_u64().unwrap() >= 3, "{stats}");
    assert!(stats["arp_reply"].as_u64().unwrap() >= 1, "{stats}");
    Ok(())
}

#[test]
fn ping_both_ways_with_native_xdp_decap() -> Result<()> {
    let native = Stack::vtep_with(&["--xdp-mode", "native"]);
    pings_both_ways([native.clone(), native])
}

#[test]
fn ping_both_ways_with_generic_xdp_decap() -> Result<()> {
    let generic = Stack::vtep_with(&["--xdp-mode", "generic"]);
    pings_both_ways([generic.clone(), generic])
}

/// Internet checksum over an IPv4 header, written here independently of vtep's own.
fn header_checksum_ok(ip: &[u8]) -> bool {
    let mut sum: u32 = ip
        .chunks(2)
        .map(|w| u16::from_be_bytes([w[0], w[1]]) as u32)
        .sum();
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    sum == 0xffff
}

#[test]
fn capture_on_eth1_is_rfc7348_vxlan_carrying_the_exact_container_frame() -> Result<()> {
    let bed = Testbed::new(&unique_tag("cap"), [Stack::vtep(), Stack::vtep()])?;
    let (c1, c2) = (bed.c1(), bed.c2());
    let wire = Capture::start(&c1.ns, "eth1", "udp port 4789 and src host 192.168.104.2")?;
    let sent = Capture::start(&c1.container, "eth0", "icmp and src host 12.12.12.2")?;
    let dissected = Capture::start(&c1.ns, "eth1", "udp port 4789 and src host 192.168.104.2")?;
    assert!(ping(&c1.container, &c2.container_ip, 3)?);
    let tunnelled = wire.stop()?;
    let originals = sent.stop()?;
    assert_eq!(originals.len(), 3, "the container sent three echo requests");
    assert_eq!(tunnelled.len(), 3, "each one crossed eth1 once");
    for (frame, original) in tunnelled.iter().zip(&originals) {
        assert_eq!(&frame[12..14], &[0x08, 0x00], "outer IPv4");
        let ip = &frame[14..34];
        assert_eq!(ip[0], 0x45);
        assert_eq!(ip[9], 17, "UDP");
        assert!(header_checksum_ok(ip), "outer IPv4 checksum");
        assert_eq!(&ip[12..16], &[192, 168, 104, 2]);
        assert_eq!(&ip[16..20], &[192, 168, 104, 3]);
        let udp = &frame[34..42];
        assert_eq!(u16::from_be_bytes([udp[2], udp[3]]), 4789);
        assert_eq!(
            u16::from_be_bytes([udp[4], udp[5]]) as usize,
            frame.len() - 34
        );
        assert_eq!(&udp[6..8], &[0, 0], "UDP checksum 0");
        let vxlan = &frame[42..50];
        assert_eq!(vxlan[0], 0x08, "VXLAN flags");
        assert_eq!(&vxlan[4..8], &[0, 0, 42, 0], "VNI 42");
        assert_eq!(
            &frame[50..],
            original.as_slice(),
            "inner frame is what the container sent"
        );
    }
    let fields = dissected.stop_and_dissect(&[
        "-o",
        "ip.check_checksum:TRUE",
        "-T",
        "fields",
        "-e",
        "vxlan.flags",
        "-e",
        "vxlan.vni",
        "-e",
        "ip.checksum.status",
        "-e",
        "icmp.type",
    ])?;
    let lines: Vec<&str> = fields.lines().collect();
    assert_eq!(lines.len(), 3, "tshark: {fields}");
    for line in lines {
        let cols: Vec<&str> = line.split('\t').collect();
        assert_eq!(cols[0], "0x0800", "tshark VXLAN flags: {line}");
        assert_eq!(cols[1], "42", "tshark VNI: {line}");
        assert_eq!(
            cols[2].split(',').next(),
            Some("1"),
            "tshark outer IPv4 checksum good: {line}"
        );
        assert_eq!(
            cols[3], "8",
            "tshark sees the inner ICMP echo request: {line}"
        );
    }
    Ok(())
}

#[test]
fn tcp_through_the_overlay_keeps_gso() -> Result<()> {
    let bed = Testbed::new(&unique_tag("tcp"), [Stack::vtep(), Stack::vtep()])?;
    let (c1, c2) = (bed.c1(), bed.c2());
    let r = iperf::tcp(&c1.container, &c2.container, &c2.container_ip, 3, 1)?;
    eprintln!(
        "vtep TCP: {:.2} Gbit/s, {} retransmits ({:.3}%)",
        r.gbits,
        r.retransmits,
        100.0 * r.retransmit_ratio()
    );
    assert!(r.gbits > 1.0, "{:.2} Gbit/s", r.gbits);
    assert!(
        r.retransmit_ratio() < 0.01,
        "{} retransmits of {} bytes",
        r.retransmits,
        r.bytes
    );
    Ok(())
}

#[test]
fn interoperates_with_the_kernel_vxlan_and_bridge() -> Result<()> {
    let bed = Testbed::new(&unique_tag("k"), [Stack::vtep(), Stack::Kernel])?;
    let (c1, c2) = (bed.c1(), bed.c2());
    assert!(
        links_of_kind(&c2.ns, "vxlan")?.contains("vxlan1"),
        "host 2 runs the kernel's vxlan"
    );
    assert!(ping(&c1.container, &c2.container_ip, 3)?, "vtep -> kernel");
    assert!(ping(&c2.container, &c1.container_ip, 3)?, "kernel -> vtep");
    let there = iperf::tcp(&c1.container, &c2.container, &c2.container_ip, 2, 1)?;
    let back = iperf::tcp(&c2.container, &c1.container, &c1.container_ip, 2, 1)?;
    eprintln!(
        "vtep->kernel {:.2} Gbit/s, kernel->vtep {:.2} Gbit/s",
        there.gbits, back.gbits
    );
    assert!(there.gbits > 0.5 && back.gbits > 0.5, "{there:?} {back:?}");
    Ok(())
}

fn host_traffic_passes(stack: Stack) -> Result<()> {
    let bed = Testbed::new(&unique_tag("u"), [stack.clone(), stack])?;
    let (h1, h2) = (bed.c1(), bed.c2());
    assert!(ping(&h1.ns, &h2.ip, 3)?, "host ping over eth1");
    let r = iperf::tcp(&h1.ns, &h2.ns, &h2.ip, 1, 1)?;
    assert!(r.gbits > 0.1, "host TCP over eth1: {r:?}");
    // And the overlay still works beside it.
    assert!(ping(&h1.container, &h2.container_ip, 2)?);
    let stats: serde_json::Value = serde_json::from_str(&h2.vtep(&["-j", "stats"])?)?;
    assert!(stats["pass_not_vxlan"].as_u64().unwrap() > 0, "{stats}");
    Ok(())
}

#[test]
fn host_traffic_over_eth1_is_untouched_with_tc_decap() -> Result<()> {
    host_traffic_passes(Stack::vtep())
}

#[test]
fn host_traffic_over_eth1_is_untouched_with_xdp_decap() -> Result<()> {
    host_traffic_passes(Stack::vtep_with(&["--xdp-mode", "native"]))
}

#[test]
fn down_leaves_no_programs_links_pins_veths_or_namespaces() -> Result<()> {
    for mode in [&[][..], &["--xdp-mode", "native"][..]] {
        let bed = Testbed::new(&unique_tag("d"), [Stack::vtep_with(mode), Stack::vtep()])?;
        let h1 = bed.c1();
        let pin_dir = h1.pin_dir()?;
        // What vtep pinned: the attachments (bpf_links) and the programs behind them.
        let (mut links, mut progs) = (Vec::new(), Vec::new());
        for entry in std::fs::read_dir(&pin_dir)? {
            let path = entry?.path().to_string_lossy().into_owned();
            if path.contains("/link_") {
                let info: serde_json::Value = serde_json::from_str(&run(
                    "bpftool",
                    &["-j", "link", "show", "pinned", &path],
                )?)?;
                links.push(info["id"].as_u64().unwrap());
                progs.push(info["prog_id"].as_u64().unwrap());
            }
        }
        let expected = if mode.is_empty() { 2 } else { 3 };
        assert_eq!(
            links.len(),
            expected,
            "underlay TC (and XDP) and one port attached"
        );
        let xdp_attached =
            in_ns(&h1.ns, &["ip", "-d", "link", "show", "eth1"])?.contains("prog/xdp");
        assert_eq!(
            xdp_attached,
            !mode.is_empty(),
            "XDP on eth1 only in XDP mode"
        );

        h1.vtep(&["down"])?;

        // The kernel frees detached links and programs from a deferred work item.
        for (kind, id) in links
            .iter()
            .map(|id| ("link", id))
            .chain(progs.iter().map(|id| ("prog", id)))
        {
            let gone = poll(|| {
                Ok(
                    !vtep_testbed::cmd::output("bpftool", &[kind, "show", "id", &id.to_string()])?
                        .status
                        .success(),
                )
            })?;
            assert!(gone, "{kind} {id} left behind");
        }
        assert!(!in_ns(&h1.ns, &["ip", "-d", "link", "show", "eth1"])?.contains("prog/xdp"));
        assert!(!pin_dir.exists(), "{} left behind", pin_dir.display());
        let links = run("ip", &["-n", &h1.ns, "-o", "link", "show"])?;
        assert_eq!(links.lines().count(), 2, "only lo and eth1 remain: {links}");
        assert!(!run("ip", &["netns", "list"])?
            .lines()
            .any(|l| l.split_whitespace().next() == Some(&h1.container)));
        assert!(
            !bed.c2().vtep(&["port", "show"])?.is_empty(),
            "the other host is untouched"
        );
    }
    Ok(())
}

/// Polls `cond` for up to five seconds.
fn poll(mut cond: impl FnMut() -> Result<bool>) -> Result<bool> {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    while std::time::Instant::now() < deadline {
        if cond()? {
            return Ok(true);
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    Ok(false)
}
