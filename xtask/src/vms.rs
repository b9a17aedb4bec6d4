//! `cargo xtask demo --vms` and `cargo xtask bench --vms`: the reference scenario on two
//! QEMU VMs (Debian's 6.12 from bookworm-backports by default, `--kernel 6.1` for Debian
//! 12's own), each host a VM with a virtio-net eth1, configured with the README's
//! commands. The VMs, their wire and everything in them go when this ends, also on
//! failure and Ctrl-C.

use std::{
    sync::atomic::{AtomicBool, Ordering},
    time::Instant,
};

use anyhow::{bail, Context, Result};
use vtep_testbed::vm::{
    bench,
    reference::{vtep_commands, SIDES},
    Pair, Series, Vm,
};

static INTERRUPTED: AtomicBool = AtomicBool::new(false);

/// `--kernel 6.1|6.12` among `args`.
pub fn series(args: &[String]) -> Result<Series> {
    match args.iter().position(|a| a == "--kernel") {
        None => Ok(Series::V6_12),
        Some(i) => match args.get(i + 1).map(String::as_str) {
            Some("6.1") => Ok(Series::V6_1),
            Some("6.12") => Ok(Series::V6_12),
            other => bail!("--kernel takes 6.1 or 6.12, not {other:?}"),
        },
    }
}

fn interrupted() -> Result<()> {
    if INTERRUPTED.load(Ordering::SeqCst) {
        bail!("interrupted");
    }
    Ok(())
}

fn section(title: &str) {
    println!("\n== {title}");
}

/// Runs `cmd` on host `me` (VM 1 or 2), echoing it with the host's name as prompt.
fn step(vm: &Vm, host: usize, cmd: &str) -> Result<String> {
    interrupted()?;
    println!("host{}$ {cmd}", host + 1);
    let out = vm.run(cmd)?;
    print!("{out}");
    interrupted()?;
    Ok(out)
}

pub fn demo(args: &[String]) -> Result<()> {
    let series = series(args)?;
    ctrlc::set_handler(|| INTERRUPTED.store(true, Ordering::SeqCst))
        .context("installing the Ctrl-C handler")?;
    section(&format!(
        "two VMs on Debian's {} kernel (QEMU TCG, -smp 1 -m 256), each with a virtio-net eth1 on one wire",
        series.name()
    ));
    let started = Instant::now();
    let pair = Pair::boot(series, &vtep_testbed::netns::unique_tag("demo"))?;
    println!(
        "booted in {:.1} s: kernel {}; host1 = 192.168.104.2, host2 = 192.168.104.3",
        started.elapsed().as_secs_f64(),
        pair.kernel.release
    );
    let [h1, h2] = &pair.vms;
    step(
        h1,
        0,
        "uname -r; ip -4 -o addr show dev eth1 | awk '{print $2, $4}'; basename $(readlink /sys/class/net/eth1/device/driver)",
    )?;
    section("the overlay, with vtep only: the README's commands on each host (no `-n`: each VM is a host)");
    for (me, vm) in pair.vms.iter().enumerate() {
        for cmd in vtep_commands(me, "") {
            step(vm, me, &cmd)?;
        }
    }
    step(h1, 0, "tc filter show dev eth1 ingress; bpftool link show")?;
    println!(
        "{}",
        match series {
            Series::V6_1 => "(no TCX on 6.1: vtep's program is a netlink filter, pref 22100 handle 0x1, on a clsact qdisc it added)",
            Series::V6_12 => "(TCX: no tc filter; the links above are vtep's, `type 11` to Debian 12's bpftool)",
        }
    );
    section("ping across the overlay, both ways");
    step(h1, 0, "ip netns exec c1 ping -c 3 12.12.12.3")?;
    step(h2, 1, "ip netns exec c2 ping -c 3 12.12.12.2")?;
    section("TCP through the overlay (TCG: absolute speeds say nothing about hardware)");
    step(h2, 1, "ip netns exec c2 iperf3 -s -1 -D")?;
    for _ in 0..100 {
        if h2
            .run("ip netns exec c2 ss -Hltn 'sport = :5201'")?
            .contains("5201")
        {
            break;
        }
    }
    step(h1, 0, "ip netns exec c1 iperf3 -c 12.12.12.3 -t 3")?;
    section("one tunnelled packet on host1's eth1, as tcpdump decodes it");
    h1.run("tcpdump -i eth1 -n -vv -e -c 1 --immediate-mode udp port 4789 > /tmp/td.log 2>&1 &")?;
    poll(h1, "cat /tmp/td.log", "listening on")?;
    h1.run("ip netns exec c1 ping -c 1 -W 2 12.12.12.3 >/dev/null")?;
    poll(h1, "cat /tmp/td.log", "captured")?;
    println!("host1$ tcpdump -i eth1 -n -vv -e -c 1 udp port 4789");
    print!("{}", h1.run("cat /tmp/td.log")?);
    section("native XDP decap on virtio_net: `vtep up` again switches in place");
    for (me, vm) in pair.vms.iter().enumerate() {
        step(
            vm,
            me,
            &format!(
                "vtep up --dev eth1 --local {} --decap xdp --xdp-mode native",
                SIDES[me].ip
            ),
        )?;
    }
    step(h2, 1, "ip link show eth1")?;
    step(h1, 0, "ip netns exec c1 ping -c 3 12.12.12.3")?;
    section("tables and counters");
    step(h1, 0, "vtep port show")?;
    step(h1, 0, "vtep fdb show")?;
    step(h1, 0, "vtep neigh show")?;
    step(h2, 1, "vtep stats")?;
    step(
        h1,
        0,
        "ip -o link show type vxlan; ip -o link show type bridge",
    )?;
    println!("(no vxlan or bridge device above: the tunnel is the eBPF programs)");
    section("vtep down on both hosts");
    for (me, vm) in pair.vms.iter().enumerate() {
        step(vm, me, "vtep down")?;
    }
    step(h1, 0, "tc qdisc show dev eth1; ls /sys/fs/bpf")?;
    section("cleaning up: the VMs and their wire go");
    Ok(())
}

fn poll(vm: &Vm, cmd: &str, want: &str) -> Result<()> {
    for _ in 0..100 {
        interrupted()?;
        if vm.run(cmd)?.contains(want) {
            return Ok(());
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    bail!("`{cmd}` never showed {want}")
}

/// `cargo xtask bench --vms [--kernel K] [--runs N]`.
pub fn bench(args: &[String]) -> Result<()> {
    let series = series(args)?;
    let runs = match args.iter().position(|a| a == "--runs") {
        Some(i) => args
            .get(i + 1)
            .context("--runs takes a number")?
            .parse()
            .context("--runs takes a number")?,
        None => 3,
    };
    ctrlc::set_handler(|| INTERRUPTED.store(true, Ordering::SeqCst))
        .context("installing the Ctrl-C handler")?;
    eprintln!(
        "xtask: kernel vxlan, vtep TC, vtep XDP in turn, {runs} rounds, in one boot of two {} VMs",
        series.name()
    );
    let report = bench::run(
        series,
        runs,
        &vtep_testbed::netns::unique_tag("bench"),
        &mut |line| eprintln!("{line}"),
    )?;
    let table = report.table();
    println!("{table}");
    println!("Runs compare only within one boot; under TCG differences below ~15% are not resolved\n(ping RTT to ~0.1-0.2 ms), and absolute figures say nothing about hardware.");
    let out = crate::workspace_root().join("target/bench");
    std::fs::create_dir_all(&out)?;
    std::fs::write(out.join(format!("vms-{}.md", series.name())), table)?;
    Ok(())
}
