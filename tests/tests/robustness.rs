//! Tenant isolation, anti-spoofing, hostile peers, bounded learning, and upgrades under
//! traffic without a lost reply.

use std::{
    sync::atomic::{AtomicBool, Ordering},
    time::{Duration, Instant},
};

use anyhow::{Context, Result};
use aya::maps::{HashMap, Map, MapData};
use serde_json::Value;
use vtep_common::{map_name, Addr, FdbEntry, MacVni, FDB_PERMANENT};
use vtep_testbed::{
    capture::Capture,
    cmd::{in_ns, output, run},
    inject,
    netns::unique_tag,
    ping,
    scenario::ping_counts,
    Stack, Testbed,
};

#[test]
fn a_port_sends_only_as_itself_unless_allowed_to_spoof() -> Result<()> {
    let tag = unique_tag("sp");
    let bed = Testbed::new(&tag, [Stack::vtep(), Stack::vtep()])?;
    let (c1, c2) = (bed.c1(), bed.c2());
    assert!(ping(&c1.container, &c2.container_ip, 1)?);

    let before = c1.counter("drop_spoof")?;
    in_ns(
        &c1.container,
        &["ip", "addr", "add", "12.12.12.50/24", "dev", "eth0"],
    )?;
    let out = output(
        "ip",
        &[
            "netns",
            "exec",
            &c1.container,
            "ping",
            "-c",
            "2",
            "-W",
            "1",
            "-I",
            "12.12.12.50",
            &c2.container_ip,
        ],
    )?;
    assert!(!out.status.success(), "a spoofed source IP got an answer");
    in_ns(
        &c1.container,
        &["ip", "addr", "del", "12.12.12.50/24", "dev", "eth0"],
    )?;
    in_ns(
        &c1.container,
        &["ip", "link", "set", "eth0", "address", "02:42:c0:a8:00:99"],
    )?;
    assert!(
        !ping(&c1.container, &c2.container_ip, 2)?,
        "a spoofed source MAC got an answer"
    );
    assert!(
        c1.counter("drop_spoof")? >= before + 4,
        "spoofed frames are counted"
    );

    // The same MAC change on a port allowed to spoof goes through (switched locally here).
    let free = format!("{tag}free");
    c1.vtep(&[
        "port",
        "add",
        &free,
        "--mac",
        "02:42:c0:a8:00:60",
        "--addr",
        "12.12.12.60/24",
        "--vni",
        "42",
        "--allow-spoofing",
    ])?;
    in_ns(
        &c1.container,
        &["ip", "link", "set", "eth0", "address", &c1.mac],
    )?;
    in_ns(
        &free,
        &["ip", "link", "set", "eth0", "address", "02:42:c0:a8:00:61"],
    )?;
    assert!(
        ping(&free, &c1.container_ip, 2)?,
        "an --allow-spoofing port may use another MAC"
    );
    Ok(())
}

#[test]
fn strict_peers_drop_vxlan_from_unknown_vteps() -> Result<()> {
    let bed = Testbed::new(
        &unique_tag("st"),
        [Stack::vtep_with(&["--strict-peers"]), Stack::vtep()],
    )?;
    let (h1, h2) = (bed.c1(), bed.c2());
    assert!(
        ping(&h1.container, &h2.container_ip, 2)?,
        "the known peer still gets through"
    );
    run(
        "ip",
        &[
            "-n",
            &h2.ns,
            "addr",
            "add",
            "192.168.104.9/24",
            "dev",
            "eth1",
        ],
    )?;
    let mac = [2, 0x42, 0xc0, 0xa8, 0, 2];
    let watch = Capture::start(&h1.container, "eth0", "ether proto 0x88b5")?;
    let (before, delivered) = (h1.counter("drop_unknown_peer")?, h1.counter("decap")?);
    let frames = |n: usize| {
        (0..n)
            .map(|_| inject::junk_frame(mac, [2, 0, 0, 0, 0, 9], b"strict-peers"))
            .collect()
    };
    inject::send(&h2.ns, "192.168.104.9", &h1.ip, 42, frames(5))?;
    inject::send(&h2.ns, &h2.ip, &h1.ip, 42, frames(3))?;
    let deadline = Instant::now() + Duration::from_secs(5);
    while (h1.counter("drop_unknown_peer")? < before + 5 || h1.counter("decap")? < delivered + 3)
        && Instant::now() < deadline
    {
        std::thread::sleep(Duration::from_millis(20));
    }
    assert_eq!(
        h1.counter("drop_unknown_peer")?,
        before + 5,
        "VXLAN from 192.168.104.9 dropped and counted"
    );
    assert_eq!(
        watch.stop()?.len(),
        3,
        "only the known peer's frames reached the container"
    );
    Ok(())
}

