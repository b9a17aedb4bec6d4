//! Scale (issue 12): VNI lists far past 16 entries, tables of a million entries, and miss
//! events that cost nothing while nobody reads them.

use std::{collections::BTreeSet, time::Duration};

use anyhow::{ensure, Context, Result};
use nix::sys::signal::Signal;
use serde_json::Value;
use vtep_testbed::{
    capture::Capture,
    cmd::{in_ns, in_ns_line, vtep_output},
    monitor::Monitor,
    netns::unique_tag,
    ping, Host, Stack, Testbed,
};

fn json(h: &Host, args: &[&str]) -> Result<Value> {
    let mut full = vec!["-j"];
    full.extend_from_slice(args);
    Ok(serde_json::from_str(&h.vtep(&full)?)?)
}

/// The one-line error of `vtep -n HOST args`, which must fail.
fn error_of(h: &Host, args: &[&str]) -> Result<String> {
    let mut full = vec!["-n", h.ns.as_str()];
    full.extend_from_slice(args);
    let out = vtep_output(&full)?;
    ensure!(!out.status.success(), "`vtep {}` succeeded", full.join(" "));
    let err = String::from_utf8(out.stderr)?;
    ensure!(err.lines().count() == 1, "not one line: {err:?}");
    Ok(err.trim().to_string())
}

/// How many VTEPs `vtep fdb show` lists on the flood list of `vni`.
fn flood_len(h: &Host, vni: u32) -> Result<usize> {
    let rows = json(h, &["fdb", "show", "vni", &vni.to_string()])?;
    let rows = rows.as_array().context("fdb show is not an array")?;
    Ok(rows
        .iter()
        .filter(|r| r["mac"] == "00:00:00:00:00:00")
        .count())
}

/// The addresses of a flood list of `n` VTEPs, routed through h2 (10.99.0.0/16).
fn far_vteps(n: u32) -> impl Iterator<Item = String> {
    (0..n).map(|i| format!("10.99.{}.{}", i / 250, 1 + i % 250))
}

fn flood_batch(n: u32, vni: u32) -> String {
    far_vteps(n)
        .map(|ip| format!("fdb append 00:00:00:00:00:00 dst {ip} vni {vni}\n"))
        .collect()
}

/// One broadcast frame from a container leaves as exactly one well-formed VXLAN frame per
/// VTEP of a 1,024-entry flood list; the 4,097th VTEP is refused in one line.
#[test]
fn a_broadcast_reaches_every_vtep_of_a_flood_list_of_1024() -> Result<()> {
    let bed = Testbed::underlay(&unique_tag("sf"), vec![Stack::vtep(), Stack::vtep()])?;
    let (h1, h2) = (bed.c1(), bed.c2());
    h1.port(&h1.container, &h1.mac, &h1.container_ip, 42)?;
    h1.route_through("10.99.0.0/16", h2)?;
    h1.batch(&flood_batch(1024, 42))?;
    ensure!(flood_len(h1, 42)? == 1024);

    let capture = Capture::start(&h1.ns, "eth1", "udp dst port 4789 and dst net 10.99.0.0/16")?;
    in_ns(
        &h1.container,
        &["ping", "-b", "-c", "1", "-W", "1", "12.12.12.255"],
    )
    .ok();
    let frames = capture.wait_for(1024, Duration::from_secs(10))?;
    let (mut dsts, mut broadcasts) = (BTreeSet::new(), 0);
    for f in &frames {
        // Outer Ethernet, IPv4, UDP, VXLAN, then the inner frame.
        ensure!(f.len() >= 14 + 20 + 8 + 8 + 14 + 20, "short frame {f:?}");
        ensure!(f[14] == 0x45 && f[23] == 17, "not IPv4/UDP: {f:?}");
        ensure!(
            f[42] == 0x08 && f[46..49] == [0, 0, 42],
            "bad VXLAN header {f:?}"
        );
        // The container's own IPv6 multicast (router solicitations, MLD) floods too.
        if f[50..56] == [0xff; 6] && f[62..64] == [8, 0] && f[64 + 9] == 1 {
            broadcasts += 1;
            dsts.insert([f[30], f[31], f[32], f[33]]);
        }
    }
    ensure!(
        broadcasts == 1024 && dsts.len() == 1024,
        "{broadcasts} copies of the broadcast to {} VTEPs",
        dsts.len()
    );

    h1.batch(&flood_batch(4096, 43))?;
    let err = error_of(
        h1,
        &[
            "fdb",
            "append",
            "00:00:00:00:00:00",
            "dst",
            "10.98.0.1",
            "vni",
            "43",
        ],
    )?;
    ensure!(err.contains("flood list") && err.contains("4096"), "{err}");
    ensure!(flood_len(h1, 43)? == 4096);
    Ok(())
}

