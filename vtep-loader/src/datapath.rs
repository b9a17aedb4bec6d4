//! Loading, attaching and pinning the eBPF programs. Attachments are pinned bpf_links, so
//! the data path keeps running after `vtep` exits and is removed by unpinning; a new
//! program takes over an existing link atomically (bpf_link_update), so an upgrade never
//! leaves a device without one.
//!
//! TC on kernels without TCX (before 6.6, e.g. Debian 12's 6.1): found by trying a TCX
//! link, never by the version string (distributions backport TCX). There vtep attaches a
//! netlink cls_bpf filter on the clsact qdisc, adding the qdisc when missing. Such a
//! filter is not a bpf_link and cannot be pinned, so where the link would be pinned vtep
//! pins a one-entry map recording the filter instead ([`NlFilter`]: device, priority,
//! handle, whether vtep added the qdisc). The rest of vtep sees a pin at the usual path
//! either way; an upgrade replaces the filter's program in place (same priority and
//! handle), and [`detach_tc`] removes exactly that filter, and the qdisc only if vtep
//! added it.

use std::{
    fs, mem,
    os::fd::{AsFd, AsRawFd},
    path::Path,
};

use anyhow::{Context, Result};
use aya::{
    include_bytes_aligned,
    maps::{Array, MapData, ProgramArray},
    programs::{
        links::{FdLink, LinkOrder, PinnedLink},
        tc::{self, NlOptions, SchedClassifierLink, TcAttachOptions, TcError, TcHandle},
        xdp::XdpLink,
        Link, ProgramError, SchedClassifier, TcAttachType, Xdp, XdpMode,
    },
    Ebpf, EbpfLoader, Pod,
};
use vtep_common::{map_name, tail, Config};

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

/// Verifies the programs the port program tail-calls and puts each in its slot of the
/// (pinned) program array, where a running port program finds it at once.
pub fn tail_programs(ebpf: &mut Ebpf) -> Result<()> {
    let mut fds = Vec::new();
    for name in tail::PROGRAMS {
        let prog = tc(ebpf, name)?;
        prog.load().with_context(|| format!("verifying {name}"))?;
        fds.push(prog.fd()?.try_clone()?);
    }
    let map = ebpf
        .map_mut(map_name::TAILS)
        .context("the program array is missing from the object")?;
    let mut tails = ProgramArray::try_from(map)?;
    for (slot, fd) in (0..).zip(&fds) {
        tails
            .set(slot, fd, 0)
            .context("filling the program array")?;
    }
    Ok(())
}

pub fn xdp_program<'a>(ebpf: &'a mut Ebpf, pin: &Path) -> Result<&'a mut Xdp> {
    let prog = xdp(ebpf)?;
    prog.load().context("verifying the XDP program")?;
    replace_pin(pin)?;
    prog.pin(pin).context("pinning the XDP program")?;
    Ok(prog)
}

fn replace_pin(pin: &Path) -> Result<()> {
    crate::host::remove_if_present(pin)
}

/// Priority of the netlink TC filters vtep adds ("VT"), with handle 1: vtep has one
/// filter per device, and a fixed identity lets a later vtep recognise its own filter
/// even without the record.
pub const NL_PRIORITY: u16 = 0x5654;
pub const NL_HANDLE: u16 = 1;

/// What vtep pins in place of a link for a netlink TC filter.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct NlFilter {
    pub ifindex: u32,
    pub priority: u16,
    pub handle: u16,
    /// 1 when vtep added the clsact qdisc (removed with the filter), else 0.
    pub own_qdisc: u8,
    pub _pad: [u8; 7],
}

// SAFETY: repr(C), integers only, padding explicit.
unsafe impl Pod for NlFilter {}

