//! Miss events for `vtep monitor`, like the kernel vxlan device's l2miss and l3miss.

use vtep_common::{counter, Miss, MISS_FDB, MISS_NEIGH};

use crate::{maps::MISSES, stats::count};

#[inline(always)]
fn report(event: Miss) {
    if MISSES.output::<Miss>(event, 0).is_err() {
        count(counter::MISS_LOST);
    }
}

/// A unicast frame for a MAC neither local nor in the FDB.
#[inline(always)]
pub fn fdb(vni: u32, ifindex: u32, mac: [u8; 6]) {
    report(Miss {
        kind: MISS_FDB,
        vni,
        ifindex,
        ip: [0; 4],
        mac,
        _pad: [0; 2],
    });
}

/// An ARP request for an IP the neighbour table cannot answer.
#[inline(always)]
pub fn neigh(vni: u32, ifindex: u32, ip: [u8; 4]) {
    report(Miss {
        kind: MISS_NEIGH,
        vni,
        ifindex,
        ip,
        mac: [0; 6],
        _pad: [0; 2],
    });
}
