//! `cargo xtask bench --control-plane`: one real `vtep agent` against etcd while a generator
//! in this process plays many other nodes, each with its own lease, VTEP, flood and endpoint
//! records. Measures how fast the agent's tables follow: bulk convergence, one record's
//! latency, a dead node's withdrawal, and the agent's memory and CPU.

use std::{
    net::Ipv4Addr,
    time::{Duration, Instant},
};

use anyhow::{Context, Result};
use aya::maps::{HashMap, Map, MapData};
use etcd_client::{Client, PutOptions, Txn, TxnOp};
use serde_json::{json, Value};
use vtep_common::{map_name, FdbEntry, MacVni, FDB_EXTERN};

use crate::{
    agent::Agent,
    etcd::Etcd,
    netns::{self, unique_tag},
    scenario::switch_name,
    wait, Stack, Testbed,
};

const ETCD_IP: &str = "192.168.104.1";
/// etcd's default limit of operations in one transaction.
const TXN_OPS: usize = 128;
const VNIS: u32 = 10;
const LATENCY_SAMPLES: u32 = 200;
/// The dying node's lease.
const SHORT_TTL: i64 = 3;

#[derive(Clone, Copy, Debug)]
pub struct Scale {
    pub nodes: u32,
    pub endpoints: u32,
    pub churn_secs: u64,
}

impl Scale {
    pub const FULL: Scale = Scale {
        nodes: 1000,
        endpoints: 100,
        churn_secs: 10,
    };
    pub const QUICK: Scale = Scale {
        nodes: 20,
        endpoints: 10,
        churn_secs: 2,
    };
}

fn mac(node: u32, i: u32) -> [u8; 6] {
    let (n, e) = (node.to_be_bytes(), i.to_be_bytes());
    [0x02, 0xcc, n[2], n[3], e[2], e[3]]
}

fn mac_text(m: [u8; 6]) -> String {
    m.map(|b| format!("{b:02x}")).join(":")
}

fn vni(node: u32) -> u32 {
    1000 + node % VNIS
}

fn endpoint(node: u32, i: u32, generation: u32) -> (String, String) {
    let key = format!(
        "/vtep/v1/nodes/g{node}/endpoints/{}/{}",
        vni(node),
        mac_text(mac(node, i))
    );
    let n = node.to_be_bytes();
    let ip = Ipv4Addr::new(10 + (generation % 2) as u8, n[2], n[3], (i % 250 + 1) as u8);
    (key, json!({ "ip": ip }).to_string())
}

/// The puts of node `node`'s records: VTEP, flood, endpoints.
fn node_records(node: u32, endpoints: u32) -> Vec<(String, String)> {
    let n = node.to_be_bytes();
    let addr = Ipv4Addr::new(172, 16 + n[2], n[3], 1);
    let mut out = vec![
        (
            format!("/vtep/v1/nodes/g{node}/vtep"),
            json!({ "addr": addr, "port": 4789 }).to_string(),
        ),
        (
            format!("/vtep/v1/nodes/g{node}/flood/{}", vni(node)),
            "{}".into(),
        ),
    ];
    out.extend((0..endpoints).map(|i| endpoint(node, i, 0)));
    out
}

/// Puts `(key, value, lease)`s, as few transactions as etcd allows.
async fn put(client: &mut Client, records: &[(String, String, i64)]) -> Result<()> {
    for chunk in records.chunks(TXN_OPS) {
        let ops: Vec<TxnOp> = chunk
            .iter()
            .map(|(k, v, lease)| {
                TxnOp::put(
                    k.as_str(),
                    v.as_str(),
                    Some(PutOptions::new().with_lease(*lease)),
                )
            })
            .collect();
        client.txn(Txn::new().and_then(ops)).await?;
    }
    Ok(())
}

fn on_lease(records: Vec<(String, String)>, lease: i64) -> Vec<(String, String, i64)> {
    records.into_iter().map(|(k, v)| (k, v, lease)).collect()
}

