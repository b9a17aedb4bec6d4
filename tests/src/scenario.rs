//! DESIGN.md's reference scenario on one machine: two hosts (namespaces whose `eth1`s are a
//! veth pair, 192.168.104.2 and .3), one container per host (12.12.12.2 and .3, MTU 1450,
//! VNI 42), with each host's overlay built by vtep or by the classic bridge + kernel vxlan.

use std::cell::RefCell;

use anyhow::{Context, Result};

use crate::{
    cmd::{in_ns, run, vtep},
    netns::{self, Netns},
};

pub const VNI: &str = "42";

/// How a host builds its overlay.
#[derive(Clone, Debug)]
pub enum Stack {
    /// vtep, with extra `vtep up` arguments (e.g. `--xdp-mode native`).
    Vtep(Vec<String>),
    /// Linux bridge + kernel vxlan device, exactly DESIGN.md's classic commands.
    Kernel,
}

impl Stack {
    pub fn vtep() -> Self {
        Stack::Vtep(Vec::new())
    }

    pub fn vtep_with(args: &[&str]) -> Self {
        Stack::Vtep(args.iter().map(|s| s.to_string()).collect())
    }
}

/// The underlay's address families: IPv4 (the reference scenario), IPv6 (2001:db8::2 and
/// ::3 on the hosts' eth1s), or both on every host.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Underlay {
    V4,
    V6,
    Dual,
}

/// One simulated host and its container.
pub struct Host {
    pub ns: String,
    /// The host's IPv4 underlay address (192.168.104.(n+1)).
    pub ip: String,
    /// The host's IPv6 underlay address (2001:db8::(n+1)), configured on IPv6 and dual
    /// underlays.
    pub ip6: String,
    pub underlay: Underlay,
    pub container: String,
    pub container_ip: String,
    pub mac: String,
    pub stack: Stack,
}

impl Host {
    fn new(tag: &str, n: u8, stack: Stack, underlay: Underlay) -> Self {
        // Host n: underlay 192.168.104.(n+1), its first container 12.12.12.(n+1) with MAC
        // 02:42:c0:a8:00:(n+1), as in the reference scenario.
        Host {
            ns: format!("{tag}h{n}"),
            ip: format!("192.168.104.{}", n + 1),
            ip6: format!("2001:db8::{:x}", n + 1),
            underlay,
            container: format!("{tag}c{n}"),
            container_ip: format!("12.12.12.{}", n + 1),
            mac: format!("02:42:c0:a8:00:{:02x}", n + 1),
            stack,
        }
    }

    /// `vtep -n HOST port add CONTAINER --mac MAC --addr IP/24 --vni VNI`, with `--mtu
    /// 1430` where the host has an IPv6 address (VXLAN over IPv6 adds 70 bytes, not 50).
    pub fn port(&self, container: &str, mac: &str, ip: &str, vni: u32) -> Result<String> {
        self.port_with(container, mac, &[&format!("{ip}/24")], vni)
    }

    /// The same with any addresses (`--addr` for each).
    pub fn port_with(
        &self,
        container: &str,
        mac: &str,
        addrs: &[&str],
        vni: u32,
    ) -> Result<String> {
        let (vni, mtu) = (vni.to_string(), self.mtu().to_string());
        let mut args = vec![
            "port", "add", container, "--mac", mac, "--vni", &vni, "--mtu", &mtu,
        ];
        for a in addrs {
            args.extend(["--addr", a]);
        }
        self.vtep(&args)
    }

    /// The container's IPv6 address in the dual-stack scenario: fd00:12::N beside 12.12.12.N.
    pub fn container_ip6(&self) -> String {
        let n = self.container_ip.rsplit('.').next().unwrap_or("0");
        format!("fd00:12::{n}")
    }

    /// The container's IPv6 link-local address, derived from its MAC (EUI-64) as `port add`
    /// and the kernel do.
    pub fn container_ll(&self) -> String {
        let m: Vec<u8> = self
            .mac
            .split(':')
            .map(|b| u8::from_str_radix(b, 16).unwrap_or(0))
            .collect();
        let w = |a: u8, b: u8| u16::from_be_bytes([a, b]);
        let ll = std::net::Ipv6Addr::new(
            0xfe80,
            0,
            0,
            0,
            w(m[0] ^ 2, m[1]),
            w(m[2], 0xff),
            w(0xfe, m[3]),
            w(m[4], m[5]),
        );
        ll.to_string()
    }

