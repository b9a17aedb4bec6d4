//! What a control plane (the agent) installs: FDB entries, neighbours and flood-list VTEPs
//! of origin `extern_learn`. The control plane says what it wants for some keys; this module
//! compares that with the tables and makes only the differences, so an unchanged record
//! costs no write. Entries made by hand are never touched (a want that would overwrite one
//! is refused and reported); a learned entry for a wanted MAC is replaced.

use std::{collections::BTreeSet, net::IpAddr};

use vtep_common::{MacVni, Remote, MAX_FLOOD};

use super::{fdb::Origin, FdbRowKind, State, StateError, StateResult};
use crate::{args::Mac, lock::Step};

/// The control plane's wish for one key; `None` (or no remotes) means it wants nothing
/// there, and removes its own entry if one is there.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Want {
    Fdb {
        vni: u32,
        mac: Mac,
        remote: Option<Remote>,
    },
    Neigh {
        vni: u32,
        ip: IpAddr,
        mac: Option<Mac>,
    },
    Flood {
        vni: u32,
        remotes: Vec<Remote>,
    },
}

/// What applying wants changed, and what it refused and why (one line each).
#[derive(Debug, Default)]
pub struct Applied {
    pub added: usize,
    pub changed: usize,
    pub removed: usize,
    pub unchanged: usize,
    pub refused: Vec<String>,
}

impl Applied {
    /// Whether the tables changed.
    pub fn wrote(&self) -> bool {
        self.added + self.changed + self.removed > 0
    }
}

/// Refusals that concern one key are reported and the rest goes on; anything else (a
/// failing map, the host going down) stops the batch.
fn refusal(e: StateError) -> StateResult<String> {
    match e {
        StateError::Exists(m) | StateError::NotFound(m) => Ok(m),
        e
        @ (StateError::Full { .. } | StateError::LocalMac { .. } | StateError::NoLocal { .. }) => {
            Ok(e.to_string())
        }
        e => Err(e),
    }
}

impl State {
    /// Makes the control plane's entries for the keys in `wants` what they say, as one
    /// journalled step.
    pub async fn control_apply(&mut self, wants: &[Want]) -> StateResult<Applied> {
        self.step(Step::Tables, async |s| {
            let mut done = Applied::default();
            for w in wants {
                s.control_one(w, &mut done).await?;
            }
            Ok(done)
        })
        .await
    }

    /// `control_apply`, and removes every control-plane entry whose key `wants` does not
    /// name: after it the tables hold exactly what the control plane wants (a reconcile).
    pub async fn control_reconcile(&mut self, wants: Vec<Want>) -> StateResult<Applied> {
        let mut named_macs = BTreeSet::new();
        let mut named_ips = BTreeSet::new();
        let mut named_vnis = BTreeSet::new();
        for w in &wants {
            match w {
                Want::Fdb { vni, mac, .. } => named_macs.insert((*vni, *mac)),
                Want::Neigh { vni, ip, .. } => named_ips.insert((*vni, *ip)),
                Want::Flood { vni, .. } => named_vnis.insert(*vni),
            };
        }
        let mut all = wants;
        for r in self.fdb_rows()? {
            if r.origin != Origin::ExternLearn {
                continue;
            }
            match r.kind {
                FdbRowKind::Remote { .. } if !named_macs.contains(&(r.vni, r.mac)) => {
                    all.push(Want::Fdb {
                        vni: r.vni,
                        mac: r.mac,
                        remote: None,
                    })
                }
                FdbRowKind::Flood if named_vnis.insert(r.vni) => all.push(Want::Flood {
                    vni: r.vni,
                    remotes: Vec::new(),
                }),
                _ => {}
            }
        }
        for n in self.neigh_rows()? {
            if n.origin == Origin::ExternLearn && !named_ips.contains(&(n.vni, n.dst)) {
                all.push(Want::Neigh {
                    vni: n.vni,
                    ip: n.dst,
                    mac: None,
                });
            }
        }
        self.control_apply(&all).await
    }

