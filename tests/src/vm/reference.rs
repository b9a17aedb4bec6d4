//! DESIGN.md's reference scenario with the VMs as the two hosts: VM 1 = 192.168.104.2 with
//! container c1 (12.12.12.2), VM 2 = 192.168.104.3 with c2 (12.12.12.3); MTU 1450, VNI 42.
//! The commands are the README's and DESIGN.md's, as a user types them on each host.

use anyhow::{bail, Context, Result};

use super::{Pair, Vm};

/// One host's side of the scenario: index 0 or 1.
pub struct Side {
    pub ip: &'static str,
    pub container: &'static str,
    pub container_ip: &'static str,
    pub mac: &'static str,
}

pub const SIDES: [Side; 2] = [
    Side {
        ip: "192.168.104.2",
        container: "c1",
        container_ip: "12.12.12.2",
        mac: "02:42:c0:a8:00:02",
    },
    Side {
        ip: "192.168.104.3",
        container: "c2",
        container_ip: "12.12.12.3",
        mac: "02:42:c0:a8:00:03",
    },
];

/// The README's vtep commands on host `me`, with extra `vtep up` arguments (e.g.
/// `--decap xdp --xdp-mode native`).
pub fn vtep_commands(me: usize, up_args: &str) -> Vec<String> {
    let (h, p) = (&SIDES[me], &SIDES[1 - me]);
    vec![
        format!("vtep up --dev eth1 --local {} {up_args}", h.ip)
            .trim_end()
            .to_string(),
        format!(
            "vtep port add {} --mac {} --addr {}/24 --vni 42",
            h.container, h.mac, h.container_ip
        ),
        format!("vtep fdb add {} dst {} vni 42", p.mac, p.ip),
        format!("vtep neigh add {} lladdr {} vni 42", p.container_ip, p.mac),
    ]
}

/// DESIGN.md's classic commands on host `me` (the VM's root namespace is `overns`, the
/// container's namespace `pinkns`).
pub fn kernel_commands(me: usize) -> Vec<String> {
    let (h, p) = (&SIDES[me], &SIDES[1 - me]);
    let c = h.container;
    vec![
        format!("ip netns add {c}"),
        format!("ip link add dev veth1 mtu 1450 type veth peer name eth0 mtu 1450 netns {c}"),
        format!("ip -n {c} link set eth0 address {}", h.mac),
        format!("ip -n {c} addr add {}/24 dev eth0", h.container_ip),
        format!("ip -n {c} link set eth0 up"),
        format!("ip -n {c} link set lo up"),
        "ip link add dev br0 type bridge".into(),
        "ip link add dev vxlan1 type vxlan id 42 proxy learning dstport 4789".into(),
        "ip link set veth1 master br0".into(),
        "ip link set vxlan1 master br0".into(),
        "ip link set br0 up".into(),
        "ip link set vxlan1 up".into(),
        "ip link set veth1 up".into(),
        format!(
            "bridge fdb add {} dev vxlan1 self dst {} vni 42 port 4789",
            p.mac, p.ip
        ),
        format!(
            "ip neigh add {} lladdr {} dev vxlan1",
            p.container_ip, p.mac
        ),
    ]
}

/// How a host builds its overlay.
#[derive(Clone, Debug)]
pub enum Stack {
    Kernel,
    /// vtep with these extra `vtep up` arguments.
    Vtep(String),
}

impl Stack {
    pub fn commands(&self, me: usize) -> Vec<String> {
        match self {
            Stack::Kernel => kernel_commands(me),
            Stack::Vtep(args) => vtep_commands(me, args),
        }
    }
}

impl Pair {
    /// Configures both hosts, each with its stack.
    pub fn configure(&self, stacks: [&Stack; 2]) -> Result<()> {
        for (me, stack) in stacks.iter().enumerate() {
            for cmd in stack.commands(me) {
                self.vms[me].run(&cmd)?;
            }
        }
        Ok(())
    }

