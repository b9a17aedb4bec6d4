//! Which host a command acts on, and where that host's state can live: a host is a network
//! namespace, named by its cookie (which the kernel never reuses, unlike nsfs inode numbers),
//! and its state lives in the bpffs at /sys/fs/bpf, mounted by vtep where it is missing.

use std::{
    collections::HashSet,
    fs::{self, File},
    path::Path,
};

use anyhow::{bail, Context, Result};
use nix::{
    fcntl::{Flock, FlockArg},
    mount::{mount, MsFlags},
    sys::statfs::{statfs, BPF_FS_MAGIC},
};

use crate::netns;

pub const BPFFS: &str = "/sys/fs/bpf";
/// Locks and journals, one directory per host (see `lock`); also serialises mounting bpffs.
pub const RUN_DIR: &str = "/run/vtep";

/// Where the agent of the host with netns cookie `cookie` keeps its status (`vtep agent
/// status` reads it); `vtep down` and `vtep prune` remove it with the host.
pub fn agent_status_file(cookie: u64) -> std::path::PathBuf {
    Path::new(RUN_DIR).join(format!("agent-{cookie}.json"))
}

/// Cookies of every network namespace alive now: those processes are in and those named
/// under /run/netns. State kept for any other cookie belongs to a namespace that is gone.
pub fn live_cookies() -> Result<HashSet<u64>> {
    let mut seen = HashSet::new();
    let mut cookies = HashSet::from([netns::this_cookie()?]);
    let procs = fs::read_dir("/proc")?
        .flatten()
        .filter(|e| {
            e.file_name()
                .to_string_lossy()
                .bytes()
                .all(|b| b.is_ascii_digit())
        })
        .map(|e| e.path().join("ns/net"));
    let named = fs::read_dir(netns::RUN_DIR)
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| e.path());
    for path in procs.chain(named) {
        // Processes come and go while we look; a namespace we cannot open is not ours to judge.
        let Ok(file) = File::open(&path) else {
            continue;
        };
        let Ok(meta) = file.metadata() else { continue };
        if statfs(&path).map(|s| s.filesystem_type()) != Ok(netns::NSFS_MAGIC)
            || !seen.insert((
                std::os::unix::fs::MetadataExt::dev(&meta),
                std::os::unix::fs::MetadataExt::ino(&meta),
            ))
        {
            continue;
        }
        if let Ok(c) = netns::cookie_of(&file) {
            cookies.insert(c);
        }
    }
    Ok(cookies)
}

fn is_bpffs(path: &str) -> bool {
    statfs(path).is_ok_and(|s| s.filesystem_type() == BPF_FS_MAGIC)
}

/// Mounts bpffs at /sys/fs/bpf when it is missing (a fresh machine has none). Refused in a
/// mount namespace made for this process alone (`ip netns exec`): a bpffs mounted there
/// would vanish with the process, and the data path's state with it.
pub fn ensure_bpffs() -> Result<()> {
    if is_bpffs(BPFFS) {
        return Ok(());
    }
    if private_mount_namespace() {
        bail!("no bpffs in this mount namespace (under `ip netns exec`?): use `vtep -n NETNS` instead");
    }
    // Two commands mounting at once would stack two bpffs, the second hiding the first's
    // pins: mount under a machine-wide lock, and look again once it is held.
    fs::create_dir_all(RUN_DIR).with_context(|| format!("creating {RUN_DIR}"))?;
    let file = File::create(Path::new(RUN_DIR).join("bpffs.lock"))?;
    let _held = Flock::lock(file, FlockArg::LockExclusive)
        .map_err(|(_, e)| e)
        .context("locking the bpffs mount")?;
    if is_bpffs(BPFFS) {
        return Ok(());
    }
    mount(
        Some("bpf"),
        BPFFS,
        Some("bpf"),
        MsFlags::empty(),
        None::<&str>,
    )
    .context("mounting bpffs at /sys/fs/bpf")
}

/// Whether this process's mount namespace differs from an ancestor's. PID 1's namespace
/// cannot be read on every machine (EACCES even for root), so walk up as far as we may: a
/// namespace made by `ip netns exec` (or `unshare -m`) differs from its caller's.
fn private_mount_namespace() -> bool {
    let ns = |pid: &str| fs::read_link(format!("/proc/{pid}/ns/mnt")).ok();
    let Some(mine) = ns("self") else {
        return false;
    };
    let mut pid = std::process::id();
    // Bounded: a process tree is never this deep, and a loop here must end.
    for _ in 0..64 {
        let Some(parent) = parent_pid(pid) else {
            return false;
        };
        if parent == 0 {
            return false;
        }
        if let Some(theirs) = ns(&parent.to_string()) {
            if theirs != mine {
                return true;
            }
        }
        pid = parent;
    }
    false
}

fn parent_pid(pid: u32) -> Option<u32> {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name may hold spaces and parentheses: fields resume after the last ')'.
    let rest = &stat[stat.rfind(')')? + 1..];
    rest.split_whitespace().nth(1)?.parse().ok()
}

/// Removes a file (a pin, a journal, a placeholder) that may already be gone: only other
/// failures are errors, so cleanup that runs twice, or after a kill, is not one.
pub fn remove_if_present(path: &Path) -> Result<()> {
    match fs::remove_file(path) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
            Err(e).with_context(|| format!("removing {}", path.display()))
        }
        _ => Ok(()),
    }
}
