//! Hostile packets: the live programs of a real vtep host, driven through BPF_PROG_TEST_RUN
//! with random frames and mutations of valid VXLAN, checked against a model of RFC 7348
//! written here independently of vtep's own parser.

use std::path::Path;

use anyhow::{Context, Result};
use aya::programs::{SchedClassifier, TestRun, TestRunOptions, Xdp};
use proptest::{
    prelude::*,
    test_runner::{Config, TestCaseError, TestRunner},
};
use vtep_testbed::{
    cmd::run, inject, netns, netns::unique_tag, scenario::Underlay, Stack, Testbed,
};

const TC_ACT_OK: u32 = 0;
const TC_ACT_SHOT: u32 = 2;
const TC_ACT_REDIRECT: u32 = 7;
const XDP_DROP: u32 = 1;
const XDP_PASS: u32 = 2;

const LOCAL_IP: [u8; 4] = [192, 168, 104, 2];
const M1: [u8; 6] = [2, 0x42, 0xc0, 0xa8, 0, 2];
const M2: [u8; 6] = [2, 0x42, 0xc0, 0xa8, 0, 7];
/// The local ports of host 1: the same MAC in two VNIs, and a second MAC in VNI 43.
const PORTS: [(u32, [u8; 6]); 3] = [(42, M1), (43, M1), (43, M2)];

/// What a correct VTEP does with a frame arriving on its underlay.
#[derive(Debug, PartialEq, Eq)]
enum Expect {
    /// Not VXLAN this VTEP accepts: the host gets it unchanged.
    Pass,
    /// Decapsulated to the local port of (VNI, inner destination); the inner frame.
    Deliver(Vec<u8>),
    /// Broadcast or multicast in a VNI with local ports: flooded to them.
    Flood,
    /// Outer CE around a Not-ECT inner packet (RFC 6040): dropped.
    Drop,
}

fn checksum_ok(ip: &[u8]) -> bool {
    let mut sum: u32 = ip
        .chunks(2)
        .map(|w| u16::from_be_bytes([w[0], w[1]]) as u32)
        .sum();
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    sum == 0xffff
}

/// RFC 7348 over IPv4 without options, as the kernel's vxlan driver accepts it, carrying an
/// inner frame of at least 34 bytes (Ethernet pads to 60; shorter ones are refused).
fn model(f: &[u8]) -> Expect {
    let be16 = |o: usize| u16::from_be_bytes([f[o], f[o + 1]]) as usize;
    if f.len() < 64
        || be16(12) != 0x0800
        || f[14] != 0x45
        || f[23] != 17
        || f[30..34] != LOCAL_IP
        || be16(36) != 4789
    {
        return Expect::Pass;
    }
    let tot = be16(16);
    let well_formed = checksum_ok(&f[14..34])
        && be16(20) & 0x3fff == 0
        && tot >= 20 + 8 + 8 + 34
        && 14 + tot <= f.len()
        && be16(38) == tot - 20
        && f[42] == 0x08
        && f[43..46] == [0, 0, 0]
        && f[49] == 0;
    if !well_formed {
        return Expect::Pass;
    }
    let vni = u32::from_be_bytes([0, f[46], f[47], f[48]]);
    let dst: [u8; 6] = f[50..56].try_into().unwrap();
    if dst[0] & 1 == 1 {
        return if PORTS.iter().any(|(v, _)| *v == vni) {
            Expect::Flood
        } else {
            Expect::Pass
        };
    }
    if PORTS.contains(&(vni, dst)) {
        ecn(f[15], f[50..14 + tot].to_vec()).map_or(Expect::Drop, Expect::Deliver)
    } else {
        Expect::Pass
    }
}

/// RFC 6040 (normal mode, with its ECT(1) update) on the inner frame of an accepted VXLAN
/// frame whose outer TOS is `outer`: None when it must be dropped. Only IPv4 and IPv6
/// right after the inner Ethernet header carry ECN.
fn ecn(outer: u8, mut inner: Vec<u8>) -> Option<Vec<u8>> {
    let ty = u16::from_be_bytes([inner[12], inner[13]]);
    let (byte, shift) = match ty {
        0x0800 => (15, 0),
        0x86dd => (15, 4),
        _ => return Some(inner),
    };
    let old = (inner[byte] >> shift) & 3;
    let new = match (outer & 3, old) {
        (3, 0) => return None,
        (3, 1 | 2) => 3,
        (1, 2) => 1,
        _ => old,
    };
    let word = |f: &[u8]| u16::from_be_bytes([f[14], f[15]]);
    let before = word(&inner);
    inner[byte] = (inner[byte] & !(3 << shift)) | (new << shift);
    if ty == 0x0800 && new != old {
        // RFC 1624: HC' = ~(~HC + ~m + m').
        let hc = u16::from_be_bytes([inner[24], inner[25]]);
        let mut sum = u32::from(!hc) + u32::from(!before) + u32::from(word(&inner));
        while sum > 0xffff {
            sum = (sum & 0xffff) + (sum >> 16);
        }
        inner[24..26].copy_from_slice(&(!(sum as u16)).to_be_bytes());
    }
    Some(inner)
}

/// A valid VXLAN frame from 192.168.104.3 to this VTEP.
fn vxlan(vni: u32, dst: [u8; 6], payload: &[u8]) -> Vec<u8> {
    let inner_len = 14 + payload.len();
    let tot = (20 + 8 + 8 + inner_len) as u16;
    let mut f = vec![0u8; 14];
    f[0..6].copy_from_slice(&[0xaa; 6]);
    f[6..12].copy_from_slice(&[0x0e, 0, 0, 0, 0, 3]);
    f[12..14].copy_from_slice(&[0x08, 0x00]);
    let mut ip = vec![0x45, 0, 0, 0, 0, 0, 0x40, 0, 64, 17, 0, 0, 192, 168, 104, 3];
    ip[2..4].copy_from_slice(&tot.to_be_bytes());
    ip.extend_from_slice(&LOCAL_IP);
    let sum = inject::checksum(&ip);
    ip[10..12].copy_from_slice(&sum.to_be_bytes());
    f.extend_from_slice(&ip);
    f.extend_from_slice(&50000u16.to_be_bytes());
    f.extend_from_slice(&4789u16.to_be_bytes());
    f.extend_from_slice(&(tot - 20).to_be_bytes());
    f.extend_from_slice(&[0, 0, 0x08, 0, 0, 0]);
    f.extend_from_slice(&(vni << 8).to_be_bytes());
    f.extend_from_slice(&dst);
    f.extend_from_slice(&[2, 0x42, 0xc0, 0xa8, 0, 3, 0x08, 0x00]);
    f.extend_from_slice(payload);
    f
}

