//! `vtep up`, `down`, `show` and `prune`: the tunnel itself (the vxlan device of the classic
//! setup). `up` on a host that is already up is an upgrade: the maps stay, new programs take
//! over every link atomically, and only the settings given change.

use std::{
    fs,
    net::{IpAddr, Ipv4Addr, Ipv6Addr},
};

use anyhow::{anyhow, bail, Context, Result};
use aya::programs::XdpMode;
use serde::Serialize;
use vtep_common::{
    wire::{SRCPORT_MAX, SRCPORT_MIN, VXLAN_PORT},
    Config, DECAP_TC, DECAP_XDP_GENERIC, DECAP_XDP_NATIVE, DEFAULT_MAX_LEARNED, IFNAME_MAX,
    LAYOUT_VERSION, MAX_FDB, MAX_NEIGH,
};

use crate::{
    args::Tos,
    cli::{DecapArg, UpArgs, XdpModeArg},
    datapath::{self, Capacity},
    host::{self, remove_if_present},
    lock::{HostLock, Step},
    output::{self, fixed, text_of},
    pins::Pins,
    state::{port_mtu_limit, PortHealth, State, StateError, TableUse},
    topology::Netlink,
};

pub async fn up(st: &mut State, args: &UpArgs) -> Result<()> {
    if let Some([min, max]) = args.srcport.as_deref() {
        if min.0 > max.0 {
            bail!("--srcport range {} {} is empty", min.0, max.0);
        }
    }
    st.pins.refuse_other_layouts()?;
    let current = if st.is_up() { Some(st.config()?) } else { None };
    let dev = match (&args.dev, &current) {
        (Some(dev), _) => dev.clone(),
        (None, Some(cfg)) => text_of(&cfg.underlay_name),
        (None, None) => bail!("missing --dev (the underlay device)"),
    };
    let local = match (args.local.as_slice(), &current) {
        ([], Some(cfg)) => Locals::of(cfg),
        ([], None) => bail!("missing --local (this VTEP's underlay address)"),
        (given, _) => Locals::given(given)?,
    };
    let nl = Netlink::connect()?;
    let ifindex = nl
        .ifindex(&dev)
        .await?
        .ok_or_else(|| anyhow!("device \"{dev}\" does not exist"))?;
    let mut prefix = Prefixes { v4: 0, v6: 0 };
    for ip in local.each() {
        let len = nl
            .address_prefix(ip)
            .await?
            .ok_or_else(|| anyhow!("{ip} is not an address of this host"))?;
        match ip {
            IpAddr::V4(_) => prefix.v4 = len,
            IpAddr::V6(_) => prefix.v6 = len,
        }
    }
    let (mtu, veth) = nl
        .mtu_and_veth(ifindex)
        .await?
        .ok_or_else(|| anyhow!("device \"{dev}\" does not exist"))?;
    let mut cfg = settings(args, current.as_ref(), &dev, local, ifindex, prefix)?;
    cfg.underlay_mtu = mtu;
    cfg.xdp_handoff = u8::from(veth);
    match current {
        Some(current) => upgrade(st, args, &current, cfg).await,
        None => {
            let capacity = Capacity {
                learned: args.max_learned.unwrap_or(DEFAULT_MAX_LEARNED),
                fdb: args.max_fdb.unwrap_or(MAX_FDB),
                neigh: args.max_neigh.unwrap_or(MAX_NEIGH),
            };
            st.step(Step::Up, async |s| {
                // Leftovers of an interrupted `up` are not state anyone relies on.
                s.pins.remove()?;
                s.pins.create()?;
                let result = attach(&s.pins, &cfg, capacity, &dev, &[]);
                if result.is_err() {
                    // The attach error is the one worth reporting; a retry or `down`
                    // removes whatever these leave.
                    datapath::detach_tc(&s.pins.underlay_link()).ok();
                    s.pins.remove().ok();
                }
                Ok(result?)
            })
            .await?;
            st.reopen()
        }
    }
}

/// This VTEP's underlay addresses: one of each family at most.
#[derive(Clone, Copy, Debug)]
struct Locals {
    v4: Option<Ipv4Addr>,
    v6: Option<Ipv6Addr>,
}

/// Prefix lengths of the local addresses' subnets (0 for a family without one).
#[derive(Clone, Copy, Debug)]
struct Prefixes {
    v4: u8,
    v6: u8,
}

