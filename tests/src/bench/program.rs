//! What each eBPF program costs per packet, through BPF_PROG_TEST_RUN, on the very programs
//! `vtep` loaded and pinned on host 1 of a reference scenario (a "rig"), with 10 or
//! 1,000,000 entries in its FDB and in its neighbour table.
//!
//! The kernel runs a test with `repeat` N on one skb (or xdp_buff) and never restores it
//! between passes: after the first pass the encap probe is encapsulated, the decap probe
//! decapsulated and the ARP request a reply, so the other N-1 passes would time another
//! path. So each probe is timed in single runs, each on a fresh copy of the frame, and the
//! timer's own cost is taken out with a frame the program passes on unchanged, which can be
//! repeated: cost = median over pairs of (single(probe) - single(idle)) + repeated(idle).
//! That is what `repeat` would report if the frame could be restored between passes; on
//! paths that leave the frame unchanged, where plain `repeat` is valid, the two agreed
//! within 10% (decap of a VXLAN frame for no port: 90 vs 100 ns; port drop: 83 vs 80 ns).

use std::path::Path;

use anyhow::{anyhow, bail, Context, Result};
use aya::{
    maps::{HashMap, Map, MapData},
    programs::{SchedClassifier, TestRun, TestRunOptions, TestRunResult, Xdp},
};
use aya_obj::programs::XdpAttachType;
use vtep_common::{
    map_name,
    wire::{self, ARP_FRAME_LEN, ENCAP_LEN, ETH_LEN, IPV4_LEN, VXLAN_PORT},
    Addr, FdbEntry, IpVni, MacVni, NeighEntry,
};

use super::{
    frames::{self, LOCAL_VTEP, REMOTE_MAC, REMOTE_VTEP, VNI},
    Plan,
};
use crate::{iperf::measurement_lock, netns, ping, Stack, Testbed};

/// The FDB sizes every program is timed with: a small table, and the million entries of a
/// large fleet (the FDB's capacity is 2^20).
pub const FDB_SIZES: [u32; 2] = [10, 1_000_000];

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Program {
    Encap,
    DecapTc,
    DecapXdp,
    ArpReply,
}

impl Program {
    pub const ALL: [Program; 4] = [
        Program::Encap,
        Program::DecapTc,
        Program::DecapXdp,
        Program::ArpReply,
    ];

    pub fn key(self) -> &'static str {
        match self {
            Program::Encap => "encap",
            Program::DecapTc => "decap_tc",
            Program::DecapXdp => "decap_xdp",
            Program::ArpReply => "arp_reply",
        }
    }

    pub fn describe(self) -> &'static str {
        match self {
            Program::Encap => {
                "vtep_port: a container's 64-byte UDP datagram to a MAC in the FDB, encapsulated"
            }
            Program::DecapTc => {
                "vtep_underlay_tc: that datagram in VXLAN for a local port, decapsulated"
            }
            Program::DecapXdp => "vtep_underlay_xdp: the same, at XDP",
            Program::ArpReply => {
                "vtep_port: an ARP request for an address in the neighbour table, answered"
            }
        }
    }
}

/// A loaded program, as the kernel runs it.
pub(super) enum Prog {
    Tc(SchedClassifier),
    Xdp(Xdp),
}

impl Prog {
    fn test_run(&self, opts: TestRunOptions<'_>) -> Result<TestRunResult> {
        let result = match self {
            Prog::Tc(p) => p.test_run(opts),
            Prog::Xdp(p) => p.test_run(opts),
        };
        result.context("BPF_PROG_TEST_RUN")
    }
}

pub(super) const TC_ACT_OK: u32 = 0;
pub(super) const TC_ACT_SHOT: u32 = 2;
const TC_ACT_REDIRECT: u32 = 7;
const XDP_PASS: u32 = 2;

/// `struct __sk_buff` up to `ifindex`, the last field the port program reads; the kernel
/// zero-fills the rest.
const SKB_CTX_LEN: usize = 44;

/// An skb context arriving on `ifindex`. The kernel resolves it in the caller's network
/// namespace, so tests that carry one run on a thread inside the rig's namespace.
pub(super) fn skb_ctx(ifindex: u32) -> [u8; SKB_CTX_LEN] {
    let mut ctx = [0u8; SKB_CTX_LEN];
    ctx[36..40].copy_from_slice(&ifindex.to_ne_bytes()); // ingress_ifindex
    ctx[40..44].copy_from_slice(&ifindex.to_ne_bytes()); // ifindex
    ctx
}