    /// The dual-stack reference entries: the port with both addresses, and `p`'s container
    /// in the FDB and, by both addresses, in the neighbour table.
    pub fn dual_stack_entries(&self, p: &Host) -> Result<()> {
        let (v4, v6) = (
            format!("{}/24", self.container_ip),
            format!("{}/64", self.container_ip6()),
        );
        self.port_with(&self.container, &self.mac, &[&v4, &v6], 42)?;
        self.vtep(&["fdb", "add", &p.mac, "dst", p.vtep_ip(), "vni", VNI])?;
        for ip in [p.container_ip.clone(), p.container_ip6()] {
            self.vtep(&["neigh", "add", &ip, "lladdr", &p.mac, "vni", VNI])?;
        }
        Ok(())
    }

    /// The containers' MTU on this host's underlay of 1500 bytes: what is left inside
    /// VXLAN over its largest outer header.
    pub fn mtu(&self) -> u32 {
        match self.underlay {
            Underlay::V4 => 1450,
            Underlay::V6 | Underlay::Dual => 1430,
        }
    }

    /// The address other hosts' FDB entries point at: IPv6 on an IPv6 underlay, else IPv4.
    pub fn vtep_ip(&self) -> &str {
        match self.underlay {
            Underlay::V6 => &self.ip6,
            Underlay::V4 | Underlay::Dual => &self.ip,
        }
    }

    /// `--local` for each address family of the underlay.
    pub fn local_args(&self) -> Vec<&str> {
        let mut args = Vec::new();
        if self.underlay != Underlay::V6 {
            args.extend(["--local", self.ip.as_str()]);
        }
        if self.underlay != Underlay::V4 {
            args.extend(["--local", self.ip6.as_str()]);
        }
        args
    }

    /// The reference scenario's vtep configuration on this host towards `p`: its container
    /// port, and the FDB and neighbour entries of `p`'s container, in VNI 42.
    pub fn reference_entries(&self, p: &Host) -> Result<()> {
        self.port(&self.container, &self.mac, &self.container_ip, 42)?;
        self.vtep(&["fdb", "add", &p.mac, "dst", p.vtep_ip(), "vni", VNI])?;
        self.vtep(&[
            "neigh",
            "add",
            &p.container_ip,
            "lladdr",
            &p.mac,
            "vni",
            VNI,
        ])?;
        Ok(())
    }

    /// Addresses and raises the host's underlay device `eth1` (made by the caller). IPv6
    /// addresses skip duplicate address detection, so they work at once.
    pub fn underlay_up(&self) -> Result<()> {
        if self.underlay != Underlay::V6 {
            let addr = format!("{}/24", self.ip);
            run("ip", &["-n", &self.ns, "addr", "add", &addr, "dev", "eth1"])?;
        }
        if self.underlay != Underlay::V4 {
            let addr = format!("{}/64", self.ip6);
            run(
                "ip",
                &["-n", &self.ns, "addr", "add", &addr, "dev", "eth1", "nodad"],
            )?;
        }
        run("ip", &["-n", &self.ns, "link", "set", "eth1", "up"])?;
        Ok(())
    }

    /// Where vtep pins this host's programs and maps, as `vtep show` reports it.
    pub fn pin_dir(&self) -> Result<std::path::PathBuf> {
        let show: serde_json::Value = serde_json::from_str(&self.vtep(&["-j", "show"])?)?;
        let dir = show["state"]
            .as_str()
            .context("`vtep -j show` without \"state\"")?;
        Ok(dir.into())
    }

