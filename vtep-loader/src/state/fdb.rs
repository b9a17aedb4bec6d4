//! The forwarding database and the flood lists, with PEERS (how many permanent entries and
//! flood-list slots name each VTEP of a VNI) kept in step with both. Every change counts a
//! new peer before the entry that names it exists and uncounts it after the entry is gone,
//! so a writer killed between the two leaves at worst a peer counted once too often, which
//! the next writer recounts from the journal.

use std::net::IpAddr;

use serde::Serialize;
use vtep_common::{Addr, FdbEntry, IpVni, MacVni, Remote, FDB_EXTERN, FDB_PERMANENT};

use super::{full, ignore_missing, is_missing, monotonic_ns, State, StateError, StateResult};
use crate::{args::Mac, lock::Step};

const BPF_NOEXIST: u64 = 1;

/// Who made an entry: by hand (permanent), a control plane (`extern_learn`), or the data
/// path from a received frame (learned).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Origin {
    Permanent,
    ExternLearn,
    Learned,
}

impl Origin {
    pub(super) fn of_flags(flags: u16) -> Self {
        if flags & FDB_EXTERN != 0 {
            Origin::ExternLearn
        } else if flags & FDB_PERMANENT != 0 {
            Origin::Permanent
        } else {
            Origin::Learned
        }
    }

    fn flags(self) -> u16 {
        match self {
            Origin::Permanent => FDB_PERMANENT,
            Origin::ExternLearn => FDB_EXTERN,
            Origin::Learned => 0,
        }
    }

    pub fn word(self) -> &'static str {
        match self {
            Origin::Permanent => "permanent",
            Origin::ExternLearn => "extern_learn",
            Origin::Learned => "learned",
        }
    }
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum FdbOp {
    /// Fails if the entry exists (also a learned one), like `bridge fdb add`.
    Add,
    /// Adds or overwrites.
    Replace,
    /// Another VTEP on a flood list (`bridge fdb append`).
    Append,
}

/// One flood-list VTEP.
#[derive(Clone, Copy, Debug)]
pub struct FloodEntry {
    pub vni: u32,
    pub dst: IpAddr,
    pub port: u16,
    pub origin: Origin,
}

#[derive(Clone, Copy, Debug)]
pub enum FdbRowKind {
    /// A remote MAC behind a VTEP; learned ones with the seconds since last seen.
    Remote { age: Option<u64> },
    /// A flood-list VTEP (the all-zeros MAC).
    Flood,
}

#[derive(Clone, Copy, Debug)]
pub struct FdbRow {
    pub mac: Mac,
    pub vni: u32,
    pub dst: IpAddr,
    pub port: u16,
    pub origin: Origin,
    pub kind: FdbRowKind,
}

/// Which entries a flush removes; every given field must match.
#[derive(Clone, Copy, Debug, Default)]
pub struct FdbFilter {
    pub vni: Option<u32>,
    pub dst: Option<IpAddr>,
    pub origin: Option<Origin>,
}

impl FdbFilter {
    pub fn matches(&self, row: &FdbRow) -> bool {
        self.vni.is_none_or(|v| v == row.vni)
            && self.dst.is_none_or(|d| d == row.dst)
            && self.origin.is_none_or(|o| o == row.origin)
    }
}

impl State {
    /// Adds or replaces the permanent entry `mac` in `vni`.
    pub async fn fdb_set(
        &mut self,
        mac: Mac,
        vni: u32,
        remote: Remote,
        origin: Origin,
        op: FdbOp,
    ) -> StateResult<()> {
        self.step(Step::Tables, async |s| {
            s.reachable(remote.ip)?;
            let t = s.tables()?;
            let key = MacVni::new(mac.0, vni);
            if t.local.get(&key, 0).is_ok() {
                return Err(StateError::LocalMac { mac, vni });
            }
            let old = t.fdb.get(&key, 0).ok();
            // As with the kernel, an entry already learned makes `fdb add` fail.
            if op == FdbOp::Add && (old.is_some() || t.learned.get(&key, 0).is_ok()) {
                return Err(StateError::Exists(format!(
                    "FDB entry for {mac} in VNI {vni} already exists (use `vtep fdb replace`)"
                )));
            }
            // A control plane reconciles its own entries and never overwrites one made by hand.
            if origin == Origin::ExternLearn
                && old.is_some_and(|o| Origin::of_flags(o.flags) == Origin::Permanent)
            {
                return Err(StateError::Exists(format!(
                    "a permanent FDB entry for {mac} in VNI {vni} made by hand already exists"
                )));
            }
            let value = FdbEntry {
                remote_ip: remote.ip,
                port: remote.port,
                flags: origin.flags(),
                _pad: 0,
                seen_ns: 0,
            };
            s.peer_ref(vni, remote.ip, 1)?;
            let t = s.tables()?;
            let flags = if op == FdbOp::Add { BPF_NOEXIST } else { 0 };
            if let Err(e) = t.fdb.insert(key, value, flags) {
                let size = t.capacity.fdb;
                s.peer_ref(vni, remote.ip, -1)?;
                return Err(full("FDB", size)(e));
            }
            let t = s.tables()?;
            ignore_missing(t.learned.remove(&key))?;
            if let Some(old) = old {
                s.peer_ref(vni, old.remote_ip, -1)?;
            }
            Ok(())
        })
        .await
    }

