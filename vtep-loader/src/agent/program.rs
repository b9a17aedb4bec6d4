//! Turning etcd's records into this host's tables: list-then-watch fills the model, and
//! every change is applied through the state layer under the host's lock, taken per batch
//! so that CLI commands run between batches.

use std::{collections::BTreeSet, time::Instant};

use anyhow::Result;
use etcd_client::{Client, EventType, GetOptions, KeyValue};
use tracing::{info, warn};

use super::{
    etcd::rpc,
    model::{Families, Model, Target},
    records::{Kind, Record, Schema},
    status::Status,
};
use crate::state::{Access, Applied, State};

pub struct Programmer {
    pub schema: Schema,
    pub model: Model,
    me: String,
    /// Refusals already logged, until the next full list.
    reported: BTreeSet<String>,
}

/// What one record change means for this agent.
#[derive(Default)]
pub struct Change {
    /// Tables to look at again.
    pub targets: Vec<Target>,
    /// A change to one of this node's own keys: etcd's view of what the agent published.
    pub own: Option<(Kind, Option<Record>)>,
}

impl Programmer {
    pub fn new(schema: Schema, me: &str) -> Self {
        Programmer {
            schema,
            model: Model::new(me, Families::default()),
            me: me.to_string(),
            reported: BTreeSet::new(),
        }
    }

    /// Lists every node's records, rebuilds the model from them and reconciles the tables;
    /// returns the revision of the list (watch from the next one).
    pub async fn relist(&mut self, client: &mut Client, status: &Status) -> Result<i64> {
        let started = Instant::now();
        let opts = GetOptions::new().with_prefix();
        let resp = rpc(client.get(self.schema.nodes.clone(), Some(opts))).await?;
        let revision = resp.header().map_or(0, |h| h.revision());
        // A node's VTEP address is chosen by the families this host has a local address
        // for, read at every list (`vtep up --local` changes them).
        self.model = Model::new(&self.me, local_families().await?);
        self.reported.clear();
        let mut nodes = BTreeSet::new();
        for kv in resp.kvs() {
            self.change(EventType::Put, kv, status);
            nodes.extend(self.schema.parse_key(kv.key()).ok().map(|(n, _)| n));
        }
        let wants = self
            .model
            .all_targets()
            .into_iter()
            .map(|t| self.model.want(t))
            .collect();
        let mut st = State::open(Access::Write).await?;
        let done = st.control_reconcile(wants).await?;
        drop(st);
        self.report(&done, status);
        status.reconciled(started.elapsed(), self.model.remote_endpoints());
        info!(
            "reconciled with etcd at revision {revision}: {} records of {} nodes, \
             {} entries added, {} changed, {} removed, {} unchanged ({} ms)",
            resp.kvs().len(),
            nodes.len(),
            done.added,
            done.changed,
            done.removed,
            done.unchanged,
            started.elapsed().as_millis()
        );
        Ok(revision)
    }

    /// Applies a batch of record changes to the model; returns what they mean.
    pub fn change(&mut self, event: EventType, kv: &KeyValue, status: &Status) -> Change {
        let key = String::from_utf8_lossy(kv.key());
        let (node, kind) = match self.schema.parse_key(kv.key()) {
            Ok(k) => k,
            Err(e) => {
                warn!("skipping {key}: {e}");
                status.malformed();
                return Change::default();
            }
        };
        let put = match event {
            EventType::Delete => None,
            EventType::Put => match self.schema.parse(kv.key(), kv.value()) {
                Ok((_, record)) => Some(record),
                Err(e) => {
                    warn!("skipping {key}: {e}");
                    status.malformed();
                    // Garbage in place of a record withdraws the record.
                    return Change {
                        targets: self.model.delete(&node, kind),
                        own: None,
                    };
                }
            },
        };
        let targets = match &put {
            Some(record) => self.model.put(&node, record.clone(), kv.create_revision()),
            None => self.model.delete(&node, kind),
        };
        Change {
            targets,
            own: (node == self.me).then_some((kind, put)),
        }
    }

    /// Applies what the model now wants at `targets`.
    pub async fn apply(&mut self, targets: BTreeSet<Target>, status: &Status) -> Result<()> {
        if targets.is_empty() {
            return Ok(());
        }
        for t in &targets {
            if let Target::Mac { vni, mac } = *t {
                if let Some(c) = self.model.conflict(vni, mac) {
                    warn!(
                        "conflict: {mac} in VNI {vni} claimed by {} and {}; {} wins (newest claim)",
                        c.winner,
                        c.losers.join(", "),
                        c.winner
                    );
                    status.conflict();
                }
            }
        }
        let wants: Vec<_> = targets.into_iter().map(|t| self.model.want(t)).collect();
        let mut st = State::open(Access::Write).await?;
        let done = st.control_apply(&wants).await?;
        drop(st);
        if done.wrote() {
            info!(
                "programmed: {} entries added, {} changed, {} removed",
                done.added, done.changed, done.removed
            );
        }
        self.report(&done, status);
        status.programmed(self.model.remote_endpoints());
        Ok(())
    }

    /// Logs each refusal once (a full flood list is refused again with every record of
    /// its VNI), counts every one.
    fn report(&mut self, done: &Applied, status: &Status) {
        for why in &done.refused {
            if self.reported.insert(why.clone()) {
                warn!("not programmed: {why}");
            }
        }
        status.refused(done.refused.len());
    }
}

/// The address families of this host's local VTEP addresses.
async fn local_families() -> Result<Families> {
    let cfg = State::open(Access::Read).await?.config()?;
    Ok(Families {
        v4: cfg.local_ip != [0; 4],
        v6: cfg.local_ip6 != [0; 16],
    })
}
