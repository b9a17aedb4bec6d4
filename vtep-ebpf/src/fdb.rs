//! Learned FDB entries as the data path sees them (they honour ageing; permanent ones are
//! plain lookups), and learning from received frames (the kernel vxlan device's `learning`).

use aya_ebpf::helpers::bpf_ktime_get_ns;
use vtep_common::{counter, wire, Addr, Config, FdbEntry, IpVni, MacVni};

use crate::{
    maps::{FDB, LEARNED, LOCAL, PEERS},
    stats::count,
};

/// Refreshing a learned entry more often than this buys nothing and costs a map write per
/// packet.
const REFRESH_NS: u64 = 1_000_000_000;

/// The learned remote VTEP of `key`. An entry past its age is removed instead, so expiry
/// needs no process running.
#[inline(always)]
pub fn learned(key: &MacVni, cfg: &Config) -> Option<FdbEntry> {
    let entry = *unsafe { LEARNED.get(key) }?;
    if unsafe { bpf_ktime_get_ns() }.wrapping_sub(entry.seen_ns) > cfg.ageing_ns {
        let _ = LEARNED.remove(key);
        count(counter::AGED);
        return None;
    }
    Some(entry)
}

/// True when `--strict-peers` lets VXLAN from `remote_ip` into `vni`.
#[inline(always)]
pub fn peer_allowed(cfg: &Config, vni: u32, remote_ip: Addr) -> bool {
    cfg.strict_peers == 0 || unsafe { PEERS.get(IpVni { ip: remote_ip, vni }) }.is_some()
}

/// Records that `src` in `vni` lives behind `remote_ip`. Never shadows a permanent entry
/// or a MAC of a local port; a learned MAC seen behind another VTEP moves there.
#[inline(always)]
pub fn learn(cfg: &Config, vni: u32, src: [u8; 6], remote_ip: Addr) {
    if cfg.learning == 0 || wire::is_multicast(&src) {
        return;
    }
    let key = MacVni::new(src, vni);
    // Cheapest first, per packet: a permanent entry ends it in one lookup, a known learned
    // one in two; a MAC of a local port never gets into LEARNED, so it is checked only
    // before an insert.
    if unsafe { FDB.get(key) }.is_some() {
        return;
    }
    let now = unsafe { bpf_ktime_get_ns() };
    if let Some(entry) = LEARNED.get_ptr_mut(key) {
        let entry = unsafe { &mut *entry };
        if entry.remote_ip == remote_ip {
            if now.wrapping_sub(entry.seen_ns) > REFRESH_NS {
                entry.seen_ns = now;
            }
            return;
        }
        // Moved behind another VTEP: replace the whole entry so readers never see a mix.
    } else if unsafe { LOCAL.get(key) }.is_some() {
        return;
    }
    let entry = FdbEntry {
        remote_ip,
        port: cfg.udp_port,
        flags: 0,
        _pad: 0,
        seen_ns: now,
    };
    if LEARNED.insert(key, entry, 0).is_ok() {
        count(counter::LEARNED);
    }
}