impl Locals {
    fn given(ips: &[IpAddr]) -> Result<Self> {
        let mut l = Locals { v4: None, v6: None };
        for ip in ips {
            let twice = match ip {
                IpAddr::V4(v4) => l.v4.replace(*v4).is_some(),
                IpAddr::V6(v6) => l.v6.replace(*v6).is_some(),
            };
            if twice {
                bail!("--local takes one address of each family");
            }
            if ip.is_unspecified() || ip.is_multicast() || ip.is_loopback() {
                bail!("--local {ip} is not a unicast address a VTEP can send from");
            }
        }
        Ok(l)
    }

    fn of(cfg: &Config) -> Self {
        let v4 = Ipv4Addr::from(cfg.local_ip);
        let v6 = Ipv6Addr::from(cfg.local_ip6);
        Locals {
            v4: (!v4.is_unspecified()).then_some(v4),
            v6: (!v6.is_unspecified()).then_some(v6),
        }
    }

    /// IPv4 first, then IPv6.
    fn each(&self) -> impl Iterator<Item = IpAddr> {
        self.v4
            .map(IpAddr::V4)
            .into_iter()
            .chain(self.v6.map(IpAddr::V6))
    }
}

/// The settings `up` asks for: each option given, else the live one, else the default.
fn settings(
    args: &UpArgs,
    current: Option<&Config>,
    dev: &str,
    local: Locals,
    ifindex: u32,
    prefix: Prefixes,
) -> Result<Config> {
    let mut cfg = current.copied().unwrap_or(Config {
        udp_port: VXLAN_PORT,
        srcport_min: SRCPORT_MIN,
        srcport_max: SRCPORT_MAX,
        ttl: 64,
        learning: 1,
        ageing_ns: 300 * 1_000_000_000,
        ..Config::default()
    });
    cfg.local_ip = local.v4.unwrap_or(Ipv4Addr::UNSPECIFIED).octets();
    cfg.local_ip6 = local.v6.unwrap_or(Ipv6Addr::UNSPECIFIED).octets();
    cfg.underlay_ifindex = ifindex;
    cfg.underlay_name = fixed::<IFNAME_MAX>(dev);
    cfg.onlink_prefix = prefix.v4;
    cfg.onlink_prefix6 = prefix.v6;
    cfg.fib_ok = u8::from(forwarding("ipv4", dev));
    cfg.fib6_ok = u8::from(forwarding("ipv6", dev));
    cfg.ready = 1;
    if let Some(p) = args.port {
        cfg.udp_port = p.0;
    }
    if let Some([min, max]) = args.srcport.as_deref() {
        (cfg.srcport_min, cfg.srcport_max) = (min.0, max.0);
    }
    if let Some(ttl) = args.ttl {
        cfg.ttl = ttl;
    }
    if let Some(a) = args.ageing {
        cfg.ageing_ns = u64::from(a) * 1_000_000_000;
    }
    if args.learning || args.no_learning {
        cfg.learning = u8::from(args.learning);
    }
    if args.strict_peers || args.no_strict_peers {
        cfg.strict_peers = u8::from(args.strict_peers);
    }
    if args.udp6zerocsumtx || args.no_udp6zerocsumtx {
        cfg.udp6_zero_csum_tx = u8::from(args.udp6zerocsumtx);
    }
    if args.udp6zerocsumrx || args.no_udp6zerocsumrx {
        cfg.udp6_zero_csum_rx = u8::from(args.udp6zerocsumrx);
    }
    match args.tos {
        Some(Tos::Inherit) => (cfg.tos_inherit, cfg.tos) = (1, 0),
        Some(Tos::Fixed(t)) => (cfg.tos_inherit, cfg.tos) = (0, t),
        None => {}
    }
    cfg.decap = match (args.decap, args.xdp_mode) {
        (Some(DecapArg::Tc), Some(_)) => bail!("--xdp-mode needs --decap xdp"),
        (Some(DecapArg::Tc), None) => DECAP_TC,
        (_, Some(XdpModeArg::Generic)) => DECAP_XDP_GENERIC,
        (_, Some(XdpModeArg::Native)) | (Some(DecapArg::Xdp), None) => DECAP_XDP_NATIVE,
        (None, None) => cfg.decap,
    };
    Ok(cfg)
}

/// IP forwarding of `family` ("ipv4", "ipv6") on `dev` (read in the namespace this thread
/// is in): only then does `bpf_fib_lookup` answer, and vtep uses it; otherwise the kernel
/// resolves next hops.
fn forwarding(family: &str, dev: &str) -> bool {
    fs::read_to_string(format!("/proc/sys/net/{family}/conf/{dev}/forwarding"))
        .is_ok_and(|v| v.trim() == "1")
}

