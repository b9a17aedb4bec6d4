//! Types shared by the eBPF programs and the loader: map keys and values, counter ids,
//! header layout and the pure header helpers both sides rely on.
//!
//! Every map type is `#[repr(C)]` with explicit padding: the kernel compares raw bytes, so
//! implicit padding would make equal keys differ.
#![no_std]

pub mod counter;
pub mod ecn;
pub mod icmp;
pub mod nd;
pub mod outer6;
pub mod parse6;
pub mod wire;

/// Bumped whenever a map's key or value layout changes; the pin directory carries it so a
/// new loader never reuses maps pinned by an older one.
pub const LAYOUT_VERSION: u32 = 6;

/// skb mark of an encapsulated frame sent through the underlay's ingress so the kernel
/// re-derives its protocol (IPv4) before `bpf_redirect_neigh` resolves the next hop.
pub const REFLECT_MARK: u32 = 0x7674_6570;

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
    pub const LEARNED: &str = "VTEP_LEARNED";
    pub const PEERS: &str = "VTEP_PEERS";
    pub const VNIS: &str = "VTEP_VNIS";
    pub const FLOOD: &str = "VTEP_FLOOD";
    pub const VNI_PORTS: &str = "VTEP_VNI_PORTS";
    pub const MISSES: &str = "VTEP_MISSES";
    pub const MISS_READER: &str = "VTEP_MISS_READ";
    pub const MISS_SEEN: &str = "VTEP_MISS_SEEN";
    pub const TAILS: &str = "VTEP_TAILS";
}

/// The programs the port program tail-calls, by their slot in `map_name::TAILS`.
pub mod tail {
    /// Floods a frame to its VNI's other ports and flood list.
    pub const FLOOD: u32 = 0;
    /// Encapsulates a frame towards one IPv6 VTEP.
    pub const UNICAST6: u32 = 1;
    pub const SLOTS: u32 = 2;
    /// The programs' names in the object, by slot.
    pub const PROGRAMS: [&str; SLOTS as usize] = ["vtep_flood", "vtep_unicast6"];
}

/// Map capacities. The FDB is allocated on demand (BPF_F_NO_PREALLOC), so a large limit
/// costs nothing until it is used.
pub const MAX_PORTS: u32 = 4096;
/// Default capacity of the permanent FDB (`vtep up --max-fdb`).
pub const MAX_FDB: u32 = 1 << 20;
/// Learned entries live in an LRU map of this size unless `vtep up --max-learned` says
/// otherwise: a flood of fake source MACs can evict only other learned entries.
pub const DEFAULT_MAX_LEARNED: u32 = 1 << 16;
/// Default capacity of the neighbour table (`vtep up --max-neigh`).
pub const MAX_NEIGH: u32 = 1 << 20;
/// (VTEP, VNI) pairs `--strict-peers` can know: one per FDB entry at most.
pub const MAX_PEERS: u32 = 1 << 20;
/// VNIs with local ports or a flood list.
pub const MAX_VNIS: u32 = 1 << 14;
/// Remote VTEPs in one VNI's flood list (the data path walks it with bpf_loop, so the
/// bound costs the verifier nothing), and flood-list slots of all VNIs together.
pub const MAX_FLOOD: u32 = 4096;
pub const MAX_FLOOD_SLOTS: u32 = 1 << 20;
/// Local ports of one VNI (the bridge's limit); all VNIs together hold at most MAX_PORTS.
pub const MAX_VNI_PORTS: u32 = 1024;
/// Ring buffer for miss events, in bytes.
pub const MISSES_BYTES: u32 = 1 << 16;
/// Misses remembered for the rate limit, and how often one (VNI, MAC or IP) is reported.
pub const MISS_SEEN_ENTRIES: u32 = 4096;
pub const MISS_INTERVAL_NS: u64 = 1_000_000_000;

/// An IPv4 or IPv6 address in 16 bytes, network byte order. IPv4 is stored IPv4-mapped
/// (`::ffff:a.b.c.d`, RFC 4291 2.5.5.2): one key type holds both families, and an IPv4
/// address never equals an IPv6 one. Real IPv6 traffic never carries mapped addresses, so the
/// loader refuses them as IPv6 input. Aligned to 4 so the data path compares it a word at a
/// time.
#[repr(C, align(4))]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Addr(pub [u8; 16]);

