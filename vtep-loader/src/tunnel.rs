//! `vtep up` and `vtep down`: the tunnel itself (the vxlan device of the classic setup).

use anyhow::{anyhow, bail, Result};
use aya::programs::XdpMode;
use vtep_common::{
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
    if pins.is_up() {
        bail!("vtep is already up in this network namespace (run `vtep down` first)");
    }
    let nl = Netlink::connect()?;
    let ifindex = nl.ifindex(&args.dev).await?.ok_or_else(|| anyhow!("device \"{}\" does not exist", args.dev))?;
    if !nl.has_address(args.local).await? {
        bail!("{} is not an address of this host", args.local);
    }
    // Leftovers of an interrupted `up` are not state anyone relies on.
    pins.remove()?;
    std::fs::create_dir_all(&pins.dir)?;
    let result = attach(&pins, args, ifindex, decap);
    if result.is_err() {
        let _ = pins.remove();
    }
    result
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

fn attach(pins: &Pins, args: &UpArgs, ifindex: u32, decap: Decap) -> Result<()> {
    let mut ebpf = datapath::load(&pins.dir)?;
    let (srcport_min, srcport_max) = match args.srcport.as_deref() {
        Some([min, max]) => (min.0, max.0),
        _ => (SRCPORT_MIN, SRCPORT_MAX),
    };
    pins.set_config(&Config {
        local_ip: args.local.octets(),
        underlay_ifindex: ifindex,
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
        _pad: [0; 5],
        ageing_ns: u64::from(args.ageing) * 1_000_000_000,
    })?;
    datapath::pin_port_program(&mut ebpf, &pins.port_program())?;
    // TC is always there: it decapsulates (behind XDP, what XDP passes on) and finishes the
    // frames the port program routes through the underlay's ingress.
    datapath::attach_underlay_tc(&mut ebpf, &args.dev, &pins.underlay_link())?;
    if let Decap::Xdp(mode) = decap {
        datapath::attach_underlay_xdp(&mut ebpf, ifindex, mode, &pins.underlay_xdp_link())?;
    }
    Ok(())
}

pub async fn down() -> Result<()> {
    let pins = Pins::current()?;
    if !pins.dir.exists() {
        bail!("vtep is not up in this network namespace");
    }
    let nl = Netlink::connect()?;
    for p in port::list(&pins)? {
        p.teardown(&pins, &nl).await?;
    }
    pins.remove()
}