fn xdp_mode(decap: u8) -> Option<XdpMode> {
    match decap {
        DECAP_XDP_NATIVE => Some(XdpMode::Driver),
        DECAP_XDP_GENERIC => Some(XdpMode::Skb),
        _ => None,
    }
}

/// Loads the programs, writes the settings, and attaches (or, on a live host, re-links)
/// the underlay and every port in `ports` (host ifname, ifindex).
fn attach(
    pins: &Pins,
    cfg: &Config,
    capacity: Capacity,
    dev: &str,
    ports: &[(String, u32)],
) -> Result<()> {
    let mut ebpf = datapath::load(&pins.dir, capacity)?;
    // Everything is verified before anything live changes.
    datapath::tc_program(&mut ebpf, datapath::PORT_PROGRAM, &pins.port_program())?;
    datapath::tc_program(
        &mut ebpf,
        datapath::UNDERLAY_TC_PROGRAM,
        &pins.underlay_tc_program(),
    )?;
    let xdp = xdp_mode(cfg.decap);
    if xdp.is_some() {
        datapath::xdp_program(&mut ebpf, &pins.underlay_xdp_program())?;
    }
    datapath::set_config(&mut ebpf, cfg)?;
    datapath::tail_programs(&mut ebpf)?;
    // TC is always there: it decapsulates (behind XDP, what XDP passes on) and finishes the
    // frames the port program routes through the underlay's ingress.
    let underlay_tc = datapath::tc(&mut ebpf, datapath::UNDERLAY_TC_PROGRAM)?;
    datapath::tc_link(underlay_tc, dev, &pins.underlay_link())?;
    match xdp {
        Some(mode) => {
            let prog = datapath::xdp(&mut ebpf)?;
            datapath::xdp_link(prog, cfg.underlay_ifindex, mode, &pins.underlay_xdp_link())?;
        }
        None => {
            // Switching from XDP to TC: drop the XDP link.
            remove_if_present(&pins.underlay_xdp_link())?;
            remove_if_present(&pins.underlay_xdp_program())?;
        }
    }
    let port_prog = datapath::tc(&mut ebpf, datapath::PORT_PROGRAM)?;
    for (ifname, index) in ports {
        datapath::tc_link(port_prog, ifname, &pins.port_link(*index))?;
    }
    Ok(())
}

/// `up` on a live host: same underlay device and table sizes, everything else may change.
/// The maps (tables, counters) carry over; no link is ever without a program. Everything
/// is checked before anything changes.
async fn upgrade(st: &mut State, args: &UpArgs, current: &Config, cfg: Config) -> Result<()> {
    let current_dev = text_of(&current.underlay_name);
    if text_of(&cfg.underlay_name) != current_dev {
        bail!(
            "vtep is up on {current_dev} here: moving it to another device needs `vtep down` first"
        );
    }
    let have = st.tables()?.capacity;
    for (flag, asked, size) in [
        ("--max-learned", args.max_learned, have.learned),
        ("--max-fdb", args.max_fdb, have.fdb),
        ("--max-neigh", args.max_neigh, have.neigh),
    ] {
        if asked.is_some_and(|a| a != size) {
            bail!("the table holds {size} entries; changing {flag} needs `vtep down` first");
        }
    }
    let capacity = Capacity {
        learned: have.learned,
        fdb: have.fdb,
        neigh: have.neigh,
    };
    // Ports whose veth is gone have no link to carry a program: leave them to `port del`.
    let nl = Netlink::connect()?;
    let live: Vec<_> = st
        .ports_checked(&nl)
        .await?
        .into_iter()
        .filter(|p| p.health == PortHealth::Ok)
        .collect();
    warn_mtu(&current_dev, &cfg, &live);
    let ports: Vec<(String, u32)> = live
        .iter()
        .map(|p| (p.host_ifname(), p.host_ifindex))
        .collect();
    // The underlay device was deleted and made again under its name: its links died with
    // it, so attach anew instead of swapping programs into dead links.
    if current.underlay_ifindex != cfg.underlay_ifindex {
        remove_if_present(&st.pins.underlay_link())?;
        remove_if_present(&st.pins.underlay_xdp_link())?;
    }
    attach(&st.pins, &cfg, capacity, &current_dev, &ports)?;
    crate::monitor::clear_stale_reader(st)?;
    st.reopen()
}