    /// Deletes the entry `mac` in `vni` (permanent or learned), only if it points at `dst`
    /// when that is given.
    pub async fn fdb_del(&mut self, mac: Mac, vni: u32, dst: Option<IpAddr>) -> StateResult<()> {
        self.step(Step::Tables, async |s| {
            let key = MacVni::new(mac.0, vni);
            let t = s.tables()?;
            let matches = |e: &FdbEntry| dst.is_none_or(|d| Addr::from(d) == e.remote_ip);
            if let Some(entry) = t.fdb.get(&key, 0).ok().filter(matches) {
                ignore_missing(t.fdb.remove(&key))?;
                return s.peer_ref(vni, entry.remote_ip, -1);
            }
            if t.learned.get(&key, 0).ok().filter(matches).is_some() {
                return ignore_missing(t.learned.remove(&key));
            }
            Err(StateError::NotFound(match dst {
                Some(dst) => format!("no FDB entry for {mac} dst {dst} in VNI {vni}"),
                None => format!("no FDB entry for {mac} in VNI {vni}"),
            }))
        })
        .await
    }

    /// Puts a VTEP on a VNI's flood list: `Add` only as its first, `Append` beside the
    /// others, `Replace` as the only one.
    pub async fn flood_set(
        &mut self,
        vni: u32,
        remote: Remote,
        origin: Origin,
        op: FdbOp,
    ) -> StateResult<()> {
        self.step(Step::Tables, async |s| {
            s.reachable(remote.ip)?;
            let t = s.tables()?;
            let old: Vec<Remote> = t.members(vni)?;
            let dst = IpAddr::from(remote.ip);
            if op == FdbOp::Add && !old.is_empty() {
                return Err(StateError::Exists(format!(
                    "VNI {vni} already has a flood list (use `vtep fdb append` to add {dst})"
                )));
            }
            let present = old.iter().any(|r| r.ip == remote.ip);
            if present && op != FdbOp::Replace {
                return Err(StateError::Exists(format!(
                    "{dst} is already in the flood list of VNI {vni}"
                )));
            }
            let remote = Remote {
                flags: origin.flags(),
                ..remote
            };
            if present {
                // Replace keeps the VTEP's place (and its PEERS count): only its port or
                // origin change.
                s.tables()?.update(vni, remote)?;
            } else {
                s.peer_ref(vni, remote.ip, 1)?;
                if let Err(e) = s.tables()?.push(vni, remote) {
                    s.peer_ref(vni, remote.ip, -1)?;
                    return Err(e);
                }
            }
            if op == FdbOp::Replace {
                // The new VTEP is on the list before the old ones leave it: a flood in
                // between reaches both, never neither.
                let gone = s
                    .tables()?
                    .remove_where::<Remote>(vni, |r| r.ip != remote.ip)?;
                for r in gone {
                    s.peer_ref(vni, r.ip, -1)?;
                }
            }
            Ok(())
        })
        .await
    }

    /// Removes one VTEP from a VNI's flood list, or the whole list without `dst`.
    pub async fn flood_del(&mut self, vni: u32, dst: Option<IpAddr>) -> StateResult<()> {
        self.step(Step::Tables, async |s| {
            let t = s.tables()?;
            if t.lists(vni).flood == 0 {
                return Err(StateError::NotFound(format!("VNI {vni} has no flood list")));
            }
            let gone =
                t.remove_where::<Remote>(vni, |r| dst.is_none_or(|d| r.ip == Addr::from(d)))?;
            if let Some(dst) = dst.filter(|_| gone.is_empty()) {
                return Err(StateError::NotFound(format!(
                    "{dst} is not in the flood list of VNI {vni}"
                )));
            }
            for r in gone {
                s.peer_ref(vni, r.ip, -1)?;
            }
            Ok(())
        })
        .await
    }