/// The agent's FDB, read directly from the pinned map (as fast as the data path sees it).
struct Fdb(HashMap<MapData, MacVni, FdbEntry>);

impl Fdb {
    fn open(host: &crate::Host) -> Result<Self> {
        let md =
            MapData::from_pin(host.pin_dir()?.join(map_name::FDB)).context("opening the FDB")?;
        Ok(Fdb(HashMap::try_from(Map::from_map_data(md)?)?))
    }

    fn has(&self, m: [u8; 6], vni: u32) -> bool {
        self.0.get(&MacVni::new(m, vni), 0).is_ok()
    }

    fn control_plane_entries(&self) -> usize {
        self.0
            .iter()
            .filter_map(|e| e.ok())
            .filter(|(_, v)| v.flags & FDB_EXTERN != 0)
            .count()
    }
}

/// CPU seconds (user + system) the process has used.
fn cpu_secs(pid: u32) -> Result<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))?;
    let fields: Vec<&str> = stat
        .rsplit_once(") ")
        .context("stat")?
        .1
        .split(' ')
        .collect();
    let ticks: u64 = fields[11].parse::<u64>()? + fields[12].parse::<u64>()?;
    Ok(
        ticks as f64
            / nix::unistd::sysconf(nix::unistd::SysconfVar::CLK_TCK)?.unwrap_or(100) as f64,
    )
}

fn peak_rss_kib(pid: u32) -> Result<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .context("VmHWM")
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    sorted[((sorted.len() as f64 - 1.0) * p).round() as usize]
}