const V4_MAPPED: [u8; 12] = [0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff];

impl Addr {
    pub const fn v4(o: [u8; 4]) -> Self {
        Addr([
            0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, o[0], o[1], o[2], o[3],
        ])
    }

    pub const fn v6(bytes: [u8; 16]) -> Self {
        Addr(bytes)
    }

    #[inline(always)]
    pub fn is_v4(&self) -> bool {
        self.0[..12] == V4_MAPPED
    }

    /// The IPv4 address, if this is one.
    #[inline(always)]
    pub fn v4_octets(&self) -> Option<[u8; 4]> {
        self.is_v4()
            .then(|| [self.0[12], self.0[13], self.0[14], self.0[15]])
    }

    /// The IPv6 address, if this is one.
    #[inline(always)]
    pub fn v6_octets(&self) -> Option<[u8; 16]> {
        (!self.is_v4()).then_some(self.0)
    }

    /// 0.0.0.0 or `::`: the "no address" of either family.
    #[inline(always)]
    pub fn is_unspecified(&self) -> bool {
        match self.v4_octets() {
            Some(o) => o == [0; 4],
            None => self.0 == [0; 16],
        }
    }
}

impl From<core::net::IpAddr> for Addr {
    fn from(ip: core::net::IpAddr) -> Self {
        match ip {
            core::net::IpAddr::V4(v4) => Addr::v4(v4.octets()),
            core::net::IpAddr::V6(v6) => Addr::v6(v6.octets()),
        }
    }
}

impl From<Addr> for core::net::IpAddr {
    fn from(a: Addr) -> Self {
        match a.v4_octets() {
            Some(o) => core::net::IpAddr::from(o),
            None => core::net::IpAddr::from(a.0),
        }
    }
}

impl core::fmt::Display for Addr {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        core::net::IpAddr::from(*self).fmt(f)
    }
}

/// Tunnel-wide settings, one entry in the CONFIG array.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Config {
    /// Outer source address towards IPv4 VTEPs, network byte order; 0.0.0.0: none.
    pub local_ip: [u8; 4],
    /// Outer source address towards IPv6 VTEPs; `::`: none. A host may have both, so one
    /// VNI can hold VTEPs of either family.
    pub local_ip6: [u8; 16],
    /// The underlay device the tunnel sends on.
    pub underlay_ifindex: u32,
    /// UDP port VXLAN is received on, host byte order.
    pub udp_port: u16,
    pub srcport_min: u16,
    pub srcport_max: u16,
    pub ttl: u8,
    /// Non-zero once `vtep up` has filled the entry; the programs pass everything before.
    pub ready: u8,
    /// Non-zero: record inner source MAC -> outer source IP of received frames.
    pub learning: u8,
    /// Non-zero: copy the inner IPv4 TOS (DSCP and ECN) to the outer header.
    pub tos_inherit: u8,
    /// Outer TOS when not inherited.
    pub tos: u8,
    /// Non-zero: accept VXLAN only from VTEPs in the VNI's FDB or flood list.
    pub strict_peers: u8,
    /// Prefix length of the local address's subnet: VTEPs inside it are on-link, and
    /// their next hop is themselves (no route lookup per packet). 0: route everything.
    pub onlink_prefix: u8,
    /// The same for the local IPv6 address.
    pub onlink_prefix6: u8,
    /// Non-zero when IP forwarding is on for the underlay device, the one case where
    /// `bpf_fib_lookup` answers.
    pub fib_ok: u8,
    /// The same for IPv6 forwarding.
    pub fib6_ok: u8,
    /// Non-zero: send VXLAN over IPv6 with a zero UDP checksum (the kernel's
    /// `udp6zerocsumtx`, RFC 6935); off by default.
    pub udp6_zero_csum_tx: u8,
    /// Non-zero: accept VXLAN over IPv6 with a zero UDP checksum (`udp6zerocsumrx`, RFC
    /// 6936); off by default, when such frames are left to the host.
    pub udp6_zero_csum_rx: u8,
    /// Where VXLAN is decapsulated: `DECAP_TC`, `DECAP_XDP_NATIVE` or `DECAP_XDP_GENERIC`.
    /// Read only by the loader, so a later `vtep up` keeps it.
    pub decap: u8,
    /// Non-zero: XDP decapsulates, then passes the frame on to TC with its port in the XDP
    /// metadata (`XdpHandoff`) instead of redirecting it. On veth, XDP_REDIRECT turns the skb
    /// into a bare frame and loses its checksum state (TCP and UDP from the same machine
    /// fail); XDP_PASS keeps the skb.
    pub xdp_handoff: u8,
    pub _pad1: [u8; 4],
    /// Learned FDB entries older than this are ignored and removed.
    pub ageing_ns: u64,
    /// Name of the underlay device, NUL padded: a device re-created under this name is
    /// attached again by `vtep up`. Read only by the loader.
    pub underlay_name: [u8; IFNAME_MAX],
    /// MTU of the underlay device when `vtep up` last ran: a frame whose outer packet
    /// would exceed it is answered with ICMP or dropped, never sent to be lost.
    pub underlay_mtu: u32,
    pub _pad2: [u8; 4],
}

