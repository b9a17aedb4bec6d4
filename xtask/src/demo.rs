//! `cargo xtask demo`: DESIGN.md's reference scenario on this machine, configured only with
//! the `vtep` commands the README documents, then checked the way a user would.

use std::{
    io::{BufRead, BufReader},
    process::{Command, Stdio},
    sync::atomic::{AtomicBool, Ordering},
};

use anyhow::{bail, Context, Result};

static INTERRUPTED: AtomicBool = AtomicBool::new(false);

const HOSTS: [&str; 2] = ["host1", "host2"];
const CONTAINERS: [&str; 2] = ["c1", "c2"];

/// The simulated hosts: two namespaces whose eth1s are one veth pair.
const UNDERLAY: &[&str] = &[
    "ip netns add host1",
    "ip netns add host2",
    "ip link add eth1 netns host1 type veth peer name eth1 netns host2",
    "ip -n host1 addr add 192.168.104.2/24 dev eth1",
    "ip -n host2 addr add 192.168.104.3/24 dev eth1",
    "ip -n host1 link set eth1 up",
    "ip -n host2 link set eth1 up",
];

/// The overlay, exactly as the README's quick start shows it.
const OVERLAY: &[&str] = &[
    "vtep -n host1 up --dev eth1 --local 192.168.104.2",
    "vtep -n host1 port add c1 --mac 02:42:c0:a8:00:02 --addr 12.12.12.2/24 --vni 42",
    "vtep -n host1 fdb add 02:42:c0:a8:00:03 dst 192.168.104.3 vni 42",
    "vtep -n host1 neigh add 12.12.12.3 lladdr 02:42:c0:a8:00:03 vni 42",
    "vtep -n host2 up --dev eth1 --local 192.168.104.3",
    "vtep -n host2 port add c2 --mac 02:42:c0:a8:00:03 --addr 12.12.12.3/24 --vni 42",
    "vtep -n host2 fdb add 02:42:c0:a8:00:02 dst 192.168.104.2 vni 42",
    "vtep -n host2 neigh add 12.12.12.2 lladdr 02:42:c0:a8:00:02 vni 42",
];

/// The containers made again with an IPv6 address beside the IPv4 one, and neighbour
/// entries for both: README's dual-stack variant.
const DUAL_STACK: &[&str] = &[
    "vtep -n host1 port del c1",
    "vtep -n host1 port add c1 --mac 02:42:c0:a8:00:02 --addr 12.12.12.2/24 --addr fd00:12::2/64 --vni 42",
    "vtep -n host2 port del c2",
    "vtep -n host2 port add c2 --mac 02:42:c0:a8:00:03 --addr 12.12.12.3/24 --addr fd00:12::3/64 --vni 42",
    "vtep -n host1 neigh add fd00:12::3 lladdr 02:42:c0:a8:00:03 vni 42",
    "vtep -n host2 neigh add fd00:12::2 lladdr 02:42:c0:a8:00:02 vni 42",
];

/// Removes everything the demo made, whether it ends well, fails or is interrupted.
struct Cleanup;

impl Drop for Cleanup {
    fn drop(&mut self) {
        println!("\n== cleaning up");
        for host in HOSTS {
            sh_quiet(&format!("vtep -n {host} down")).ok();
        }
        for ns in HOSTS.iter().chain(&CONTAINERS) {
            sh_quiet(&format!("ip netns del {ns}")).ok();
        }
    }
}