/// 64 containers in one VNI on one host: ARP by flooding, then unicast, between every
/// pair; one broadcast reaches all 63 others.
#[test]
fn sixty_four_ports_in_one_vni_all_reach_each_other() -> Result<()> {
    let tag = unique_tag("sp");
    let bed = Testbed::underlay(&tag, vec![Stack::vtep(), Stack::vtep()])?;
    let h1 = bed.c1();
    let ip = |i: u32| format!("12.12.13.{}", i + 1);
    let names: Vec<String> = (0..64).map(|i| format!("{tag}p{i}")).collect();
    for (i, name) in names.iter().enumerate() {
        bed.track(name);
        let mac = format!("02:42:0d:00:00:{:02x}", i + 1);
        h1.port(name, &mac, &ip(i as u32), 7)?;
    }
    let all: Vec<String> = (0..64).map(ip).collect();
    // The kernel's ARP table is one table for every namespace, 1,024 entries at most
    // (gc_thresh3), and 64 x 63 fresh entries would overflow it: four senders at a time,
    // every container's table flushed between rounds.
    for (round, senders) in names.chunks(4).enumerate() {
        std::thread::scope(|s| -> Result<()> {
            let workers: Vec<_> = senders
                .iter()
                .enumerate()
                .map(|(k, name)| {
                    let own = ip((round * 4 + k) as u32);
                    let script = all
                        .iter()
                        .filter(|o| **o != own)
                        .map(|o| format!("ping -c 1 -W 2 -q {o} >/dev/null || echo {o}"))
                        .collect::<Vec<_>>()
                        .join("; ");
                    s.spawn(move || -> Result<()> {
                        let failed = in_ns(name, &["sh", "-c", &script])?;
                        ensure!(failed.trim().is_empty(), "{name} cannot reach {failed}");
                        Ok(())
                    })
                })
                .collect();
            for w in workers {
                w.join().expect("ping worker")?;
            }
            Ok(())
        })?;
        for name in &names {
            in_ns(name, &["ip", "neigh", "flush", "all"])?;
        }
    }

    let before = h1.counter("flood_local")?;
    // Every receiver answers at once; knowing the sender already keeps 63 ARP requests
    // for it out of the way of the answers.
    for name in &names[1..] {
        in_ns(
            name,
            &["sysctl", "-qw", "net.ipv4.icmp_echo_ignore_broadcasts=0"],
        )?;
        in_ns(
            name,
            &[
                "ip",
                "neigh",
                "replace",
                &ip(0),
                "lladdr",
                "02:42:0d:00:00:01",
                "dev",
                "eth0",
            ],
        )?;
    }
    // ping counts the first reply to each request and prints the rest as duplicates: the
    // second request, 1.5 s later, ends it once the first one's replies are all in.
    let out = in_ns(
        &names[0],
        &[
            "ping",
            "-b",
            "-c",
            "2",
            "-i",
            "1.5",
            "-w",
            "4",
            "12.12.13.255",
        ],
    )
    .unwrap_or_default();
    let answered: BTreeSet<&str> = out
        .lines()
        .filter(|l| l.contains("icmp_seq=1 "))
        .filter_map(|l| l.split("bytes from ").nth(1))
        .filter_map(|l| l.split(':').next())
        .collect();
    ensure!(
        answered.len() == 63,
        "{} of 63 answered:\n{out}",
        answered.len()
    );
    ensure!(h1.counter("flood_local")? >= before + 63);
    Ok(())
}

