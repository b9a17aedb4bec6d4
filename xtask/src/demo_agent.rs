//! `cargo xtask demo --agent`: etcd and three hosts with `vtep agent`, containers in two
//! VNIs, and no `fdb add` or `neigh add` typed anywhere; then a container moves and a host
//! dies. Narrated with the commands a user would type, like the two-host demo.

use std::time::{Duration, Instant};

use anyhow::{bail, Result};

use crate::demo::{section, sh_quiet, step};

const SWITCH: &str = "cpsw";
const HOSTS: [&str; 3] = ["cphost1", "cphost2", "cphost3"];
/// (namespace, host index, MAC, address, VNI)
const CONTAINERS: [(&str, usize, &str, &str, u32); 5] = [
    ("cpa1", 0, "02:42:0c:0c:0c:02", "12.12.12.2/24", 42),
    ("cpa2", 1, "02:42:0c:0c:0c:03", "12.12.12.3/24", 42),
    ("cpa3", 2, "02:42:0c:0c:0c:04", "12.12.12.4/24", 42),
    ("cpb1", 0, "02:43:0c:0c:0c:02", "12.12.12.2/24", 43),
    ("cpb2", 1, "02:43:0c:0c:0c:03", "12.12.12.3/24", 43),
];
const ETCD: &str = "http://192.168.104.1:2379";
const DATA: &str = "/tmp/vtep-demo-etcd";
const TTL: u64 = 3;

/// Stops the agents and etcd and removes every namespace and file, on every path.
struct Cleanup;

impl Drop for Cleanup {
    fn drop(&mut self) {
        println!("\n== cleaning up");
        // The agents live in their hosts' namespaces, etcd in the switch's.
        for ns in HOSTS.iter().chain([&SWITCH]) {
            sh_quiet(&format!("ip netns pids {ns} | xargs -r kill -9")).ok();
        }
        for host in HOSTS {
            sh_quiet(&format!("vtep -n {host} down")).ok();
        }
        for (ns, ..) in CONTAINERS {
            sh_quiet(&format!("ip netns del {ns}")).ok();
        }
        for ns in HOSTS.iter().chain([&SWITCH]) {
            sh_quiet(&format!("ip netns del {ns}")).ok();
        }
        sh_quiet(&format!("rm -rf {DATA} /tmp/vtep-demo-agent-*.log")).ok();
    }
}

fn ip(h: usize) -> String {
    format!("192.168.104.{}", h + 2)
}