/// `prog` at TC ingress of `ifname`, kept by what is pinned at `link_path`: a TCX link
/// (its program swapped with bpf_link_update when it exists), or on a kernel without TCX
/// a netlink filter and its [`NlFilter`] record (its program replaced in place when it
/// exists).
pub fn tc_link(prog: &mut SchedClassifier, ifname: &str, link_path: &Path) -> Result<()> {
    if link_path.exists() {
        if let Some(record) = nl_record(link_path)? {
            return netlink_link(prog, ifname, Some(record), link_path);
        }
        let old = PinnedLink::from_pin(link_path).context("opening a pinned TC link")?;
        let link = SchedClassifierLink::try_from(FdLink::from(old))?;
        let id = prog
            .attach_to_link(link)
            .with_context(|| format!("replacing the program on {ifname}"))?;
        // The pin keeps the link; only this process's handle goes.
        drop(prog.take_link(id)?);
        return Ok(());
    }
    let tcx = prog.attach_with_options(
        ifname,
        TcAttachType::Ingress,
        TcAttachOptions::TcxOrder(LinkOrder::default()),
    );
    let id = match tcx {
        Ok(id) => id,
        Err(e) if tcx_missing(&e) => return netlink_link(prog, ifname, None, link_path),
        Err(e) => return Err(e).with_context(|| format!("attaching TC to {ifname}")),
    };
    let link: FdLink = prog
        .take_link(id)?
        .try_into()
        .context("TC attachment is not a bpf_link")?;
    link.pin(link_path).context("pinning the TC link")?;
    Ok(())
}

/// The [`NlFilter`] pinned at `path`, or None when a link is pinned there. bpffs gives no
/// type with the path, and BPF_OBJ_GET_INFO_BY_FD answers for any object; the anonymous
/// inode behind the descriptor names its kind.
fn nl_record(path: &Path) -> Result<Option<NlFilter>> {
    let data = MapData::from_pin(path).with_context(|| format!("opening {}", path.display()))?;
    let fd = data.fd().as_fd().as_raw_fd();
    let kind = fs::read_link(format!("/proc/self/fd/{fd}"))?;
    if !kind.to_string_lossy().contains("bpf-map") {
        return Ok(None);
    }
    let array = Array::<MapData, NlFilter>::try_from(aya::maps::Map::Array(data))
        .context("the TC filter record has another layout")?;
    Ok(Some(
        array.get(&0, 0).context("reading the TC filter record")?,
    ))
}

fn pin_record(record: NlFilter, path: &Path) -> Result<()> {
    let mut array = Array::<MapData, NlFilter>::create(1, 0).context("creating a map")?;
    array.set(0, record, 0)?;
    replace_pin(path)?;
    array
        .pin(path)
        .with_context(|| format!("pinning {}", path.display()))?;
    Ok(())
}

/// What a kernel without TCX answers a TCX link create with: EINVAL for the unknown
/// attach type (6.1), EOPNOTSUPP or ENOTSUPP elsewhere.
fn tcx_missing(e: &ProgramError) -> bool {
    const ENOTSUPP: i32 = 524;
    matches!(
        os_error(e),
        Some(libc::EINVAL | libc::EOPNOTSUPP | ENOTSUPP)
    )
}

fn os_error(e: &ProgramError) -> Option<i32> {
    match e {
        ProgramError::SyscallError(s) => s.io_error.raw_os_error(),
        ProgramError::NetlinkError(n) | ProgramError::TcError(TcError::NetlinkError(n)) => {
            n.raw_os_error()
        }
        ProgramError::TcError(TcError::IoError(io)) => io.raw_os_error(),
        _ => None,
    }
}

fn tc_os_error(e: &TcError) -> Option<i32> {
    match e {
        TcError::NetlinkError(n) => n.raw_os_error(),
        TcError::IoError(io) => io.raw_os_error(),
        _ => None,
    }
}

/// The netlink filter as aya's link type. Dropping it detaches the filter: hand it to
/// `attach_to_link` or `detach`, or forget it.
fn nl_filter(ifname: &str, priority: u16, handle: u16) -> Result<SchedClassifierLink> {
    SchedClassifierLink::attached(
        ifname,
        TcAttachType::Ingress,
        priority,
        TcHandle::new(0, handle),
        None,
    )
    .with_context(|| format!("device {ifname}"))
}

/// Replaces the program of the filter `priority`/`handle` on `ifname`; false if there is
/// no such filter.
fn replace_filter(
    prog: &mut SchedClassifier,
    ifname: &str,
    priority: u16,
    handle: u16,
) -> Result<bool> {
    match prog.attach_to_link(nl_filter(ifname, priority, handle)?) {
        Ok(id) => {
            // aya would detach the filter when the link drops; it must outlive us.
            mem::forget(prog.take_link(id)?);
            Ok(true)
        }
        Err(e) if matches!(os_error(&e), Some(libc::ENOENT | libc::EINVAL)) => Ok(false),
        Err(e) => Err(e).with_context(|| format!("replacing the TC filter on {ifname}")),
    }
}