/// Runs the bench at `scale`; returns its figures as JSON.
pub fn run(scale: Scale) -> Result<Value> {
    let tag = unique_tag("cp");
    let bed = Testbed::underlay(&tag, vec![Stack::vtep()])?;
    let switch = switch_name(&tag);
    crate::run(
        "ip",
        &[
            "-n",
            &switch,
            "addr",
            "add",
            &format!("{ETCD_IP}/24"),
            "dev",
            "br0",
        ],
    )?;
    let etcd = Etcd::start(&switch, ETCD_IP)?;
    let host = &bed.hosts[0];
    let agent = Agent::start(&host.ns, &etcd.url, "bench", &[])?;
    let pid = agent.pid().context("agent pid")?;
    let fdb = Fdb::open(host)?;
    let total = (scale.nodes * scale.endpoints) as usize;

    // The generator talks to etcd from etcd's namespace, on this thread.
    let _inside = netns::enter(&switch)?;
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    rt.block_on(async {
        let mut client = Client::connect([etcd.url.as_str()], None).await?;

        // Bulk: every node's records, each node on its own lease.
        let (bulk_start, bulk_cpu0) = (Instant::now(), cpu_secs(pid)?);
        let mut leases = Vec::new();
        for node in 0..scale.nodes {
            let lease = client.lease_grant(300, None).await?.id();
            put(
                &mut client,
                &on_lease(node_records(node, scale.endpoints), lease),
            )
            .await?;
            leases.push(lease);
        }
        let written = Instant::now();
        // The agent applies events in etcd's order: once the last endpoint written is in,
        // count them all (a walk of the whole map is too heavy to repeat every few ms on
        // a machine of two cores the agent runs on too).
        let last = scale.nodes - 1;
        wait::until(
            "the last endpoint in the agent's FDB",
            Duration::from_secs(120),
            || Ok(fdb.has(mac(last, scale.endpoints - 1), vni(last))),
        )?;
        wait::until(
            "every endpoint in the agent's FDB",
            Duration::from_secs(120),
            || Ok(fdb.control_plane_entries() >= total),
        )?;
        let bulk = written.elapsed();
        let bulk_cpu = cpu_secs(pid)? - bulk_cpu0;
        let bulk_total = bulk_start.elapsed();

        // Latency: one new endpoint record, until its FDB entry is there.
        let mut latencies = Vec::new();
        for i in 0..LATENCY_SAMPLES {
            let (key, value) = endpoint(0, 10_000 + i, 0);
            let m = mac(0, 10_000 + i);
            let start = Instant::now();
            client
                .put(key, value, Some(PutOptions::new().with_lease(leases[0])))
                .await?;
            while !fdb.has(m, vni(0)) {
                if start.elapsed() > Duration::from_secs(5) {
                    anyhow::bail!("endpoint {} not programmed within 5 s", mac_text(m));
                }
                std::thread::sleep(Duration::from_micros(100));
            }
            latencies.push(start.elapsed().as_secs_f64() * 1000.0);
        }
        latencies.sort_by(f64::total_cmp);

        // A node that dies: its lease is renewed once, then never again.
        let dying = scale.nodes;
        let lease = client.lease_grant(SHORT_TTL, None).await?.id();
        put(
            &mut client,
            &on_lease(node_records(dying, scale.endpoints), lease),
        )
        .await?;
        wait::until("the dying node programmed", Duration::from_secs(10), || {
            Ok((0..scale.endpoints).all(|i| fdb.has(mac(dying, i), vni(dying))))
        })?;
        let (mut keeper, mut renewals) = client.lease_keep_alive(lease).await?;
        keeper.keep_alive().await?;
        renewals.message().await?;
        let last_renewal = Instant::now();
        wait::until("the dead node withdrawn", Duration::from_secs(30), || {
            Ok((0..scale.endpoints).all(|i| !fdb.has(mac(dying, i), vni(dying))))
        })?;
        let withdraw = last_renewal.elapsed();

        // Idle, then churn: 1% of the endpoints re-put with another IP every second.
        let cpu0 = cpu_secs(pid)?;
        let idle = Duration::from_secs(5);
        tokio::time::sleep(idle).await;
        let idle_cpu = (cpu_secs(pid)? - cpu0) / idle.as_secs_f64();
        let per_tick = (total / 100 / 10).max(1);
        let churn_start = Instant::now();
        let cpu1 = cpu_secs(pid)?;
        let mut next = 0usize;
        for tick in 0..scale.churn_secs * 10 {
            // Each endpoint is put again on its own node's lease, with another IP.
            let batch: Vec<(String, String, i64)> = (0..per_tick)
                .map(|k| {
                    let idx = (next + k) % total;
                    let per = scale.endpoints as usize;
                    let (node, i) = ((idx / per) as u32, (idx % per) as u32);
                    let (key, value) = endpoint(node, i, tick as u32 + 1);
                    (key, value, leases[node as usize])
                })
                .collect();
            next += per_tick;
            put(&mut client, &batch).await?;
            let due = churn_start + Duration::from_millis(100 * (tick + 1));
            tokio::time::sleep_until(due.into()).await;
        }
        let churn_cpu = (cpu_secs(pid)? - cpu1) / churn_start.elapsed().as_secs_f64();
        Ok(json!({
            "nodes": scale.nodes,
            "endpoints": total,
            "bulk_convergence_s": bulk.as_secs_f64(),
            "bulk_writing_s": (bulk_total - bulk).as_secs_f64(),
            "agent_cpu_during_bulk_s": bulk_cpu,
            "latency_ms": {
                "p50": percentile(&latencies, 0.5),
                "p99": percentile(&latencies, 0.99),
                "samples": latencies.len(),
            },
            "withdraw_after_last_renewal_s": withdraw.as_secs_f64(),
            "ttl_s": SHORT_TTL,
            "agent_peak_rss_mib": peak_rss_kib(pid)? as f64 / 1024.0,
            "agent_cpu_idle_percent": idle_cpu * 100.0,
            "churn_endpoints_per_s": per_tick * 10,
            "agent_cpu_churn_percent": churn_cpu * 100.0,
        }))
    })
}
