//! The state layer: every read and write of a host's tables goes through a `State`, the one
//! place that knows the maps, keeps the rules that span several of them (a MAC is a local
//! port's or a permanent entry's; PEERS counts the FDB entries and flood-list slots naming a
//! VTEP; VNI_PORTS lists a VNI's ports), and serialises writers (see `lock`). The CLI, a
//! batch and the agent are its callers. Operations fail with a `StateError` a caller can
//! match on, and a failed operation leaves the tables as they were.

mod control;
mod fdb;
mod neigh;
mod port;
mod tables;
mod vni;

use anyhow::{Context, Result};
use aya::maps::MapError;
use vtep_common::Config;

pub use control::{Applied, Want};
pub use fdb::{FdbFilter, FdbOp, FdbRow, FdbRowKind, FloodEntry, Origin};
pub use neigh::NeighRow;
pub use port::{port_mtu_limit, PortHealth, PortRequest, PortState};
pub use tables::{Capacities, Tables};

use crate::{
    args::Mac,
    host,
    lock::{HostLock, Step},
    pins::Pins,
    topology::Netlink,
};

#[derive(Debug, thiserror::Error)]
pub enum StateError {
    #[error("vtep is not up in this network namespace (run `vtep up` first)")]
    NotUp,
    /// The whole message: what exists, and what to do instead.
    #[error("{0}")]
    Exists(String),
    #[error("{0}")]
    NotFound(String),
    #[error("the {table} table is full ({size} entries)")]
    Full { table: &'static str, size: u32 },
    #[error("{mac} is a local port in VNI {vni}")]
    LocalMac { mac: Mac, vni: u32 },
    #[error("no local {family} address to reach {dst} from (give one with `vtep up --local`)")]
    NoLocal {
        family: &'static str,
        dst: std::net::IpAddr,
    },
    #[error(transparent)]
    Other(#[from] anyhow::Error),
}

pub type StateResult<T> = std::result::Result<T, StateError>;

impl From<MapError> for StateError {
    fn from(e: MapError) -> Self {
        StateError::Other(e.into())
    }
}

/// Whether a command only reads, or changes the host (and so takes its lock).
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Access {
    Read,
    Write,
    /// `down`: a writer that takes down state whose tables have another layout too, which
    /// every other command refuses.
    Down,
}

pub struct State {
    pub pins: Pins,
    pub cookie: u64,
    lock: Option<HostLock>,
    /// What this writer is in the middle of, as recorded in the journal.
    steps: Vec<Step>,
    tables: Option<Tables>,
    /// CONFIG as last read: only `up` writes it, and `up` reopens the state.
    config: Option<Config>,
}

impl State {
    /// The state of the host the calling thread is in. A writer waits for the host's lock,
    /// then finishes whatever a writer killed before it left half-done.
    pub async fn open(access: Access) -> Result<Self> {
        host::ensure_bpffs()?;
        let cookie = crate::netns::this_cookie()?;
        let pins = Pins::of(cookie);
        let lock = match access {
            // Waited for on a blocking thread: a long-running writer (the agent) keeps its
            // other work, lease renewals above all, going while a command holds the lock.
            Access::Write | Access::Down => Some(
                tokio::task::spawn_blocking(move || HostLock::acquire(cookie))
                    .await
                    .context("waiting for the host lock")??,
            ),
            Access::Read => None,
        };
        let mut state = State {
            pins,
            cookie,
            lock,
            steps: Vec::new(),
            tables: None,
            config: None,
        };
        match state.reopen() {
            // `teardown` reads what it needs of such tables by itself.
            Err(_) if access == Access::Down => {}
            r => r?,
        }
        if let Some(lock) = &state.lock {
            let pending = lock.pending()?;
            if !pending.is_empty() {
                state.recover(pending).await?;
            }
        }
        Ok(state)
    }

    /// Opens the tables again after `up` or `down` changed what is pinned.
    pub fn reopen(&mut self) -> Result<()> {
        self.tables = None;
        self.config = None;
        if self.pins.is_up() {
            self.tables = Some(Tables::open(&self.pins)?);
        }
        Ok(())
    }

    pub fn is_up(&self) -> bool {
        self.tables.is_some()
    }

    /// The tables of a host that is up.
    pub fn tables(&mut self) -> StateResult<&mut Tables> {
        if self.tables.is_none() {
            self.pins.refuse_other_layouts()?;
        }
        self.tables.as_mut().ok_or(StateError::NotUp)
    }

    pub fn config(&mut self) -> StateResult<Config> {
        if let Some(cfg) = self.config {
            return Ok(cfg);
        }
        let cfg = self.tables()?.config()?;
        self.config = Some(cfg);
        Ok(cfg)
    }

    /// Runs `f` as one recorded step: if the process dies inside it, the next writer
    /// repairs what `step` names.
    pub async fn step<T>(
        &mut self,
        step: Step,
        f: impl AsyncFnOnce(&mut Self) -> StateResult<T>,
    ) -> StateResult<T> {
        // Inside the same step (a batch's), the journal already names it.
        if self.steps.contains(&step) {
            return f(self).await;
        }
        self.steps.push(step);
        self.journal()?;
        let result = f(self).await;
        self.steps.pop();
        self.journal()?;
        result
    }

    fn journal(&self) -> Result<()> {
        match &self.lock {
            Some(lock) => lock.record(&self.steps),
            None => Ok(()),
        }
    }

    async fn recover(&mut self, pending: Vec<Step>) -> Result<()> {
        let steps: Vec<String> = pending.iter().map(|s| format!("`{s}`")).collect();
        eprintln!(
            "vtep: completing what an interrupted {} left",
            steps.join(", ")
        );
        for step in pending.into_iter().rev() {
            match step {
                Step::Tables => {
                    if let Some(t) = self.tables.as_mut() {
                        t.repair_lists()?;
                        t.recount_peers()?;
                    }
                }
                Step::PortAdd {
                    netns,
                    netns_existed,
                } => {
                    if self.is_up() {
                        port::undo_add(self, &netns, netns_existed).await?;
                        self.tables()?.repair_lists()?;
                    }
                }
                Step::Up => {
                    if !self.pins.is_up() {
                        self.pins.remove()?;
                    }
                }
                Step::Down => {
                    if self.is_up() || self.pins.dir.exists() {
                        self.teardown().await?;
                    }
                }
            }
        }
        self.journal()?;
        self.reopen()
    }

    /// Everything `up` and `port add` made: ports (veths, owned namespaces), pins.
    pub async fn teardown(&mut self) -> Result<()> {
        // Only the kernel objects of ports go one by one: the tables go with their pins.
        let ports = match self.tables.as_ref() {
            Some(t) => port::port_states(&t.ports)?,
            // Up with tables that would not open (another layout, under `Access::Down`): of
            // them only PORTS is needed, and refused if it is of another layout too.
            None if self.pins.is_up() => port::port_states(&tables::open_ports(&self.pins)?)?,
            None => Vec::new(),
        };
        let nl = Netlink::connect()?;
        for p in &ports {
            self.remove_port_devices(p, &nl).await?;
        }
        self.tables = None;
        // Netlink TC filters (kernels without TCX) are not pinned links: removed by record.
        crate::datapath::detach_tc(&self.pins.underlay_link())?;
        self.pins.remove()?;
        self.pins.prune_parents();
        Ok(())
    }

    /// Ends the host: its lock and journal go too (`vtep down`).
    pub fn release(mut self) -> Result<()> {
        self.steps.clear();
        match self.lock.take() {
            Some(lock) => lock.remove(),
            None => Ok(()),
        }
    }

    /// A writer that found the host down and changed nothing leaves no lock behind.
    pub fn release_if_down(self) -> Result<()> {
        if self.pins.dir.exists() {
            return Ok(());
        }
        self.release()
    }
}

/// How many entries each table holds (`vtep show`, the metrics).
#[derive(Clone, Copy, Debug, serde::Serialize)]
pub struct TableUse {
    /// Permanent and control-plane entries.
    pub fdb: usize,
    pub learned: usize,
    pub neigh: usize,
    pub ports: usize,
}

impl State {
    pub fn table_use(&mut self) -> StateResult<TableUse> {
        let rows = self.fdb_rows()?;
        let learned = rows.iter().filter(|r| r.origin == Origin::Learned).count();
        let remote = rows
            .iter()
            .filter(|r| matches!(r.kind, FdbRowKind::Remote { .. }))
            .count();
        Ok(TableUse {
            fdb: remote - learned,
            learned,
            neigh: self.neigh_rows()?.len(),
            ports: self.ports()?.len(),
        })
    }
}

/// Whether a map operation failed because the key is absent (aya 0.14 reports a missing
/// key on delete as a syscall error with ENOENT).
pub fn is_missing(e: &MapError) -> bool {
    match e {
        MapError::KeyNotFound | MapError::ElementNotFound => true,
        MapError::SyscallError(err) => err.io_error.raw_os_error() == Some(libc::ENOENT),
        _ => false,
    }
}

/// Ok when the key was removed or was not there.
pub fn ignore_missing(r: std::result::Result<(), MapError>) -> StateResult<()> {
    match r {
        Err(e) if !is_missing(&e) => Err(e.into()),
        _ => Ok(()),
    }
}

/// Converts an insert error: a full table names itself and its size.
pub fn full(table: &'static str, size: u32) -> impl Fn(MapError) -> StateError {
    move |e| match &e {
        MapError::SyscallError(err) if err.io_error.raw_os_error() == Some(libc::E2BIG) => {
            StateError::Full { table, size }
        }
        _ => {
            StateError::Other(anyhow::Error::from(e).context(format!("writing the {table} table")))
        }
    }
}

/// Now on the clock bpf_ktime_get_ns() reads (CLOCK_MONOTONIC), in nanoseconds.
pub fn monotonic_ns() -> Result<u64> {
    let ts = nix::time::clock_gettime(nix::time::ClockId::CLOCK_MONOTONIC)
        .context("reading the monotonic clock")?;
    Ok(ts.tv_sec() as u64 * 1_000_000_000 + ts.tv_nsec() as u64)
}