/// Tells (on stderr) of ports whose MTU the underlay no longer carries: they keep working,
/// but their larger frames get ICMP "fragmentation needed" or are dropped.
fn warn_mtu(dev: &str, cfg: &Config, ports: &[crate::state::PortState]) {
    let underlay_mtu = cfg.underlay_mtu;
    let (limit, _) = port_mtu_limit(underlay_mtu, cfg);
    let over: Vec<String> = ports
        .iter()
        .filter(|p| p.port.mtu > limit)
        .map(|p| format!("{} (MTU {})", p.netns(), p.port.mtu))
        .collect();
    if !over.is_empty() {
        eprintln!(
            "vtep: {dev} has MTU {underlay_mtu}, too small for port(s) {}: frames above {limit} bytes get ICMP fragmentation needed or are dropped",
            over.join(", ")
        );
    }
}

pub async fn down(mut st: State) -> Result<()> {
    if !st.pins.dir.exists() {
        st.pins.refuse_other_layouts()?;
        st.release()?;
        return Err(StateError::NotUp.into());
    }
    st.step(Step::Down, async |s| Ok(s.teardown().await?))
        .await?;
    st.release()
}

#[derive(Serialize)]
struct Show {
    dev: String,
    ifindex: u32,
    attached: bool,
    /// iproute2's keys for a vxlan device's local address of each family.
    #[serde(skip_serializing_if = "Option::is_none")]
    local: Option<Ipv4Addr>,
    #[serde(skip_serializing_if = "Option::is_none")]
    local6: Option<Ipv6Addr>,
    port: u16,
    decap: &'static str,
    learning: bool,
    ageing: u64,
    ttl: u8,
    tos: String,
    srcport: [u16; 2],
    strict_peers: bool,
    udp6zerocsumtx: bool,
    udp6zerocsumrx: bool,
    capacity: crate::state::Capacities,
    used: TableUse,
    layout: u32,
    state: String,
    maps: std::collections::BTreeMap<&'static str, u32>,
    /// Kernel memory of each map, in bytes.
    memory: std::collections::BTreeMap<&'static str, u64>,
    programs: std::collections::BTreeMap<&'static str, u32>,
    ports_broken: usize,
}

pub async fn show(st: &mut State, json: bool) -> Result<()> {
    let cfg = st.config()?;
    warn_stale()?;
    let nl = Netlink::connect()?;
    let dev = text_of(&cfg.underlay_name);
    // Attached: the device the programs were linked to is still there, under its name.
    let attached = nl.link_name(cfg.underlay_ifindex).await?.as_deref() == Some(dev.as_str())
        && st.pins.underlay_link().exists();
    let ports = st.ports_checked(&nl).await?;
    let used = st.table_use()?;
    let state = st.pins.dir.display().to_string();
    let programs = datapath::program_ids(&st.pins);
    let t = st.tables()?;
    let show = Show {
        dev,
        ifindex: cfg.underlay_ifindex,
        attached,
        local: Locals::of(&cfg).v4,
        local6: Locals::of(&cfg).v6,
        port: cfg.udp_port,
        decap: match cfg.decap {
            DECAP_XDP_NATIVE => "xdp-native",
            DECAP_XDP_GENERIC => "xdp-generic",
            _ => "tc",
        },
        learning: cfg.learning != 0,
        ageing: cfg.ageing_ns / 1_000_000_000,
        ttl: cfg.ttl,
        tos: if cfg.tos_inherit != 0 {
            "inherit".into()
        } else {
            format!("{:#x}", cfg.tos)
        },
        srcport: [cfg.srcport_min, cfg.srcport_max],
        strict_peers: cfg.strict_peers != 0,
        udp6zerocsumtx: cfg.udp6_zero_csum_tx != 0,
        udp6zerocsumrx: cfg.udp6_zero_csum_rx != 0,
        capacity: t.capacity,
        used,
        layout: LAYOUT_VERSION,
        state,
        maps: t.ids.iter().copied().collect(),
        memory: t.memory.iter().copied().collect(),
        programs,
        ports_broken: ports.iter().filter(|p| p.health != PortHealth::Ok).count(),
    };
    if json {
        println!("{}", serde_json::to_string(&show)?);
        return Ok(());
    }
    let on = |b: bool| if b { "on" } else { "off" };
    let locals: Vec<String> = Locals::of(&cfg)
        .each()
        .map(|ip| format!("local {ip}"))
        .collect();
    println!(
        "vtep dev {} ({}) {} port {} decap {}",
        show.dev,
        if show.attached {
            "attached"
        } else {
            "DETACHED: run `vtep up` to attach again"
        },
        locals.join(" "),
        show.port,
        show.decap
    );
    println!(
        "    learning {} ageing {} ttl {} tos {} srcport {} {} strict-peers {}{}",
        on(show.learning),
        show.ageing,
        show.ttl,
        show.tos,
        show.srcport[0],
        show.srcport[1],
        on(show.strict_peers),
        match show.local6 {
            Some(_) => format!(
                " udp6zerocsumtx {} udp6zerocsumrx {}",
                on(show.udp6zerocsumtx),
                on(show.udp6zerocsumrx)
            ),
            None => String::new(),
        }
    );
    let c = show.capacity;
    println!(
        "    fdb {}/{} learned {}/{} neigh {}/{} ports {}/{}{}",
        show.used.fdb,
        c.fdb,
        show.used.learned,
        c.learned,
        show.used.neigh,
        c.neigh,
        show.used.ports,
        c.ports,
        match show.ports_broken {
            0 => String::new(),
            n => format!(" ({n} broken: see `vtep port show`)"),
        }
    );
    let programs: Vec<String> = show
        .programs
        .iter()
        .map(|(k, v)| format!("{k} {v}"))
        .collect();
    println!(
        "    layout v{} state {} programs {}",
        show.layout,
        show.state,
        programs.join(" ")
    );
    let memory: Vec<String> = show
        .memory
        .iter()
        .map(|(k, v)| {
            format!(
                "{} {}",
                k.trim_start_matches("VTEP_").to_lowercase(),
                bytes(*v)
            )
        })
        .collect();
    println!(
        "    kernel memory {} (total {})",
        memory.join(" "),
        bytes(show.memory.values().sum())
    );
    Ok(())
}