pub const DECAP_TC: u8 = 0;
pub const DECAP_XDP_NATIVE: u8 = 1;
pub const DECAP_XDP_GENERIC: u8 = 2;

/// What XDP leaves in front of a frame it decapsulated for TC to deliver (`xdp_handoff`).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct XdpHandoff {
    /// `XDP_HANDOFF_MAGIC`: metadata anything else left is never mistaken for ours.
    pub magic: u32,
    /// Host-side ifindex of the port to deliver to.
    pub port: u32,
}

pub const XDP_HANDOFF_MAGIC: u32 = 0x7674_7864;

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
        Self {
            mac,
            _pad: [0; 2],
            vni,
        }
    }
}

/// Entry flag: added by hand (`bridge fdb ... permanent`), never aged out. Permanent
/// entries live in the FDB map, learned ones (flags 0) in the LEARNED map.
pub const FDB_PERMANENT: u16 = 1;
/// Entry flag: installed by a control plane (`extern_learn` in iproute2), never aged out;
/// it lives in the FDB map beside the hand-made entries, which a control plane never touches.
pub const FDB_EXTERN: u16 = 2;

/// Where a remote MAC lives: the VTEP to tunnel to.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct FdbEntry {
    /// Remote VTEP address, either family.
    pub remote_ip: Addr,
    /// Destination UDP port, host byte order.
    pub port: u16,
    pub flags: u16,
    pub _pad: u32,
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
    /// How many of `addrs` are used.
    pub n_addrs: u8,
    pub mtu: u32,
    /// The container's addresses, either family (IPv6 link-local included): the only
    /// sources anti-spoofing lets it send from.
    pub addrs: [Addr; MAX_PORT_ADDRS],
    /// Prefix length of each address.
    pub prefix_lens: [u8; MAX_PORT_ADDRS],
    /// Non-zero: the container may send with any source MAC and IP.
    pub allow_spoofing: u8,
    pub _pad: [u8; 7],
    /// Container namespace name, NUL padded; read only by the loader.
    pub netns: [u8; NETNS_NAME_MAX],
    /// Interface name inside the container, NUL padded.
    pub ifname: [u8; IFNAME_MAX],
    /// Cookie of the container namespace (never reused by the kernel): a namespace of the
    /// same name made by someone else later is never mistaken for this one.
    pub netns_cookie: u64,
}

/// Addresses one port may have, of both families together (its IPv6 link-local one too).
pub const MAX_PORT_ADDRS: usize = 8;

impl Port {
    /// The port's addresses in use.
    #[inline(always)]
    pub fn addresses(&self) -> impl Iterator<Item = (Addr, u8)> + '_ {
        self.addrs
            .iter()
            .copied()
            .zip(self.prefix_lens.iter().copied())
            .take(self.n_addrs as usize)
    }
}

pub const NETNS_NAME_MAX: usize = 64;
pub const IFNAME_MAX: usize = 16;

/// One remote VTEP of a flood list.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Remote {
    pub ip: Addr,
    pub port: u16,
    /// `FDB_EXTERN` when a control plane put it on the list; read only by the loader.
    pub flags: u16,
}

impl Remote {
    /// The VTEP an FDB entry tunnels to.
    pub const fn of(entry: &FdbEntry) -> Self {
        Remote {
            ip: entry.remote_ip,
            port: entry.port,
            flags: 0,
        }
    }
}