#[derive(Clone, Debug)]
enum Mutation {
    None,
    Truncate(usize),
    Flip(usize, u8),
    IpOptions(u8),
    Fragment(bool),
    UdpPort(u16),
    Flags(u8),
    ReservedVni(u8),
    InnerTooShort,
    VlanTag,
    /// A VLAN tag inside the inner frame, lengths and checksum kept valid.
    InnerVlanTag,
    /// Outer and inner ECN fields (outer checksum kept valid).
    Ecn(u8, u8),
    Ipv6,
    EtherType(u16),
    Padding(usize),
}

fn mutation() -> impl Strategy<Value = Mutation> {
    prop_oneof![
        2 => Just(Mutation::None),
        3 => (0usize..140).prop_map(Mutation::Truncate),
        3 => (0usize..140, any::<u8>()).prop_map(|(o, b)| Mutation::Flip(o, b)),
        1 => (6u8..16).prop_map(Mutation::IpOptions),
        1 => any::<bool>().prop_map(Mutation::Fragment),
        1 => any::<u16>().prop_map(Mutation::UdpPort),
        1 => any::<u8>().prop_map(Mutation::Flags),
        1 => (1u8..=255).prop_map(Mutation::ReservedVni),
        1 => Just(Mutation::InnerTooShort),
        1 => Just(Mutation::VlanTag),
        1 => Just(Mutation::Ipv6),
        1 => Just(Mutation::InnerVlanTag),
        3 => (0u8..4, 0u8..4).prop_map(|(o, i)| Mutation::Ecn(o, i)),
        1 => any::<u16>().prop_map(Mutation::EtherType),
        1 => (1usize..20).prop_map(Mutation::Padding),
    ]
}

fn apply(mut f: Vec<u8>, m: &Mutation) -> Vec<u8> {
    match *m {
        Mutation::None => {}
        Mutation::Truncate(n) => f.truncate(n.max(14)),
        Mutation::Flip(o, b) => {
            if let Some(x) = f.get_mut(o) {
                *x ^= b;
            }
        }
        Mutation::IpOptions(ihl) => {
            f[14] = 0x40 | ihl;
            let extra = (ihl as usize - 5) * 4;
            f.splice(34..34, std::iter::repeat_n(1u8, extra));
        }
        Mutation::Fragment(more) => f[20] |= if more { 0x20 } else { 0x01 },
        Mutation::UdpPort(p) => f[36..38].copy_from_slice(&p.to_be_bytes()),
        Mutation::Flags(b) => f[42] = b,
        Mutation::ReservedVni(b) => f[49] = b,
        Mutation::InnerTooShort => f.truncate(50 + 9),
        Mutation::VlanTag => {
            f.splice(12..12, [0x81, 0x00, 0x00, 0x2a]);
        }
        Mutation::InnerVlanTag => {
            f.splice(62..62, [0x81, 0x00, 0x00, 0x2a]);
            grow_outer(&mut f, 4);
        }
        Mutation::Ecn(outer, inner) => {
            f[15] = (f[15] & !3) | outer;
            if let Some(tos) = f.get_mut(65) {
                *tos = (*tos & !3) | inner;
            }
            grow_outer(&mut f, 0);
        }
        Mutation::Ipv6 => f[12..14].copy_from_slice(&[0x86, 0xdd]),
        Mutation::EtherType(t) => f[12..14].copy_from_slice(&t.to_be_bytes()),
        Mutation::Padding(n) => f.extend(std::iter::repeat_n(0u8, n)),
    }
    f
}

/// Adds `n` to the outer IPv4 and UDP lengths and recomputes the outer IPv4 checksum.
fn grow_outer(f: &mut [u8], n: u16) {
    let tot = u16::from_be_bytes([f[16], f[17]]) + n;
    f[16..18].copy_from_slice(&tot.to_be_bytes());
    f[38..40].copy_from_slice(&(tot - 20).to_be_bytes());
    f[24..26].copy_from_slice(&[0, 0]);
    let sum = inject::checksum(&f[14..34]);
    f[24..26].copy_from_slice(&sum.to_be_bytes());
}

fn frames() -> impl Strategy<Value = Vec<u8>> {
    let mac = prop_oneof![
        Just(M1),
        Just(M2),
        Just([0xff; 6]),
        Just([1, 0, 0x5e, 0, 0, 1]),
        any::<[u8; 6]>()
    ];
    let valid = (
        prop_oneof![Just(42u32), Just(43), Just(44), 0u32..=0xff_ffff],
        mac,
        prop::collection::vec(any::<u8>(), 0..80),
        mutation(),
    )
        .prop_map(|(vni, dst, payload, m)| apply(vxlan(vni, dst, &payload), &m));
    // The kernel hands no program a frame shorter than an Ethernet header.
    let valid = valid.prop_filter("shorter than an Ethernet header", |f| f.len() >= 14);
    prop_oneof![1 => prop::collection::vec(any::<u8>(), 14..160), 4 => valid]
}

fn run_tc(prog: &SchedClassifier, frame: &[u8], ctx: &[u8]) -> Result<(u32, Vec<u8>)> {
    let mut out = vec![0u8; frame.len() + 256];
    let r = prog.test_run(TestRunOptions {
        data_in: Some(frame),
        data_out: Some(&mut out),
        ctx_in: Some(ctx),
        ..Default::default()
    })?;
    out.truncate(r.data_size_out as usize);
    Ok((r.return_value, out))
}

fn run_xdp(prog: &Xdp, frame: &[u8]) -> Result<(u32, Vec<u8>)> {
    let mut out = vec![0u8; frame.len() + 256];
    let r = prog.test_run(TestRunOptions {
        data_in: Some(frame),
        data_out: Some(&mut out),
        ..Default::default()
    })?;
    out.truncate(r.data_size_out as usize);
    Ok((r.return_value, out))
}

/// An __sk_buff for BPF_PROG_TEST_RUN naming the device the frame arrives on (ifindex sits
/// at byte 40 of the UAPI struct).
fn skb_ctx(ifindex: u32) -> Vec<u8> {
    let mut ctx = vec![0u8; 44];
    ctx[40..44].copy_from_slice(&ifindex.to_ne_bytes());
    ctx
}

/// BPF_PROG_TEST_RUN builds no skb for an IPv4 or IPv6 frame too short to hold its network
/// header (EINVAL): such a frame never reaches a program this way, so it proves nothing.
fn kernel_refuses<T>(run: &Result<T>, frame: &[u8]) -> bool {
    run.is_err() && frame.len() < 14 + 40
}