    /// Routes `net` through `via` (a routed underlay), with IP forwarding on and `vtep up`
    /// run again so vtep's FIB lookups answer, and `via` a permanent neighbour: the
    /// kernel's ARP table is shared by every namespace and other tests fill it, and a flood
    /// to an unresolved hop sends every copy on the detour through the CPU's backlog.
    pub fn route_through(&self, net: &str, via: &Host) -> Result<()> {
        run("ip", &["-n", &self.ns, "route", "add", net, "via", &via.ip])?;
        let link: serde_json::Value =
            serde_json::from_str(&run("ip", &["-n", &via.ns, "-j", "link", "show", "eth1"])?)?;
        let mac = link[0]["address"].as_str().context("no MAC on eth1")?;
        run(
            "ip",
            &[
                "-n",
                &self.ns,
                "neigh",
                "replace",
                &via.ip,
                "lladdr",
                mac,
                "dev",
                "eth1",
                "nud",
                "permanent",
            ],
        )?;
        crate::cmd::in_ns(
            &self.ns,
            &["sysctl", "-qw", "net.ipv4.conf.all.forwarding=1"],
        )?;
        self.vtep(&["up"])?;
        Ok(())
    }

    /// The verdict counter `name`, as `vtep -j stats` reports it.
    pub fn counter(&self, name: &str) -> Result<u64> {
        let stats: serde_json::Value = serde_json::from_str(&self.vtep(&["-j", "stats"])?)?;
        stats[name]
            .as_u64()
            .with_context(|| format!("counter {name}"))
    }

    /// `vtep -n HOST -batch -` with `lines` on stdin.
    pub fn batch(&self, lines: &str) -> Result<()> {
        use std::io::Write;
        let mut child = std::process::Command::new(crate::cmd::vtep_bin())
            .args(["-n", &self.ns, "-batch", "-"])
            .stdin(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()?;
        child
            .stdin
            .take()
            .context("stdin")?
            .write_all(lines.as_bytes())?;
        let out = child.wait_with_output()?;
        anyhow::ensure!(
            out.status.success(),
            "vtep -batch on {}: {}",
            self.ns,
            String::from_utf8_lossy(&out.stderr).trim()
        );
        Ok(())
    }

    /// `vtep -n HOST args...`
    pub fn vtep(&self, args: &[&str]) -> Result<String> {
        let mut full = vec!["-n", self.ns.as_str()];
        full.extend_from_slice(args);
        vtep(&full)
    }
}

/// Simulated hosts and their containers; everything is removed on drop.
pub struct Testbed {
    pub hosts: Vec<Host>,
    /// Namespaces made outside vtep (kernel-stack containers, the underlay switch).
    extra: RefCell<Vec<String>>,
    _host_ns: Vec<Netns>,
}

/// The overlay the containers talk over.
pub trait Overlay {
    /// The two containers' namespaces and addresses, in host order.
    fn endpoints(&self) -> [(&str, &str); 2];
}

impl Testbed {
    /// The reference scenario: two hosts, one container each, static FDB and neighbour
    /// entries for each other, with the overlay each host's stack asks for.
    pub fn new(tag: &str, stacks: [Stack; 2]) -> Result<Self> {
        Self::new_on(tag, stacks, Underlay::V4)
    }

    /// The reference scenario over an `underlay` of another family.
    pub fn new_on(tag: &str, stacks: [Stack; 2], underlay: Underlay) -> Result<Self> {
        let bed = Self::underlay_on(tag, stacks.to_vec(), underlay)?;
        bed.configure(0, 1)?;
        bed.configure(1, 0)?;
        Ok(bed)
    }

    /// The reference scenario with IPv6 inside too: containers fd00:12::2/64 and
    /// fd00:12::3/64 beside their IPv4 addresses, neighbour entries for both (vtep stacks).
    pub fn dual_stack(tag: &str, stacks: [Stack; 2]) -> Result<Self> {
        Self::dual_stack_on(tag, stacks, Underlay::V4)
    }

    /// The same on an underlay of `underlay`'s families.
    pub fn dual_stack_on(tag: &str, stacks: [Stack; 2], underlay: Underlay) -> Result<Self> {
        let bed = Self::underlay_on(tag, stacks.to_vec(), underlay)?;
        let (h1, h2) = (bed.c1(), bed.c2());
        h1.dual_stack_entries(h2)?;
        h2.dual_stack_entries(h1)?;
        Ok(bed)
    }

    /// Hosts on one underlay segment (192.168.104.2, .3, ...), `vtep up` already run on
    /// the vtep ones, no ports yet. Two hosts share a veth pair as their eth1s; more hang
    /// off a bridge in a switch namespace (the physical switch, not part of any overlay).
    pub fn underlay(tag: &str, stacks: Vec<Stack>) -> Result<Self> {
        Self::underlay_on(tag, stacks, Underlay::V4)
    }