    async fn control_one(&mut self, want: &Want, done: &mut Applied) -> StateResult<()> {
        match want {
            Want::Fdb { vni, mac, remote } => self.control_fdb(*vni, *mac, *remote, done).await,
            Want::Neigh { vni, ip, mac } => self.control_neigh(*vni, *ip, *mac, done),
            Want::Flood { vni, remotes } => self.control_flood(*vni, remotes, done).await,
        }
    }

    async fn control_fdb(
        &mut self,
        vni: u32,
        mac: Mac,
        want: Option<Remote>,
        done: &mut Applied,
    ) -> StateResult<()> {
        let key = MacVni::new(mac.0, vni);
        let old = self.tables()?.fdb.get(&key, 0).ok();
        let ours = old.filter(|o| Origin::of_flags(o.flags) == Origin::ExternLearn);
        let Some(want) = want else {
            if ours.is_some() {
                self.fdb_del(mac, vni, None).await?;
                done.removed += 1;
            }
            return Ok(());
        };
        if ours.is_some_and(|o| Remote::of(&o) == Remote { flags: 0, ..want }) {
            done.unchanged += 1;
            return Ok(());
        }
        match self
            .fdb_set(mac, vni, want, Origin::ExternLearn, super::FdbOp::Replace)
            .await
        {
            Ok(()) if old.is_some() => done.changed += 1,
            Ok(()) => done.added += 1,
            Err(e) => done.refused.push(refusal(e)?),
        }
        Ok(())
    }

    fn control_neigh(
        &mut self,
        vni: u32,
        ip: IpAddr,
        want: Option<Mac>,
        done: &mut Applied,
    ) -> StateResult<()> {
        let old = self.neigh_get(ip, vni)?;
        let ours = old
            .filter(|(_, o)| *o == Origin::ExternLearn)
            .map(|(m, _)| m);
        match want {
            None if ours.is_some() => {
                self.neigh_del(ip, vni)?;
                done.removed += 1;
            }
            None => {}
            Some(m) if ours == Some(m) => done.unchanged += 1,
            Some(m) => match self.neigh_set(ip, vni, m, Origin::ExternLearn, true) {
                Ok(()) if old.is_some() => done.changed += 1,
                Ok(()) => done.added += 1,
                Err(e) => done.refused.push(refusal(e)?),
            },
        }
        Ok(())
    }

    async fn control_flood(
        &mut self,
        vni: u32,
        want: &[Remote],
        done: &mut Applied,
    ) -> StateResult<()> {
        let now: Vec<Remote> = self.tables()?.members(vni)?;
        let same = |a: &Remote, b: &Remote| a.ip == b.ip && a.port == b.port;
        let ours = |r: &&Remote| Origin::of_flags(r.flags) == Origin::ExternLearn;
        let stale: Vec<Remote> = now
            .iter()
            .filter(ours)
            .filter(|r| !want.iter().any(|w| same(w, r)))
            .copied()
            .collect();
        for r in &stale {
            self.flood_del(vni, Some(IpAddr::from(r.ip))).await?;
            done.removed += 1;
        }
        let mut missing = 0;
        for w in want {
            // A VTEP already on the list, made by hand or by us, already gets the copies.
            if now.iter().any(|r| r.ip == w.ip && !stale.contains(r)) {
                done.unchanged += 1;
                continue;
            }
            match self
                .flood_set(vni, *w, Origin::ExternLearn, super::FdbOp::Append)
                .await
            {
                Ok(()) => done.added += 1,
                Err(StateError::Full { .. }) => missing += 1,
                Err(e) => done.refused.push(refusal(e)?),
            }
        }
        if missing > 0 {
            // No counts in the line: it stays the same while the list stays full, so a
            // caller can report it once.
            done.refused.push(format!(
                "the flood list of VNI {vni} holds at most {MAX_FLOOD} VTEPs: \
                 the other VTEPs with ports in it get no broadcast copies"
            ));
        }
        Ok(())
    }
}
