//! The floor: the least any VTEP on this machine's topology can cost. The containers' frames
//! cross the same two veth pairs as vtep's (container to host, then the simulated
//! underlay) and the same kind of hand-off (a TC redirect out of the underlay, then
//! `bpf_redirect_peer` into the container), but each end is a three-instruction eBPF
//! program: no lookups, no headers, no tunnel, no checks. The gap between vtep and the floor
//! is what vtep's own work costs; the gap between the floor and plain is the topology's.

use std::{
    mem,
    os::fd::{AsRawFd, FromRawFd, OwnedFd},
};

use anyhow::{bail, Context, Result};
use aya_obj::generated::{
    bpf_attach_type, bpf_attr, bpf_cmd, bpf_func_id, bpf_insn, bpf_prog_type, BPF_ALU64, BPF_CALL,
    BPF_EXIT, BPF_JMP, BPF_K, BPF_MOV,
};

use crate::{cmd::run, netns, Netns, Overlay};

pub struct Floor {
    // Closing the link fds detaches the programs; declared first, so dropped first.
    _links: Vec<OwnedFd>,
    c1: Netns,
    c2: Netns,
    _hosts: [Netns; 2],
}

impl Floor {
    pub fn new(tag: &str) -> Result<Self> {
        let hosts = [
            Netns::add(&format!("{tag}h1"))?,
            Netns::add(&format!("{tag}h2"))?,
        ];
        let c1 = Netns::add(&format!("{tag}c1"))?;
        let c2 = Netns::add(&format!("{tag}c2"))?;
        let (h1, h2) = (&hosts[0].name, &hosts[1].name);
        run(
            "ip",
            &[
                "link", "add", "eth1", "netns", h1, "type", "veth", "peer", "name", "eth1",
                "netns", h2,
            ],
        )?;
        let mut links = Vec::new();
        for (host, c, ip) in [
            (h1, &c1.name, "12.12.12.2/24"),
            (h2, &c2.name, "12.12.12.3/24"),
        ] {
            run(
                "ip",
                &[
                    "link", "add", "eth0", "mtu", "1450", "netns", c, "type", "veth", "peer",
                    "name", "port0", "mtu", "1450", "netns", host,
                ],
            )?;
            run("ip", &["-n", c, "addr", "add", ip, "dev", "eth0"])?;
            for (ns, dev) in [(c.as_str(), "eth0"), (host, "port0"), (host, "eth1")] {
                run("ip", &["-n", ns, "link", "set", dev, "up"])?;
            }
            links.extend(join(host)?);
        }
        Ok(Floor {
            _links: links,
            c1,
            c2,
            _hosts: hosts,
        })
    }
}

impl Overlay for Floor {
    fn endpoints(&self) -> [(&str, &str); 2] {
        [(&self.c1.name, "12.12.12.2"), (&self.c2.name, "12.12.12.3")]
    }
}

/// Joins the container port and the underlay of `host` with two redirects: port to
/// underlay egress, and underlay to the container's side of the port.
fn join(host: &str) -> Result<[OwnedFd; 2]> {
    // Devices and TCX attachments are looked up in the caller's namespace.
    let _inside = netns::enter(host)?;
    let (port, underlay) = (ifindex("port0")?, ifindex("eth1")?);
    let out = redirect(bpf_func_id::BPF_FUNC_redirect, underlay)?;
    let into = redirect(bpf_func_id::BPF_FUNC_redirect_peer, port)?;
    Ok([attach(&out, port)?, attach(&into, underlay)?])
}

fn ifindex(dev: &str) -> Result<u32> {
    nix::net::if_::if_nametoindex(dev).map_err(|e| anyhow::anyhow!("no device {dev}: {e}"))
}

/// A TC program that returns `helper(ifindex, 0)`: bpf_redirect or bpf_redirect_peer.
fn redirect(helper: bpf_func_id, ifindex: u32) -> Result<OwnedFd> {
    let insn = |code: u32, dst: u8, imm: i32| {
        // SAFETY: bpf_insn is plain integers: all zeroes is a valid (no-op) value.
        let mut i: bpf_insn = unsafe { mem::zeroed() };
        i.code = code as u8;
        i.set_dst_reg(dst);
        i.imm = imm;
        i
    };
    let mov = BPF_ALU64 | BPF_MOV | BPF_K;
    let insns = [
        insn(mov, 1, ifindex as i32),
        insn(mov, 2, 0),
        insn(BPF_JMP | BPF_CALL, 0, helper as i32),
        insn(BPF_JMP | BPF_EXIT, 0, 0),
    ];
    let license = c"GPL";
    // SAFETY: bpf_attr is a union of plain integers; the kernel wants unused bytes zero.
    let mut attr: bpf_attr = unsafe { mem::zeroed() };
    // SAFETY: BPF_PROG_LOAD reads this member of the union; all of it is integers.
    let load = unsafe { &mut attr.__bindgen_anon_3 };
    load.prog_type = bpf_prog_type::BPF_PROG_TYPE_SCHED_CLS as u32;
    load.insn_cnt = insns.len() as u32;
    load.insns = insns.as_ptr() as u64;
    load.license = license.as_ptr() as u64;
    sys_bpf(bpf_cmd::BPF_PROG_LOAD, &mut attr).context("loading a floor redirect program")
}

/// Attaches `prog` at TCX ingress of `ifindex`, for as long as the returned link lives.
fn attach(prog: &OwnedFd, ifindex: u32) -> Result<OwnedFd> {
    // SAFETY: bpf_attr is a union of plain integers; the kernel wants unused bytes zero.
    let mut attr: bpf_attr = unsafe { mem::zeroed() };
    // SAFETY: BPF_LINK_CREATE reads this member of the union; all of it is integers.
    let link = unsafe { &mut attr.link_create };
    link.__bindgen_anon_1.prog_fd = prog.as_raw_fd() as u32;
    link.__bindgen_anon_2.target_ifindex = ifindex;
    link.attach_type = bpf_attach_type::BPF_TCX_INGRESS as u32;
    sys_bpf(bpf_cmd::BPF_LINK_CREATE, &mut attr).context("attaching a floor program")
}

fn sys_bpf(cmd: bpf_cmd, attr: &mut bpf_attr) -> Result<OwnedFd> {
    // SAFETY: attr is a live, fully initialised bpf_attr of the size passed; the
    // pointers in it (instructions, license) outlive the call.
    let fd = unsafe {
        libc::syscall(
            libc::SYS_bpf,
            cmd as libc::c_long,
            attr as *mut bpf_attr,
            mem::size_of::<bpf_attr>(),
        )
    };
    if fd < 0 {
        bail!("bpf({cmd:?}): {}", std::io::Error::last_os_error());
    }
    // SAFETY: the kernel just handed us this descriptor, and nothing else owns it.
    Ok(unsafe { OwnedFd::from_raw_fd(fd as i32) })
}