#[test]
fn a_flood_of_fake_macs_stays_within_max_learned() -> Result<()> {
    let bed = Testbed::new(
        &unique_tag("ml"),
        [Stack::vtep_with(&["--max-learned", "1000"]), Stack::vtep()],
    )?;
    let (h1, h2) = (bed.c1(), bed.c2());
    let frames: Vec<Vec<u8>> = (0..10_000u32)
        .map(|i| {
            let b = i.to_be_bytes();
            inject::junk_frame(
                [2, 0x42, 0xc0, 0xa8, 0, 2],
                [0x06, 0x66, b[0], b[1], b[2], b[3]],
                b"mac flood",
            )
        })
        .collect();
    inject::send(&h2.ns, &h2.ip, &h1.ip, 42, frames)?;
    let deadline = Instant::now() + Duration::from_secs(5);
    while h1.counter("learned")? < 1000 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    let fdb: Value = serde_json::from_str(&h1.vtep(&["-j", "fdb", "show"])?)?;
    let entries = fdb.as_array().context("fdb")?;
    let learned = entries.iter().filter(|e| e["origin"] == "learned").count();
    assert!(
        learned > 0 && learned <= 1000,
        "{learned} learned entries with --max-learned 1000"
    );
    assert!(h1.counter("learned")? >= 1000, "the flood was seen");
    let permanent = entries
        .iter()
        .find(|e| e["mac"] == h2.mac.as_str())
        .context("permanent entry gone")?;
    assert_eq!(permanent["state"], "permanent");
    assert!(
        ping(&h1.container, &h2.container_ip, 3)?,
        "the real containers still talk"
    );
    assert!(ping(&h2.container, &h1.container_ip, 3)?);
    Ok(())
}

/// 1000 add/del per second of FDB entries nobody uses, straight into the pinned map, until
/// `stop`.
fn churn(pin_dir: std::path::PathBuf, stop: &AtomicBool) -> Result<u64> {
    let mut fdb: HashMap<MapData, MacVni, FdbEntry> = HashMap::try_from(Map::from_map_data(
        MapData::from_pin(pin_dir.join(map_name::FDB))?,
    )?)?;
    let value = FdbEntry {
        remote_ip: Addr::v4([192, 168, 104, 77]),
        port: 4789,
        flags: FDB_PERMANENT,
        _pad: 0,
        seen_ns: 0,
    };
    let (start, mut ops) = (Instant::now(), 0u64);
    while !stop.load(Ordering::Relaxed) {
        let i = ops as u32;
        let key = MacVni::new(
            [0x0a, 0xcc, (i >> 16) as u8, (i >> 8) as u8, i as u8, 1],
            42,
        );
        fdb.insert(key, value, 0)?;
        fdb.remove(&key)?;
        ops += 2;
        // Pace to 1000 operations a second.
        let due = start + Duration::from_micros(ops * 1000);
        if let Some(wait) = due.checked_duration_since(Instant::now()) {
            std::thread::sleep(wait);
        }
    }
    Ok(ops)
}

#[test]
fn upgrades_and_fdb_churn_lose_no_ping_reply() -> Result<()> {
    let bed = Testbed::new(&unique_tag("up"), [Stack::vtep(), Stack::vtep()])?;
    let (h1, h2) = (bed.c1(), bed.c2());
    assert!(ping(&h1.container, &h2.container_ip, 1)?);
    let encap_before = h1.counter("encap")?;
    let stop = AtomicBool::new(false);
    let (pings, ops, upgrades) = std::thread::scope(|s| -> Result<_> {
        let pinger = s.spawn(|| ping_counts(&h1.container, &h2.container_ip, "0.001", 5000));
        let churner = s.spawn(|| churn(h1.pin_dir()?, &stop));
        let mut upgrades = 0;
        for _ in 0..10 {
            h1.vtep(&["up", "--dev", "eth1", "--local", &h1.ip])?;
            h2.vtep(&["up", "--dev", "eth1", "--local", &h2.ip])?;
            upgrades += 1;
        }
        let pings = pinger.join().expect("pinger")?;
        stop.store(true, Ordering::Relaxed);
        Ok((pings, churner.join().expect("churner")?, upgrades))
    })?;
    eprintln!(
        "{} pings, {} replies, {ops} FDB operations, {upgrades} upgrades per host",
        pings.0, pings.1
    );
    assert_eq!(pings.0, 5000);
    assert_eq!(pings.1, pings.0, "replies lost during upgrades");
    assert!(ops >= 2000, "FDB churn ran ({ops} operations)");
    assert!(
        h1.counter("encap")? >= encap_before + 5000,
        "counters survive upgrades"
    );
    assert!(
        h1.vtep(&["fdb", "show"])?.contains(&h2.mac),
        "tables survive upgrades"
    );
    Ok(())
}

/// `vtep up` and `vtep down` in several namespaces at once: each namespace's state is its
/// own, and one's teardown never pulls the ground from under another's set-up.
#[test]
fn up_and_down_in_parallel_namespaces_do_not_interfere() -> Result<()> {
    let tag = unique_tag("par");
    let hosts: Vec<vtep_testbed::Netns> = (0..4)
        .map(|i| vtep_testbed::Netns::add(&format!("{tag}n{i}")))
        .collect::<Result<_>>()?;
    for ns in &hosts {
        run(
            "ip",
            &[
                "-n", &ns.name, "link", "add", "eth1", "type", "veth", "peer", "name", "eth9",
            ],
        )?;
        run(
            "ip",
            &[
                "-n",
                &ns.name,
                "addr",
                "add",
                "192.168.104.2/24",
                "dev",
                "eth1",
            ],
        )?;
        run("ip", &["-n", &ns.name, "link", "set", "eth1", "up"])?;
    }
    std::thread::scope(|s| -> Result<()> {
        let workers: Vec<_> = hosts
            .iter()
            .map(|ns| {
                s.spawn(move || -> Result<()> {
                    for _ in 0..25 {
                        vtep_testbed::vtep(&[
                            "-n",
                            &ns.name,
                            "up",
                            "--dev",
                            "eth1",
                            "--local",
                            "192.168.104.2",
                        ])?;
                        vtep_testbed::vtep(&["-n", &ns.name, "down"])?;
                    }
                    Ok(())
                })
            })
            .collect();
        for w in workers {
            w.join().expect("worker")?;
        }
        Ok(())
    })
}