/// The lengths of a VNI's two lists: the VTEPs every broadcast, multicast and
/// unknown-unicast frame goes to (the all-zeros FDB entries of the kernel's vxlan device),
/// and the local ports. Their members are in FLOOD and VNI_PORTS at positions
/// 0..len: a writer fills a position before the length covers it, and shortens the
/// length before it empties one, so a reader never walks a hole.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct VniLists {
    pub flood: u32,
    pub ports: u32,
}

/// One member of a VNI's list: (VNI, position).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Slot {
    pub vni: u32,
    pub index: u32,
}

pub const MISS_FDB: u32 = 1;
pub const MISS_NEIGH: u32 = 2;

/// A lookup the data path could not answer, streamed to `vtep monitor` (the kernel's
/// l2miss / l3miss netlink events).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Miss {
    pub kind: u32,
    pub vni: u32,
    /// Host-side ifindex of the port the frame came from.
    pub ifindex: u32,
    /// The unknown address (neighbour misses).
    pub ip: Addr,
    /// The unknown MAC (FDB misses).
    pub mac: [u8; 6],
    pub _pad: [u8; 2],
}

/// An address inside one VNI: the key of the neighbour table (proxy ARP and ND) and of the
/// VTEP peer counts.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct IpVni {
    pub ip: Addr,
    pub vni: u32,
}

#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct NeighEntry {
    pub mac: [u8; 6],
    /// `NEIGH_EXTERN` when a control plane installed it; 0 when added by hand.
    pub flags: u8,
    pub _pad: u8,
}

/// Neighbour flag: installed by a control plane (`extern_learn`).
pub const NEIGH_EXTERN: u8 = 1;

#[cfg(feature = "user")]
mod pod {
    macro_rules! pod {
        ($($t:ident),*) => {$(
            // SAFETY: repr(C), Copy, no implicit padding (explicit `_pad` fields), and
            // every bit pattern is a valid value: the kernel's bytes read as any of them.
            unsafe impl aya::Pod for super::$t {}
        )*};
    }
    pod!(Addr, Config, MacVni, FdbEntry, Port, IpVni, NeighEntry, Remote, VniLists, Slot, Miss);
}

#[cfg(test)]
mod tests {
    use super::*;
    use core::mem::size_of;

    #[test]
    fn addresses_keep_their_family() {
        use core::net::IpAddr;
        let v4: IpAddr = "10.0.0.1".parse().unwrap();
        let v6: IpAddr = "2001:db8::2".parse().unwrap();
        assert_eq!(IpAddr::from(Addr::from(v4)), v4);
        assert_eq!(IpAddr::from(Addr::from(v6)), v6);
        assert!(Addr::from(v4).is_v4() && !Addr::from(v6).is_v4());
        assert!(Addr::v4([0; 4]).is_unspecified() && Addr::v6([0; 16]).is_unspecified());
        assert!(!Addr::v6([0; 16]).is_v4());
        extern crate std;
        use std::string::ToString;
        assert_eq!(Addr::from(v6).to_string(), "2001:db8::2");
        assert_eq!(Addr::from(v4).to_string(), "10.0.0.1");
    }

    #[test]
    fn map_types_have_no_implicit_padding() {
        assert_eq!(
            size_of::<Config>(),
            4 + 16 + 4 + 2 + 2 + 2 + 14 + 4 + 8 + IFNAME_MAX + 4 + 4
        );
        assert_eq!(size_of::<Remote>(), 20);
        assert_eq!(size_of::<VniLists>(), 8);
        assert_eq!(size_of::<Slot>(), 8);
        assert_eq!(size_of::<Miss>(), 12 + 16 + 8);
        assert_eq!(size_of::<MacVni>(), 12);
        assert_eq!(size_of::<FdbEntry>(), 16 + 2 + 2 + 4 + 8);
        assert_eq!(size_of::<IpVni>(), 20);
        assert_eq!(size_of::<NeighEntry>(), 8);
        assert_eq!(
            size_of::<Port>(),
            4 + 6
                + 1
                + 1
                + 4
                + 16 * MAX_PORT_ADDRS
                + MAX_PORT_ADDRS
                + 1
                + 7
                + NETNS_NAME_MAX
                + IFNAME_MAX
                + 8
        );
    }
}
