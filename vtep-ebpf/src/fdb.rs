//! The FDB as the data path sees it: lookups that honour ageing, and learning from
//! received frames (the kernel vxlan device's `learning`).

use aya_ebpf::helpers::bpf_ktime_get_ns;
use vtep_common::{counter, wire, Config, FdbEntry, MacVni, FDB_PERMANENT};

use crate::{
    maps::{FDB, LOCAL},
    stats::count,
};

/// Refreshing a learned entry more often than this buys nothing and costs a map write per
/// packet.
const REFRESH_NS: u64 = 1_000_000_000;

/// The remote VTEP of `key`, unless it is a learned entry past its age: that one is
/// removed, so expiry needs no process running.
#[inline(always)]
pub fn lookup(key: &MacVni, cfg: &Config) -> Option<FdbEntry> {
    let entry = *unsafe { FDB.get(key) }?;
    if entry.flags & FDB_PERMANENT == 0 {
        let age = unsafe { bpf_ktime_get_ns() }.wrapping_sub(entry.seen_ns);
        if age > cfg.ageing_ns {
            let _ = FDB.remove(key);
            count(counter::AGED);
            return None;
        }
    }
    Some(entry)
}

/// Records that `src` in `vni` lives behind `remote_ip`. Never touches a permanent entry
/// or a MAC of a local port; a learned MAC seen behind another VTEP moves there.
#[inline(always)]
pub fn learn(cfg: &Config, vni: u32, src: [u8; 6], remote_ip: [u8; 4]) {
    if cfg.learning == 0 || wire::is_multicast(&src) {
        return;
    }
    let key = MacVni::new(src, vni);
    if unsafe { LOCAL.get(key) }.is_some() {
        return;
    }
    let now = unsafe { bpf_ktime_get_ns() };
    if let Some(entry) = FDB.get_ptr_mut(key) {
        let entry = unsafe { &mut *entry };
        if entry.flags & FDB_PERMANENT != 0 {
            return;
        }
        if entry.remote_ip == remote_ip {
            if now.wrapping_sub(entry.seen_ns) > REFRESH_NS {
                entry.seen_ns = now;
            }
            return;
        }
        // Moved behind another VTEP: replace the whole entry so readers never see a mix.
    }
    let entry = FdbEntry { remote_ip, port: cfg.udp_port, flags: 0, seen_ns: now };
    if FDB.insert(key, entry, 0).is_ok() {
        count(counter::LEARNED);
    }
}
