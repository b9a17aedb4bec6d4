//! The overlays under test, built the same way on the same kind of hosts, and the traffic
//! measured across them (from the first container to the second).

use anyhow::{bail, Result};

use super::{floor::Floor, Plan};
use crate::{iperf, latency, ping, scenario::Underlay, Overlay, Plain, Stack, Testbed};

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Topology {
    Plain,
    Floor,
    Kernel,
    VtepTc,
    VtepXdp,
    Kernel6,
    Vtep6,
}

impl Topology {
    pub const ALL: [Topology; 7] = [
        Topology::Plain,
        Topology::Floor,
        Topology::Kernel,
        Topology::VtepTc,
        Topology::VtepXdp,
        Topology::Kernel6,
        Topology::Vtep6,
    ];

    /// The kernel's setup on the same underlay: what "vs kernel" divides by.
    pub fn kernel(self) -> Topology {
        match self {
            Topology::Kernel6 | Topology::Vtep6 => Topology::Kernel6,
            _ => Topology::Kernel,
        }
    }

    pub fn key(self) -> &'static str {
        match self {
            Topology::Plain => "plain",
            Topology::Floor => "floor",
            Topology::Kernel => "kernel",
            Topology::VtepTc => "vtep_tc",
            Topology::VtepXdp => "vtep_xdp",
            Topology::Kernel6 => "kernel_v6",
            Topology::Vtep6 => "vtep_v6",
        }
    }

    pub fn describe(self) -> &'static str {
        match self {
            Topology::Plain => "the two containers on one veth pair (the limit)",
            Topology::Floor => {
                "vtep's two veth hops joined by bare eBPF redirects, no tunnel (the least a VTEP here costs)"
            }
            Topology::Kernel => "bridge + kernel vxlan on each host, DESIGN.md's classic commands",
            Topology::VtepTc => "vtep, TC encap and TC decap (the default)",
            Topology::VtepXdp => "vtep, TC encap and native XDP decap (--xdp-mode native)",
            Topology::Kernel6 => "bridge + kernel vxlan over an IPv6 underlay (UDP checksums on)",
            Topology::Vtep6 => {
                "vtep over an IPv6 underlay, TC encap and decap (vs kernel: vs kernel_v6)"
            }
        }
    }

    /// Builds the topology and checks the containers reach each other.
    pub fn build(self, tag: &str) -> Result<Box<dyn Overlay>> {
        let overlay: Box<dyn Overlay> = match self {
            Topology::Plain => Box::new(Plain::new(tag)?),
            Topology::Floor => Box::new(Floor::new(tag)?),
            Topology::Kernel => Box::new(Testbed::new(tag, [Stack::Kernel, Stack::Kernel])?),
            Topology::VtepTc => Box::new(Testbed::new(tag, [Stack::vtep(), Stack::vtep()])?),
            Topology::VtepXdp => {
                let native = Stack::vtep_with(&["--xdp-mode", "native"]);
                Box::new(Testbed::new(tag, [native.clone(), native])?)
            }
            Topology::Kernel6 => Box::new(Testbed::new_on(
                tag,
                [Stack::Kernel, Stack::Kernel],
                Underlay::V6,
            )?),
            Topology::Vtep6 => Box::new(Testbed::new_on(
                tag,
                [Stack::vtep(), Stack::vtep()],
                Underlay::V6,
            )?),
        };
        let [(c1, _), (_, ip2)] = overlay.endpoints();
        if !ping(c1, ip2, 1)? {
            bail!("{}: the containers cannot reach each other", self.key());
        }
        Ok(overlay)
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Metric {
    Tcp1,
    Tcp4,
    Udp64,
    Ping,
}

impl Metric {
    pub const ALL: [Metric; 4] = [Metric::Tcp1, Metric::Tcp4, Metric::Udp64, Metric::Ping];

    pub fn key(self) -> &'static str {
        match self {
            Metric::Tcp1 => "tcp_1_stream_gbits",
            Metric::Tcp4 => "tcp_4_streams_gbits",
            Metric::Udp64 => "udp_64b_rx_pps",
            Metric::Ping => "ping_flood_rtt_us",
        }
    }

    pub fn label(self) -> &'static str {
        match self {
            Metric::Tcp1 => "TCP, 1 stream",
            Metric::Tcp4 => "TCP, 4 streams",
            Metric::Udp64 => "UDP 64 B, received",
            Metric::Ping => "ping -f round trip",
        }
    }

    pub fn unit(self) -> &'static str {
        match self {
            Metric::Tcp1 | Metric::Tcp4 => "Gbit/s",
            Metric::Udp64 => "packets/s",
            Metric::Ping => "us",
        }
    }

    pub fn higher_is_better(self) -> bool {
        self != Metric::Ping
    }

    pub fn measure(self, overlay: &dyn Overlay, plan: &Plan) -> Result<f64> {
        let [(c1, _), (c2, ip2)] = overlay.endpoints();
        match self {
            Metric::Tcp1 => Ok(iperf::tcp(c1, c2, ip2, plan.iperf_secs, 1)?.gbits),
            Metric::Tcp4 => Ok(iperf::tcp(c1, c2, ip2, plan.iperf_secs, 4)?.gbits),
            Metric::Udp64 => iperf::udp_pps(c1, c2, ip2, plan.iperf_secs, 64),
            Metric::Ping => latency::flood_rtt_us(c1, ip2, plan.ping_count),
        }
    }
}