/// One frame for one program, and what the program must do with it for the timing to be
/// of the intended path.
pub(super) struct Probe<'a> {
    pub(super) prog: &'a Prog,
    pub(super) frame: Vec<u8>,
    pub(super) ctx: Option<[u8; SKB_CTX_LEN]>,
    pub(super) verdict: u32,
    /// The frame the program must leave, from the frame it was given.
    pub(super) expect: fn(&[u8]) -> Vec<u8>,
    /// Encapsulation picks outer MACs and source port at run time: only the rest is checked.
    pub(super) compare_from: usize,
}

impl Probe<'_> {
    fn opts(&self, repeat: u32) -> TestRunOptions<'_> {
        TestRunOptions {
            data_in: Some(&self.frame),
            ctx_in: self.ctx.as_ref().map(|c| &c[..]),
            repeat,
            ..TestRunOptions::default()
        }
    }

    /// Runs the probe once with its output, and fails unless the program did what the probe
    /// is meant to time.
    fn verify(&self, what: &str) -> Result<()> {
        let mut out = vec![0u8; self.frame.len() + 256];
        let result = self.prog.test_run(TestRunOptions {
            data_out: Some(&mut out),
            ..self.opts(1)
        })?;
        out.truncate(result.data_size_out as usize);
        let expected = (self.expect)(&self.frame);
        let from = self.compare_from.min(out.len());
        if result.return_value != self.verdict
            || out.len() != expected.len()
            || out[from..] != expected[from..]
        {
            bail!(
                "{what}: the program returned {} (expected {}) and left {} bytes (expected {}): \
                 not the path meant to be timed",
                result.return_value,
                self.verdict,
                out.len(),
                expected.len()
            );
        }
        Ok(())
    }

    /// Nanoseconds per pass over `repeat` passes.
    fn time(&self, repeat: u32) -> Result<f64> {
        let result = self.prog.test_run(self.opts(repeat))?;
        if result.return_value != self.verdict {
            bail!(
                "the program returned {} instead of {} while being timed",
                result.return_value,
                self.verdict
            );
        }
        Ok(result.duration.as_nanos() as f64)
    }
}

/// Nanoseconds per packet of `probe`, corrected with `idle` (see the module comment).
pub(super) fn cost(probe: &Probe, idle: &Probe, plan: &Plan) -> Result<f64> {
    probe.verify("probe")?;
    idle.verify("idle frame")?;
    // Alternating single runs, paired: drift in the machine's speed hits both of a pair alike.
    let mut extra = Vec::with_capacity(plan.program_samples as usize);
    for _ in 0..plan.program_samples {
        extra.push(probe.time(1)? - idle.time(1)?);
    }
    extra.sort_by(f64::total_cmp);
    let steady = idle.time(plan.program_repeat)?;
    Ok(extra[extra.len() / 2] + steady)
}

pub(super) fn unchanged(frame: &[u8]) -> Vec<u8> {
    frame.to_vec()
}

fn decapsulated(frame: &[u8]) -> Vec<u8> {
    frame[ENCAP_LEN..].to_vec()
}

const HANDOFF_LEN: usize = std::mem::size_of::<vtep_common::XdpHandoff>();

fn handed_off(frame: &[u8]) -> Vec<u8> {
    [&[0; HANDOFF_LEN][..], &frame[ENCAP_LEN..]].concat()
}

/// The outer headers as far as they are fixed: the MACs, TTL, TOS and source port come from
/// the FIB, the configuration and the flow hash, so comparison starts at the UDP destination
/// port, `ENCAP_COMPARE_FROM`.
pub(super) fn encapsulated(frame: &[u8]) -> Vec<u8> {
    let outer = wire::outer_headers(&wire::Outer {
        dst_mac: [0; 6],
        src_mac: [0; 6],
        src_ip: frames::parse_ip(LOCAL_VTEP),
        dst_ip: frames::parse_ip(REMOTE_VTEP),
        src_port: 0,
        dst_port: VXLAN_PORT,
        vni: VNI,
        ttl: 0,
        tos: 0,
        inner_len: frame.len() as u16,
    });
    [&outer[..], frame].concat()
}

