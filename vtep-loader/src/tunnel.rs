//! `vtep up` and `vtep down`: the tunnel itself (the vxlan device of the classic setup).
//! `up` on a host that is already up is an upgrade: the maps stay, new programs take over
//! every link atomically, and the settings are replaced.

use std::fs;

use anyhow::{anyhow, bail, Context, Result};
use aya::{maps::MapData, programs::XdpMode};
use vtep_common::{
    map_name,
    wire::{SRCPORT_MAX, SRCPORT_MIN},
    Config,
};

use crate::{
    args::Tos,
    cli::{DecapArg, UpArgs, XdpModeArg},
    datapath,
    pins::{self, Pins},
    port,
    topology::Netlink,
};

pub async fn up(args: &UpArgs) -> Result<()> {
    let decap = decap_mode(args)?;
    if let Some([min, max]) = args.srcport.as_deref() {
        if min.0 > max.0 {
            bail!("--srcport range {} {} is empty", min.0, max.0);
        }
    }
    pins::ensure_bpffs()?;
    let pins = Pins::current()?;
    pins.refuse_other_layouts()?;
    let nl = Netlink::connect()?;
    let ifindex = nl
        .ifindex(&args.dev)
        .await?
        .ok_or_else(|| anyhow!("device \"{}\" does not exist", args.dev))?;
    let Some(prefix) = nl.address_prefix(args.local).await? else {
        bail!("{} is not an address of this host", args.local);
    };
    let underlay = Underlay {
        ifindex,
        prefix,
        fib_ok: forwarding(&args.dev),
    };
    if pins.is_up() {
        return upgrade(&pins, args, &underlay, decap);
    }
    // Leftovers of an interrupted `up` are not state anyone relies on.
    pins.remove()?;
    pins.create()?;
    let result = attach(&pins, args, &underlay, decap, &[]);
    if result.is_err() {
        let _ = datapath::detach_tc(&pins.underlay_link());
        let _ = pins.remove();
    }
    result
}

/// What the data path needs to know about the underlay device.
struct Underlay {
    ifindex: u32,
    /// Prefix length of the local address: VTEPs in that subnet are on-link.
    prefix: u8,
    fib_ok: bool,
}

/// IP forwarding on `dev` (read in the namespace this thread is in): only then does
/// `bpf_fib_lookup` answer, and vtep uses it; otherwise the kernel resolves next hops.
fn forwarding(dev: &str) -> bool {
    fs::read_to_string(format!("/proc/sys/net/ipv4/conf/{dev}/forwarding"))
        .is_ok_and(|v| v.trim() == "1")
}

enum Decap {
    Tc,
    Xdp(XdpMode),
}

fn decap_mode(args: &UpArgs) -> Result<Decap> {
    let xdp = |m| match m {
        XdpModeArg::Native => Decap::Xdp(XdpMode::Driver),
        XdpModeArg::Generic => Decap::Xdp(XdpMode::Skb),
    };
    Ok(match (args.decap, args.xdp_mode) {
        (Some(DecapArg::Tc), Some(_)) => bail!("--xdp-mode needs --decap xdp"),
        (Some(DecapArg::Tc), None) | (None, None) => Decap::Tc,
        (Some(DecapArg::Xdp), None) => xdp(XdpModeArg::Native),
        (_, Some(m)) => xdp(m),
    })
}

fn config(args: &UpArgs, underlay: &Underlay) -> Config {
    let (srcport_min, srcport_max) = match args.srcport.as_deref() {
        Some([min, max]) => (min.0, max.0),
        _ => (SRCPORT_MIN, SRCPORT_MAX),
    };
    Config {
        local_ip: args.local.octets(),
        underlay_ifindex: underlay.ifindex,
        udp_port: args.port.0,
        srcport_min,
        srcport_max,
        ttl: args.ttl,
        ready: 1,
        learning: u8::from(!args.no_learning),
        tos_inherit: u8::from(args.tos == Tos::Inherit),
        tos: match args.tos {
            Tos::Fixed(t) => t,
            Tos::Inherit => 0,
        },
        strict_peers: u8::from(args.strict_peers),
        onlink_prefix: underlay.prefix,
        fib_ok: u8::from(underlay.fib_ok),
        _pad: [0; 2],
        ageing_ns: u64::from(args.ageing) * 1_000_000_000,
    }
}

