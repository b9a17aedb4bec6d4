//! Types shared by the eBPF programs and the loader: map keys and values, counter ids,
//! header layout and the pure header helpers both sides rely on.
//!
//! Every map type is `#[repr(C)]` with explicit padding: the kernel compares raw bytes, so
//! implicit padding would make equal keys differ.
#![no_std]

pub mod counter;
pub mod wire;

/// Bumped whenever a map's key or value layout changes; the pin directory carries it so a
/// new loader never reuses maps pinned by an older one.
pub const LAYOUT_VERSION: u32 = 1;

/// Largest VXLAN network identifier (24 bits).
pub const VNI_MAX: u32 = 0x00FF_FFFF;

/// Names of the pinned maps, as the eBPF object declares them.
pub mod map_name {
    pub const CONFIG: &str = "VTEP_CONFIG";
    pub const PORTS: &str = "VTEP_PORTS";
    pub const LOCAL: &str = "VTEP_LOCAL";
    pub const FDB: &str = "VTEP_FDB";
    pub const NEIGH: &str = "VTEP_NEIGH";
    pub const STATS: &str = "VTEP_STATS";
}

/// Map capacities. The FDB is allocated on demand (BPF_F_NO_PREALLOC), so a large limit
/// costs nothing until it is used.
pub const MAX_PORTS: u32 = 4096;
pub const MAX_FDB: u32 = 1 << 20;
pub const MAX_NEIGH: u32 = 1 << 16;

/// Tunnel-wide settings, one entry in the CONFIG array.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Config {
    /// Outer source address, network byte order.
    pub local_ip: [u8; 4],
    /// The underlay device the tunnel sends on.
    pub underlay_ifindex: u32,
    /// UDP port VXLAN is received on, host byte order.
    pub udp_port: u16,
    pub srcport_min: u16,
    pub srcport_max: u16,
    pub ttl: u8,
    /// Non-zero once `vtep up` has filled the entry; the programs pass everything before.
    pub ready: u8,
}

/// A MAC address inside one VNI: the key of the FDB and of the local-port table.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct MacVni {
    pub mac: [u8; 6],
    pub _pad: [u8; 2],
    pub vni: u32,
}

impl MacVni {
    pub const fn new(mac: [u8; 6], vni: u32) -> Self {
        Self { mac, _pad: [0; 2], vni }
    }
}

/// Entry flag: added by hand (`bridge fdb ... permanent`), never aged out.
pub const FDB_PERMANENT: u16 = 1;

/// Where a remote MAC lives: the VTEP to tunnel to.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct FdbEntry {
    /// Remote VTEP address, network byte order.
    pub remote_ip: [u8; 4],
    /// Destination UDP port, host byte order.
    pub port: u16,
    pub flags: u16,
    /// Last time the entry was confirmed (bpf_ktime_get_ns), for ageing learned entries.
    pub seen_ns: u64,
}

/// A container port, keyed by the ifindex of its host-side veth.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Port {
    pub vni: u32,
    pub mac: [u8; 6],
    /// Set when `port add` created the container namespace, so `port del` removes it.
    pub owns_netns: u8,
    pub prefix_len: u8,
    /// Container address, network byte order.
    pub ipv4: [u8; 4],
    pub mtu: u32,
    /// Container namespace name, NUL padded; read only by the loader.
    pub netns: [u8; NETNS_NAME_MAX],
    /// Interface name inside the container, NUL padded.
    pub ifname: [u8; IFNAME_MAX],
}

pub const NETNS_NAME_MAX: usize = 64;
pub const IFNAME_MAX: usize = 16;

/// An IPv4 address inside one VNI: the key of the neighbour (proxy ARP) table.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct IpVni {
    pub ip: [u8; 4],
    pub vni: u32,
}

#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct NeighEntry {
    pub mac: [u8; 6],
    pub _pad: [u8; 2],
}

#[cfg(feature = "user")]
mod pod {
    // SAFETY: all of these are repr(C), Copy, and have no implicit padding.
    unsafe impl aya::Pod for super::Config {}
    unsafe impl aya::Pod for super::MacVni {}
    unsafe impl aya::Pod for super::FdbEntry {}
    unsafe impl aya::Pod for super::Port {}
    unsafe impl aya::Pod for super::IpVni {}
    unsafe impl aya::Pod for super::NeighEntry {}
}

#[cfg(test)]
mod tests {
    use super::*;
    use core::mem::size_of;

    #[test]
    fn map_types_have_no_implicit_padding() {
        assert_eq!(size_of::<Config>(), 4 + 4 + 2 + 2 + 2 + 1 + 1);
        assert_eq!(size_of::<MacVni>(), 12);
        assert_eq!(size_of::<FdbEntry>(), 16);
        assert_eq!(size_of::<IpVni>(), 8);
        assert_eq!(size_of::<NeighEntry>(), 8);
        assert_eq!(size_of::<Port>(), 4 + 6 + 1 + 1 + 4 + 4 + NETNS_NAME_MAX + IFNAME_MAX);
    }
}
