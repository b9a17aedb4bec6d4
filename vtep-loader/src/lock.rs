//! One writer at a time per host, and a journal of what that writer was in the middle of.
//!
//! Every command that changes a host's state holds the host's lock (an flock on
//! /run/vtep/netns-COOKIE/lock) for its whole read-modify-write, so parallel commands end as
//! the same commands would in series. Before a change that spans several steps the writer
//! records it in the journal beside the lock; a writer killed half-way leaves the record, and
//! the next writer to take the lock finishes or undoes that change before its own.

use std::{
    fs::{self, File},
    io::{self, Write},
    os::unix::fs::MetadataExt,
    path::{Path, PathBuf},
};

use anyhow::{Context, Result};
use nix::fcntl::{Flock, FlockArg};
use serde::{Deserialize, Serialize};

use crate::host::RUN_DIR;

/// A change in progress.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "kebab-case")]
pub enum Step {
    /// Writes to the tables that keep PEERS counts: recount them if interrupted.
    Tables,
    /// `port add` of the port for namespace `netns`; `netns_existed` tells whether vtep
    /// found the namespace or is creating it (and so owns it).
    PortAdd { netns: String, netns_existed: bool },
    /// `vtep up` of a host that was not up: remove what it pinned if interrupted.
    Up,
    /// `vtep down`: finish it if interrupted.
    Down,
}

/// As the operator knows the step: the command that was interrupted.
impl std::fmt::Display for Step {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Step::Tables => f.write_str("table writes"),
            Step::PortAdd { netns, .. } => write!(f, "port add {netns}"),
            Step::Up => f.write_str("up"),
            Step::Down => f.write_str("down"),
        }
    }
}

pub struct HostLock {
    held: Flock<File>,
    dir: PathBuf,
    cookie: u64,
}

impl HostLock {
    pub fn dir_of(cookie: u64) -> PathBuf {
        Path::new(RUN_DIR).join(format!("netns-{cookie}"))
    }

    /// The cookies of every host that has a lock directory.
    pub fn cookies() -> Vec<u64> {
        let Ok(dir) = fs::read_dir(RUN_DIR) else {
            return Vec::new();
        };
        dir.filter_map(|e| {
            let name = e.ok()?.file_name();
            name.to_str()?.strip_prefix("netns-")?.parse().ok()
        })
        .collect()
    }

    /// Blocks until this process is the host's only writer.
    pub fn acquire(cookie: u64) -> Result<Self> {
        let dir = Self::dir_of(cookie);
        let path = dir.join("lock");
        loop {
            fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
            let file = match File::options()
                .create(true)
                .truncate(false)
                .write(true)
                .open(&path)
            {
                // `down` removed the directory between our creating and opening it.
                Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
                r => r.with_context(|| format!("opening {}", path.display()))?,
            };
            let held = Flock::lock(file, FlockArg::LockExclusive)
                .map_err(|(_, e)| e)
                .context("locking the host")?;
            // The holder before us may have been `down`, which unlinks the lock: a lock on
            // an unlinked file excludes nobody, so take the one at the path now.
            let same = fs::metadata(&path)
                .is_ok_and(|m| m.ino() == held.metadata().map(|h| h.ino()).unwrap_or(0));
            if same {
                return Ok(Self { held, dir, cookie });
            }
        }
    }

    fn journal_path(&self) -> PathBuf {
        self.dir.join("journal")
    }

    /// What an interrupted writer left unfinished, oldest first.
    pub fn pending(&self) -> Result<Vec<Step>> {
        match fs::read(self.journal_path()) {
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(Vec::new()),
            Err(e) => Err(e).context("reading the journal"),
            // A journal cut short by a kill mid-write never happens (it is renamed into
            // place), so unreadable content is a bug worth stopping for.
            Ok(bytes) => serde_json::from_slice(&bytes).context("reading the journal"),
        }
    }

    /// Records the steps in progress, atomically (write then rename).
    pub fn record(&self, steps: &[Step]) -> Result<()> {
        let path = self.journal_path();
        if steps.is_empty() {
            return crate::host::remove_if_present(&path);
        }
        let tmp = self.dir.join("journal.tmp");
        let mut file = File::create(&tmp).context("writing the journal")?;
        file.write_all(&serde_json::to_vec(steps)?)?;
        fs::rename(&tmp, &path).context("writing the journal")
    }

    /// After `down`: nothing of the host is left, its lock directory neither. Waiting
    /// writers notice the lock is gone and take a new one.
    pub fn remove(self) -> Result<()> {
        // An agent's status file goes with the host (a killed agent cannot remove its own).
        crate::host::remove_if_present(&crate::host::agent_status_file(self.cookie))?;
        crate::host::remove_if_present(&self.journal_path())?;
        // The flag file of `vtep monitor` (see monitor.rs): no reader outlives `down`.
        crate::host::remove_if_present(&self.dir.join("monitor"))?;
        fs::remove_file(self.dir.join("lock")).context("removing the host lock")?;
        // A writer that was waiting may already have made a new lock in it: then it stays.
        fs::remove_dir(&self.dir).ok();
        drop(self.held);
        Ok(())
    }
}
