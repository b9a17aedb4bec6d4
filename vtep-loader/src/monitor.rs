//! `vtep monitor`: FDB and neighbour misses as they happen, read from the data path's ring
//! buffer (the kernel vxlan device reports the same as l2miss/l3miss netlink events).

use std::{collections::HashMap, io::Write, net::Ipv4Addr};

use anyhow::{Context, Result};
use serde_json::json;
use tokio::io::unix::AsyncFd;
use vtep_common::{Miss, MISS_FDB};

use crate::{
    args::Mac,
    state::{State, Tables},
};

pub async fn run(st: &mut State, json: bool) -> Result<()> {
    st.tables()?;
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
    loop {
        tokio::select! {
            _ = tokio::signal::ctrl_c() => return Ok(()),
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
        (true, false) => json!({"miss": "neigh", "dst": Ipv4Addr::from(miss.ip), "vni": miss.vni, "port": port}).to_string(),
        (false, true) => format!("miss lladdr {} vni {} port {port}", Mac(miss.mac), miss.vni),
        (false, false) => format!("miss {} vni {} port {port}", Ipv4Addr::from(miss.ip), miss.vni),
    }
}
