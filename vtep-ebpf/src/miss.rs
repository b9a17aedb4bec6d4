//! Miss events for `vtep monitor`, like the kernel vxlan device's l2miss and l3miss: only
//! while a monitor reads (a miss costs nothing otherwise), and at most one per second for
//! each (VNI, MAC or IP), so a flood of unknown destinations cannot bury the reader.

use aya_ebpf::helpers::bpf_ktime_get_ns;
use vtep_common::{counter, Addr, Miss, MISS_FDB, MISS_INTERVAL_NS, MISS_NEIGH};

use crate::{
    maps::{MISSES, MISS_READER, MISS_SEEN},
    stats::count,
};

#[inline(always)]
fn report(event: Miss) {
    if MISS_READER.get(0).is_none_or(|&r| r == 0) {
        return;
    }
    // The same miss from another port is the same news.
    let key = Miss {
        ifindex: 0,
        ..event
    };
    let now = unsafe { bpf_ktime_get_ns() };
    if let Some(&last) = unsafe { MISS_SEEN.get(&key) } {
        if now.wrapping_sub(last) < MISS_INTERVAL_NS {
            count(counter::MISS_LIMITED);
            return;
        }
    }
    // A full LRU map evicts: the insert cannot fail for want of room.
    let _ = MISS_SEEN.insert(&key, &now, 0);
    match MISSES.output::<Miss>(event, 0) {
        Ok(()) => count(counter::MISS_SENT),
        Err(_) => count(counter::MISS_LOST),
    }
}

/// A unicast frame for a MAC neither local nor in the FDB.
#[inline(always)]
pub fn fdb(vni: u32, ifindex: u32, mac: [u8; 6]) {
    report(Miss {
        kind: MISS_FDB,
        vni,
        ifindex,
        ip: Addr::default(),
        mac,
        _pad: [0; 2],
    });
}

/// An ARP request or neighbour solicitation for an address the neighbour table cannot
/// answer.
#[inline(always)]
pub fn neigh(vni: u32, ifindex: u32, ip: Addr) {
    report(Miss {
        kind: MISS_NEIGH,
        vni,
        ifindex,
        ip,
        mac: [0; 6],
        _pad: [0; 2],
    });
}
