//! `vtep port add|del|show`. A port is a veth pair whose host side carries the TC program
//! (the bridge port of the classic setup) and whose container side has the container's MAC,
//! address and MTU; the state layer makes and records it.

use anyhow::Result;
use serde::Serialize;

use crate::{
    args::Mac,
    output::{self, text_of},
    state::{PortHealth, State},
    topology::Netlink,
    tunnel,
};

pub use crate::state::PortRequest;

/// One address, with `ip -j addr show`'s keys.
#[derive(Serialize)]
struct AddrInfo {
    family: &'static str,
    local: String,
    prefixlen: u8,
}

#[derive(Serialize)]
struct PortRow {
    netns: String,
    ifname: String,
    mac: String,
    /// The first address, as before ports had several.
    addr: String,
    addr_info: Vec<AddrInfo>,
    vni: u32,
    mtu: u32,
    host_ifname: String,
    host_ifindex: u32,
    health: PortHealth,
}

pub async fn show(st: &mut State, json: bool) -> Result<()> {
    st.tables()?;
    tunnel::warn_stale()?;
    let nl = Netlink::connect()?;
    let rows: Vec<PortRow> = st
        .ports_checked(&nl)
        .await?
        .into_iter()
        .map(|p| PortRow {
            netns: p.netns(),
            ifname: text_of(&p.port.ifname),
            mac: Mac(p.port.mac).to_string(),
            addr: p
                .port
                .addresses()
                .next()
                .map(|(a, len)| format!("{a}/{len}"))
                .unwrap_or_default(),
            addr_info: p
                .port
                .addresses()
                .map(|(a, len)| AddrInfo {
                    family: if a.is_v4() { "inet" } else { "inet6" },
                    local: a.to_string(),
                    prefixlen: len,
                })
                .collect(),
            vni: p.port.vni,
            mtu: p.port.mtu,
            host_ifname: p.host_ifname(),
            host_ifindex: p.host_ifindex,
            health: p.health,
        })
        .collect();
    output::rows(json, &rows, |r| {
        let flag = match r.health {
            PortHealth::Ok => "",
            PortHealth::NetnsGone => " NAMESPACE-GONE (remove with `vtep port del`)",
            PortHealth::VethGone => " VETH-GONE (remove with `vtep port del`)",
        };
        let addrs: String = r
            .addr_info
            .iter()
            .map(|a| format!(" {} {}/{}", a.family, a.local, a.prefixlen))
            .collect();
        format!(
            "{} {} lladdr {}{addrs} vni {} mtu {} host {}{flag}",
            r.netns, r.ifname, r.mac, r.vni, r.mtu, r.host_ifname
        )
    })
}
