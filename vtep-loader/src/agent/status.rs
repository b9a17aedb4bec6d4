//! The agent's state, updated as it works: Prometheus metrics (`--metrics`), and a status
//! file other processes read (`vtep agent status`).

use std::{
    path::Path,
    sync::{
        atomic::{AtomicI64, AtomicU64},
        Mutex,
    },
    time::{Duration, Instant, SystemTime},
};

use anyhow::{Context, Result};
use serde::{Deserialize, Serialize};

use prometheus_client::{
    metrics::{counter::Counter, gauge::Gauge},
    registry::Registry,
};

#[derive(Default)]
pub struct Status {
    connected: Gauge<i64, AtomicI64>,
    published: Gauge<i64, AtomicI64>,
    programmed: Gauge<i64, AtomicI64>,
    reconcile_seconds: Gauge<f64, AtomicU64>,
    last_error: Gauge<f64, AtomicU64>,
    malformed: Counter,
    conflicts: Counter,
    refused: Counter,
    /// When the lease was last renewed, and its TTL in seconds.
    lease: Mutex<Option<(Instant, i64)>>,
    lease_left: Gauge<f64, AtomicU64>,
    last_error_text: Mutex<Option<String>>,
    /// What the status file says now, so it is written only when that changes.
    saved: Mutex<String>,
}

/// The status file: what `vtep agent status` prints.
#[derive(Serialize, Deserialize, PartialEq)]
pub struct Report {
    pub pid: u32,
    pub node: String,
    pub etcd: Vec<String>,
    pub connected: bool,
    pub lease_ttl: Option<i64>,
    pub published: i64,
    pub programmed: i64,
    pub malformed: u64,
    pub conflicts: u64,
    pub refused: u64,
    pub last_error: Option<String>,
}

impl Status {
    pub fn connected(&self, up: bool) {
        self.connected.set(up as i64);
        if !up {
            self.lease.lock().map(|mut l| *l = None).ok();
        }
    }

    pub fn renewed(&self, ttl: i64) {
        self.lease
            .lock()
            .map(|mut l| *l = Some((Instant::now(), ttl)))
            .ok();
    }

    pub fn error(&self, what: &str) {
        self.last_error_text
            .lock()
            .map(|mut e| *e = Some(what.to_string()))
            .ok();
        let now = SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .unwrap_or_default();
        self.last_error.set(now.as_secs_f64());
    }

    pub fn published(&self, n: usize) {
        self.published.set(n as i64);
    }

    pub fn programmed(&self, endpoints: usize) {
        self.programmed.set(endpoints as i64);
    }

    pub fn reconciled(&self, took: Duration, endpoints: usize) {
        self.reconcile_seconds.set(took.as_secs_f64());
        self.programmed(endpoints);
    }

    pub fn malformed(&self) {
        self.malformed.inc();
    }

    pub fn conflict(&self) {
        self.conflicts.inc();
    }

    pub fn refused(&self, n: usize) {
        self.refused.inc_by(n as u64);
    }

    /// Writes the status file if what it says changed.
    pub fn save(&self, path: &Path, node: &str, etcd: &[String]) -> Result<()> {
        let report = Report {
            pid: std::process::id(),
            node: node.to_string(),
            etcd: etcd.to_vec(),
            connected: self.connected.get() == 1,
            lease_ttl: self.lease.lock().ok().and_then(|l| l.map(|(_, ttl)| ttl)),
            published: self.published.get(),
            programmed: self.programmed.get(),
            malformed: self.malformed.get(),
            conflicts: self.conflicts.get(),
            refused: self.refused.get(),
            last_error: self.last_error_text.lock().ok().and_then(|e| e.clone()),
        };
        let text = serde_json::to_string(&report)?;
        let mut saved = self
            .saved
            .lock()
            .map_err(|_| anyhow::anyhow!("status lock"))?;
        if *saved == text {
            return Ok(());
        }
        let tmp = path.with_extension("tmp");
        std::fs::write(&tmp, &text).with_context(|| format!("writing {}", tmp.display()))?;
        std::fs::rename(&tmp, path).with_context(|| format!("writing {}", path.display()))?;
        *saved = text;
        Ok(())
    }

    /// Registers the agent's metrics (sharing their values) in `r`.
    pub fn register(&self, r: &mut Registry) {
        let left = self
            .lease
            .lock()
            .ok()
            .and_then(|l| *l)
            .map_or(0.0, |(at, ttl)| {
                (ttl as f64 - at.elapsed().as_secs_f64()).max(0.0)
            });
        self.lease_left.set(left);
        let g = |r: &mut Registry, name: &str, help: &str, m: &Gauge<i64, AtomicI64>| {
            r.register(name, help, m.clone())
        };
        g(
            r,
            "vtep_agent_etcd_connected",
            "1 while the agent has a session with etcd",
            &self.connected,
        );
        g(
            r,
            "vtep_agent_records_published",
            "this node's records in etcd",
            &self.published,
        );
        g(
            r,
            "vtep_agent_endpoints_programmed",
            "other nodes' endpoint records in the tables",
            &self.programmed,
        );
        r.register(
            "vtep_agent_lease_ttl_left_seconds",
            "seconds before this node's lease expires unless renewed",
            self.lease_left.clone(),
        );
        r.register(
            "vtep_agent_reconcile_duration_seconds",
            "how long the last full reconcile took",
            self.reconcile_seconds.clone(),
        );
        r.register(
            "vtep_agent_last_error_timestamp_seconds",
            "when etcd last failed (Unix time)",
            self.last_error.clone(),
        );
        r.register(
            "vtep_agent_malformed_records",
            "records skipped as malformed or foreign",
            self.malformed.clone(),
        );
        r.register(
            "vtep_agent_mac_conflicts",
            "(VNI, MAC) claimed by more than one node",
            self.conflicts.clone(),
        );
        r.register(
            "vtep_agent_refused",
            "records the tables refused (entries made by hand, full tables, flood lists truncated)",
            self.refused.clone(),
        );
    }
}
