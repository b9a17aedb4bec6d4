//! `vtep agent` on a real etcd: three hosts on a switched underlay learn each other's
//! containers with no `fdb add` or `neigh add` typed, follow port changes, moves, dead
//! hosts and etcd outages, and never touch entries made by hand.

use std::{collections::BTreeSet, time::Duration};

use anyhow::{Context, Result};
use nix::{
    fcntl::{Flock, FlockArg},
    sys::signal::Signal,
};
use serde_json::Value;
use vtep_testbed::{
    agent::{scrape, Agent},
    etcd::Etcd,
    netns::unique_tag,
    ping,
    pki::Pki,
    scenario::{ping_counts, switch_name},
    wait, Stack, Testbed,
};

/// Lease TTL of the agents under test: short, so expiry is quick to see.
const TTL: u64 = 3;
const ETCD_IP: &str = "192.168.104.1";

/// One container: (host index, namespace, MAC, IP, VNI).
struct Container {
    host: usize,
    ns: String,
    mac: String,
    ip: String,
    vni: u32,
}

/// Three hosts, etcd on the switch, one agent per host; fields drop in order (agents,
/// etcd, hosts).
struct Bed {
    agents: Vec<Option<Agent>>,
    etcd: Etcd,
    pki: Option<Pki>,
    bed: Testbed,
    containers: Vec<Container>,
    tag: String,
}

impl Bed {
    /// Hosts 1-3 with VNI 42 containers on every host and VNI 43 containers on hosts 1
    /// and 2 (with the same addresses as VNI 42's, as tenants do), agents not started.
    fn new(kind: &str) -> Result<Self> {
        Self::with(kind, None)
    }

    /// With `pki`: etcd over TLS with client certificates, each agent with its node's.
    fn with(kind: &str, pki: Option<Pki>) -> Result<Self> {
        let tag = unique_tag(kind);
        let bed = Testbed::underlay(&tag, vec![Stack::vtep(), Stack::vtep(), Stack::vtep()])?;
        let switch = switch_name(&tag);
        let addr = format!("{ETCD_IP}/24");
        vtep_testbed::run("ip", &["-n", &switch, "addr", "add", &addr, "dev", "br0"])?;
        let etcd = match &pki {
            Some(pki) => Etcd::start_tls(&switch, ETCD_IP, pki)?,
            None => Etcd::start(&switch, ETCD_IP)?,
        };
        let mut b = Bed {
            agents: Vec::new(),
            etcd,
            pki,
            bed,
            containers: Vec::new(),
            tag,
        };
        for h in 0..3 {
            b.add(h, &format!("a{h}"), 42, 2 + h as u8)?;
        }
        for h in 0..2 {
            b.add(h, &format!("b{h}"), 43, 2 + h as u8)?;
        }
        b.agents = (0..3).map(|_| None).collect();
        Ok(b)
    }

    fn url(&self) -> String {
        self.etcd.url.clone()
    }

    /// `vtep port add` of a container named `name` on host `h`: MAC 02:VNI:00:00:00:N.
    fn add(&mut self, h: usize, name: &str, vni: u32, n: u8) -> Result<()> {
        let c = Container {
            host: h,
            ns: format!("{}{name}", self.tag),
            mac: format!("02:{:02x}:00:00:00:{n:02x}", vni),
            ip: format!("12.12.12.{n}"),
            vni,
        };
        self.bed.track(&c.ns);
        self.bed.hosts[h].port(&c.ns, &c.mac, &c.ip, vni)?;
        self.containers.push(c);
        Ok(())
    }

    fn del(&mut self, ns_suffix: &str) -> Result<Container> {
        let i = self
            .containers
            .iter()
            .position(|c| c.ns.ends_with(ns_suffix))
            .context("no such container")?;
        let c = self.containers.remove(i);
        self.bed.hosts[c.host].vtep(&["port", "del", &c.ns])?;
        Ok(c)
    }

