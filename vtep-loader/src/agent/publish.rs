//! This host's records: what its state says they should be, and keeping etcd in step.
//!
//! The agent reads the PORTS table every `POLL` rather than being told of changes: a BPF map
//! sends no notification, any process (`vtep port add` run by anyone, a batch) may change
//! it, and reading it is one lock-free map walk (a few microseconds for tens of ports), so
//! polling well inside the 500 ms budget costs nothing measurable.

use std::{collections::BTreeMap, time::Duration};

use anyhow::Result;
use etcd_client::{Client, GetOptions, PutOptions};
use tracing::info;

use super::{
    etcd::rpc,
    records::{Kind, Record, Schema},
};
use crate::state::{Access, State, StateResult};

/// How often the agent reads the host's ports.
pub const POLL: Duration = Duration::from_millis(100);

/// The records this host should have in etcd, from its tunnel and ports.
pub async fn own_records() -> StateResult<BTreeMap<Kind, Record>> {
    let mut st = State::open(Access::Read).await?;
    let cfg = st.config()?;
    let mut out = BTreeMap::new();
    let (v4, v6) = (
        std::net::Ipv4Addr::from(cfg.local_ip),
        std::net::Ipv6Addr::from(cfg.local_ip6),
    );
    let vtep = Record::Vtep {
        addr: if v4.is_unspecified() {
            v6.into()
        } else {
            v4.into()
        },
        addr6: (!v4.is_unspecified() && !v6.is_unspecified()).then_some(v6),
        port: cfg.udp_port,
    };
    out.insert(vtep.kind(), vtep);
    for p in st.ports()? {
        let (vni, mac) = (p.port.vni, crate::args::Mac(p.port.mac));
        for r in [
            Record::Flood { vni },
            Record::Endpoint {
                vni,
                mac,
                ips: p.port.addresses().map(|(a, _)| a.into()).collect(),
            },
        ] {
            out.insert(r.kind(), r);
        }
    }
    Ok(out)
}

/// What this agent has put in etcd under its lease.
pub struct Publisher {
    pub schema: Schema,
    pub node: String,
    pub lease: i64,
    published: BTreeMap<Kind, Record>,
}

impl Publisher {
    pub fn new(schema: Schema, node: String, lease: i64) -> Self {
        Publisher {
            schema,
            node,
            lease,
            published: BTreeMap::new(),
        }
    }

    pub fn count(&self) -> usize {
        self.published.len()
    }

    /// Puts every record of `want` on this lease and deletes this node's keys `want` does
    /// not have (left by an earlier run of the agent).
    pub async fn publish_all(
        &mut self,
        client: &mut Client,
        want: &BTreeMap<Kind, Record>,
    ) -> Result<()> {
        let prefix = self.schema.node_prefix(&self.node);
        let opts = GetOptions::new().with_prefix().with_keys_only();
        let have = rpc(client.get(prefix, Some(opts))).await?;
        for kv in have.kvs() {
            let stale = match self.schema.parse_key(kv.key()) {
                Ok((_, kind)) => !want.contains_key(&kind),
                Err(_) => true,
            };
            if stale {
                rpc(client.delete(kv.key(), None)).await?;
            }
        }
        self.published.clear();
        self.sync(client, want).await
    }

    /// Puts what changed and deletes what went, logging each.
    pub async fn sync(&mut self, client: &mut Client, want: &BTreeMap<Kind, Record>) -> Result<()> {
        let gone: Vec<Kind> = self
            .published
            .keys()
            .filter(|k| !want.contains_key(k))
            .copied()
            .collect();
        for kind in gone {
            rpc(client.delete(self.schema.key(&self.node, kind), None)).await?;
            self.published.remove(&kind);
            info!("withdrew {}", describe(&kind));
        }
        for (kind, record) in want {
            if self.published.get(kind) == Some(record) {
                continue;
            }
            let opts = PutOptions::new().with_lease(self.lease);
            let key = self.schema.key(&self.node, *kind);
            rpc(client.put(key, record.value(), Some(opts))).await?;
            self.published.insert(*kind, record.clone());
            info!("published {}", describe_record(record));
        }
        Ok(())
    }

    /// Someone else changed or deleted one of this node's keys: it is put again at the
    /// next sync.
    pub fn forget(&mut self, kind: Kind, value: Option<&Record>) {
        if self.published.get(&kind) != value {
            self.published.remove(&kind);
        }
    }
}

fn describe(kind: &Kind) -> String {
    match kind {
        Kind::Vtep => "the VTEP record".to_string(),
        Kind::Flood { vni } => format!("flood record vni {vni}"),
        Kind::Endpoint { vni, mac } => format!("endpoint {mac} vni {vni}"),
    }
}

fn describe_record(r: &Record) -> String {
    match r {
        Record::Vtep { addr, addr6, port } => match addr6 {
            Some(v6) => format!("the VTEP record {addr} {v6} port {port}"),
            None => format!("the VTEP record {addr} port {port}"),
        },
        Record::Endpoint { vni, mac, ips } => {
            let ips: Vec<String> = ips.iter().map(|ip| ip.to_string()).collect();
            format!("endpoint {mac} {} vni {vni}", ips.join(","))
        }
        Record::Flood { .. } => describe(&r.kind()),
    }
}
