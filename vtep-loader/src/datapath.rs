//! Loading, attaching and pinning the eBPF programs. Attachments are pinned bpf_links, so
//! the data path keeps running after `vtep` exits and is removed by unpinning.

use std::path::Path;

use anyhow::{Context, Result};
use aya::{
    include_bytes_aligned,
    programs::{links::FdLink, SchedClassifier, TcAttachType, Xdp, XdpMode},
    Ebpf, EbpfLoader,
};

/// The compiled eBPF object (built by build.rs through aya-build).
pub static OBJECT: &[u8] = include_bytes_aligned!(concat!(env!("OUT_DIR"), "/vtep"));

pub const PORT_PROGRAM: &str = "vtep_port";
pub const UNDERLAY_XDP_PROGRAM: &str = "vtep_underlay_xdp";
pub const UNDERLAY_TC_PROGRAM: &str = "vtep_underlay_tc";

/// Loads the object, creating (or reusing) the maps pinned in `pin_dir`.
pub fn load(pin_dir: &Path) -> Result<Ebpf> {
    EbpfLoader::new()
        .default_map_pin_directory(pin_dir)
        .load(OBJECT)
        .context("loading the eBPF object")
}

/// Loads the port program and pins it so later `port add` invocations can attach it.
pub fn pin_port_program(ebpf: &mut Ebpf, path: &Path) -> Result<()> {
    let prog: &mut SchedClassifier = ebpf.program_mut(PORT_PROGRAM).context("port program missing")?.try_into()?;
    prog.load().context("verifying the port program")?;
    prog.pin(path).context("pinning the port program")?;
    Ok(())
}

pub fn attach_underlay_xdp(ebpf: &mut Ebpf, ifindex: u32, mode: XdpMode, link_path: &Path) -> Result<()> {
    let prog: &mut Xdp = ebpf.program_mut(UNDERLAY_XDP_PROGRAM).context("underlay program missing")?.try_into()?;
    prog.load().context("verifying the underlay program")?;
    let id = prog.attach_to_if_index(ifindex, mode).context("attaching XDP to the underlay device")?;
    let link: FdLink = prog.take_link(id)?.try_into().context("XDP attachment is not a bpf_link")?;
    link.pin(link_path).context("pinning the XDP link")?;
    Ok(())
}

pub fn attach_underlay_tc(ebpf: &mut Ebpf, ifname: &str, link_path: &Path) -> Result<()> {
    let prog: &mut SchedClassifier =
        ebpf.program_mut(UNDERLAY_TC_PROGRAM).context("underlay program missing")?.try_into()?;
    prog.load().context("verifying the underlay program")?;
    attach_tc(prog, ifname, link_path)
}

/// Attaches the pinned port program at TC ingress of `ifname` (TCX) and pins the link.
pub fn attach_port(program_path: &Path, ifname: &str, link_path: &Path) -> Result<()> {
    let mut prog = SchedClassifier::from_pin(program_path).context("opening the pinned port program")?;
    attach_tc(&mut prog, ifname, link_path)
}

fn attach_tc(prog: &mut SchedClassifier, ifname: &str, link_path: &Path) -> Result<()> {
    let id = prog.attach(ifname, TcAttachType::Ingress).with_context(|| format!("attaching TC to {ifname}"))?;
    let link: FdLink = prog.take_link(id)?.try_into().context("TC attachment is not a bpf_link")?;
    link.pin(link_path).context("pinning the TC link")?;
    Ok(())
}
