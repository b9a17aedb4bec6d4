//! Named network namespaces kept the way `ip netns` keeps them (a bind mount of the namespace
//! under /run/netns/NAME), so `ip netns exec` and vtep see the same ones.

use std::{
    fs::{self, File},
    marker::PhantomData,
    os::fd::{AsFd, AsRawFd},
    path::{Path, PathBuf},
};

use anyhow::{anyhow, Context, Result};
use nix::{
    mount::{mount, umount2, MntFlags, MsFlags},
    sched::{setns, unshare, CloneFlags},
    sys::socket::{socket, AddressFamily, SockFlag, SockType},
    sys::statfs::FsType,
};

pub const RUN_DIR: &str = "/run/netns";
pub const NSFS_MAGIC: FsType = FsType(0x6e73_6673);

/// The cookie of the calling thread's network namespace (SO_NETNS_COOKIE, Linux 5.14+).
pub fn this_cookie() -> Result<u64> {
    let sock = socket(
        AddressFamily::Inet,
        SockType::Datagram,
        SockFlag::SOCK_CLOEXEC,
        None,
    )
    .context("opening a socket to read the namespace cookie")?;
    let mut value: u64 = 0;
    let mut len = size_of::<u64>() as libc::socklen_t;
    // SAFETY: `value` and `len` are valid for writes of the sizes passed; nix has no wrapper
    // for SO_NETNS_COOKIE.
    let rc = unsafe {
        libc::getsockopt(
            sock.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_NETNS_COOKIE,
            (&raw mut value).cast(),
            &mut len,
        )
    };
    if rc != 0 {
        return Err(std::io::Error::last_os_error())
            .context("reading the network namespace cookie (needs Linux 5.14 or later)");
    }
    Ok(value)
}

/// The cookie of the namespace `ns` refers to, read from a short-lived thread inside it.
pub fn cookie_of(ns: &File) -> Result<u64> {
    let ns = ns.try_clone()?;
    std::thread::scope(|s| {
        s.spawn(|| {
            let _inside = enter(&ns)?;
            this_cookie()
        })
        .join()
        .map_err(|_| anyhow!("namespace cookie thread panicked"))?
    })
}

/// The calling thread's namespace as an open file, for code that must return to it.
pub fn current_netns() -> Result<File> {
    File::open("/proc/thread-self/ns/net").context("opening the current network namespace")
}

/// Whether `fd` refers to a network namespace (an empty placeholder file does not).
pub fn is_netns(fd: impl AsFd) -> bool {
    nix::sys::statfs::fstatfs(fd).is_ok_and(|s| s.filesystem_type() == NSFS_MAGIC)
}

pub fn path(name: &str) -> PathBuf {
    Path::new(RUN_DIR).join(name)
}

pub fn exists(name: &str) -> bool {
    open(name).is_ok()
}

pub fn open(name: &str) -> Result<File> {
    let file = File::open(path(name))
        .ok()
        // An empty placeholder file is not a namespace (a half-finished `ip netns add`).
        .filter(|f| is_netns(f))
        .ok_or_else(|| anyhow!("network namespace \"{name}\" does not exist"))?;
    Ok(file)
}

/// The cookie of namespace `name`, if it exists.
pub fn cookie(name: &str) -> Option<u64> {
    open(name).ok().and_then(|f| cookie_of(&f).ok())
}

/// Creates namespace `name` and returns its cookie.
pub fn create(name: &str) -> Result<u64> {
    make_run_dir_shared()?;
    let target = path(name);
    // A placeholder left by a creation that was killed half-way is not a namespace.
    if target.exists() && !exists(name) {
        // Killed before its bind mount, there is nothing to unmount (EINVAL).
        umount2(&target, MntFlags::MNT_DETACH).ok();
        fs::remove_file(&target)
            .with_context(|| format!("removing the placeholder {}", target.display()))?;
    }
    fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(&target)
        .with_context(|| format!("creating {}", target.display()))?;
    // unshare() moves only the calling thread, so a short-lived thread owns the new
    // namespace; the bind mount keeps it alive after the thread ends.
    let bind_target = target.clone();
    let result = std::thread::spawn(move || -> Result<u64> {
        unshare(CloneFlags::CLONE_NEWNET)?;
        mount(
            Some("/proc/thread-self/ns/net"),
            &bind_target,
            None::<&str>,
            MsFlags::MS_BIND,
            None::<&str>,
        )?;
        this_cookie()
    })
    .join()
    .map_err(|_| anyhow!("namespace creation thread panicked"))?;
    if result.is_err() {
        // The creation error is the one worth reporting.
        fs::remove_file(&target).ok();
    }
    result.with_context(|| format!("creating network namespace \"{name}\""))
}

pub fn delete(name: &str) -> Result<()> {
    let target = path(name);
    // Not mounted (a placeholder) is no reason to keep the file.
    umount2(&target, MntFlags::MNT_DETACH).ok();
    fs::remove_file(&target).with_context(|| format!("deleting network namespace \"{name}\""))
}

/// As `ip netns add` does: mounts made under /run/netns must propagate to every mount
/// namespace, or `ip netns exec` elsewhere would see an empty file.
fn make_run_dir_shared() -> Result<()> {
    let dir = Path::new(RUN_DIR);
    fs::create_dir_all(dir)?;
    let shared = MsFlags::MS_SHARED | MsFlags::MS_REC;
    let none = None::<&str>;
    if mount(none, dir, none, shared, none).is_ok() {
        return Ok(());
    }
    mount(
        Some(dir),
        dir,
        none,
        MsFlags::MS_BIND | MsFlags::MS_REC,
        none,
    )?;
    mount(none, dir, none, shared, none).context("making /run/netns a shared mount")
}

/// The calling thread inside another network namespace until dropped. Not `Send`: setns
/// moves only this thread, so the guard must be dropped on the thread that made it.
pub struct Entered {
    home: File,
    _thread_bound: PhantomData<*const ()>,
}

pub fn enter(ns: &File) -> Result<Entered> {
    let home = current_netns()?;
    setns(ns, CloneFlags::CLONE_NEWNET).context("entering network namespace")?;
    Ok(Entered {
        home,
        _thread_bound: PhantomData,
    })
}

impl Drop for Entered {
    fn drop(&mut self) {
        // Staying in the wrong namespace would make every later step act on the wrong host.
        setns(&self.home, CloneFlags::CLONE_NEWNET)
            .expect("returning to the original network namespace");
    }
}