fn netlink_link(
    prog: &mut SchedClassifier,
    ifname: &str,
    record: Option<NlFilter>,
    link_path: &Path,
) -> Result<()> {
    if let Some(r) = record {
        if replace_filter(prog, ifname, r.priority, r.handle)? {
            return Ok(());
        }
    }
    let ifindex =
        nix::net::if_::if_nametoindex(ifname).with_context(|| format!("device {ifname}"))?;
    let own_qdisc = match tc::qdisc_add_clsact(ifname) {
        Ok(()) => true,
        Err(e) if tc_os_error(&e) == Some(libc::EEXIST) => record.is_some_and(|r| r.own_qdisc == 1),
        Err(e) => return Err(e).with_context(|| format!("adding a clsact qdisc to {ifname}")),
    };
    let record = NlFilter {
        ifindex,
        priority: NL_PRIORITY,
        handle: NL_HANDLE,
        own_qdisc: u8::from(own_qdisc),
        _pad: [0; 7],
    };
    let attached = prog.attach_with_options(
        ifname,
        TcAttachType::Ingress,
        TcAttachOptions::Netlink(NlOptions {
            priority: NL_PRIORITY,
            handle: TcHandle::new(0, NL_HANDLE),
            classid: None,
        }),
    );
    let result = match attached {
        Ok(id) => {
            mem::forget(prog.take_link(id)?);
            pin_record(record, link_path)
        }
        // vtep's filter without its record (state removed by hand): still vtep's.
        Err(e) if os_error(&e) == Some(libc::EEXIST) => {
            if replace_filter(prog, ifname, NL_PRIORITY, NL_HANDLE)? {
                pin_record(record, link_path)
            } else {
                Err(e).with_context(|| format!("attaching a TC filter to {ifname}"))
            }
        }
        Err(e) => Err(e).with_context(|| format!("attaching a TC filter to {ifname}")),
    };
    if result.is_err() {
        // The attach error is the one worth reporting.
        remove_filter(&record).ok();
    }
    result
}

/// Removes the netlink TC filter recorded at `link_path`, and its clsact qdisc if vtep
/// added it; nothing when a link is pinned there (unpinning detaches it) or nothing is.
/// For `vtep down` (before the state directory goes) and a failed `vtep up`, on the
/// underlay; container ports need nothing: their veth goes, and its filters with it.
pub fn detach_tc(link_path: &Path) -> Result<()> {
    if !link_path.exists() {
        return Ok(());
    }
    if let Some(record) = nl_record(link_path)? {
        remove_filter(&record)?;
    }
    Ok(())
}

fn remove_filter(r: &NlFilter) -> Result<()> {
    let Ok(name) = nix::net::if_::if_indextoname(r.ifindex) else {
        return Ok(()); // the device is gone, and its filters with it
    };
    let ifname = name.to_string_lossy().into_owned();
    match nl_filter(&ifname, r.priority, r.handle)?.detach() {
        Ok(()) => {}
        // Already gone (ENOENT), or its qdisc is (EINVAL).
        Err(e) if matches!(os_error(&e), Some(libc::ENOENT | libc::EINVAL)) => {}
        Err(e) => return Err(e).with_context(|| format!("removing the TC filter of {ifname}")),
    }
    if r.own_qdisc == 1 {
        match crate::clsact::delete(r.ifindex) {
            Ok(()) => {}
            Err(e) if matches!(e.raw_os_error(), Some(libc::ENOENT | libc::EINVAL)) => {}
            Err(e) => {
                return Err(e).with_context(|| format!("removing the clsact qdisc of {ifname}"))
            }
        }
    }
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

/// Attaches the pinned port program at TC ingress of `ifname` (TCX, pinned link; or a
/// netlink filter, see [`tc_link`]).
pub fn attach_port(program_path: &Path, ifname: &str, link_path: &Path) -> Result<()> {
    let mut prog =
        SchedClassifier::from_pin(program_path).context("opening the pinned port program")?;
    tc_link(&mut prog, ifname, link_path)
}