    /// A VTEP is reachable only from a local address of its own family (VXLAN carries no
    /// family translation).
    fn reachable(&mut self, ip: Addr) -> StateResult<()> {
        let cfg = self.config()?;
        let (family, local_set) = match ip.v4_octets() {
            Some(_) => ("IPv4", cfg.local_ip != [0; 4]),
            None => ("IPv6", cfg.local_ip6 != [0; 16]),
        };
        if local_set {
            return Ok(());
        }
        Err(StateError::NoLocal {
            family,
            dst: ip.into(),
        })
    }

    /// Counts how many FDB entries and flood-list slots name a VTEP: the set of peers
    /// `--strict-peers` accepts follows the tables without the data path searching them.
    fn peer_ref(&mut self, vni: u32, ip: Addr, delta: i32) -> StateResult<()> {
        let t = self.tables()?;
        let key = IpVni { ip, vni };
        let refs = t
            .peers
            .get(&key, 0)
            .unwrap_or(0)
            .saturating_add_signed(delta);
        if refs == 0 {
            return ignore_missing(t.peers.remove(&key));
        }
        let size = t.capacity.peers;
        t.peers.insert(key, refs, 0).map_err(full("peer", size))
    }

    /// Flood lists, by VNI.
    pub fn flood_lists(&mut self) -> StateResult<Vec<FloodEntry>> {
        let t = self.tables()?;
        let mut vnis: Vec<u32> = t.vnis.keys().collect::<Result<_, _>>()?;
        vnis.sort_unstable();
        let mut out = Vec::new();
        for vni in vnis {
            for r in t.members::<Remote>(vni)? {
                out.push(FloodEntry {
                    vni,
                    dst: IpAddr::from(r.ip),
                    port: r.port,
                    origin: Origin::of_flags(r.flags | FDB_PERMANENT),
                });
            }
        }
        Ok(out)
    }

    /// Every remote entry (permanent, control plane, learned) and flood-list VTEP, sorted by
    /// VNI and MAC. Learned entries past the ageing time are left out and removed, as the
    /// kernel removes them.
    pub fn fdb_rows(&mut self) -> StateResult<Vec<FdbRow>> {
        let ageing_ns = self.config()?.ageing_ns;
        let mut rows: Vec<FdbRow> = self
            .flood_lists()?
            .into_iter()
            .map(|f| FdbRow {
                mac: Mac([0; 6]),
                vni: f.vni,
                dst: f.dst,
                port: f.port,
                origin: f.origin,
                kind: FdbRowKind::Flood,
            })
            .collect();
        let t = self.tables()?;
        let mut remote: Vec<(MacVni, FdbEntry)> = t
            .fdb
            .iter()
            .chain(t.learned.iter())
            .collect::<Result<_, _>>()?;
        remote.sort_by_key(|(k, _)| (k.vni, k.mac));
        let now = monotonic_ns()?;
        for (k, v) in remote {
            let origin = Origin::of_flags(v.flags);
            let age_ns = now.saturating_sub(v.seen_ns);
            if origin == Origin::Learned && age_ns > ageing_ns {
                match t.learned.remove(&k) {
                    Err(e) if !is_missing(&e) => return Err(e.into()),
                    _ => continue,
                }
            }
            rows.push(FdbRow {
                mac: Mac(k.mac),
                vni: k.vni,
                dst: IpAddr::from(v.remote_ip),
                port: v.port,
                origin,
                kind: FdbRowKind::Remote {
                    age: (origin == Origin::Learned).then_some(age_ns / 1_000_000_000),
                },
            });
        }
        rows.sort_by_key(|r| (r.vni, r.mac));
        Ok(rows)
    }

    /// Removes every remote entry and flood-list VTEP `filter` matches; returns how many.
    pub async fn fdb_flush(&mut self, filter: FdbFilter) -> StateResult<usize> {
        let rows: Vec<FdbRow> = self
            .fdb_rows()?
            .into_iter()
            .filter(|r| filter.matches(r))
            .collect();
        self.step(Step::Tables, async |s| {
            for r in &rows {
                match r.kind {
                    FdbRowKind::Flood => s.flood_del(r.vni, Some(r.dst)).await?,
                    FdbRowKind::Remote { .. } => s.fdb_del(r.mac, r.vni, Some(r.dst)).await?,
                }
            }
            Ok(rows.len())
        })
        .await
    }
}
