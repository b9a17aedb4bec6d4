//! `vtep fdb`: the forwarding database, like `bridge fdb ... dev vxlan1 self`.

use std::net::Ipv4Addr;

use anyhow::{bail, Result};
use aya::maps::MapError;
use serde::Serialize;
use vtep_common::{map_name, wire::VXLAN_PORT, FdbEntry, MacVni, FDB_PERMANENT};

use crate::{
    args::{parse_ipv4, Keywords, Mac, UdpPort, Vni},
    cli::{FdbEntryArgs, FdbKeyArgs},
    output,
    pins::Pins,
    port,
    topology::Netlink,
};

const BPF_NOEXIST: u64 = 1;

struct Entry {
    key: MacVni,
    value: FdbEntry,
}

fn parse_entry(args: &FdbEntryArgs) -> Result<Entry> {
    let kw = Keywords::parse(&args.rest, &["dst", "vni", "port"])?;
    let dst = kw.required("dst", parse_ipv4)?;
    let vni = kw.required("vni", |s| s.parse::<Vni>())?;
    let port = kw.optional("port", |s| s.parse::<UdpPort>())?.map_or(VXLAN_PORT, |p| p.0);
    if args.mac.0[0] & 1 == 1 || args.mac.0 == [0; 6] {
        bail!("MAC address {} is not a unicast address", args.mac);
    }
    Ok(Entry {
        key: MacVni::new(args.mac.0, vni.0),
        value: FdbEntry { remote_ip: dst.octets(), port, flags: FDB_PERMANENT, seen_ns: 0 },
    })
}

fn parse_key(args: &FdbKeyArgs) -> Result<MacVni> {
    let kw = Keywords::parse(&args.rest, &["vni"])?;
    Ok(MacVni::new(args.mac.0, kw.required("vni", |s| s.parse::<Vni>())?.0))
}

/// `fdb add` refuses to overwrite (as `bridge fdb add` does); `fdb replace` overwrites.
pub fn add(pins: &Pins, args: &FdbEntryArgs, replace: bool) -> Result<()> {
    let entry = parse_entry(args)?;
    pins.require_up()?;
    let local = pins.hash::<MacVni, u32>(map_name::LOCAL)?;
    if local.get(&entry.key, 0).is_ok() {
        bail!("{} is a local port in VNI {}", args.mac, entry.key.vni);
    }
    let mut fdb = pins.hash::<MacVni, FdbEntry>(map_name::FDB)?;
    match fdb.insert(entry.key, entry.value, if replace { 0 } else { BPF_NOEXIST }) {
        Err(MapError::SyscallError(e)) if e.io_error.raw_os_error() == Some(libc::EEXIST) => {
            bail!("FDB entry for {} in VNI {} already exists (use `vtep fdb replace`)", args.mac, entry.key.vni)
        }
        r => Ok(r?),
    }
}

pub fn del(pins: &Pins, args: &FdbKeyArgs) -> Result<()> {
    let key = parse_key(args)?;
    pins.require_up()?;
    let mut fdb = pins.hash::<MacVni, FdbEntry>(map_name::FDB)?;
    match fdb.remove(&key) {
        Err(MapError::KeyNotFound) | Err(MapError::ElementNotFound) => {
            bail!("no FDB entry for {} in VNI {}", args.mac, key.vni)
        }
        Err(MapError::SyscallError(e)) if e.io_error.raw_os_error() == Some(libc::ENOENT) => {
            bail!("no FDB entry for {} in VNI {}", args.mac, key.vni)
        }
        r => Ok(r?),
    }
}

#[derive(Serialize)]
struct FdbRow {
    mac: String,
    vni: u32,
    #[serde(skip_serializing_if = "Option::is_none")]
    dst: Option<Ipv4Addr>,
    #[serde(skip_serializing_if = "Option::is_none")]
    port: Option<u16>,
    #[serde(skip_serializing_if = "Option::is_none")]
    dev: Option<String>,
    state: &'static str,
}

pub async fn show(pins: &Pins, json: bool) -> Result<()> {
    pins.require_up()?;
    let mut rows = Vec::new();
    // Local ports first, as `bridge fdb show` lists the bridge's own ports.
    let nl = Netlink::connect()?;
    for p in port::list(pins)? {
        rows.push(FdbRow {
            mac: Mac(p.port.mac).to_string(),
            vni: p.port.vni,
            dst: None,
            port: None,
            dev: Some(nl.link_name(p.host_ifindex).await?.unwrap_or_default()),
            state: "permanent",
        });
    }
    let fdb = pins.hash::<MacVni, FdbEntry>(map_name::FDB)?;
    let mut remote = Vec::new();
    for entry in fdb.iter() {
        let (k, v) = entry?;
        remote.push((k, v));
    }
    remote.sort_by_key(|(k, _)| (k.vni, k.mac));
    for (k, v) in remote {
        rows.push(FdbRow {
            mac: Mac(k.mac).to_string(),
            vni: k.vni,
            dst: Some(Ipv4Addr::from(v.remote_ip)),
            port: Some(v.port),
            dev: None,
            state: if v.flags & FDB_PERMANENT != 0 { "permanent" } else { "learned" },
        });
    }
    output::rows(json, &rows, |r| match (&r.dev, r.dst, r.port) {
        (Some(dev), _, _) => format!("{} dev {} vni {} {}", r.mac, dev, r.vni, r.state),
        (None, Some(dst), Some(port)) => format!("{} dst {} vni {} port {} {}", r.mac, dst, r.vni, port, r.state),
        _ => format!("{} vni {} {}", r.mac, r.vni, r.state),
    })
}
