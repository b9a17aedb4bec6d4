//! `vtep monitor`: FDB and neighbour misses as they happen, read from the data path's ring
//! buffer (the kernel vxlan device reports the same as l2miss/l3miss netlink events).

use std::{collections::HashMap, fs::File, io::Write, net::IpAddr};

use anyhow::{anyhow, Context, Result};
use nix::fcntl::{Flock, FlockArg};
use serde_json::json;
use tokio::io::unix::AsyncFd;
use vtep_common::{Miss, MISS_FDB};

use crate::{
    args::Mac,
    lock::HostLock,
    state::{State, Tables},
};

/// The one reader of a host's misses: a ring buffer hands each event to one reader, so a
/// second would silently take half of them. Held by a flock, which dies with the process;
/// the data path's flag does not, so `vtep up` clears a flag nobody holds any more.
struct Reader {
    _held: Flock<File>,
}

impl Reader {
    fn claim(st: &mut State) -> Result<Self> {
        let path = Self::path(st.cookie)?;
        let file = File::create(&path).with_context(|| format!("creating {}", path.display()))?;
        let held = Flock::lock(file, FlockArg::LockExclusiveNonblock).map_err(|_| {
            anyhow!("another `vtep monitor` is reading this host's misses (only one can)")
        })?;
        st.tables()?.set_miss_reader(true)?;
        Ok(Self { _held: held })
    }

    fn path(cookie: u64) -> Result<std::path::PathBuf> {
        let dir = HostLock::dir_of(cookie);
        std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
        Ok(dir.join("monitor"))
    }

    fn release(self, st: &mut State) -> Result<()> {
        st.tables()?.set_miss_reader(false)
    }
}

/// Turns the data path's miss events off when the monitor that turned them on was killed.
pub fn clear_stale_reader(st: &mut State) -> Result<()> {
    let file = File::create(Reader::path(st.cookie)?)?;
    if Flock::lock(file, FlockArg::LockExclusiveNonblock).is_ok() {
        st.tables()?.set_miss_reader(false)?;
    }
    Ok(())
}

pub async fn run(st: &mut State, json: bool) -> Result<()> {
    st.tables()?;
    let reader = Reader::claim(st)?;
    let result = stream(st, json).await;
    reader.release(st)?;
    result
}

async fn stream(st: &mut State, json: bool) -> Result<()> {
    let mut ring = Tables::misses(&st.pins)?;
    // Like `ip monitor`, report only what happens from now on.
    while ring.next().is_some() {}
    let mut ports = port_names(st)?;
    // SAFETY: the ring buffer owns its fd and keeps it open for as long as AsyncFd holds it.
    let mut ring = unsafe { AsyncFd::register(ring) }
        .map_err(|e| e.into_parts().1)
        .context("watching the miss ring")?;
    eprintln!("vtep: monitoring FDB and neighbour misses (Ctrl-C to stop)");
    let mut out = std::io::stdout();
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    loop {
        tokio::select! {
            _ = tokio::signal::ctrl_c() => return Ok(()),
            _ = term.recv() => return Ok(()),
            guard = ring.readable_mut() => {
                let mut guard = guard?;
                while let Some(item) = guard.get_inner_mut().next() {
                    if item.len() < size_of::<Miss>() {
                        continue;
                    }
                    // SAFETY: the item holds at least size_of::<Miss>() bytes (checked
                    // above), and Miss is plain old data: every bit pattern is a value.
                    let miss: Miss = unsafe { std::ptr::read_unaligned(item.as_ptr().cast()) };
                    if !ports.contains_key(&miss.ifindex) {
                        ports = port_names(st)?;
                    }
                    let port = ports.get(&miss.ifindex).cloned().unwrap_or_default();
                    let line = render(&miss, &port, json);
                    if writeln!(out, "{line}").is_err() {
                        // The reader went away (`vtep monitor | head`): nothing left to do.
                        return Ok(());
                    }
                }
                guard.clear_ready();
            }
        }
    }
}

fn port_names(st: &mut State) -> Result<HashMap<u32, String>> {
    Ok(st
        .ports()?
        .into_iter()
        .map(|p| (p.host_ifindex, p.netns()))
        .collect())
}

fn render(miss: &Miss, port: &str, json: bool) -> String {
    let fdb = miss.kind == MISS_FDB;
    match (json, fdb) {
        (true, true) => json!({"miss": "fdb", "lladdr": Mac(miss.mac).to_string(), "vni": miss.vni, "port": port}).to_string(),
        (true, false) => json!({"miss": "neigh", "dst": IpAddr::from(miss.ip), "vni": miss.vni, "port": port}).to_string(),
        (false, true) => format!("miss lladdr {} vni {} port {port}", Mac(miss.mac), miss.vni),
        (false, false) => format!("miss {} vni {} port {port}", IpAddr::from(miss.ip), miss.vni),
    }
}
