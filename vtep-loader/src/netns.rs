//! Named network namespaces kept the way `ip netns` keeps them (a bind mount of the namespace
//! under /run/netns/NAME), so `ip netns exec` and vtep see the same ones.

use std::{
    ffi::CString,
    fs::{self, File},
    io,
    os::{fd::AsRawFd, unix::ffi::OsStrExt, unix::fs::MetadataExt},
    path::{Path, PathBuf},
};

use anyhow::{anyhow, bail, Context, Result};

pub const RUN_DIR: &str = "/run/netns";
const NSFS_MAGIC: i64 = 0x6e73_6673;

pub fn path(name: &str) -> PathBuf {
    Path::new(RUN_DIR).join(name)
}

pub fn exists(name: &str) -> bool {
    open(name).is_ok()
}

pub fn open(name: &str) -> Result<File> {
    let path = path(name);
    let file =
        File::open(&path).map_err(|_| anyhow!("network namespace \"{name}\" does not exist"))?;
    let mut st: libc::statfs = unsafe { std::mem::zeroed() };
    // An empty placeholder file is not a namespace (a half-finished `ip netns add`).
    if unsafe { libc::fstatfs(file.as_raw_fd(), &mut st) } != 0 || st.f_type as i64 != NSFS_MAGIC {
        bail!("network namespace \"{name}\" does not exist");
    }
    Ok(file)
}

/// The identity of the calling thread's network namespace (its nsfs inode).
pub fn current_id() -> Result<u64> {
    Ok(fs::metadata("/proc/thread-self/ns/net")
        .context("reading the network namespace")?
        .ino())
}

pub fn create(name: &str) -> Result<()> {
    make_run_dir_shared()?;
    let target = path(name);
    fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(&target)
        .with_context(|| format!("creating {}", target.display()))?;
    // unshare() moves only the calling thread, so a short-lived thread owns the new
    // namespace; the bind mount keeps it alive after the thread ends.
    let bind_target = target.clone();
    let result = std::thread::spawn(move || -> io::Result<()> {
        if unsafe { libc::unshare(libc::CLONE_NEWNET) } != 0 {
            return Err(io::Error::last_os_error());
        }
        mount(
            Some(Path::new("/proc/thread-self/ns/net")),
            &bind_target,
            None,
            libc::MS_BIND,
        )
    })
    .join()
    .map_err(|_| anyhow!("namespace creation thread panicked"))?;
    if let Err(e) = result {
        let _ = fs::remove_file(&target);
        return Err(e).with_context(|| format!("creating network namespace \"{name}\""));
    }
    Ok(())
}

pub fn delete(name: &str) -> Result<()> {
    let target = path(name);
    let c = CString::new(target.as_os_str().as_bytes())?;
    unsafe { libc::umount2(c.as_ptr(), libc::MNT_DETACH) };
    fs::remove_file(&target).with_context(|| format!("deleting network namespace \"{name}\""))
}

/// As `ip netns add` does: mounts made under /run/netns must propagate to every mount
/// namespace, or `ip netns exec` elsewhere would see an empty file.
fn make_run_dir_shared() -> Result<()> {
    let dir = Path::new(RUN_DIR);
    fs::create_dir_all(dir)?;
    let shared = libc::MS_SHARED | libc::MS_REC;
    if mount(None, dir, None, shared).is_ok() {
        return Ok(());
    }
    mount(Some(dir), dir, None, libc::MS_BIND | libc::MS_REC)?;
    mount(None, dir, None, shared).context("making /run/netns a shared mount")
}

fn mount(
    src: Option<&Path>,
    target: &Path,
    fstype: Option<&str>,
    flags: libc::c_ulong,
) -> io::Result<()> {
    let cstr = |p: &Path| CString::new(p.as_os_str().as_bytes()).expect("path without NUL");
    let src = src.map(cstr);
    let target = cstr(target);
    let fstype = fstype.map(|t| CString::new(t).expect("fstype without NUL"));
    let none = CString::new("none").expect("literal");
    let rc = unsafe {
        libc::mount(
            src.as_ref().unwrap_or(&none).as_ptr(),
            target.as_ptr(),
            fstype.as_ref().unwrap_or(&none).as_ptr(),
            flags,
            std::ptr::null(),
        )
    };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Mounts a bpf filesystem at `target`.
pub fn mount_bpffs(target: &Path) -> io::Result<()> {
    mount(Some(Path::new("bpf")), target, Some("bpf"), 0)
}

/// The calling thread inside another network namespace until dropped.
pub struct Entered {
    home: File,
}

pub fn enter(ns: &File) -> Result<Entered> {
    let home = File::open("/proc/thread-self/ns/net").context("opening the current namespace")?;
    setns(ns)?;
    Ok(Entered { home })
}

fn setns(ns: &File) -> Result<()> {
    if unsafe { libc::setns(ns.as_raw_fd(), libc::CLONE_NEWNET) } != 0 {
        bail!("entering network namespace: {}", io::Error::last_os_error());
    }
    Ok(())
}

impl Drop for Entered {
    fn drop(&mut self) {
        // Staying in the wrong namespace would make every later step act on the wrong host.
        setns(&self.home).expect("returning to the original network namespace");
    }
}