/// Polls `cmdline`'s output until `done` says so (what a user would re-run by hand).
fn until(
    what: &str,
    cmdline: &str,
    timeout: Duration,
    done: impl Fn(&str) -> bool,
) -> Result<Duration> {
    let start = Instant::now();
    while start.elapsed() < timeout {
        if done(&sh_quiet(cmdline)?) {
            return Ok(start.elapsed());
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    bail!("{what}: not within {timeout:?}")
}

fn start_agent(h: usize) -> Result<()> {
    let host = HOSTS[h];
    let log = format!("/tmp/vtep-demo-agent-{host}.log");
    step(&format!(
        "vtep -n {host} agent --etcd {ETCD} --node host{} --ttl {TTL} 2> {log} &",
        h + 1
    ))?;
    until(
        "the agent's session",
        &format!("cat {log}"),
        Duration::from_secs(10),
        |l| l.contains("session up"),
    )?;
    Ok(())
}

pub fn run() -> Result<()> {
    crate::demo::refuse_existing(
        HOSTS
            .iter()
            .chain([&SWITCH])
            .copied()
            .chain(CONTAINERS.map(|c| c.0)),
    )?;
    let _cleanup = Cleanup;

    section("three hosts on a switch (192.168.104.2-4), etcd on the switch (.1)");
    step(&format!("ip netns add {SWITCH}"))?;
    step(&format!("ip -n {SWITCH} link set lo up"))?;
    step(&format!("ip -n {SWITCH} link add br0 type bridge"))?;
    step(&format!("ip -n {SWITCH} addr add 192.168.104.1/24 dev br0"))?;
    step(&format!("ip -n {SWITCH} link set br0 up"))?;
    for (h, host) in HOSTS.iter().enumerate() {
        step(&format!("ip netns add {host}"))?;
        step(&format!(
            "ip link add eth1 netns {host} type veth peer name p{h} netns {SWITCH}"
        ))?;
        step(&format!("ip -n {SWITCH} link set p{h} master br0 up"))?;
        step(&format!("ip -n {host} addr add {}/24 dev eth1", ip(h)))?;
        step(&format!("ip -n {host} link set eth1 up"))?;
    }
    step(&format!(
        "ip netns exec {SWITCH} etcd --name demo --data-dir {DATA} \
         --listen-client-urls {ETCD} --advertise-client-urls {ETCD} \
         --listen-peer-urls http://192.168.104.1:2380 \
         --initial-advertise-peer-urls http://192.168.104.1:2380 \
         --initial-cluster demo=http://192.168.104.1:2380 > /dev/null 2>&1 &"
    ))?;
    let health = format!("ip netns exec {SWITCH} etcdctl --endpoints={ETCD} endpoint health 2>&1");
    until("etcd healthy", &health, Duration::from_secs(15), |o| {
        o.contains("is healthy")
    })?;

    section("vtep on every host and containers in VNIs 42 and 43: no fdb add, no neigh add");
    for (h, host) in HOSTS.iter().enumerate() {
        step(&format!("vtep -n {host} up --dev eth1 --local {}", ip(h)))?;
    }
    for (ns, h, mac, addr, vni) in CONTAINERS {
        step(&format!(
            "vtep -n {} port add {ns} --mac {mac} --addr {addr} --vni {vni}",
            HOSTS[h]
        ))?;
    }

    section("one agent per host");
    for h in 0..HOSTS.len() {
        start_agent(h)?;
    }
    step(&format!(
        "ip netns exec {SWITCH} etcdctl --endpoints={ETCD} get --prefix /vtep/v1/nodes/host1/"
    ))?;
    step("vtep -n cphost1 fdb show")?;
    step("vtep -n cphost1 neigh show")?;

    section("every pair in a VNI pings");
    for (a, _, _, _, va) in CONTAINERS {
        for (b, _, _, addr, vb) in CONTAINERS {
            if a != b && va == vb {
                let ip = addr.trim_end_matches("/24");
                step(&format!(
                    "ip netns exec {a} ping -c 1 -W 2 {ip} | grep -E 'bytes from|loss'"
                ))?;
            }
        }
    }
    section("and nothing crosses VNIs: 12.12.12.4 is only in VNI 42");
    step("! ip netns exec cpb1 ping -c 1 -W 1 12.12.12.4 > /dev/null && echo 'no reply from VNI 43, as it should be'")?;

    section("a container moves: cpa2 leaves host 2 and comes back on host 3, same MAC and IP");
    step("vtep -n cphost2 port del cpa2")?;
    step("vtep -n cphost3 port add cpa2 --mac 02:42:0c:0c:0c:03 --addr 12.12.12.3/24 --vni 42")?;
    let took = until(
        "host 1 follows the move",
        "vtep -n cphost1 fdb show",
        Duration::from_secs(2),
        |o| o.contains(&format!("02:42:0c:0c:0c:03 dst {}", ip(2))),
    )?;
    println!("(host 1 followed the move in {} ms)", took.as_millis());
    step("vtep -n cphost1 fdb show vni 42")?;
    step("ip netns exec cpa1 ping -c 1 -W 2 12.12.12.3 | grep -E 'bytes from|loss'")?;

    section(&format!(
        "host 3's agent is killed (SIGKILL): its lease expires after {TTL} s"
    ));
    step("ip netns pids cphost3 | xargs kill -9")?;
    let took = until(
        "host 3 withdrawn",
        "vtep -n cphost1 fdb show",
        Duration::from_secs(TTL + 2),
        |o| !o.contains(&ip(2)),
    )?;
    println!(
        "(host 3's entries left host 1 {} ms after the kill)",
        took.as_millis()
    );
    step("vtep -n cphost1 fdb show")?;
    step("vtep -n cphost1 agent status")?;
    section("what host 1's agent said");
    step("cat /tmp/vtep-demo-agent-cphost1.log")?;
    Ok(())
}
