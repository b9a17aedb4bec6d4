//! The testbed: simulated hosts (network namespaces joined by a veth pair as their `eth1`),
//! containers on top, configured either through `vtep` or the classic bridge + kernel vxlan,
//! and the tools a user checks them with (ping, iperf3, tcpdump). Shared by the integration
//! tests, `cargo xtask demo` and `cargo xtask bench`. Everything is torn down on drop.

pub mod agent;
pub mod bench;
pub mod capture;
pub mod cmd;
pub mod etcd;
pub mod inject;
pub mod iperf;
pub mod ipv6;
pub mod latency;
pub mod monitor;
pub mod netns;
pub mod pki;
pub mod scenario;
pub mod soak;
pub mod vm;
pub mod wait;

pub use cmd::{run, vtep, vtep_bin};
pub use netns::Netns;
pub use scenario::{ping, Host, Overlay, Plain, Stack, Testbed, Underlay};