    fn start(&mut self, h: usize) -> Result<()> {
        let mut extra = vec!["--ttl".to_string(), TTL.to_string()];
        if let Some(pki) = &self.pki {
            extra.extend(pki.client_args(&node(h), "etcd-"));
        }
        let extra: Vec<&str> = extra.iter().map(String::as_str).collect();
        let agent = Agent::start(&self.bed.hosts[h].ns, &self.url(), &node(h), &extra)?;
        self.agents[h] = Some(agent);
        Ok(())
    }

    fn start_all(&mut self) -> Result<()> {
        (0..3).try_for_each(|h| self.start(h))
    }

    /// `new`, every agent started, and every host converged.
    fn running(kind: &str) -> Result<Self> {
        let mut b = Self::new(kind)?;
        b.start_all()?;
        b.converged(Duration::from_secs(5))?;
        Ok(b)
    }

    /// SIGTERM to host `h`'s agent, which exits 0.
    fn stop(&mut self, h: usize) -> Result<()> {
        self.agent(h).signal(Signal::SIGTERM)?;
        let status = self.agent(h).wait(Duration::from_secs(5))?;
        assert!(status.success(), "{status}: {}", self.agent(h).log());
        Ok(())
    }

    fn agent(&mut self, h: usize) -> &mut Agent {
        self.agents[h].as_mut().expect("agent running")
    }

    /// `vtep -n HOST -j TABLE show` rows as (KEY, vni, VALUE, origin).
    fn rows(
        &self,
        h: usize,
        table: &str,
        [key, value]: [&str; 2],
    ) -> Result<BTreeSet<(String, u64, String, String)>> {
        let out = self.bed.hosts[h].vtep(&["-j", table, "show"])?;
        let rows: Vec<Value> = serde_json::from_str(&out)?;
        let text = |r: &Value, k: &str| r[k].as_str().unwrap_or_default().to_string();
        Ok(rows
            .iter()
            .map(|r| {
                let vni = r["vni"].as_u64().unwrap_or(0);
                (text(r, key), vni, text(r, value), text(r, "origin"))
            })
            .collect())
    }

    /// `vtep -n HOST -j fdb show` as (mac, vni, dst, origin), flood-list slots included.
    fn fdb(&self, h: usize) -> Result<BTreeSet<(String, u64, String, String)>> {
        self.rows(h, "fdb", ["mac", "dst"])
    }

    /// `vtep -n HOST -j neigh show` as (ip, vni, lladdr, origin).
    fn neigh(&self, h: usize) -> Result<BTreeSet<(String, u64, String, String)>> {
        self.rows(h, "neigh", ["dst", "lladdr"])
    }

    /// What host `h`'s control-plane FDB entries should be: every other host's containers,
    /// and a flood-list slot per (other host, VNI) with containers.
    fn expected_fdb(&self, h: usize) -> BTreeSet<(String, u64, String, String)> {
        let mut want = BTreeSet::new();
        for c in self.containers.iter().filter(|c| c.host != h) {
            let dst = self.bed.hosts[c.host].ip.clone();
            want.insert((
                c.mac.clone(),
                c.vni as u64,
                dst.clone(),
                "extern_learn".into(),
            ));
            want.insert((
                "00:00:00:00:00:00".into(),
                c.vni as u64,
                dst,
                "extern_learn".into(),
            ));
        }
        want
    }

    fn extern_fdb(&self, h: usize) -> Result<BTreeSet<(String, u64, String, String)>> {
        Ok(self
            .fdb(h)?
            .into_iter()
            .filter(|r| r.3 == "extern_learn")
            .collect())
    }

    /// Waits until every host's control-plane FDB is exactly what the containers say;
    /// returns how long that took.
    fn converged(&self, timeout: Duration) -> Result<Duration> {
        wait::until("every host's FDB follows etcd", timeout, || {
            for h in 0..3 {
                if self.extern_fdb(h)? != self.expected_fdb(h) {
                    return Ok(false);
                }
            }
            Ok(true)
        })
        .with_context(|| {
            (0..3)
                .map(|h| {
                    format!(
                        "host {h}: have {:?}\n        want {:?}",
                        self.extern_fdb(h).unwrap_or_default(),
                        self.expected_fdb(h)
                    )
                })
                .collect::<Vec<_>>()
                .join("\n")
        })
    }