    /// The same on an underlay of `underlay`'s families (2001:db8::2, ::3, ... for IPv6).
    pub fn underlay_on(tag: &str, stacks: Vec<Stack>, underlay: Underlay) -> Result<Self> {
        let hosts: Vec<Host> = stacks
            .into_iter()
            .zip(1..)
            .map(|(s, n)| Host::new(tag, n, s, underlay))
            .collect();
        let mut host_ns = Vec::new();
        for h in &hosts {
            host_ns.push(Netns::add(&h.ns)?);
        }
        let bed = Testbed {
            hosts,
            extra: RefCell::new(Vec::new()),
            _host_ns: host_ns,
        };
        if let [a, b] = &bed.hosts[..] {
            run(
                "ip",
                &[
                    "link", "add", "eth1", "netns", &a.ns, "type", "veth", "peer", "name", "eth1",
                    "netns", &b.ns,
                ],
            )?;
        } else {
            let switch = switch_name(tag);
            bed.track(&switch);
            run("ip", &["netns", "add", &switch])?;
            run(
                "ip",
                &["-n", &switch, "link", "add", "br0", "type", "bridge"],
            )?;
            run("ip", &["-n", &switch, "link", "set", "br0", "up"])?;
            for (i, h) in bed.hosts.iter().enumerate() {
                let port = format!("p{i}");
                run(
                    "ip",
                    &[
                        "link", "add", "eth1", "netns", &h.ns, "type", "veth", "peer", "name",
                        &port, "netns", &switch,
                    ],
                )?;
                run(
                    "ip",
                    &["-n", &switch, "link", "set", &port, "master", "br0", "up"],
                )?;
            }
        }
        for h in &bed.hosts {
            h.underlay_up()?;
            if let Stack::Vtep(extra) = &h.stack {
                let mut up = vec!["up", "--dev", "eth1"];
                up.extend(h.local_args());
                up.extend(extra.iter().map(String::as_str));
                h.vtep(&up)?;
            }
        }
        Ok(bed)
    }

    /// Removes namespace `ns` with the testbed.
    pub fn track(&self, ns: &str) {
        self.extra.borrow_mut().push(ns.to_string());
    }

    fn configure(&self, me: usize, peer: usize) -> Result<()> {
        let (h, p) = (&self.hosts[me], &self.hosts[peer]);
        match &h.stack {
            Stack::Vtep(_) => h.reference_entries(p)?,
            Stack::Kernel => classic(h, p)?,
        }
        Ok(())
    }

    pub fn c1(&self) -> &Host {
        &self.hosts[0]
    }