pub fn run() -> Result<()> {
    ctrlc::set_handler(|| INTERRUPTED.store(true, Ordering::SeqCst))
        .context("installing the Ctrl-C handler")?;
    refuse_existing(HOSTS.iter().chain(&CONTAINERS).copied())?;
    let _cleanup = Cleanup;

    section("two simulated hosts joined by eth1 (192.168.104.2 and .3)");
    UNDERLAY.iter().try_for_each(|c| step(c))?;
    section("the overlay, with vtep only: no bridge, no vxlan device");
    OVERLAY.iter().try_for_each(|c| step(c))?;
    section("ping across the overlay, both ways");
    step("ip netns exec c1 ping -c 3 12.12.12.3")?;
    step("ip netns exec c2 ping -c 3 12.12.12.2")?;
    section("TCP through the overlay");
    step("ip netns exec c2 iperf3 -s -1 -D")?;
    wait_for_listener("c2")?;
    step("ip netns exec c1 iperf3 -c 12.12.12.3 -t 3")?;
    section("one tunnelled packet on host1's eth1, as tcpdump decodes it");
    show_vxlan_packet("12.12.12.3")?;
    section("dual stack: the containers again with IPv6 addresses (the README's variant)");
    DUAL_STACK.iter().try_for_each(|c| step(c))?;
    step("ip netns exec c1 ping -c 3 fd00:12::3")?;
    step("ip netns exec c2 ping -c 3 fd00:12::2")?;
    step("ip netns exec c2 iperf3 -s -1 -D")?;
    wait_for_listener("c2")?;
    step("ip netns exec c1 iperf3 -c fd00:12::3 -t 3")?;
    show_vxlan_packet("fd00:12::3")?;
    section("tables and counters");
    step("vtep -n host1 port show")?;
    step("vtep -n host1 fdb show")?;
    step("vtep -n host1 neigh show")?;
    step("vtep -n host1 stats")?;
    step("ip -n host1 -o link show type vxlan")?;
    println!("(no vxlan device above: the tunnel is the eBPF programs)");
    Ok(())
}

/// Fails naming the first of `names` that exists as a network namespace already.
pub fn refuse_existing<'a>(names: impl IntoIterator<Item = &'a str>) -> Result<()> {
    let existing = sh_quiet("ip netns list")?;
    for ns in names {
        if existing
            .lines()
            .any(|l| l.split_whitespace().next() == Some(ns))
        {
            bail!("namespace {ns} already exists; the demo uses it (remove it first)");
        }
    }
    Ok(())
}

pub fn section(title: &str) {
    println!("\n== {title}");
}

/// Runs `cmdline` through sh with the freshly built `vtep` first on PATH, echoing it first.
pub fn step(cmdline: &str) -> Result<()> {
    if INTERRUPTED.load(Ordering::SeqCst) {
        bail!("interrupted");
    }
    println!("$ {cmdline}");
    let status = shell(cmdline)
        .status()
        .with_context(|| format!("running {cmdline}"))?;
    if INTERRUPTED.load(Ordering::SeqCst) {
        bail!("interrupted");
    }
    if !status.success() {
        bail!("`{cmdline}` failed");
    }
    Ok(())
}

pub fn sh_quiet(cmdline: &str) -> Result<String> {
    let out = shell(cmdline).stderr(Stdio::null()).output()?;
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

fn shell(cmdline: &str) -> Command {
    let bin = crate::workspace_root().join("target/release");
    let path = format!(
        "{}:{}",
        bin.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let mut cmd = Command::new("sh");
    cmd.args(["-c", cmdline]).env("PATH", path);
    cmd
}

fn wait_for_listener(ns: &str) -> Result<()> {
    for _ in 0..500 {
        if sh_quiet(&format!("ip netns exec {ns} ss -Hltn 'sport = :5201'"))?.contains("5201") {
            return Ok(());
        }
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    bail!("iperf3 server did not start")
}

/// One tunnelled ping from c1 to `dst` as tcpdump on host1's eth1 decodes it.
fn show_vxlan_packet(dst: &str) -> Result<()> {
    let cmdline =
        "ip netns exec host1 tcpdump -i eth1 -n -vv -e -c 1 --immediate-mode udp port 4789";
    println!("$ {cmdline} & ip netns exec c1 ping -c 1 {dst}");
    let mut dump = shell(cmdline)
        .stdout(Stdio::inherit())
        .stderr(Stdio::piped())
        .spawn()?;
    let stderr = dump.stderr.take().context("tcpdump stderr")?;
    let lines = BufReader::new(stderr).lines();
    for line in lines {
        if line?.contains("listening on") {
            break;
        }
    }
    sh_quiet(&format!("ip netns exec c1 ping -c 1 -W 2 {dst}"))?;
    if !dump.wait()?.success() {
        bail!("tcpdump failed");
    }
    Ok(())
}