/// No miss event is written while nobody reads; one reader gets each (VNI, MAC) once a
/// second however many frames miss; a second reader is refused; a reader that stops, or
/// is killed and followed by `vtep up`, turns the events off again.
#[test]
fn miss_events_only_while_one_monitor_reads() -> Result<()> {
    let bed = Testbed::underlay(&unique_tag("sm"), vec![Stack::vtep(), Stack::vtep()])?;
    let h1 = bed.c1();
    h1.port(&h1.container, &h1.mac, &h1.container_ip, 42)?;
    // Unicast to a MAC nobody owns, with nowhere to flood: an FDB miss per frame.
    in_ns_line(
        &h1.container,
        "ip neigh replace 12.12.12.8 lladdr 02:42:00:00:00:08 dev eth0",
    )?;
    let misses = |count: &str| -> Result<()> {
        in_ns(
            &h1.container,
            &[
                "ping",
                "-c",
                count,
                "-i",
                "0.05",
                "-W",
                "1",
                "-q",
                "12.12.12.8",
            ],
        )
        .ok();
        Ok(())
    };
    let dropped = h1.counter("drop_no_fdb")?;
    misses("5")?;
    ensure!(h1.counter("drop_no_fdb")? >= dropped + 5);
    ensure!(
        h1.counter("miss_sent")? == 0,
        "events written with no reader"
    );

    let monitor = Monitor::start(&h1.ns)?;
    let err = error_of(h1, &["monitor"])?;
    ensure!(err.contains("another `vtep monitor`"), "{err}");
    misses("10")?;
    let first = monitor.next(Duration::from_secs(5))?.context("no event")?;
    ensure!(
        first["lladdr"] == "02:42:00:00:00:08" && first["vni"] == 42,
        "{first}"
    );
    // The other nine frames came within the second: held back, not reported.
    ensure!(monitor.next(Duration::from_millis(300))?.is_none());
    ensure!(h1.counter("miss_sent")? == 1 && h1.counter("miss_limited")? >= 9);
    ensure!(
        monitor.stop(Signal::SIGTERM)?,
        "monitor exits cleanly on SIGTERM"
    );
    misses("3")?;
    ensure!(
        h1.counter("miss_sent")? == 1,
        "events written after the reader left"
    );

    let killed = Monitor::start(&h1.ns)?;
    killed.stop(Signal::SIGKILL)?;
    h1.vtep(&["up"])?;
    std::thread::sleep(Duration::from_millis(1100)); // past the rate limit's second
    misses("3")?;
    ensure!(
        h1.counter("miss_sent")? == 1,
        "a killed reader left events on"
    );
    Ok(())
}

/// A million permanent FDB entries and a million neighbours: loaded by batch, listed,
/// used (ping with ARP answered from the table), and removed by `down`.
#[test]
fn a_million_fdb_and_neighbour_entries() -> Result<()> {
    let bed = Testbed::new(&unique_tag("sb"), [Stack::vtep(), Stack::vtep()])?;
    let (h1, h2) = (bed.c1(), bed.c2());
    let mut lines = String::with_capacity(100 << 20);
    for i in 0..1_000_000u32 {
        let [_, a, b, c] = i.to_be_bytes();
        lines.push_str(&format!(
            "fdb add 02:30:00:{a:02x}:{b:02x}:{c:02x} dst 192.168.104.3 vni 9\n\
             neigh add 10.{a}.{b}.{c} lladdr 02:30:00:{a:02x}:{b:02x}:{c:02x} vni 9\n"
        ));
    }
    h1.batch(&lines)?;
    let show = json(h1, &["show"])?;
    ensure!(
        show["used"]["fdb"].as_u64() >= Some(1_000_000)
            && show["used"]["neigh"].as_u64() >= Some(1_000_000),
        "{show}"
    );
    let fdb = h1.vtep(&["fdb", "show", "vni", "9"])?;
    ensure!(
        fdb.lines().count() == 1_000_000,
        "fdb show lists {}",
        fdb.lines().count()
    );
    // The reference scenario still works, ARP answered from the big table.
    ensure!(ping(&h1.container, &h2.container_ip, 3)?);
    let pin_dir = h1.pin_dir()?;
    h1.vtep(&["down"])?;
    ensure!(!pin_dir.exists(), "{} left", pin_dir.display());
    Ok(())
}

/// 1,024 ports in one VNI (the bridge's limit) are taken, the 17th included; the 1,025th
/// is refused in one line naming the list and its size, and leaves nothing behind.
#[test]
fn a_vni_takes_1024_ports_and_refuses_the_1025th() -> Result<()> {
    let tag = unique_tag("sq");
    let bed = Testbed::underlay(&tag, vec![Stack::vtep(), Stack::vtep()])?;
    let h1 = bed.c1();
    let port = |i: u32| -> Result<std::process::Output> {
        let name = format!("{tag}q{i}");
        bed.track(&name);
        let mac = format!("02:42:0e:00:{:02x}:{:02x}", i >> 8, i & 255);
        let addr = format!("12.12.{}.{}/16", 16 + i / 250, 1 + i % 250);
        vtep_output(&[
            "-n", &h1.ns, "port", "add", &name, "--mac", &mac, "--addr", &addr, "--vni", "5",
        ])
    };
    for i in 0..1024 {
        let out = port(i)?;
        ensure!(
            out.status.success(),
            "port {}: {}",
            i + 1,
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let out = port(1024)?;
    let err = String::from_utf8(out.stderr)?;
    ensure!(!out.status.success() && err.lines().count() == 1, "{err:?}");
    ensure!(
        err.contains("VNI port list") && err.contains("1024"),
        "{err}"
    );
    let ports = json(h1, &["port", "show"])?;
    ensure!(
        ports.as_array().map(Vec::len) == Some(1024),
        "ports after the refusal"
    );
    let left = std::path::Path::new("/run/netns").join(format!("{tag}q1024"));
    ensure!(!left.exists(), "the refused port's namespace was left");
    Ok(())
}