fn ifindex(ns: &str, dev: &str) -> Result<u32> {
    Ok(run(
        "ip",
        &[
            "netns",
            "exec",
            ns,
            "cat",
            &format!("/sys/class/net/{dev}/ifindex"),
        ],
    )?
    .trim()
    .parse()?)
}

fn cases() -> u32 {
    std::env::var("VTEP_HOSTILE_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(100_000)
}

/// Host 1 of a two-host testbed on `underlay` (native XDP decap), with PORTS, and its
/// pinned underlay programs.
struct UnderlayRig {
    bed: Testbed,
    tc: SchedClassifier,
    xdp: Xdp,
}

impl UnderlayRig {
    fn new(tag: &str, underlay: Underlay) -> Result<Self> {
        let bed = Testbed::underlay_on(
            tag,
            vec![Stack::vtep_with(&["--xdp-mode", "native"]), Stack::vtep()],
            underlay,
        )?;
        let h1 = &bed.hosts[0];
        for (i, (vni, mac)) in PORTS.iter().enumerate() {
            let mac = mac
                .iter()
                .map(|b| format!("{b:02x}"))
                .collect::<Vec<_>>()
                .join(":");
            h1.port(
                &format!("{tag}p{i}"),
                &mac,
                &format!("12.12.12.{}", 10 + i),
                *vni,
            )?;
        }
        let dir = h1.pin_dir()?;
        let tc =
            SchedClassifier::from_pin(dir.join("prog_underlay_tc")).context("pinned TC program")?;
        let xdp = Xdp::from_pin(
            dir.join("prog_underlay_xdp"),
            aya_obj::programs::XdpAttachType::Interface,
        )
        .context("pinned XDP program")?;
        Ok(UnderlayRig { bed, tc, xdp })
    }

    /// The host's namespace, entered for BPF_PROG_TEST_RUN, and the __sk_buff of a frame
    /// arriving on its underlay.
    fn enter(&self) -> Result<(netns::Inside, Vec<u8>)> {
        let ns = &self.bed.hosts[0].ns;
        Ok((netns::enter(ns)?, skb_ctx(ifindex(ns, "eth1")?)))
    }
}

/// A runner of `cases` cases that never persists failures.
fn runner(cases: u32) -> TestRunner {
    TestRunner::new(Config {
        cases,
        failure_persistence: None,
        max_global_rejects: 100_000,
        ..Config::default()
    })
}

#[test]
fn hostile_frames_on_the_underlay_never_reach_the_wrong_place() -> Result<()> {
    let rig = UnderlayRig::new(&unique_tag("hx"), Underlay::V4)?;
    let (tc, xdp) = (&rig.tc, &rig.xdp);
    let (_inside, ctx) = rig.enter()?;

    let mut runner = runner(cases());
    let ran = std::cell::Cell::new(0u32);
    let result = runner.run(&frames(), |frame| {
        ran.set(ran.get() + 1);
        let expect = model(&frame);
        let tc_run = run_tc(tc, &frame, &ctx);
        prop_assume!(!kernel_refuses(&tc_run, &frame));
        let (tc_verdict, tc_out) = tc_run.map_err(|e| TestCaseError::fail(format!("TC: {e:#}")))?;
        match &expect {
            Expect::Pass => {
                prop_assert_eq!(tc_verdict, TC_ACT_OK, "TC must pass it");
                prop_assert_eq!(&tc_out, &frame, "TC changed a frame it passed");
            }
            Expect::Deliver(inner) => {
                prop_assert_eq!(tc_verdict, TC_ACT_REDIRECT, "TC must deliver it");
                prop_assert_eq!(
                    &tc_out[..inner.len()],
                    &inner[..],
                    "TC delivered other bytes"
                );
            }
            Expect::Flood => prop_assert_eq!(
                tc_verdict,
                TC_ACT_SHOT,
                "TC floods (copies) and consumes it"
            ),
            Expect::Drop => prop_assert_eq!(tc_verdict, TC_ACT_SHOT, "TC must drop it"),
        }
        let (xdp_verdict, xdp_out) =
            run_xdp(xdp, &frame).map_err(|e| TestCaseError::fail(format!("XDP: {e:#}")))?;
        match &expect {
            // On a veth underlay XDP decapsulates and hands the frame to TC to deliver, the
            // port in 8 bytes of metadata (which BPF_PROG_TEST_RUN returns in front).
            Expect::Deliver(inner) => {
                prop_assert_eq!(xdp_verdict, XDP_PASS, "XDP must decapsulate it");
                prop_assert_eq!(&xdp_out[..4], b"dxtv", "XDP left no hand-off");
                prop_assert_eq!(&xdp_out[8..], &inner[..], "XDP decapsulated other bytes");
            }
            Expect::Drop => prop_assert_eq!(xdp_verdict, XDP_DROP, "XDP must drop it"),
            _ => {
                prop_assert_eq!(xdp_verdict, XDP_PASS, "XDP must pass it on");
                prop_assert_eq!(&xdp_out, &frame, "XDP changed a frame it passed");
            }
        }
        Ok(())
    });
    result.map_err(|e| anyhow::anyhow!("{e}"))?;
    assert!(ran.get() >= cases(), "only {} frames ran", ran.get());
    Ok(())
}

/// Frames a container sends: whatever the bytes, the port program only ever drops them,
/// answers ARP, switches to a port of the same VNI, or tunnels them in the port's VNI.
#[test]
fn hostile_frames_from_a_port_stay_in_its_vni() -> Result<()> {
    from_a_port(Underlay::V4)
}

/// The same towards a VTEP over IPv6, whose outer UDP checksum verifies whenever the inner
/// packet's own does (see `model_outer6`).
#[test]
fn hostile_frames_from_a_port_stay_in_its_vni_over_ipv6() -> Result<()> {
    from_a_port(Underlay::V6)
}

fn from_a_port(underlay: Underlay) -> Result<()> {
    let tag = unique_tag("hp");
    let bed = Testbed::underlay_on(&tag, vec![Stack::vtep(), Stack::vtep()], underlay)?;
    let (h1, h2) = (&bed.hosts[0], &bed.hosts[1]);
    let (sender, peer) = (format!("{tag}s"), format!("{tag}q"));
    h1.port(&sender, "02:42:c0:a8:00:02", "12.12.12.2", 42)?;
    h1.port(&peer, "02:42:c0:a8:00:04", "12.12.12.4", 42)?;
    h1.vtep(&[
        "fdb",
        "add",
        "02:42:c0:a8:00:03",
        "dst",
        h2.vtep_ip(),
        "vni",
        "42",
    ])?;
    h1.vtep(&[
        "neigh",
        "add",
        "12.12.12.3",
        "lladdr",
        "02:42:c0:a8:00:03",
        "vni",
        "42",
    ])?;
    let ports: serde_json::Value = serde_json::from_str(&h1.vtep(&["-j", "port", "show"])?)?;
    let host_if = ports
        .as_array()
        .into_iter()
        .flatten()
        .find(|p| p["netns"] == sender.as_str())
        .context("sender port")?["host_ifname"]
        .as_str()
        .context("host_ifname")?
        .to_string();
    let dir = h1.pin_dir()?;
    let port = SchedClassifier::from_pin(Path::new(&dir).join("prog_port"))
        .context("pinned port program")?;
    let _inside = netns::enter(&h1.ns)?;
    let ctx = skb_ctx(ifindex(&h1.ns, &host_if)?);

    let src = [2u8, 0x42, 0xc0, 0xa8, 0, 2];
    let dst = prop_oneof![
        Just([2u8, 0x42, 0xc0, 0xa8, 0, 3]),
        Just([2u8, 0x42, 0xc0, 0xa8, 0, 4]),
        Just([0xff; 6]),
        any::<[u8; 6]>()
    ];
    let frame = (
        dst,
        prop_oneof![Just(src), any::<[u8; 6]>()],
        any::<u16>(),
        prop::collection::vec(any::<u8>(), 0..120),
    )
        .prop_map(|(d, s, t, body)| [&d[..], &s[..], &t.to_be_bytes(), &body].concat());
    let mut runner = runner(cases() / 4);
    // Where the outer UDP port and the VNI sit, and how long the outer headers are.
    let (ty, udp_port, vni_at, outer) = match underlay {
        Underlay::V6 => ([0x86, 0xdd], 56, 66, 70),
        _ => ([0x08, 0x00], 36, 46, 50),
    };
    let tunnels = std::cell::Cell::new(0u32);
    let result = runner.run(&frame, |f| {
        let run = run_tc(&port, &f, &ctx);
        prop_assume!(!kernel_refuses(&run, &f));
        let (verdict, out) = run.map_err(|e| TestCaseError::fail(format!("{e:#}")))?;
        prop_assert!(
            verdict == TC_ACT_SHOT || verdict == TC_ACT_REDIRECT,
            "verdict {verdict}"
        );
        if f.len() >= 14 && f[6..12] != src {
            prop_assert_eq!(verdict, TC_ACT_SHOT, "a spoofed source MAC got through");
        }
        let tunnelled = out.len() == f.len() + outer
            && out[12..14] == ty
            && out[udp_port..udp_port + 2] == [0x12, 0xb5];
        if verdict == TC_ACT_REDIRECT && tunnelled {
            tunnels.set(tunnels.get() + 1);
            prop_assert_eq!(
                &out[vni_at..vni_at + 3],
                &[0, 0, 42],
                "tunnelled in another VNI"
            );
            prop_assert_eq!(&out[outer..], &f[..], "the inner frame changed");
            if outer == 70 {
                let len = out.len() - 54;
                let datagram = [&pseudo6(&out, len, 17)[..], &out[54..]].concat();
                prop_assert!(
                    sum(&datagram) == 0xffff || inner_l4_ok(&f) == Some(false),
                    "the outer UDP checksum does not verify"
                );
            }
        }
        Ok(())
    });
    result.map_err(|e| anyhow::anyhow!("{e}"))?;
    assert!(tunnels.get() > 0, "nothing was tunnelled");
    Ok(())
}

/// What a correct VTEP does with an IPv6 frame its port sends (with the port's own MAC).
#[derive(Debug, PartialEq, Eq)]
enum Expect6 {
    /// A neighbour solicitation the neighbour table answers: this NA goes back to the port.
    Answer(Vec<u8>),
    /// Not from the port's addresses, or neighbour discovery about another host.
    Spoof,
    /// Anything else: forwarded like any frame (or dropped, with nowhere to go).
    Forward,
}

/// The sender's addresses, its MAC, and the neighbour entry in its VNI.
const V6_OWN: [&str; 2] = ["fd00:12::2", "fe80::42:c0ff:fea8:2"];
const V6_NEIGH: (&str, [u8; 6]) = ("fd00:12::3", [2, 0x42, 0xc0, 0xa8, 0, 3]);

/// RFC 4861 and RFC 8200 as the port's rules read them, written apart from the data path.
fn model6(f: &[u8], port_mac: [u8; 6]) -> Expect6 {
    use vtep_testbed::ipv6::{icmp6, ip6, na_msg};
    let own = |a: &[u8]| V6_OWN.iter().any(|o| ip6(o) == a);
    if f[6..12] != port_mac {
        return Expect6::Spoof;
    }
    let src = &f[22..38];
    let unspecified = src.iter().all(|&b| b == 0);
    if !unspecified && !own(src) {
        return Expect6::Spoof;
    }
    // The extension headers a port may put before its upper layer, four at most.
    let (mut proto, mut off) = (f[20], 54);
    let mut walked = 0;
    while matches!(proto, 0 | 43 | 60) {
        if walked == 4 || off + 2 > f.len() {
            return Expect6::Spoof;
        }
        (proto, off) = (f[off], off + (f[off + 1] as usize + 1) * 8);
        walked += 1;
    }
    let ty = (proto == 58).then(|| f.get(off).copied()).flatten();
    let allowed = match ty {
        Some(135 | 136) => {
            let na_target_own = ty != Some(136) || f.get(off + 8..off + 24).is_some_and(own);
            let end = 54 + u16::from_be_bytes([f[18], f[19]]) as usize;
            // Options up to the payload's end, four at most; a cut-short one is discarded by
            // receivers, so harmless.
            let mut o = off + 24;
            let mut options_ok = None;
            for _ in 0..4 {
                if o >= end || o + 8 > f.len() {
                    options_ok = Some(true);
                    break;
                }
                let (kind, len) = (f[o], f[o + 1]);
                if len == 0 || (matches!(kind, 1 | 2) && f[o + 2..o + 8] != port_mac) {
                    options_ok = Some(false);
                    break;
                }
                o += len as usize * 8;
            }
            na_target_own && options_ok.unwrap_or(o >= end)
        }
        Some(131 | 143) => true,
        _ => !unspecified,
    };
    if !allowed {
        return Expect6::Spoof;
    }
    // The proxy answers a valid NS that is the whole frame (no option, or one).
    let plen = u16::from_be_bytes([f[18], f[19]]) as usize;
    let valid_ns = (f.len() == 78 || f.len() == 86)
        && plen == f.len() - 54
        && f[14] >> 4 == 6
        && f[20] == 58
        && f[21] == 255
        && f[54] == 135
        && f[55] == 0
        && f[62] != 0xff
        && !unspecified
        && (f.len() == 78 || f[79] == 1)
        && {
            let mut pseudo = [&f[22..54], &(plen as u32).to_be_bytes(), &[0, 0, 0, 58]].concat();
            pseudo.extend_from_slice(&f[54..]);
            inject::checksum(&pseudo) == 0
        };
    if !valid_ns || f[62..78] != ip6(V6_NEIGH.0) {
        return Expect6::Forward;
    }
    let to = if f.len() == 86 && f[78] == 1 {
        [f[80], f[81], f[82], f[83], f[84], f[85]]
    } else {
        [f[6], f[7], f[8], f[9], f[10], f[11]]
    };
    let option = [&[2, 1][..], &V6_NEIGH.1].concat();
    let mut na = icmp6(
        to,
        V6_NEIGH.1,
        ip6(V6_NEIGH.0),
        src.try_into().expect("16 bytes"),
        255,
        &na_msg(ip6(V6_NEIGH.0), &option),
    );
    na[14] = 0x60 | (f[14] & 0x0f);
    Expect6::Answer(na)
}

/// Valid IPv6 frames of the sender, good and bad, for mutations to start from.
fn ipv6_bases(me: [u8; 6]) -> Vec<Vec<u8>> {
    use vtep_testbed::ipv6::*;
    let own = ip6(V6_OWN[0]);
    let ll = ip6(V6_OWN[1]);
    let peer = ip6(V6_NEIGH.0);
    let (group, group_mac) = solicited_node(peer);
    let slla = lladdr_option(1, me);
    vec![
        icmp6(group_mac, me, own, group, 255, &ns_msg(peer, &slla)),
        icmp6(V6_NEIGH.1, me, own, peer, 255, &ns_msg(peer, &slla)),
        icmp6(V6_NEIGH.1, me, ll, peer, 255, &ns_msg(peer, &[])),
        icmp6(
            group_mac,
            me,
            own,
            group,
            255,
            &ns_msg(ip6("fd00:12::9"), &slla),
        ),
        icmp6(group_mac, me, [0; 16], group, 255, &ns_msg(own, &[])),
        icmp6(
            ALL_NODES.1,
            me,
            own,
            ALL_NODES.0,
            255,
            &na_msg(own, &lladdr_option(2, me)),
        ),
        icmp6(
            ALL_NODES.1,
            me,
            own,
            ALL_NODES.0,
            255,
            &na_msg(peer, &lladdr_option(2, me)),
        ),
        icmp6(V6_NEIGH.1, me, own, peer, 64, &echo_msg(1)),
        icmp6(V6_NEIGH.1, me, ip6("fd00:12::66"), peer, 64, &echo_msg(2)),
        packet(
            MLDV2_ROUTERS.1,
            me,
            [0; 16],
            MLDV2_ROUTERS.0,
            1,
            HOP_BY_HOP,
            &router_alert(ICMPV6),
            ICMPV6,
            &mld2_report(group),
        ),
        packet(
            V6_NEIGH.1,
            me,
            own,
            peer,
            255,
            60,
            &[ICMPV6, 0, 1, 4, 0, 0, 0, 0],
            ICMPV6,
            &ns_msg(peer, &slla),
        ),
        icmp6(ALL_ROUTERS.1, me, ll, ALL_ROUTERS.0, 255, &rs_msg(&slla)),
    ]
}

#[derive(Clone, Debug)]
enum Mutation6 {
    None,
    Truncate(usize),
    Flip(usize, u8),
    HopLimit(u8),
    /// A hop-by-hop header (router alert) put in front of the upper layer.
    HopByHop,
    /// The ICMPv6 checksum broken.
    Checksum(u16),
}

fn apply6(mut f: Vec<u8>, m: &Mutation6) -> Vec<u8> {
    match *m {
        Mutation6::None => {}
        Mutation6::Truncate(n) => f.truncate(n.max(14)),
        Mutation6::Flip(o, b) => {
            if let Some(x) = f.get_mut(o) {
                *x = b;
            }
        }
        Mutation6::HopLimit(h) => f[21] = h,
        Mutation6::HopByHop => {
            let next = f[20];
            f[20] = 0;
            let plen = u16::from_be_bytes([f[18], f[19]]) + 8;
            f[18..20].copy_from_slice(&plen.to_be_bytes());
            f.splice(54..54, vtep_testbed::ipv6::router_alert(next));
        }
        Mutation6::Checksum(x) => {
            if f[20] == 58 && f.len() > 58 {
                let c = u16::from_be_bytes([f[56], f[57]]) ^ x.max(1);
                f[56..58].copy_from_slice(&c.to_be_bytes());
            }
        }
    }
    f
}

/// drop_spoof as the per-CPU STATS map counts it.
fn spoof_count(stats: &aya::maps::PerCpuArray<aya::maps::MapData, u64>) -> Result<u64> {
    let values = stats.get(&vtep_common::counter::DROP_SPOOF, 0)?;
    Ok(values.iter().sum())
}

/// IPv6 frames from a port, valid neighbour discovery and its mutations (truncated anywhere,
/// a flipped byte, another hop limit, an extension header in front, a bad checksum): each is
/// answered with exactly the NA the model builds, dropped as spoofed, or forwarded, as the
/// model decides.
#[test]
fn hostile_ipv6_from_a_port_is_answered_dropped_or_forwarded_as_the_model_says() -> Result<()> {
    let tag = unique_tag("h6");
    let bed = Testbed::underlay(&tag, vec![Stack::vtep(), Stack::vtep()])?;
    let h1 = &bed.hosts[0];
    let sender = format!("{tag}s");
    let me = [2u8, 0x42, 0xc0, 0xa8, 0, 2];
    h1.port_with(
        &sender,
        "02:42:c0:a8:00:02",
        &["12.12.12.2/24", "fd00:12::2/64"],
        42,
    )?;
    h1.vtep(&[
        "fdb",
        "add",
        "02:42:c0:a8:00:03",
        "dst",
        "192.168.104.3",
        "vni",
        "42",
    ])?;
    h1.vtep(&[
        "neigh",
        "add",
        V6_NEIGH.0,
        "lladdr",
        "02:42:c0:a8:00:03",
        "vni",
        "42",
    ])?;
    let ports: serde_json::Value = serde_json::from_str(&h1.vtep(&["-j", "port", "show"])?)?;
    let host_if = ports[0]["host_ifname"]
        .as_str()
        .context("host_ifname")?
        .to_string();
    let dir = h1.pin_dir()?;
    let port = SchedClassifier::from_pin(Path::new(&dir).join("prog_port"))
        .context("pinned port program")?;
    let stats_pin =
        aya::maps::MapData::from_pin(Path::new(&dir).join(vtep_common::map_name::STATS))?;
    let stats = aya::maps::PerCpuArray::<_, u64>::try_from(aya::maps::Map::PerCpuArray(stats_pin))?;
    let _inside = netns::enter(&h1.ns)?;
    let ctx = skb_ctx(ifindex(&h1.ns, &host_if)?);

    let mutation = prop_oneof![
        2 => Just(Mutation6::None),
        3 => (0usize..120).prop_map(Mutation6::Truncate),
        3 => (14usize..110, any::<u8>()).prop_map(|(o, b)| Mutation6::Flip(o, b)),
        1 => any::<u8>().prop_map(Mutation6::HopLimit),
        1 => Just(Mutation6::HopByHop),
        1 => any::<u16>().prop_map(Mutation6::Checksum),
    ];
    let bases = ipv6_bases(me);
    let frame = (0..bases.len(), mutation).prop_map(move |(i, m)| apply6(bases[i].clone(), &m));
    let mut runner = runner(cases() / 10);
    let result = runner.run(&frame, |f| {
        prop_assume!(f.len() >= 54 && f[12..14] == [0x86, 0xdd]);
        let expect = model6(&f, me);
        let before = spoof_count(&stats).map_err(|e| TestCaseError::fail(format!("{e:#}")))?;
        let run = run_tc(&port, &f, &ctx);
        prop_assume!(!kernel_refuses(&run, &f));
        let (verdict, out) = run.map_err(|e| TestCaseError::fail(format!("{e:#}")))?;
        let spoofed =
            spoof_count(&stats).map_err(|e| TestCaseError::fail(format!("{e:#}")))? - before;
        match &expect {
            Expect6::Answer(na) => {
                prop_assert_eq!(verdict, TC_ACT_REDIRECT, "the NS was not answered");
                prop_assert_eq!(&out, na, "not the NA the model builds");
            }
            Expect6::Spoof => {
                prop_assert_eq!(verdict, TC_ACT_SHOT, "a spoofed frame got through");
                prop_assert_eq!(spoofed, 1, "not counted as drop_spoof");
            }
            Expect6::Forward => {
                prop_assert_eq!(spoofed, 0, "dropped as spoofed");
                let answered = out.len() == 86 && out[54] == 136 && out[6..12] == V6_NEIGH.1;
                prop_assert!(!answered, "answered what the model does not");
            }
        }
        Ok(())
    });
    result.map_err(|e| anyhow::anyhow!("{e}"))
}

/// The VTEP addresses of the IPv6 underlay: host 1 (under test) and host 2.
const LOCAL_IP6: &str = "2001:db8::2";
const REMOTE_IP6: &str = "2001:db8::3";

/// The one's-complement sum of `bytes` (an odd last byte padded with zero), folded.
fn sum(bytes: &[u8]) -> u16 {
    !inject::checksum(&[bytes, &[0][..bytes.len() % 2]].concat())
}

/// The IPv6 pseudo-header of the outer UDP datagram of `f`, for a UDP length `len`.
fn pseudo6(f: &[u8], len: usize, proto: u8) -> Vec<u8> {
    [
        &f[22..54],
        &(len as u32).to_be_bytes()[..],
        &[0, 0, 0, proto],
    ]
    .concat()
}

/// Whether the inner packet's own L4 checksum holds: None when it has none the receiving
/// stack would check (not IPv4 without options and unfragmented, or IPv6, carrying TCP,
/// UDP with a checksum, ICMP or ICMPv6), or when fewer than 40 bytes follow its Ethernet
/// header; false when the packet is shorter than its IP length says.
fn inner_l4_ok(inner: &[u8]) -> Option<bool> {
    if inner.len() < 14 + 40 {
        return None;
    }
    let ip = &inner[14..];
    let be16 = |o: usize| u16::from_be_bytes([ip[o], ip[o + 1]]) as usize;
    let (start, len, proto, addrs) = match u16::from_be_bytes([inner[12], inner[13]]) {
        0x0800 if ip[0] == 0x45 && be16(6) & 0x3fff == 0 => {
            (20, be16(2).checked_sub(20)?, ip[9], &ip[12..20])
        }
        0x86dd if ip[0] >> 4 == 6 => (40, be16(4), ip[6], &ip[8..40]),
        _ => return None,
    };
    let v4 = start == 20;
    match proto {
        1 if v4 => {}
        6 | 58 => {}
        17 if !v4 || be16(26) != 0 => {}
        _ => return None,
    }
    let Some(l4) = ip.get(start..start + len) else {
        return Some(false);
    };
    if proto == 1 {
        return Some(sum(l4) == 0xffff);
    }
    let pseudo = [
        addrs,
        &(len as u32).to_be_bytes()[..],
        &[0, 0, 0, proto],
        l4,
    ]
    .concat();
    Some(sum(&pseudo) == 0xffff)
}

/// RFC 7348 over IPv6 (RFC 8200: a UDP checksum; RFC 6936: a zero one refused, as the
/// kernel's vxlan does without `udp6zerocsumrx`), as a receiver of frames for 2001:db8::2
/// takes them; and whether passing the frame to the host is as good as the verdict. It is
/// when the inner packet's own checksum fails, which the receiving stack checks: the data
/// path lets the inner checksum vouch for the inner L4 region, as the kernel's senders
/// compute the outer one (local checksum offload), so it may take a frame whose outer
/// checksum fails there, or refuse one whose outer checksum was made to fit.
fn model_outer6(f: &[u8]) -> (Expect, bool) {
    use vtep_testbed::ipv6::ip6;
    let be16 = |o: usize| u16::from_be_bytes([f[o], f[o + 1]]) as usize;
    if f.len() < 14 + 40 + 16 + 14
        || be16(12) != 0x86dd
        || f[14] >> 4 != 6
        || f[20] != 17
        || f[38..54] != ip6(LOCAL_IP6)
        || be16(56) != 4789
    {
        return (Expect::Pass, false);
    }
    let plen = be16(18);
    let well_formed = f[22] != 0xff
        && f[22..38].iter().any(|&b| b != 0)
        && plen >= 16 + 34
        && 54 + plen <= f.len()
        && be16(58) == plen
        && f[62] == 0x08
        && f[63..66] == [0, 0, 0]
        && f[69] == 0
        && be16(60) != 0;
    if !well_formed {
        return (Expect::Pass, false);
    }
    let udp = &f[54..54 + plen];
    let verifies = sum(&[&pseudo6(f, plen, 17)[..], udp].concat()) == 0xffff;
    // Left to offload by a sender on the same machine: only the pseudo-header's sum.
    let offloaded = be16(60) as u16 == sum(&pseudo6(f, plen, 17));
    let inner = &udp[16..];
    let inner_bad = inner_l4_ok(inner) == Some(false);
    if !verifies && !offloaded {
        return (Expect::Pass, inner_bad);
    }
    let vni = u32::from_be_bytes([0, f[66], f[67], f[68]]);
    let dst: [u8; 6] = inner[..6].try_into().unwrap();
    let expect = if dst[0] & 1 == 1 {
        if PORTS.iter().any(|(v, _)| *v == vni) {
            Expect::Flood
        } else {
            Expect::Pass
        }
    } else if PORTS.contains(&(vni, dst)) {
        let tclass = (f[14] & 0x0f) << 4 | f[15] >> 4;
        ecn(tclass, inner.to_vec()).map_or(Expect::Drop, Expect::Deliver)
    } else {
        Expect::Pass
    };
    (expect, inner_bad)
}

/// Inner frames for VXLAN over IPv6: without an L4 checksum (summed whole by the data
/// path), IPv4 ICMP and ICMPv6 (whose own checksum stands in for their payload).
fn inner6(dst: [u8; 6], kind: u8, tos: u8, payload: &[u8]) -> Vec<u8> {
    use vtep_testbed::ipv6::{echo_msg, icmp6, ip6};
    let src = [2, 0x42, 0xc0, 0xa8, 0, 3];
    match kind {
        0 => inject::junk_frame(dst, src, payload),
        1 => inject::icmp_echo(dst, src, [12, 12, 12, 3], [12, 12, 12, 10], tos),
        _ => {
            let mut f = icmp6(
                dst,
                src,
                ip6("fd00:12::3"),
                ip6("fd00:12::10"),
                64,
                &echo_msg(payload.first().copied().unwrap_or(1)),
            );
            f[14] = 0x60 | tos >> 4;
            f[15] = tos << 4;
            f
        }
    }
}

/// `inner` as VXLAN in `vni` from 2001:db8::3 to this VTEP, its UDP checksum valid.
fn vxlan6(vni: u32, inner: &[u8]) -> Vec<u8> {
    use vtep_testbed::ipv6::ip6;
    let plen = (16 + inner.len()) as u16;
    let mut f = [&[0xaa; 6][..], &[0x0e, 0, 0, 0, 0, 3], &[0x86, 0xdd]].concat();
    f.extend_from_slice(&[0x60, 0, 0, 0]);
    f.extend_from_slice(&plen.to_be_bytes());
    f.extend_from_slice(&[17, 64]);
    f.extend_from_slice(&ip6(REMOTE_IP6));
    f.extend_from_slice(&ip6(LOCAL_IP6));
    f.extend_from_slice(&50000u16.to_be_bytes());
    f.extend_from_slice(&4789u16.to_be_bytes());
    f.extend_from_slice(&plen.to_be_bytes());
    f.extend_from_slice(&[0, 0, 0x08, 0, 0, 0]);
    f.extend_from_slice(&(vni << 8).to_be_bytes());
    f.extend_from_slice(inner);
    fix_csum6(&mut f);
    f
}

/// Recomputes the outer UDP checksum over the datagram the UDP length names, when the
/// frame holds it.
fn fix_csum6(f: &mut [u8]) {
    let len = u16::from_be_bytes([f[58], f[59]]) as usize;
    if len < 8 || f.len() < 54 + len {
        return;
    }
    f[60..62].fill(0);
    let c = match !sum(&[&pseudo6(f, len, 17)[..], &f[54..54 + len]].concat()) {
        0 => 0xffff,
        c => c,
    };
    f[60..62].copy_from_slice(&c.to_be_bytes());
}

#[derive(Clone, Debug)]
enum Outer6Mutation {
    None,
    Truncate(usize),
    /// A flipped byte, the checksum left as it was.
    Flip(usize, u8),
    /// A flipped byte, the checksum made to fit again: the other checks alone.
    FlipValid(usize, u8),
    /// A hop-by-hop header between the IPv6 and UDP headers, lengths and checksum kept
    /// valid.
    HopByHop,
    UdpPort(u16),
    Flags(u8),
    ReservedVni(u8),
    ZeroChecksum,
    /// The checksum field holding only the pseudo-header's sum.
    Offloaded,
    /// Another payload length or UDP length.
    Length(bool, u16),
    /// Outer and inner ECN fields.
    Ecn(u8, u8),
    Padding(usize),
}

fn apply_outer6(mut f: Vec<u8>, m: &Outer6Mutation) -> Vec<u8> {
    match *m {
        Outer6Mutation::None => {}
        Outer6Mutation::Truncate(n) => f.truncate(n.max(14)),
        Outer6Mutation::Flip(o, b) => {
            if let Some(x) = f.get_mut(o) {
                *x ^= b;
            }
        }
        Outer6Mutation::FlipValid(o, b) => {
            if let Some(x) = f.get_mut(o) {
                *x ^= b;
            }
            fix_csum6(&mut f);
        }
        Outer6Mutation::HopByHop => {
            f.splice(54..54, [17, 0, 1, 4, 0, 0, 0, 0]);
            f[20] = 0;
            let plen = u16::from_be_bytes([f[18], f[19]]) + 8;
            f[18..20].copy_from_slice(&plen.to_be_bytes());
            let mut datagram = f[..54].to_vec();
            datagram.extend_from_slice(&f[62..]);
            fix_csum6(&mut datagram);
            f[62 + 6..62 + 8].copy_from_slice(&datagram[60..62]);
        }
        Outer6Mutation::UdpPort(p) => {
            f[56..58].copy_from_slice(&p.to_be_bytes());
            fix_csum6(&mut f);
        }
        Outer6Mutation::Flags(b) => {
            f[62] = b;
            fix_csum6(&mut f);
        }
        Outer6Mutation::ReservedVni(b) => {
            f[69] = b;
            fix_csum6(&mut f);
        }
        Outer6Mutation::ZeroChecksum => f[60..62].fill(0),
        Outer6Mutation::Offloaded => {
            let len = u16::from_be_bytes([f[58], f[59]]) as usize;
            let c = sum(&pseudo6(&f, len, 17));
            f[60..62].copy_from_slice(&c.to_be_bytes());
        }
        Outer6Mutation::Length(udp, n) => {
            let at = if udp { 58 } else { 18 };
            f[at..at + 2].copy_from_slice(&n.to_be_bytes());
        }
        Outer6Mutation::Ecn(outer, inner) => {
            f[15] = (f[15] & !0x30) | outer << 4;
            // The inner DS field: IPv4's second byte, or IPv6's traffic class.
            match u16::from_be_bytes([f[82], f[83]]) {
                0x0800 => f[85] = (f[85] & !3) | inner,
                0x86dd => f[85] = (f[85] & !0x30) | inner << 4,
                _ => {}
            }
            if f[82..84] == [0x08, 0x00] {
                f[94..96].fill(0);
                let c = inject::checksum(&f[84..104]);
                f[94..96].copy_from_slice(&c.to_be_bytes());
            }
            fix_csum6(&mut f);
        }
        Outer6Mutation::Padding(n) => f.extend(std::iter::repeat_n(0u8, n)),
    }
    f
}

/// VXLAN over IPv6 on the underlay, valid and mutated (truncated, a flipped byte with or
/// without its checksum fixed, an extension header, a zero or offload-only checksum, wrong
/// lengths, ECN, padding) around inner frames with and without their own L4 checksum:
/// TC delivers, floods, drops or passes exactly as the model says, and XDP, which leaves
/// VXLAN over IPv6 to TC, passes every frame unchanged.
#[test]
fn hostile_vxlan_over_ipv6_on_the_underlay_goes_where_the_model_says() -> Result<()> {
    let rig = UnderlayRig::new(&unique_tag("hu6"), Underlay::V6)?;
    let (tc, xdp) = (&rig.tc, &rig.xdp);
    let (_inside, ctx) = rig.enter()?;

    let mutation = prop_oneof![
        2 => Just(Outer6Mutation::None),
        3 => (0usize..160).prop_map(Outer6Mutation::Truncate),
        3 => (0usize..160, 1u8..=255).prop_map(|(o, b)| Outer6Mutation::Flip(o, b)),
        3 => (0usize..160, 1u8..=255).prop_map(|(o, b)| Outer6Mutation::FlipValid(o, b)),
        1 => Just(Outer6Mutation::HopByHop),
        1 => any::<u16>().prop_map(Outer6Mutation::UdpPort),
        1 => any::<u8>().prop_map(Outer6Mutation::Flags),
        1 => (1u8..=255).prop_map(Outer6Mutation::ReservedVni),
        1 => Just(Outer6Mutation::ZeroChecksum),
        1 => Just(Outer6Mutation::Offloaded),
        1 => (any::<bool>(), 0u16..200).prop_map(|(u, n)| Outer6Mutation::Length(u, n)),
        3 => (0u8..4, 0u8..4).prop_map(|(o, i)| Outer6Mutation::Ecn(o, i)),
        1 => (1usize..20).prop_map(Outer6Mutation::Padding),
    ];
    let mac = prop_oneof![
        Just(M1),
        Just(M2),
        Just([0xff; 6]),
        Just([0x33, 0x33, 0, 0, 0, 1]),
        any::<[u8; 6]>()
    ];
    let frames = (
        prop_oneof![Just(42u32), Just(43), Just(44), 0u32..=0xff_ffff],
        mac,
        0u8..3,
        any::<u8>(),
        prop::collection::vec(any::<u8>(), 0..80),
        mutation,
    )
        .prop_map(|(vni, dst, kind, tos, payload, m)| {
            apply_outer6(vxlan6(vni, &inner6(dst, kind, tos, &payload)), &m)
        });
    let mut runner = runner(cases());
    let ran = std::cell::Cell::new(0u32);
    // How often each verdict was due (pass, deliver, flood, drop): every one must be tried.
    let seen = std::cell::Cell::new([0u32; 4]);
    let result = runner.run(&frames, |frame| {
        ran.set(ran.get() + 1);
        let (expect, or_pass) = model_outer6(&frame);
        let mut tally = seen.get();
        tally[match expect {
            Expect::Pass => 0,
            Expect::Deliver(_) => 1,
            Expect::Flood => 2,
            Expect::Drop => 3,
        }] += 1;
        seen.set(tally);
        let tc_run = run_tc(tc, &frame, &ctx);
        prop_assume!(!kernel_refuses(&tc_run, &frame));
        let (verdict, out) = tc_run.map_err(|e| TestCaseError::fail(format!("TC: {e:#}")))?;
        if or_pass && verdict == TC_ACT_OK {
            prop_assert_eq!(&out, &frame, "TC changed a frame it passed");
            return Ok(());
        }
        match &expect {
            Expect::Pass if or_pass => prop_assert!(
                verdict == TC_ACT_REDIRECT || verdict == TC_ACT_SHOT,
                "verdict {}",
                verdict
            ),
            Expect::Pass => {
                prop_assert_eq!(verdict, TC_ACT_OK, "TC must pass it");
                prop_assert_eq!(&out, &frame, "TC changed a frame it passed");
            }
            Expect::Deliver(inner) => {
                prop_assert_eq!(verdict, TC_ACT_REDIRECT, "TC must deliver it");
                prop_assert_eq!(&out[..inner.len()], &inner[..], "TC delivered other bytes");
            }
            Expect::Flood => prop_assert_eq!(verdict, TC_ACT_SHOT, "TC floods and consumes it"),
            Expect::Drop => prop_assert_eq!(verdict, TC_ACT_SHOT, "TC must drop it"),
        }
        let (xdp_verdict, xdp_out) =
            run_xdp(xdp, &frame).map_err(|e| TestCaseError::fail(format!("XDP: {e:#}")))?;
        prop_assert_eq!(xdp_verdict, XDP_PASS, "XDP must pass it on");
        prop_assert_eq!(&xdp_out, &frame, "XDP changed a frame it passed");
        Ok(())
    });
    result.map_err(|e| anyhow::anyhow!("{e}"))?;
    assert!(ran.get() >= cases(), "only {} frames ran", ran.get());
    let tally = seen.get();
    assert!(
        tally.iter().all(|&n| n >= cases() / 5000),
        "pass, deliver, flood, drop: {tally:?}"
    );
    eprintln!("pass, deliver, flood, drop: {tally:?}");
    Ok(())
}