/// Loads the programs, writes the settings, and attaches (or, on a live host, re-links)
/// the underlay and every port in `ports` (host ifname, ifindex).
fn attach(
    pins: &Pins,
    args: &UpArgs,
    underlay: &Underlay,
    decap: Decap,
    ports: &[(String, u32)],
) -> Result<()> {
    let mut ebpf = datapath::load(&pins.dir, args.max_learned)?;
    // Everything is verified before anything live changes.
    datapath::tc_program(&mut ebpf, datapath::PORT_PROGRAM, &pins.port_program())?;
    datapath::tc_program(
        &mut ebpf,
        datapath::UNDERLAY_TC_PROGRAM,
        &pins.underlay_tc_program(),
    )?;
    if let Decap::Xdp(_) = decap {
        datapath::xdp_program(&mut ebpf, &pins.underlay_xdp_program())?;
    }
    pins.set_config(&config(args, underlay))?;
    // TC is always there: it decapsulates (behind XDP, what XDP passes on) and finishes the
    // frames the port program routes through the underlay's ingress.
    let underlay_tc = tc(&mut ebpf, datapath::UNDERLAY_TC_PROGRAM)?;
    datapath::tc_link(underlay_tc, &args.dev, &pins.underlay_link())?;
    match decap {
        Decap::Xdp(mode) => {
            let prog: &mut aya::programs::Xdp = ebpf
                .program_mut(datapath::UNDERLAY_XDP_PROGRAM)
                .context("XDP program")?
                .try_into()?;
            datapath::xdp_link(prog, underlay.ifindex, mode, &pins.underlay_xdp_link())?;
        }
        Decap::Tc => {
            // Switching from XDP to TC: drop the XDP link.
            let _ = fs::remove_file(pins.underlay_xdp_link());
            let _ = fs::remove_file(pins.underlay_xdp_program());
        }
    }
    let port_prog = tc(&mut ebpf, datapath::PORT_PROGRAM)?;
    for (ifname, index) in ports {
        datapath::tc_link(port_prog, ifname, &pins.port_link(*index))?;
    }
    Ok(())
}

fn tc<'a>(ebpf: &'a mut aya::Ebpf, name: &str) -> Result<&'a mut aya::programs::SchedClassifier> {
    Ok(ebpf
        .program_mut(name)
        .context("program missing from the object")?
        .try_into()?)
}

/// `up` on a live host: same underlay device and learned-table size, everything else may
/// change. The maps (tables, counters) carry over; no link is ever without a program.
fn upgrade(pins: &Pins, args: &UpArgs, underlay: &Underlay, decap: Decap) -> Result<()> {
    let current = pins.config()?;
    if current.underlay_ifindex != underlay.ifindex {
        bail!("vtep is up on another underlay device here (run `vtep down` first to move it)");
    }
    let learned =
        MapData::from_pin(pins.dir.join(map_name::LEARNED)).context("opening the learned table")?;
    let size = learned.info()?.max_entries();
    if size != args.max_learned {
        bail!("the learned table holds {size} entries; changing --max-learned needs `vtep down` first");
    }
    pins.check_layout()?;
    let ports: Vec<(String, u32)> = port::list(pins)?
        .into_iter()
        .map(|p| (port::host_ifname(&p.netns()), p.host_ifindex))
        .collect();
    attach(pins, args, underlay, decap, &ports)
}

pub async fn down() -> Result<()> {
    let pins = Pins::current()?;
    if !pins.dir.exists() {
        pins.refuse_other_layouts()?;
        bail!("vtep is not up in this network namespace");
    }
    let nl = Netlink::connect()?;
    for p in port::list(&pins)? {
        p.teardown(&pins, &nl).await?;
    }
    // Netlink TC filters (kernels without TCX) are not pinned: removed by identity.
    datapath::detach_tc(&pins.underlay_link())?;
    pins.remove()?;
    pins.prune_parents();
    Ok(())
}