    /// Every pair of containers in one VNI pings; pairs across VNIs do not.
    fn pings(&self) -> Result<()> {
        for a in &self.containers {
            for b in &self.containers {
                if a.ns == b.ns || a.ip == b.ip {
                    continue;
                }
                // Same address in the other VNI: the reply must come from a's own VNI.
                let reachable = self
                    .containers
                    .iter()
                    .any(|c| c.vni == a.vni && c.ip == b.ip);
                let what = format!("{} -> {} (vni {} -> {})", a.ns, b.ip, a.vni, b.vni);
                if reachable {
                    // A few tries: on this shared machine the kernel's ARP table (shared
                    // by every namespace) overflows now and then, losing a first frame.
                    wait::until(&what, Duration::from_secs(5), || ping(&a.ns, &b.ip, 1))?;
                } else {
                    assert!(!ping(&a.ns, &b.ip, 1)?, "{what} answered");
                }
            }
        }
        Ok(())
    }
}

fn node(h: usize) -> String {
    format!("node{}", h + 1)
}

#[test]
fn three_hosts_converge_and_every_pair_in_a_vni_pings_with_no_hand_typed_entries() -> Result<()> {
    let mut b = Bed::new("ag1")?;
    b.start_all()?;
    let took = b.converged(Duration::from_secs(5))?;
    eprintln!("converged in {took:?}");
    for h in 0..3 {
        let neigh = b.neigh(h)?;
        for c in b.containers.iter().filter(|c| c.host != h) {
            let row = (
                c.ip.clone(),
                c.vni as u64,
                c.mac.clone(),
                "extern_learn".to_string(),
            );
            assert!(neigh.contains(&row), "host {h} lacks {row:?}: {neigh:?}");
        }
    }
    b.pings()?;
    // The records are in etcd as documented: one VTEP, flood and endpoint record each.
    let keys = b.etcd.keys("/vtep/v1/nodes/node1/")?;
    let mac = &b.containers[0].mac;
    for k in [
        "/vtep/v1/nodes/node1/vtep",
        "/vtep/v1/nodes/node1/flood/42",
        "/vtep/v1/nodes/node1/flood/43",
    ] {
        assert!(keys.contains(&k.to_string()), "{k} missing: {keys:?}");
    }
    assert!(
        keys.contains(&format!("/vtep/v1/nodes/node1/endpoints/42/{mac}")),
        "{keys:?}"
    );
    let vtep = b
        .etcd
        .ctl(&["get", "--print-value-only", "/vtep/v1/nodes/node1/vtep"])?;
    assert_eq!(vtep.trim(), r#"{"addr":"192.168.104.2","port":4789}"#);

    // Another process sees the agent's state.
    let status = b.bed.hosts[0].vtep(&["agent", "status"])?;
    assert!(status.starts_with("agent node1 pid "), "{status}");
    assert!(status.contains(": etcd connected ("), "{status}");
    assert!(
        status.contains("5 records published, 3 endpoints of other nodes programmed"),
        "{status}"
    );
    let json: Value = serde_json::from_str(&b.bed.hosts[0].vtep(&["-j", "agent", "status"])?)?;
    assert_eq!(
        (json["connected"].as_bool(), json["lease_ttl"].as_i64()),
        (Some(true), Some(3))
    );

    // Metrics: the agent's state beside the data path's counters and tables; the same
    // counters from `vtep stats --prometheus` where no agent runs.
    b.agents[0] = None;
    let metrics = ["--ttl", "3", "--metrics", "127.0.0.1:9464"];
    b.agents[0] = Some(Agent::start(
        &b.bed.hosts[0].ns,
        &b.url(),
        "node1",
        &metrics,
    )?);
    let text = scrape(&b.bed.hosts[0].ns, "127.0.0.1:9464")?;
    for line in [
        "vtep_agent_etcd_connected 1",
        "vtep_agent_records_published 5",
        "vtep_agent_endpoints_programmed 3",
        "vtep_table_entries{table=\"fdb\"} 3",
        "vtep_table_capacity{table=\"ports\"} 4096",
    ] {
        assert!(text.lines().any(|l| l == line), "no {line:?} in:\n{text}");
    }
    let encap = |text: &str| -> u64 {
        text.lines()
            .find_map(|l| l.strip_prefix("vtep_packets_total{verdict=\"encap\"} "))
            .and_then(|v| v.parse().ok())
            .unwrap_or(0)
    };
    assert!(encap(&text) > 0, "{text}");
    let stats = b.bed.hosts[0].vtep(&["stats", "--prometheus"])?;
    assert!(encap(&stats) >= encap(&text), "{stats}");
    assert!(stats.contains("# HELP vtep_packets Frames by data-path verdict (encap: "));
    Ok(())
}

#[test]
fn port_add_and_del_reach_the_other_hosts_within_a_second_and_hand_made_entries_survive(
) -> Result<()> {
    let mut b = Bed::new("ag2")?;
    // Made by hand before any agent runs: an FDB entry, a flood-list VTEP and a neighbour.
    let h1 = &b.bed.hosts[0];
    h1.vtep(&[
        "fdb",
        "add",
        "02:99:00:00:00:01",
        "dst",
        "192.168.104.99",
        "vni",
        "42",
    ])?;
    h1.vtep(&[
        "fdb",
        "append",
        "00:00:00:00:00:00",
        "dst",
        "192.168.104.98",
        "vni",
        "42",
    ])?;
    h1.vtep(&[
        "neigh",
        "add",
        "12.12.12.99",
        "lladdr",
        "02:99:00:00:00:01",
        "vni",
        "42",
    ])?;
    // Local ports show as permanent rows without a dst, as the bridge shows its ports' MACs.
    let hand = |b: &Bed| -> Result<usize> {
        Ok(b.fdb(0)?
            .iter()
            .filter(|r| r.3 == "permanent" && !r.2.is_empty())
            .count()
            + b.neigh(0)?.iter().filter(|r| r.3 == "permanent").count())
    };
    assert_eq!(hand(&b)?, 3);
    b.start_all()?;
    b.converged(Duration::from_secs(5))?;
    assert_eq!(hand(&b)?, 3);

    b.add(1, "new", 42, 9)?;
    let took = b.converged(Duration::from_secs(1))?;
    eprintln!("port add visible everywhere in {took:?}");
    assert!(ping(&b.containers[0].ns, "12.12.12.9", 1)?);
    b.del("new")?;
    let took = b.converged(Duration::from_secs(1))?;
    eprintln!("port del withdrawn everywhere in {took:?}");

    // A restart reconciles; the hand-made entries are still there, unchanged.
    b.stop(0)?;
    b.start(0)?;
    b.agent(0).wait_log("reconciled", Duration::from_secs(5))?;
    b.converged(Duration::from_secs(5))?;
    assert_eq!(hand(&b)?, 3);
    assert!(b.fdb(0)?.contains(&(
        "02:99:00:00:00:01".into(),
        42,
        "192.168.104.99".into(),
        "permanent".into()
    )));
    Ok(())
}

#[test]
fn a_killed_agent_is_withdrawn_within_ttl_and_comes_back_without_stale_entries() -> Result<()> {
    let mut b = Bed::running("ag3")?;
    let before: Vec<_> = (0..3).map(|h| b.extern_fdb(h)).collect::<Result<_>>()?;

    b.agent(1).signal(Signal::SIGKILL)?;
    b.agent(1).wait(Duration::from_secs(5))?;
    let status = vtep_testbed::cmd::vtep_output(&["-n", &b.bed.hosts[1].ns, "agent", "status"])?;
    assert_eq!(status.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&status.stderr).contains("no vtep agent runs for this host"));
    let gone = |b: &Bed| -> Result<bool> {
        for h in [0, 2] {
            if b.extern_fdb(h)?.iter().any(|r| r.2 == b.bed.hosts[1].ip) {
                return Ok(false);
            }
        }
        Ok(true)
    };
    let took = wait::until("host 2 withdrawn", Duration::from_secs(TTL + 1), || {
        gone(&b)
    })?;
    eprintln!("SIGKILLed agent's entries gone in {took:?} (TTL {TTL} s)");
    // Its own tables keep the last known state: forwarding from it goes on.
    assert_eq!(b.extern_fdb(1)?, before[1]);

    b.start(1)?;
    b.converged(Duration::from_secs(5))?;
    for (h, was) in before.iter().enumerate() {
        assert_eq!(&b.extern_fdb(h)?, was, "host {h} after the restart");
    }
    b.pings()?;

    // SIGTERM revokes the lease: withdrawn at once, not after the TTL.
    b.stop(2)?;
    assert!(b.agent(2).log().contains("revoked"));
    wait::until("host 3 withdrawn", Duration::from_secs(1), || {
        Ok(!b.extern_fdb(0)?.iter().any(|r| r.2 == b.bed.hosts[2].ip))
    })?;
    Ok(())
}

