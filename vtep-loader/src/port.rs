//! Container ports: `vtep port add|del|show`. A port is a veth pair whose host side carries
//! the TC program (the bridge port of the classic setup) and whose container side has the
//! container's MAC, address and MTU.

use std::{fs, io};

use anyhow::{bail, Result};
use aya::maps::MapError;
use serde::Serialize;
use vtep_common::{
    map_name, FdbEntry, MacVni, Port, VniPorts, IFNAME_MAX, MAX_VNI_PORTS, NETNS_NAME_MAX,
};

use crate::{
    args::{Ipv4Prefix, Mac, Vni},
    datapath, netns,
    output::{self, fixed, text_of},
    pins::Pins,
    topology::{self, Netlink},
};

pub struct PortRequest {
    pub netns: String,
    pub mac: Mac,
    pub addr: Ipv4Prefix,
    pub vni: Vni,
    pub mtu: u32,
    pub ifname: String,
    pub allow_spoofing: bool,
}

/// A port as recorded in the PORTS map.
pub struct PortState {
    /// 0 while the host-side veth does not exist yet (during a `port add` rollback).
    pub host_ifindex: u32,
    pub port: Port,
}

/// Host-side veth name: derived from the namespace name so it is stable and unique per port,
/// and short enough for IFNAMSIZ.
pub fn host_ifname(netns: &str) -> String {
    let hash = netns.bytes().fold(0x811c_9dc5u32, |h, b| {
        (h ^ b as u32).wrapping_mul(0x0100_0193)
    });
    format!("vt{hash:08x}")
}

pub fn list(pins: &Pins) -> Result<Vec<PortState>> {
    let ports = pins.hash::<u32, Port>(map_name::PORTS)?;
    let mut out = Vec::new();
    for entry in ports.iter() {
        let (host_ifindex, port) = entry?;
        out.push(PortState { host_ifindex, port });
    }
    out.sort_by_key(|p| p.netns());
    Ok(out)
}

impl PortState {
    pub fn netns(&self) -> String {
        text_of(&self.port.netns)
    }

    /// Removes whatever exists of this port; also the rollback of a half-done `port add`.
    pub async fn teardown(&self, pins: &Pins, nl: &Netlink) -> Result<()> {
        if self.host_ifindex != 0 {
            vni_ports_remove(pins, self.port.vni, self.host_ifindex)?;
        }
        let key = MacVni::new(self.port.mac, self.port.vni);
        let mut local = pins.hash::<MacVni, u32>(map_name::LOCAL)?;
        if local.get(&key, 0).ok() == Some(self.host_ifindex) {
            ignore_missing(local.remove(&key))?;
        }
        if self.host_ifindex != 0 {
            match fs::remove_file(pins.port_link(self.host_ifindex)) {
                Err(e) if e.kind() != io::ErrorKind::NotFound => return Err(e.into()),
                _ => {}
            }
            ignore_missing(
                pins.hash::<u32, Port>(map_name::PORTS)?
                    .remove(&self.host_ifindex),
            )?;
            if nl.link_name(self.host_ifindex).await?.is_some() {
                nl.del_link(self.host_ifindex).await?;
            }
        }
        let ns = self.netns();
        if self.port.owns_netns != 0 && netns::exists(&ns) {
            netns::delete(&ns)?;
        }
        Ok(())
    }
}

fn ignore_missing(r: Result<(), MapError>) -> Result<()> {
    match r {
        Err(MapError::KeyNotFound) | Err(MapError::ElementNotFound) | Ok(()) => Ok(()),
        Err(e) => Err(e.into()),
    }
}

pub async fn add(pins: &Pins, req: &PortRequest) -> Result<()> {
    pins.require_up()?;
    let existing = list(pins)?;
    if existing.iter().any(|p| p.netns() == req.netns) {
        bail!("a port for namespace \"{}\" already exists", req.netns);
    }
    if let Some(p) = existing
        .iter()
        .find(|p| p.port.mac == req.mac.0 && p.port.vni == req.vni.0)
    {
        bail!(
            "MAC {} is already used in VNI {} by the port of \"{}\"",
            req.mac,
            req.vni.0,
            p.netns()
        );
    }
    // The data path looks up permanent entries before local MACs: keep the two apart.
    if let Ok(entry) = pins
        .hash::<MacVni, FdbEntry>(map_name::FDB)?
        .get(&MacVni::new(req.mac.0, req.vni.0), 0)
    {
        bail!(
            "MAC {} has a permanent FDB entry in VNI {} (dst {}); delete it first",
            req.mac,
            req.vni.0,
            std::net::Ipv4Addr::from(entry.remote_ip)
        );
    }
    let nl = Netlink::connect()?;
    let host_name = host_ifname(&req.netns);
    if nl.ifindex(&host_name).await?.is_some() {
        bail!("interface {host_name} already exists");
    }

    let owns_netns = !netns::exists(&req.netns);
    if owns_netns {
        netns::create(&req.netns)?;
    }
    let mut state = PortState {
        host_ifindex: 0,
        port: Port {
            vni: req.vni.0,
            mac: req.mac.0,
            owns_netns: owns_netns as u8,
            prefix_len: req.addr.len,
            ipv4: req.addr.addr.octets(),
            mtu: req.mtu,
            allow_spoofing: u8::from(req.allow_spoofing),
            _pad: [0; 3],
            netns: fixed::<NETNS_NAME_MAX>(&req.netns),
            ifname: fixed::<IFNAME_MAX>(&req.ifname),
        },
    };
    let result = build(pins, req, &nl, &host_name, &mut state).await;
    if result.is_err() {
        let _ = state.teardown(pins, &nl).await;
    }
    result
}

