//! The tables, pinned by name so every `vtep` invocation and both programs share them.
//! Names must match `vtep_common::map_name`.

use aya_ebpf::{
    bindings::BPF_F_NO_PREALLOC,
    macros::map,
    maps::{Array, HashMap, PerCpuArray},
};
use vtep_common::{
    counter, Config, FdbEntry, IpVni, MacVni, NeighEntry, Port, MAX_FDB, MAX_NEIGH, MAX_PORTS,
};

#[map(name = "VTEP_CONFIG")]
pub static CONFIG: Array<Config> = Array::pinned(1, 0);

/// Host-side veth ifindex -> port.
#[map(name = "VTEP_PORTS")]
pub static PORTS: HashMap<u32, Port> = HashMap::pinned(MAX_PORTS, 0);

/// (MAC, VNI) of a local container -> host-side veth ifindex: the bridge's local FDB.
#[map(name = "VTEP_LOCAL")]
pub static LOCAL: HashMap<MacVni, u32> = HashMap::pinned(MAX_PORTS, 0);

/// (MAC, VNI) of a remote container -> remote VTEP.
#[map(name = "VTEP_FDB")]
pub static FDB: HashMap<MacVni, FdbEntry> = HashMap::pinned(MAX_FDB, BPF_F_NO_PREALLOC);

/// (IP, VNI) -> MAC, for answering ARP on behalf of remote containers.
#[map(name = "VTEP_NEIGH")]
pub static NEIGH: HashMap<IpVni, NeighEntry> = HashMap::pinned(MAX_NEIGH, BPF_F_NO_PREALLOC);

#[map(name = "VTEP_STATS")]
pub static STATS: PerCpuArray<u64> = PerCpuArray::pinned(counter::COUNT, 0);