const ENCAP_COMPARE_FROM: usize = ETH_LEN + IPV4_LEN + 2;

fn arp_answered(frame: &[u8]) -> Vec<u8> {
    let mut reply: [u8; ARP_FRAME_LEN] = frame.try_into().expect("an ARP frame");
    wire::arp_reply(&mut reply, &REMOTE_MAC);
    reply.to_vec()
}

/// A reference scenario with vtep in XDP mode, which pins all three programs (the TC
/// decap program stays attached behind XDP), and host 1's FDB filled to its size.
struct Rig {
    bed: Testbed,
    programs: Programs,
    fdb_entries: u32,
}

/// Host 1's programs, and the ifindex its container port's frames arrive on.
struct Programs {
    port: Prog,
    decap_tc: Prog,
    decap_xdp: Prog,
    port_ifindex: u32,
}

impl Rig {
    fn new(tag: &str, fdb_entries: u32) -> Result<Self> {
        let native = Stack::vtep_with(&["--xdp-mode", "native"]);
        let bed = Testbed::new(tag, [native.clone(), native])?;
        let (h1, h2) = (bed.c1(), bed.c2());
        // Resolves the underlay neighbour and the containers' ARP, as on a host in service.
        if !ping(&h1.container, &h2.container_ip, 1)? {
            bail!("the program-cost scenario does not carry a ping");
        }
        let dir = h1.pin_dir()?;
        fill_tables(&dir, fdb_entries)?;
        let ports: serde_json::Value = serde_json::from_str(&h1.vtep(&["-j", "port", "show"])?)?;
        let port_ifindex = ports[0]["host_ifindex"]
            .as_u64()
            .and_then(|i| u32::try_from(i).ok())
            .context("`vtep port show -j` gave no host_ifindex")?;
        let tc = |name: &str| {
            SchedClassifier::from_pin(dir.join(name))
                .with_context(|| format!("opening the pinned {name}"))
        };
        let port = Prog::Tc(tc("prog_port")?);
        let decap_tc = Prog::Tc(tc("prog_underlay_tc")?);
        let decap_xdp = Prog::Xdp(
            Xdp::from_pin(dir.join("prog_underlay_xdp"), XdpAttachType::Interface)
                .context("opening the pinned prog_underlay_xdp")?,
        );
        Ok(Rig {
            bed,
            programs: Programs {
                port,
                decap_tc,
                decap_xdp,
                port_ifindex,
            },
            fdb_entries,
        })
    }
}

impl Programs {
    /// The probe that times `program`, and the frame the same program passes unchanged.
    fn probes(&self, program: Program) -> (Probe<'_>, Probe<'_>) {
        let on_port = |frame, expect, compare_from| Probe {
            prog: &self.port,
            frame,
            ctx: Some(skb_ctx(self.port_ifindex)),
            verdict: TC_ACT_REDIRECT,
            expect,
            compare_from,
        };
        let port_idle = Probe {
            prog: &self.port,
            // Arriving on the loopback, which is no port: the program's first exit.
            frame: frames::container_udp(),
            ctx: None,
            verdict: TC_ACT_OK,
            expect: unchanged,
            compare_from: 0,
        };
        let on_underlay = |prog, verdict, frame, expect, compare_from| Probe {
            prog,
            frame,
            ctx: None,
            verdict,
            expect,
            compare_from,
        };
        type Expect = fn(&[u8]) -> Vec<u8>;
        let (decap, redirect, pass, expect, from): (_, _, _, Expect, _) = match program {
            // On a veth underlay XDP decapsulates and hands the frame to TC to deliver, the
            // port in metadata in front (the run's ifindex: not compared).
            Program::DecapXdp => (&self.decap_xdp, XDP_PASS, XDP_PASS, handed_off, HANDOFF_LEN),
            _ => (&self.decap_tc, TC_ACT_REDIRECT, TC_ACT_OK, decapsulated, 0),
        };
        match program {
            Program::Encap => (
                on_port(frames::container_udp(), encapsulated, ENCAP_COMPARE_FROM),
                port_idle,
            ),
            Program::ArpReply => (on_port(frames::arp_request(), arp_answered, 0), port_idle),
            Program::DecapTc | Program::DecapXdp => (
                on_underlay(decap, redirect, frames::tunnelled_udp(), expect, from),
                on_underlay(decap, pass, frames::tunnelled_elsewhere(), unchanged, 0),
            ),
        }
    }
}

