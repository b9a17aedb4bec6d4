//! The tables, pinned by name so every `vtep` invocation and both programs share them.
//! Names must match `vtep_common::map_name`.

use aya_ebpf::{
    bindings::BPF_F_NO_PREALLOC,
    macros::map,
    maps::{Array, HashMap, LruHashMap, PerCpuArray, RingBuf},
};
use vtep_common::{
    counter, Config, FdbEntry, FloodList, IpVni, MacVni, NeighEntry, Port, VniPorts,
    DEFAULT_MAX_LEARNED, MAX_FDB, MAX_NEIGH, MAX_PEERS, MAX_PORTS, MAX_VNIS, MISSES_BYTES,
};

#[map(name = "VTEP_CONFIG")]
pub static CONFIG: Array<Config> = Array::pinned(1, 0);

/// Host-side veth ifindex -> port.
#[map(name = "VTEP_PORTS")]
pub static PORTS: HashMap<u32, Port> = HashMap::pinned(MAX_PORTS, 0);

/// (MAC, VNI) of a local container -> host-side veth ifindex: the bridge's local FDB.
#[map(name = "VTEP_LOCAL")]
pub static LOCAL: HashMap<MacVni, u32> = HashMap::pinned(MAX_PORTS, 0);

/// (MAC, VNI) of a remote container -> remote VTEP, added by hand (permanent).
#[map(name = "VTEP_FDB")]
pub static FDB: HashMap<MacVni, FdbEntry> = HashMap::pinned(MAX_FDB, BPF_F_NO_PREALLOC);

/// The same, learned from received frames. An LRU map (sized by `--max-learned`), so a
/// flood of fake source MACs only ever evicts other learned entries.
#[map(name = "VTEP_LEARNED")]
pub static LEARNED: LruHashMap<MacVni, FdbEntry> = LruHashMap::pinned(DEFAULT_MAX_LEARNED, 0);

/// (VTEP address, VNI) -> how many FDB entries and flood-list slots name it: the peers
/// `--strict-peers` accepts. Kept by the loader.
#[map(name = "VTEP_PEERS")]
pub static PEERS: HashMap<IpVni, u32> = HashMap::pinned(MAX_PEERS, BPF_F_NO_PREALLOC);

/// (IP, VNI) -> MAC, for answering ARP on behalf of remote containers.
#[map(name = "VTEP_NEIGH")]
pub static NEIGH: HashMap<IpVni, NeighEntry> = HashMap::pinned(MAX_NEIGH, BPF_F_NO_PREALLOC);

#[map(name = "VTEP_STATS")]
pub static STATS: PerCpuArray<u64> = PerCpuArray::pinned(counter::COUNT, 0);

/// VNI -> remote VTEPs that get broadcast, multicast and unknown-unicast frames.
#[map(name = "VTEP_FLOOD")]
pub static FLOOD: HashMap<u32, FloodList> = HashMap::pinned(MAX_VNIS, 0);

/// VNI -> its local ports, for flooding inside the host.
#[map(name = "VTEP_VNI_PORTS")]
pub static VNI_PORTS: HashMap<u32, VniPorts> = HashMap::pinned(MAX_VNIS, 0);

/// FDB and neighbour misses for `vtep monitor`.
#[map(name = "VTEP_MISSES")]
pub static MISSES: RingBuf = RingBuf::pinned(MISSES_BYTES, 0);
