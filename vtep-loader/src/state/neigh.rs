//! The neighbour table the data path answers ARP from (the vxlan device's `proxy`).

use std::net::IpAddr;

use vtep_common::{IpVni, NeighEntry, NEIGH_EXTERN};

use super::{fdb::Origin, full, ignore_missing, State, StateError, StateResult};
use crate::args::Mac;

const BPF_NOEXIST: u64 = 1;

#[derive(Clone, Copy, Debug)]
pub struct NeighRow {
    pub dst: IpAddr,
    pub vni: u32,
    pub lladdr: Mac,
    pub origin: Origin,
}

fn origin_of(e: &NeighEntry) -> Origin {
    if e.flags & NEIGH_EXTERN != 0 {
        Origin::ExternLearn
    } else {
        Origin::Permanent
    }
}

impl State {
    /// Adds (`replace` false: fails if the entry exists, like `ip neigh add`) or replaces
    /// the neighbour `ip` in `vni`. A control plane never overwrites an entry made by hand.
    pub fn neigh_set(
        &mut self,
        ip: IpAddr,
        vni: u32,
        lladdr: Mac,
        origin: Origin,
        replace: bool,
    ) -> StateResult<()> {
        let t = self.tables()?;
        let key = IpVni { ip: ip.into(), vni };
        let old = t.neigh.get(&key, 0).ok();
        if let Some(old) = old {
            if !replace {
                return Err(StateError::Exists(format!(
                    "neighbour {ip} in VNI {vni} already exists (use `vtep neigh replace`)"
                )));
            }
            if origin == Origin::ExternLearn && origin_of(&old) == Origin::Permanent {
                return Err(StateError::Exists(format!(
                    "neighbour {ip} in VNI {vni} made by hand already exists"
                )));
            }
        }
        let value = NeighEntry {
            mac: lladdr.0,
            flags: if origin == Origin::ExternLearn {
                NEIGH_EXTERN
            } else {
                0
            },
            _pad: 0,
        };
        let size = t.capacity.neigh;
        let flags = if replace { 0 } else { BPF_NOEXIST };
        t.neigh
            .insert(key, value, flags)
            .map_err(full("neighbour", size))
    }

    pub fn neigh_del(&mut self, ip: IpAddr, vni: u32) -> StateResult<()> {
        let t = self.tables()?;
        let key = IpVni { ip: ip.into(), vni };
        if t.neigh.get(&key, 0).is_err() {
            return Err(StateError::NotFound(format!(
                "no neighbour {ip} in VNI {vni}"
            )));
        }
        ignore_missing(t.neigh.remove(&key))
    }

    /// The neighbour `ip` in `vni`, if any, and who made it.
    pub fn neigh_get(&mut self, ip: IpAddr, vni: u32) -> StateResult<Option<(Mac, Origin)>> {
        let key = IpVni { ip: ip.into(), vni };
        Ok(self
            .tables()?
            .neigh
            .get(&key, 0)
            .ok()
            .map(|e| (Mac(e.mac), origin_of(&e))))
    }

    /// Every neighbour, sorted by VNI and address.
    pub fn neigh_rows(&mut self) -> StateResult<Vec<NeighRow>> {
        let t = self.tables()?;
        let mut rows: Vec<NeighRow> = t
            .neigh
            .iter()
            .map(|e| {
                e.map(|(k, v)| NeighRow {
                    dst: IpAddr::from(k.ip),
                    vni: k.vni,
                    lladdr: Mac(v.mac),
                    origin: origin_of(&v),
                })
            })
            .collect::<Result<_, _>>()?;
        rows.sort_by_key(|r| (r.vni, r.dst));
        Ok(rows)
    }
}
