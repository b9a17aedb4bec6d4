//! The tables, pinned by name so every `vtep` invocation and both programs share them.
//! Names must match `vtep_common::map_name`.

use aya_ebpf::{
    bindings::BPF_F_NO_PREALLOC,
    macros::map,
    maps::{Array, HashMap, LruHashMap, PerCpuArray, ProgramArray, RingBuf},
};
use vtep_common::{
    counter, tail, Config, FdbEntry, IpVni, MacVni, Miss, NeighEntry, Port, Remote, Slot, VniLists,
    DEFAULT_MAX_LEARNED, MAX_FDB, MAX_FLOOD_SLOTS, MAX_NEIGH, MAX_PEERS, MAX_PORTS, MAX_VNIS,
    MISSES_BYTES, MISS_SEEN_ENTRIES,
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

/// VNI -> the lengths of its flood list and of its list of local ports.
#[map(name = "VTEP_VNIS")]
pub static VNIS: HashMap<u32, VniLists> = HashMap::pinned(MAX_VNIS, BPF_F_NO_PREALLOC);

/// (VNI, position) -> a remote VTEP that gets the VNI's broadcast, multicast and
/// unknown-unicast frames.
#[map(name = "VTEP_FLOOD")]
pub static FLOOD: HashMap<Slot, Remote> = HashMap::pinned(MAX_FLOOD_SLOTS, BPF_F_NO_PREALLOC);

/// (VNI, position) -> host-side ifindex of one of the VNI's local ports.
#[map(name = "VTEP_VNI_PORTS")]
pub static VNI_PORTS: HashMap<Slot, u32> = HashMap::pinned(MAX_PORTS, 0);

/// FDB and neighbour misses for `vtep monitor`.
#[map(name = "VTEP_MISSES")]
pub static MISSES: RingBuf = RingBuf::pinned(MISSES_BYTES, 0);

/// Scratch space for bpf_fib_lookup's parameters (see encap::next_hop). Not pinned: it
/// holds nothing between two uses.
#[map(name = "VTEP_FIB")]
pub static FIB_SCRATCH: PerCpuArray<aya_ebpf::bindings::bpf_fib_lookup> =
    PerCpuArray::with_max_entries(1, 0);

/// Scratch space for summing a frame's bytes (see encap6::inner_sum). Not pinned either.
#[map(name = "VTEP_SUM")]
pub static SUM_SCRATCH: PerCpuArray<[u8; 512]> = PerCpuArray::with_max_entries(1, 0);

/// Scratch space for a copy's outer IPv6 headers (see encap6::address). Not pinned either.
#[map(name = "VTEP_OUTER6")]
pub static OUTER6_SCRATCH: PerCpuArray<vtep_common::outer6::Outer6> =
    PerCpuArray::with_max_entries(1, 0);

/// 1 while a `vtep monitor` reads MISSES: without one, the data path writes nothing.
#[map(name = "VTEP_MISS_READ")]
pub static MISS_READER: Array<u32> = Array::pinned(1, 0);

/// Miss (without its port) -> when it was last reported, for the rate limit.
#[map(name = "VTEP_MISS_SEEN")]
pub static MISS_SEEN: LruHashMap<Miss, u64> = LruHashMap::pinned(MISS_SEEN_ENTRIES, 0);

/// The programs the port program hands frames on to (`vtep_common::tail`). Pinned: a
/// program array empties when no file or process holds it any more.
#[map(name = "VTEP_TAILS")]
pub static TAILS: ProgramArray = ProgramArray::pinned(tail::SLOTS, 0);

/// What the port program decided about a frame it hands on (see `tail`). Not pinned.
#[map(name = "VTEP_HANDOFF")]
pub static HANDOFF: PerCpuArray<crate::tail::Handoff> = PerCpuArray::with_max_entries(1, 0);