#[test]
fn a_command_holding_the_host_lock_past_the_ttl_does_not_let_the_lease_lapse() -> Result<()> {
    let mut b = Bed::running("ag4")?;
    let state = b.bed.hosts[1].pin_dir()?;
    let cookie = state
        .to_string_lossy()
        .rsplit_once("netns-")
        .map(|(_, c)| c.to_string())
        .context("no cookie in the state directory")?;
    // As a long `vtep -batch` would: hold host 2's lock for twice the TTL.
    let lock = std::fs::File::open(format!("/run/vtep/netns-{cookie}/lock"))?;
    let held = Flock::lock(lock, FlockArg::LockExclusive).map_err(|(_, e)| e)?;
    // Host 1 gets a container: host 2's agent wants to program it and waits for the lock.
    b.add(0, "late", 42, 9)?;
    let ip1 = b.bed.hosts[1].ip.clone();
    let until = std::time::Instant::now() + Duration::from_secs(2 * TTL);
    while std::time::Instant::now() < until {
        // Sampled for the whole hold: a lapsed lease would withdraw host 2 from the others.
        assert!(
            b.extern_fdb(0)?.iter().any(|r| r.2 == ip1),
            "host 2's records withdrawn while its agent waited for the lock:\n{}",
            b.agent(1).log()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    drop(held);
    b.converged(Duration::from_secs(5))?;
    assert!(
        !b.agent(1).log().contains("session failed"),
        "{}",
        b.agent(1).log()
    );
    Ok(())
}

#[test]
fn vtep_down_under_a_running_agent_stops_it_in_one_clear_line_and_withdraws_its_records(
) -> Result<()> {
    let mut b = Bed::running("ag5")?;
    b.bed.hosts[2].vtep(&["down"])?;
    let status = b.agent(2).wait(Duration::from_secs(5))?;
    let log = b.agent(2).log();
    assert_eq!(status.code(), Some(1), "{log}");
    assert!(log.contains("this host went down"), "{log}");
    assert!(!log.contains("etcd session failed"), "{log}");
    let ip2 = b.bed.hosts[2].ip.clone();
    // Revoked, not left to expire with the TTL.
    wait::until("host 3 withdrawn", Duration::from_secs(1), || {
        Ok(!b.extern_fdb(0)?.iter().any(|r| r.2 == ip2))
    })?;
    Ok(())
}

#[test]
fn an_agent_restarted_after_sighup_takes_its_records_over_and_no_ping_is_lost() -> Result<()> {
    let mut b = Bed::running("ag9")?;
    let before: Vec<_> = (0..3).map(|h| b.extern_fdb(h)).collect::<Result<_>>()?;
    // 200 pps from host 1 into host 2 for longer than the old lease lives after the restart.
    let (from, to) = (b.containers[0].ns.clone(), b.containers[1].ip.clone());
    let count = (TTL + 3) * 200;
    let pinger = std::thread::spawn(move || ping_counts(&from, &to, "0.005", count));
    b.agent(1).signal(Signal::SIGHUP)?;
    assert!(b.agent(1).wait(Duration::from_secs(5))?.success());
    assert!(
        b.agent(1).log().contains("leaving lease"),
        "{}",
        b.agent(1).log()
    );
    b.start(1)?;
    let (sent, received) = pinger.join().expect("ping thread")?;
    assert_eq!(
        (sent, received),
        (count, count),
        "ping loss across the restart"
    );
    // The old lease has expired by now, with nothing left on it.
    for (h, was) in before.iter().enumerate() {
        assert_eq!(&b.extern_fdb(h)?, was, "host {h} after the restart");
    }
    // Nor did host 1 ever take an entry away meanwhile.
    let log = b.agent(0).log();
    let removals = log
        .lines()
        .filter(|l| l.contains("programmed:") && !l.ends_with(" 0 removed"));
    assert_eq!(removals.count(), 0, "{log}");
    Ok(())
}

#[test]
fn a_mac_moving_host_is_followed_and_a_double_claim_has_one_winner() -> Result<()> {
    let mut b = Bed::running("ag4")?;
    // a1 (on host 2) moves to host 3: deleted there, made again with the same MAC and IP.
    let moved = b.del("a1")?;
    let ns = moved.ns.clone();
    b.bed.hosts[2].port(&ns, &moved.mac, &moved.ip, 42)?;
    b.containers.push(Container { host: 2, ..moved });
    let took = b.converged(Duration::from_secs(1))?;
    eprintln!("move followed in {took:?}");
    assert!(ping(&b.containers[0].ns, "12.12.12.3", 1)?);

    // Host 1 claims the same MAC in another container: the newest claim wins everywhere.
    let dup = format!("{}dup", b.tag);
    b.bed.track(&dup);
    let mac = b
        .containers
        .last()
        .map(|c| c.mac.clone())
        .unwrap_or_default();
    b.bed.hosts[0].port(&dup, &mac, "12.12.12.30", 42)?;
    let winner_on = |b: &Bed, h: usize| -> Result<Option<String>> {
        Ok(b.extern_fdb(h)?
            .into_iter()
            .find(|r| r.0 == mac)
            .map(|r| r.2))
    };
    // Host 2 sees host 1's newer claim win; host 3, which lost, reports it too.
    wait::until(
        "host 2 follows the newest claim",
        Duration::from_secs(1),
        || Ok(winner_on(&b, 1)?.as_deref() == Some("192.168.104.2")),
    )?;
    b.agent(0).wait_log("conflict", Duration::from_secs(1))?;
    b.agent(2).wait_log("conflict", Duration::from_secs(1))?;
    b.agent(1).wait_log("node1 wins", Duration::from_secs(1))?;
    Ok(())
}

#[test]
fn garbage_under_the_prefix_is_skipped_and_reported_and_the_agent_lives_on() -> Result<()> {
    let mut b = Bed::running("ag5")?;
    let garbage: &[(&str, &str)] = &[
        (
            "/vtep/v1/nodes/evil/endpoints/42/not-a-mac",
            r#"{"ip":"12.12.12.66"}"#,
        ),
        (
            "/vtep/v1/nodes/evil/endpoints/42/02:66:00:00:00:01",
            "garbage",
        ),
        (
            "/vtep/v1/nodes/evil/vtep",
            r#"{"addr":"0.0.0.0","port":4789}"#,
        ),
        ("/vtep/v1/nodes/evil/flood/99999999", "{}"),
        ("/vtep/v1/nodes/evil/whatever", "{}"),
    ];
    for (k, v) in garbage {
        b.etcd.ctl(&["put", k, v])?;
    }
    for (k, _) in garbage {
        b.agent(0)
            .wait_log(&format!("skipping {k}"), Duration::from_secs(2))?;
    }
    // Alive, and still following: a port added now reaches the others.
    b.add(2, "late", 42, 10)?;
    b.converged(Duration::from_secs(1))?;
    // A restart lists the garbage again: skipped again, nothing of it in the tables.
    b.stop(0)?;
    b.start(0)?;
    b.agent(0).wait_log(
        "skipping /vtep/v1/nodes/evil/whatever",
        Duration::from_secs(2),
    )?;
    b.converged(Duration::from_secs(5))?;
    Ok(())
}

/// 22 VTEPs with ports in one VNI (past the 16 the data path once walked) all get on its
/// flood list; nothing is refused.
#[test]
fn a_flood_list_past_sixteen_vteps_is_programmed_whole() -> Result<()> {
    let mut b = Bed::running("ag10")?;
    // 20 more nodes with ports in VNI 42, beside hosts 2 and 3.
    for n in 0..20 {
        let node = format!("/vtep/v1/nodes/extra{n}");
        let vtep = format!(r#"{{"addr":"192.168.105.{}","port":4789}}"#, n + 1);
        b.etcd.ctl(&["put", &format!("{node}/vtep"), &vtep])?;
        b.etcd.ctl(&["put", &format!("{node}/flood/42"), "{}"])?;
    }
    let flood_42 = |b: &Bed| -> Result<usize> {
        Ok(b.extern_fdb(0)?
            .iter()
            .filter(|r| r.0 == "00:00:00:00:00:00" && r.1 == 42)
            .count())
    };
    wait::until("VNI 42's flood list whole", Duration::from_secs(2), || {
        Ok(flood_42(&b)? == 22)
    })?;
    let log = b.agent(0).log();
    assert!(!log.contains("holds at most"), "{log}");
    b.pings()?;
    Ok(())
}

#[test]
fn etcd_down_for_twenty_seconds_loses_no_ping_and_changes_no_table() -> Result<()> {
    let mut b = Bed::running("ag6")?;
    let before: Vec<_> = (0..3).map(|h| b.fdb(h)).collect::<Result<_>>()?;
    let (from, to) = (b.containers[0].ns.clone(), b.containers[1].ip.clone());
    let pinger = std::thread::spawn(move || ping_counts(&from, &to, "0.005", 4400));
    std::thread::sleep(Duration::from_millis(500));
    b.etcd.stop();
    for h in 0..3 {
        b.agent(h)
            .wait_log("retrying with backoff", Duration::from_secs(10))?;
    }
    // 20 s of outage while the ping runs (4400 packets at 200 pps is 22 s).
    let (sent, received) = pinger.join().expect("ping thread")?;
    for (h, was) in before.iter().enumerate() {
        assert_eq!(&b.fdb(h)?, was, "host {h} changed while etcd was down");
        // Once per state change, not once per attempt.
        assert_eq!(b.agent(h).log().matches("retrying with backoff").count(), 1);
    }
    assert_eq!(
        (sent, received),
        (4400, 4400),
        "ping loss while etcd was down"
    );
    // A port added during the outage is published once etcd is back.
    b.add(2, "during", 42, 11)?;
    b.etcd.resume()?;
    for h in 0..3 {
        b.agent(h)
            .wait_log("etcd reachable again", Duration::from_secs(10))?;
    }
    b.converged(Duration::from_secs(5))?;
    b.pings()?;
    Ok(())
}

#[test]
fn etcd_wiped_gets_every_record_back_and_traffic_never_stops() -> Result<()> {
    let mut b = Bed::running("ag7")?;
    let keys = b.etcd.keys("/vtep/")?;
    let (from, to) = (b.containers[0].ns.clone(), b.containers[1].ip.clone());
    let pinger = std::thread::spawn(move || ping_counts(&from, &to, "0.01", 500));
    b.etcd.wipe()?;
    wait::until(
        "every record published again",
        Duration::from_secs(10),
        || Ok(b.etcd.keys("/vtep/")? == keys),
    )?;
    let (sent, received) = pinger.join().expect("ping thread")?;
    assert_eq!(sent, received, "ping loss across the wipe");
    b.converged(Duration::from_secs(5))?;
    Ok(())
}

#[test]
fn with_tls_and_rbac_a_node_cannot_forge_another_nodes_endpoints() -> Result<()> {
    let users = ["root", "node1", "node2", "node3"];
    let mut b = Bed::with("ag8", Some(Pki::new(ETCD_IP, &users)?))?;
    // The README's commands: a root user, and per node a role that may write only its own
    // subtree and read everyone's; etcd takes the user from the certificate's CN.
    for cmd in [
        "role add root",
        "user add root --no-password",
        "user grant-role root root",
    ] {
        b.etcd.ctl(&cmd.split(' ').collect::<Vec<_>>())?;
    }
    for n in &users[1..] {
        let own = format!("/vtep/v1/nodes/{n}/");
        b.etcd.ctl(&["role", "add", n])?;
        b.etcd.ctl(&[
            "role",
            "grant-permission",
            n,
            "--prefix=true",
            "readwrite",
            &own,
        ])?;
        b.etcd.ctl(&[
            "role",
            "grant-permission",
            n,
            "--prefix=true",
            "read",
            "/vtep/v1/nodes/",
        ])?;
        b.etcd.ctl(&["user", "add", n, "--no-password"])?;
        b.etcd.ctl(&["user", "grant-role", n, n])?;
    }
    b.etcd.ctl(&["auth", "enable"])?;
    b.start_all()?;
    b.converged(Duration::from_secs(5))?;
    b.pings()?;

    // node1's credentials write node1's records, and cannot write node2's.
    let pki = b.pki.as_ref().context("pki")?;
    let node1 = pki.client_args("node1", "");
    let node1: Vec<&str> = node1.iter().map(String::as_str).collect();
    let forged = "/vtep/v1/nodes/node2/endpoints/42/02:66:00:00:00:01";
    let err = b
        .etcd
        .ctl_as(&node1, &["put", forged, r#"{"ip":"12.12.12.66"}"#])
        .expect_err("node1 wrote node2's subtree");
    assert!(err.to_string().contains("permission denied"), "{err:#}");
    b.etcd
        .ctl_as(&node1, &["put", "/vtep/v1/nodes/node1/x", "{}"])?;
    b.etcd.ctl_as(&node1, &["del", "/vtep/v1/nodes/node1/x"])?;
    assert!(b.etcd.keys(forged)?.is_empty());
    assert!(!b.fdb(0)?.iter().any(|r| r.0 == "02:66:00:00:00:01"));
    // SIGTERM revokes the lease under RBAC too.
    b.stop(1)?;
    assert!(b.agent(1).log().contains("revoked"), "{}", b.agent(1).log());
    Ok(())
}

#[test]
fn bad_agent_input_is_one_line_and_exit_2() -> Result<()> {
    for line in [
        "agent --etcd http://127.0.0.1:1 --node a/b",
        "agent --etcd http://127.0.0.1:1 --node n --ttl 0",
        "agent --etcd http://127.0.0.1:1 --node n --prefix vtep",
        "agent --node n",
        "agent --etcd http://127.0.0.1:1 --node n --etcd-cert x",
        "agent status --node n",
    ] {
        let args: Vec<&str> = line.split(' ').collect();
        let out = vtep_testbed::cmd::vtep_output(&args)?;
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {err}");
        assert_eq!(err.trim().lines().count(), 1, "{args:?}: {err}");
    }
    Ok(())
}

/// Benchmarks are not tests: this only checks the control-plane bench runs at a small scale
/// and reports every figure.
#[test]
fn the_control_plane_bench_runs_at_a_small_scale() -> Result<()> {
    let figures =
        vtep_testbed::bench::control_plane::run(vtep_testbed::bench::control_plane::Scale::QUICK)?;
    for key in [
        "bulk_convergence_s",
        "withdraw_after_last_renewal_s",
        "agent_peak_rss_mib",
        "agent_cpu_idle_percent",
        "agent_cpu_churn_percent",
    ] {
        assert!(
            figures[key].as_f64().is_some_and(f64::is_finite),
            "{key}: {figures}"
        );
    }
    assert!(
        figures["latency_ms"]["p99"]
            .as_f64()
            .is_some_and(|p| p > 0.0),
        "{figures}"
    );
    assert_eq!(figures["endpoints"].as_u64(), Some(200));
    Ok(())
}