/// The rigs, one per FDB size.
pub struct Rigs {
    rigs: Vec<Rig>,
}

impl Rigs {
    /// Builds the rigs side by side (filling a million FDB entries takes a while).
    pub fn new(tag: &str) -> Result<Self> {
        let built: Vec<Result<Rig>> = std::thread::scope(|s| {
            let handles: Vec<_> = FDB_SIZES
                .iter()
                .enumerate()
                .map(|(i, &n)| s.spawn(move || Rig::new(&format!("{tag}r{i}"), n)))
                .collect();
            handles
                .into_iter()
                .map(|h| {
                    h.join()
                        .unwrap_or_else(|_| Err(anyhow!("rig thread panicked")))
                })
                .collect()
        });
        let rigs = built
            .into_iter()
            .collect::<Result<Vec<_>>>()
            .context("building the program-cost scenarios")?;
        Ok(Rigs { rigs })
    }

    /// Nanoseconds per packet of `program` with `fdb_entries` entries in the FDB.
    pub fn measure(&self, program: Program, fdb_entries: u32, plan: &Plan) -> Result<f64> {
        let rig = self
            .rigs
            .iter()
            .find(|r| r.fdb_entries == fdb_entries)
            .context("no rig with this FDB size")?;
        let _exclusive = measurement_lock()?;
        let (ns, programs) = (rig.bed.c1().ns.as_str(), &rig.programs);
        std::thread::scope(|s| {
            s.spawn(|| {
                // The port probes' ifindex is looked up in the calling thread's namespace.
                let _inside = netns::enter(ns)?;
                stay_on_this_cpu()?;
                let (probe, idle) = programs.probes(program);
                cost(&probe, &idle, plan)
            })
            .join()
            .map_err(|_| anyhow!("measuring thread panicked"))?
        })
    }
}

/// Keeps the measuring thread on the CPU it runs on: single runs are compared in pairs, and
/// a migration between the two halves of a pair would compare two CPUs.
pub(super) fn stay_on_this_cpu() -> Result<()> {
    use nix::sched::{sched_getcpu, sched_setaffinity, CpuSet};
    let cpu = sched_getcpu().map_err(|e| anyhow!("sched_getcpu: {e}"))?;
    let mut set = CpuSet::new();
    set.set(cpu)?;
    sched_setaffinity(nix::unistd::Pid::from_raw(0), &set)
        .map_err(|e| anyhow!("pinning the measuring thread to CPU {cpu}: {e}"))?;
    Ok(())
}

/// Fills the FDB and the neighbour table to `entries` each, every filler a copy of the
/// entry `vtep fdb add` / `neigh add` made for the remote container, so the values are
/// whatever `vtep` writes.
fn fill_tables(dir: &Path, entries: u32) -> Result<()> {
    let open = |name: &str| -> Result<Map> {
        let map = MapData::from_pin(dir.join(name))
            .with_context(|| format!("opening the pinned {name}"))?;
        Ok(Map::from_map_data(map)?)
    };
    let mut fdb: HashMap<MapData, MacVni, FdbEntry> = HashMap::try_from(open(map_name::FDB)?)?;
    let mut neigh: HashMap<MapData, IpVni, NeighEntry> = HashMap::try_from(open(map_name::NEIGH)?)?;
    let remote = fdb
        .get(&MacVni::new(REMOTE_MAC, VNI), 0)
        .context("the remote container's FDB entry")?;
    let remote_ip = IpVni {
        ip: Addr::v4([12, 12, 12, 3]),
        vni: VNI,
    };
    let arp = neigh
        .get(&remote_ip, 0)
        .context("the remote container's neighbour entry")?;
    for i in 1..entries {
        let b = i.to_be_bytes();
        let mac = [0x02, 0x10, b[0], b[1], b[2], b[3]];
        fdb.insert(MacVni::new(mac, VNI), remote, 0)
            .with_context(|| format!("adding FDB entry {i}"))?;
        let ip = IpVni {
            ip: Addr::v4([10, b[1], b[2], b[3]]),
            vni: VNI,
        };
        neigh
            .insert(ip, arp, 0)
            .with_context(|| format!("adding neighbour entry {i}"))?;
    }
    Ok(())
}