    pub fn c2(&self) -> &Host {
        &self.hosts[1]
    }
}

/// The switch namespace joining the hosts of a testbed of three or more.
pub fn switch_name(tag: &str) -> String {
    format!("{tag}sw")
}

/// DESIGN.md's classic per-host commands (overns = the host, pinkns = the container).
fn classic(h: &Host, p: &Host) -> Result<()> {
    classic_devices(h, &["proxy", "learning"])?;
    let host = h.ns.as_str();
    run(
        "bridge",
        &[
            "-n",
            host,
            "fdb",
            "add",
            &p.mac,
            "dev",
            "vxlan1",
            "self",
            "dst",
            p.vtep_ip(),
            "vni",
            VNI,
            "port",
            "4789",
        ],
    )?;
    run(
        "ip",
        &[
            "-n",
            host,
            "neigh",
            "add",
            &p.container_ip,
            "lladdr",
            &p.mac,
            "dev",
            "vxlan1",
        ],
    )?;
    Ok(())
}

/// The classic setup run on learning and flood lists only, the way it resolves remote
/// containers without any static entry: no `proxy`, and
/// `bridge fdb append 00:00:00:00:00:00 dev vxlan1 dst PEER` per peer.
pub fn classic_flooding(h: &Host, peers: &[&Host]) -> Result<()> {
    classic_devices(h, &["learning"])?;
    for p in peers {
        run(
            "bridge",
            &[
                "-n",
                &h.ns,
                "fdb",
                "append",
                "00:00:00:00:00:00",
                "dev",
                "vxlan1",
                "dst",
                p.vtep_ip(),
            ],
        )?;
    }
    Ok(())
}

/// Host 1 on vtep and host 2 on the classic bridge + kernel vxlan, one container each,
/// knowing each other only through flood lists and learning (no static entries).
pub fn flooding_with_kernel(tag: &str) -> Result<Testbed> {
    let bed = Testbed::underlay(tag, vec![Stack::vtep(), Stack::Kernel])?;
    let (h1, h2) = (&bed.hosts[0], &bed.hosts[1]);
    h1.port(&h1.container, &h1.mac, &h1.container_ip, 42)?;
    h1.vtep(&[
        "fdb",
        "append",
        "00:00:00:00:00:00",
        "dst",
        &h2.ip,
        "vni",
        VNI,
    ])?;
    classic_flooding(h2, &[h1])?;
    Ok(bed)
}

/// Host 1 on vtep (`vtep_args` added to `vtep up`) sending to host 2's container over
/// IPv6, host 2 on the classic bridge + kernel vxlan answering over IPv4, on a dual
/// underlay: what vtep sends over IPv6 can be judged by a real kernel receiver (the
/// device `vxlan6`, local 2001:db8::3, with `vxlan6_opts` such as `udp6zerocsumrx`) while
/// the way back is the IPv4 tunnel vtep already decapsulates. Host 2's bridge keeps host
/// 1's MAC on the IPv4 device (static, and vxlan6 learns nothing).
pub fn ipv6_sender_with_kernel(
    tag: &str,
    vtep_args: &[&str],
    vxlan6_opts: &[&str],
) -> Result<Testbed> {
    let bed = Testbed::new_on(
        tag,
        [Stack::vtep_with(vtep_args), Stack::Kernel],
        Underlay::Dual,
    )?;
    let (h1, h2) = (&bed.hosts[0], &bed.hosts[1]);
    h1.vtep(&["fdb", "replace", &h2.mac, "dst", &h2.ip6, "vni", VNI])?;
    let host = h2.ns.as_str();
    let mut vxlan = vec![
        "-n",
        host,
        "link",
        "add",
        "vxlan6",
        "type",
        "vxlan",
        "id",
        VNI,
        "local",
        &h2.ip6,
        "dstport",
        "4789",
        "nolearning",
    ];
    vxlan.extend_from_slice(vxlan6_opts);
    run("ip", &vxlan)?;
    run(
        "ip",
        &["-n", host, "link", "set", "vxlan6", "master", "br0"],
    )?;
    run(
        "bridge",
        &[
            "-n", host, "link", "set", "dev", "vxlan6", "learning", "off",
        ],
    )?;
    run(
        "bridge",
        &[
            "-n", host, "fdb", "add", &h1.mac, "dev", "vxlan1", "master", "static",
        ],
    )?;
    run("ip", &["-n", host, "link", "set", "vxlan6", "up"])?;
    Ok(bed)
}

/// Container, veth, bridge and vxlan device (with `vxlan_opts`) of a classic host.
fn classic_devices(h: &Host, vxlan_opts: &[&str]) -> Result<()> {
    let (host, c) = (h.ns.as_str(), h.container.as_str());
    let mtu = h.mtu().to_string();
    run("ip", &["netns", "add", c])?;
    run(
        "ip",
        &[
            "link", "add", "dev", "veth1", "mtu", &mtu, "netns", host, "type", "veth", "peer",
            "name", "eth0", "mtu", &mtu, "netns", c,
        ],
    )?;
    run("ip", &["-n", c, "link", "set", "eth0", "address", &h.mac])?;
    run(
        "ip",
        &[
            "-n",
            c,
            "addr",
            "add",
            &format!("{}/24", h.container_ip),
            "dev",
            "eth0",
        ],
    )?;
    run("ip", &["-n", c, "link", "set", "eth0", "up"])?;
    run("ip", &["-n", c, "link", "set", "lo", "up"])?;
    run(
        "ip",
        &["-n", host, "link", "add", "dev", "br0", "type", "bridge"],
    )?;
    let mut vxlan = vec![
        "-n", host, "link", "add", "dev", "vxlan1", "type", "vxlan", "id", VNI,
    ];
    vxlan.extend_from_slice(vxlan_opts);
    if h.underlay == Underlay::V6 {
        // A vxlan device's family is fixed when it is made: its local address says which.
        vxlan.extend_from_slice(&["local", &h.ip6]);
    }
    vxlan.extend_from_slice(&["dstport", "4789"]);
    run("ip", &vxlan)?;
    run("ip", &["-n", host, "link", "set", "veth1", "master", "br0"])?;
    run(
        "ip",
        &["-n", host, "link", "set", "vxlan1", "master", "br0"],
    )?;
    for dev in ["br0", "vxlan1", "veth1"] {
        run("ip", &["-n", host, "link", "set", dev, "up"])?;
    }
    Ok(())
}

impl Overlay for Testbed {
    fn endpoints(&self) -> [(&str, &str); 2] {
        [
            (&self.hosts[0].container, &self.hosts[0].container_ip),
            (&self.hosts[1].container, &self.hosts[1].container_ip),
        ]
    }
}

impl Drop for Testbed {
    fn drop(&mut self) {
        for h in &self.hosts {
            if matches!(h.stack, Stack::Vtep(_)) {
                h.vtep(&["down"]).ok();
            }
            netns::remove(&h.container);
        }
        for ns in self.extra.borrow().iter() {
            netns::remove(ns);
        }
        // The host namespaces go with `_host_ns`.
    }
}

/// The limit: the two containers joined by one veth pair, nothing in between.
pub struct Plain {
    c1: Netns,
    c2: Netns,
}

impl Plain {
    pub fn new(tag: &str) -> Result<Self> {
        let c1 = Netns::add(&format!("{tag}c1"))?;
        let c2 = Netns::add(&format!("{tag}c2"))?;
        run(
            "ip",
            &[
                "link", "add", "eth0", "mtu", "1450", "netns", &c1.name, "type", "veth", "peer",
                "name", "eth0", "mtu", "1450", "netns", &c2.name,
            ],
        )?;
        for (ns, ip) in [(&c1.name, "12.12.12.2/24"), (&c2.name, "12.12.12.3/24")] {
            run("ip", &["-n", ns, "addr", "add", ip, "dev", "eth0"])?;
            run("ip", &["-n", ns, "link", "set", "eth0", "up"])?;
        }
        Ok(Plain { c1, c2 })
    }
}

impl Overlay for Plain {
    fn endpoints(&self) -> [(&str, &str); 2] {
        [(&self.c1.name, "12.12.12.2"), (&self.c2.name, "12.12.12.3")]
    }
}

/// `ping -c COUNT` from `ns` to `dst`; true when every reply came back.
pub fn ping(ns: &str, dst: &str, count: u32) -> Result<bool> {
    let out = crate::cmd::output(
        "ip",
        &[
            "netns",
            "exec",
            ns,
            "ping",
            "-c",
            &count.to_string(),
            "-i",
            "0.2",
            "-W",
            "2",
            dst,
        ],
    )?;
    Ok(out.status.success()
        && String::from_utf8_lossy(&out.stdout).contains(&format!("{count} received")))
}

/// `ping -q -i INTERVAL -c COUNT` from `ns` to `dst`: (transmitted, received).
pub fn ping_counts(ns: &str, dst: &str, interval: &str, count: u64) -> Result<(u64, u64)> {
    let out = run(
        "ip",
        &[
            "netns",
            "exec",
            ns,
            "ping",
            "-q",
            "-i",
            interval,
            "-W",
            "1",
            "-c",
            &count.to_string(),
            dst,
        ],
    )?;
    let line = out
        .lines()
        .find(|l| l.contains("transmitted"))
        .context("ping printed no summary")?;
    let num = |word: &str| -> Result<u64> {
        let pos = line.find(word).context("ping summary field")?;
        Ok(line[..pos]
            .split_whitespace()
            .last()
            .context("ping summary number")?
            .parse()?)
    };
    Ok((num(" packets transmitted")?, num(" received")?))
}

/// Interfaces of `kind` (vxlan, bridge) in namespace `ns`.
pub fn links_of_kind(ns: &str, kind: &str) -> Result<String> {
    in_ns(ns, &["ip", "-o", "link", "show", "type", kind])
}