async fn build(
    pins: &Pins,
    req: &PortRequest,
    nl: &Netlink,
    host_name: &str,
    state: &mut PortState,
) -> Result<()> {
    let ns = netns::open(&req.netns)?;
    state.host_ifindex = nl
        .add_veth(host_name, req.mtu, &req.ifname, &ns, req.mac.0)
        .await?;

    let inside = Netlink::connect_in(&ns)?;
    let Some(index) = inside.ifindex(&req.ifname).await? else {
        bail!(
            "{} did not appear in namespace \"{}\"",
            req.ifname,
            req.netns
        );
    };
    inside.add_address(index, req.addr).await?;
    inside.set_up(index).await?;
    if let Some(lo) = inside.ifindex("lo").await? {
        inside.set_up(lo).await?;
    }
    {
        let _in = netns::enter(&ns)?;
        topology::enable_gro(&req.ifname)?;
    }

    pins.hash::<u32, Port>(map_name::PORTS)?
        .insert(state.host_ifindex, state.port, 0)?;
    vni_ports_add(pins, req.vni.0, state.host_ifindex)?;
    pins.hash::<MacVni, u32>(map_name::LOCAL)?.insert(
        MacVni::new(req.mac.0, req.vni.0),
        state.host_ifindex,
        0,
    )?;
    datapath::attach_port(
        &pins.port_program(),
        host_name,
        &pins.port_link(state.host_ifindex),
    )
}

/// Adds a port to its VNI's flood set.
fn vni_ports_add(pins: &Pins, vni: u32, ifindex: u32) -> Result<()> {
    let mut map = pins.hash::<u32, VniPorts>(map_name::VNI_PORTS)?;
    let mut set = map.get(&vni, 0).unwrap_or_default();
    let n = set.count as usize;
    if n >= MAX_VNI_PORTS {
        bail!("VNI {vni} already has {MAX_VNI_PORTS} ports on this host, the most vtep floods to");
    }
    set.ifindex[n] = ifindex;
    set.count += 1;
    Ok(map.insert(vni, set, 0)?)
}

fn vni_ports_remove(pins: &Pins, vni: u32, ifindex: u32) -> Result<()> {
    let mut map = pins.hash::<u32, VniPorts>(map_name::VNI_PORTS)?;
    let Ok(set) = map.get(&vni, 0) else {
        return Ok(());
    };
    let kept: Vec<u32> = set
        .ifindex
        .iter()
        .take(set.count as usize)
        .copied()
        .filter(|i| *i != ifindex)
        .collect();
    if kept.is_empty() {
        return ignore_missing(map.remove(&vni));
    }
    let mut next = VniPorts::default();
    next.ifindex[..kept.len()].copy_from_slice(&kept);
    next.count = kept.len() as u32;
    Ok(map.insert(vni, next, 0)?)
}

pub async fn del(pins: &Pins, netns_name: &str) -> Result<()> {
    pins.require_up()?;
    let Some(state) = list(pins)?.into_iter().find(|p| p.netns() == netns_name) else {
        bail!("no port for namespace \"{netns_name}\"");
    };
    state.teardown(pins, &Netlink::connect()?).await
}

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
}

pub async fn show(pins: &Pins, json: bool) -> Result<()> {
    pins.require_up()?;
    let nl = Netlink::connect()?;
    let mut rows = Vec::new();
    for p in list(pins)? {
        let addr = Ipv4Prefix {
            addr: p.port.ipv4.into(),
            len: p.port.prefix_len,
        };
        rows.push(PortRow {
            netns: p.netns(),
            ifname: text_of(&p.port.ifname),
            mac: Mac(p.port.mac).to_string(),
            addr: addr.to_string(),
            vni: p.port.vni,
            mtu: p.port.mtu,
            host_ifname: nl.link_name(p.host_ifindex).await?.unwrap_or_default(),
            host_ifindex: p.host_ifindex,
        });
    }
    output::rows(json, &rows, |r| {
        format!(
            "{} {} lladdr {} addr {} vni {} mtu {} host {}",
            r.netns, r.ifname, r.mac, r.addr, r.vni, r.mtu, r.host_ifname
        )
    })
}
