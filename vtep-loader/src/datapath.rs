//! Loading, attaching and pinning the eBPF programs. Attachments are pinned bpf_links, so
//! the data path keeps running after `vtep` exits and is removed by unpinning; a new
//! program takes over an existing link atomically (bpf_link_update), so an upgrade never
//! leaves a device without one.

use std::{fs, io, path::Path};

use anyhow::{Context, Result};
use aya::{
    include_bytes_aligned,
    programs::{
        links::{FdLink, PinnedLink},
        tc::SchedClassifierLink,
        xdp::XdpLink,
        SchedClassifier, TcAttachType, Xdp, XdpMode,
    },
    Ebpf, EbpfLoader,
};
use vtep_common::{map_name, Config};

/// The compiled eBPF object (built by build.rs through aya-build).
pub static OBJECT: &[u8] = include_bytes_aligned!(concat!(env!("OUT_DIR"), "/vtep"));

pub const PORT_PROGRAM: &str = "vtep_port";
pub const UNDERLAY_XDP_PROGRAM: &str = "vtep_underlay_xdp";
pub const UNDERLAY_TC_PROGRAM: &str = "vtep_underlay_tc";

/// Sizes of the tables chosen at `vtep up`.
#[derive(Clone, Copy, Debug)]
pub struct Capacity {
    pub learned: u32,
    pub fdb: u32,
    pub neigh: u32,
}

/// Loads the object, creating (or reusing) the maps pinned in `pin_dir`.
pub fn load(pin_dir: &Path, capacity: Capacity) -> Result<Ebpf> {
    EbpfLoader::new()
        .default_map_pin_directory(pin_dir)
        .map_max_entries(map_name::LEARNED, capacity.learned)
        .map_max_entries(map_name::FDB, capacity.fdb)
        .map_max_entries(map_name::NEIGH, capacity.neigh)
        .load(OBJECT)
        .context("loading the eBPF object")
}

/// Writes the tunnel's settings into the loaded object's (pinned) CONFIG map.
pub fn set_config(ebpf: &mut Ebpf, cfg: &Config) -> Result<()> {
    let map = ebpf
        .map_mut(map_name::CONFIG)
        .context("CONFIG map missing from the object")?;
    let mut config: aya::maps::Array<_, Config> = aya::maps::Array::try_from(map)?;
    Ok(config.set(0, cfg, 0)?)
}

pub fn tc<'a>(ebpf: &'a mut Ebpf, name: &str) -> Result<&'a mut SchedClassifier> {
    Ok(ebpf
        .program_mut(name)
        .context("program missing from the object")?
        .try_into()?)
}

pub fn xdp(ebpf: &mut Ebpf) -> Result<&mut Xdp> {
    Ok(ebpf
        .program_mut(UNDERLAY_XDP_PROGRAM)
        .context("XDP program missing from the object")?
        .try_into()?)
}

/// Ids of the pinned programs (as bpftool shows them), by role.
pub fn program_ids(pins: &crate::pins::Pins) -> std::collections::BTreeMap<&'static str, u32> {
    [
        ("port", pins.port_program()),
        ("underlay_tc", pins.underlay_tc_program()),
        ("underlay_xdp", pins.underlay_xdp_program()),
    ]
    .into_iter()
    .filter_map(|(role, path)| {
        let info = aya::programs::ProgramInfo::from_pin(path).ok()?;
        Some((role, info.id()))
    })
    .collect()
}

/// The named TC program, verified and pinned at `pin` (replacing an older pin, so later
/// `port add` invocations attach the current one).
pub fn tc_program<'a>(
    ebpf: &'a mut Ebpf,
    name: &str,
    pin: &Path,
) -> Result<&'a mut SchedClassifier> {
    let prog = tc(ebpf, name)?;
    prog.load().with_context(|| format!("verifying {name}"))?;
    replace_pin(pin)?;
    prog.pin(pin).with_context(|| format!("pinning {name}"))?;
    Ok(prog)
}

pub fn xdp_program<'a>(ebpf: &'a mut Ebpf, pin: &Path) -> Result<&'a mut Xdp> {
    let prog = xdp(ebpf)?;
    prog.load().context("verifying the XDP program")?;
    replace_pin(pin)?;
    prog.pin(pin).context("pinning the XDP program")?;
    Ok(prog)
}

fn replace_pin(pin: &Path) -> Result<()> {
    match fs::remove_file(pin) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => {
            Err(e).with_context(|| format!("unpinning {}", pin.display()))
        }
        _ => Ok(()),
    }
}

/// `prog` at TC ingress of `ifname`: swapped into the link pinned at `link_path` if there
/// is one, else attached (TCX) and pinned there.
pub fn tc_link(prog: &mut SchedClassifier, ifname: &str, link_path: &Path) -> Result<()> {
    if link_path.exists() {
        let old = PinnedLink::from_pin(link_path).context("opening a pinned TC link")?;
        let link = SchedClassifierLink::try_from(FdLink::from(old))?;
        let id = prog
            .attach_to_link(link)
            .with_context(|| format!("replacing the program on {ifname}"))?;
        // The pin keeps the link; only this process's handle goes.
        drop(prog.take_link(id)?);
        return Ok(());
    }
    let id = prog
        .attach(ifname, TcAttachType::Ingress)
        .with_context(|| format!("attaching TC to {ifname}"))?;
    let link: FdLink = prog
        .take_link(id)?
        .try_into()
        .context("TC attachment is not a bpf_link")?;
    link.pin(link_path).context("pinning the TC link")?;
    Ok(())
}

pub fn xdp_link(prog: &mut Xdp, ifindex: u32, mode: XdpMode, link_path: &Path) -> Result<()> {
    if link_path.exists() {
        let old = PinnedLink::from_pin(link_path).context("opening the pinned XDP link")?;
        let link = XdpLink::try_from(FdLink::from(old))?;
        let id = prog
            .attach_to_link(link)
            .context("replacing the XDP program")?;
        drop(prog.take_link(id)?);
        return Ok(());
    }
    let id = prog
        .attach_to_if_index(ifindex, mode)
        .context("attaching XDP to the underlay device")?;
    let link: FdLink = prog
        .take_link(id)?
        .try_into()
        .context("XDP attachment is not a bpf_link")?;
    link.pin(link_path).context("pinning the XDP link")?;
    Ok(())
}

/// Attaches the pinned port program at TC ingress of `ifname` (TCX) and pins the link.
pub fn attach_port(program_path: &Path, ifname: &str, link_path: &Path) -> Result<()> {
    let mut prog =
        SchedClassifier::from_pin(program_path).context("opening the pinned port program")?;
    tc_link(&mut prog, ifname, link_path)
}
