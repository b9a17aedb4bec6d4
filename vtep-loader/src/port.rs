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

#[derive(Serialize)]
struct PortRow {
    netns: String,
    ifname: String,
    mac: String,
    addr: String,
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
                .map(|(a, len)| format!("{a}/{len}"))
                .collect::<Vec<_>>()
                .join(","),
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
        format!(
            "{} {} lladdr {} addr {} vni {} mtu {} host {}{flag}",
            r.netns, r.ifname, r.mac, r.addr, r.vni, r.mtu, r.host_ifname
        )
    })
}