    /// Removes what `configure` made on host `me` (both stacks' leftovers).
    pub fn unconfigure(&self, me: usize, stack: &Stack) -> Result<()> {
        let vm = &self.vms[me];
        match stack {
            Stack::Vtep(_) => {
                vm.run("vtep down")?;
            }
            Stack::Kernel => {
                vm.run(&format!(
                    "ip link del br0; ip link del vxlan1; ip link del veth1; ip netns del {}",
                    SIDES[me].container
                ))?;
            }
        }
        Ok(())
    }

    /// `ping -c COUNT` from the container on host `from` to the other container; the
    /// number of replies.
    pub fn ping(&self, from: usize, count: u32) -> Result<u32> {
        let (h, p) = (&SIDES[from], &SIDES[1 - from]);
        let (_, out) = self.vms[from].output(&format!(
            "ip netns exec {} ping -c {count} -i 0.2 -W 2 {}",
            h.container, p.container_ip
        ))?;
        replies(&out)
    }

    /// A short iperf3 from container 1 to container 2 (`udp` adds `-u -b RATE`): the
    /// client's JSON report.
    pub fn iperf(&self, seconds: u32, udp: Option<&str>) -> Result<serde_json::Value> {
        let server = &self.vms[1];
        server.run(&format!(
            "ip netns exec {} iperf3 -s -1 -D -I /tmp/iperf3.pid",
            SIDES[1].container
        ))?;
        wait_listening(server, SIDES[1].container)?;
        let mode = match udp {
            Some(rate) => format!("-u -b {rate}"),
            None => String::new(),
        };
        let (rc, out) = self.vms[0].output_within(
            &format!(
                "ip netns exec {} iperf3 -J --connect-timeout 3000 -t {seconds} {mode} -c {}",
                SIDES[0].container, SIDES[1].container_ip
            ),
            std::time::Duration::from_secs(u64::from(seconds) + 30),
        )?;
        server
            .output("kill $(cat /tmp/iperf3.pid) 2>/dev/null; rm -f /tmp/iperf3.pid")
            .ok();
        let json: serde_json::Value = serde_json::from_str(&out)
            .with_context(|| format!("iperf3 printed no JSON (exit {rc}): {out}"))?;
        if let Some(e) = json.get("error") {
            bail!("iperf3: {e}");
        }
        Ok(json)
    }
}

fn wait_listening(vm: &Vm, ns: &str) -> Result<()> {
    for _ in 0..100 {
        if vm
            .run(&format!("ip netns exec {ns} ss -Hltn 'sport = :5201'"))?
            .contains("5201")
        {
            return Ok(());
        }
    }
    bail!("[{}] iperf3 server never listened", vm.name)
}

/// Replies counted in ping's summary.
pub fn replies(out: &str) -> Result<u32> {
    let line = out
        .lines()
        .find(|l| l.contains("packets transmitted"))
        .with_context(|| format!("no ping summary in: {out}"))?;
    let field = line
        .split(',')
        .find(|f| f.contains("received"))
        .context("ping summary without `received`")?;
    Ok(field
        .split_whitespace()
        .next()
        .context("ping received count")?
        .parse()?)
}

/// TCP Gbit/s and retransmits from an iperf3 client report.
pub fn tcp_result(json: &serde_json::Value) -> Result<(f64, u64)> {
    let sum = &json["end"]["sum_sent"];
    let bits = sum["bits_per_second"]
        .as_f64()
        .context("iperf3 report without sum_sent")?;
    let rx = json["end"]["sum_received"]["bits_per_second"]
        .as_f64()
        .context("iperf3 report without sum_received")?;
    Ok((rx.min(bits) / 1e9, sum["retransmits"].as_u64().unwrap_or(0)))
}

/// UDP: (packets sent, lost percent) from an iperf3 client report.
pub fn udp_result(json: &serde_json::Value) -> Result<(u64, f64)> {
    let sum = &json["end"]["sum"];
    Ok((
        sum["packets"]
            .as_u64()
            .context("iperf3 UDP report without packets")?,
        sum["lost_percent"].as_f64().unwrap_or(100.0),
    ))
}