/// Bytes the way `free -h` and `ip -h` write them.
fn bytes(n: u64) -> String {
    match n {
        n if n >= 1 << 30 => format!("{:.1}GiB", n as f64 / (1u64 << 30) as f64),
        n if n >= 1 << 20 => format!("{:.1}MiB", n as f64 / (1u64 << 20) as f64),
        n if n >= 1 << 10 => format!("{:.1}KiB", n as f64 / (1u64 << 10) as f64),
        n => format!("{n}B"),
    }
}

/// State of namespaces that are gone, by cookie.
fn stale() -> Result<Vec<(u64, Pins)>> {
    let all = Pins::all();
    if all.is_empty() {
        return Ok(all);
    }
    let live = host::live_cookies()?;
    Ok(all.into_iter().filter(|(c, _)| !live.contains(c)).collect())
}

/// Tells (on stderr) of state left by namespaces deleted without `vtep down`.
pub fn warn_stale() -> Result<()> {
    let n = stale()?.len();
    if n > 0 {
        eprintln!("vtep: state of {n} network namespace(s) that no longer exist is left in bpffs: remove it with `vtep prune`");
    }
    Ok(())
}

#[derive(Serialize)]
struct Pruned {
    cookie: u64,
    state: String,
    namespaces: Vec<String>,
}

/// Removes the state of namespaces that are gone, and the container namespaces vtep made
/// for their ports (only those: each is checked by cookie).
pub fn prune(json: bool) -> Result<()> {
    let mut done = Vec::new();
    for (cookie, pins) in stale()? {
        let lock = HostLock::acquire(cookie)?;
        let mut namespaces = Vec::new();
        if let Ok(tables) = crate::state::Tables::open(&pins) {
            for p in tables.port_records()? {
                let name = text_of(&p.netns);
                if p.owns_netns != 0 && crate::netns::cookie(&name) == Some(p.netns_cookie) {
                    crate::netns::delete(&name)?;
                    namespaces.push(name);
                }
            }
        }
        pins.remove()
            .with_context(|| format!("removing {}", pins.dir.display()))?;
        pins.prune_parents();
        lock.remove()?;
        done.push(Pruned {
            cookie,
            state: pins.dir.display().to_string(),
            namespaces,
        });
    }
    // Lock directories of namespaces that are gone and left no state to prune: their
    // bpffs was unmounted, or a writer died before it pinned anything.
    let orphans: Vec<u64> = HostLock::cookies()
        .into_iter()
        .filter(|&c| !Pins::of(c).dir.exists())
        .collect();
    if !orphans.is_empty() {
        let live = host::live_cookies()?;
        for cookie in orphans.into_iter().filter(|c| !live.contains(c)) {
            HostLock::acquire(cookie)?.remove()?;
            done.push(Pruned {
                cookie,
                state: HostLock::dir_of(cookie).display().to_string(),
                namespaces: Vec::new(),
            });
        }
    }
    output::rows(json, &done, |p| {
        format!(
            "removed {} (namespace cookie {}){}",
            p.state,
            p.cookie,
            if p.namespaces.is_empty() {
                String::new()
            } else {
                format!(" and namespaces {}", p.namespaces.join(" "))
            }
        )
    })
}
