//! `vtep neigh`: the neighbour table the data path answers ARP from (the vxlan `proxy`
//! behaviour, filled like `ip neigh add IP lladdr MAC dev vxlan1`).

use std::net::Ipv4Addr;

use anyhow::{bail, Result};
use aya::maps::MapError;
use serde::Serialize;
use vtep_common::{map_name, IpVni, NeighEntry};

use crate::{
    args::{Keywords, Mac, Vni},
    cli::NeighArgs,
    output,
    pins::Pins,
};

pub fn add(pins: &Pins, args: &NeighArgs) -> Result<()> {
    let kw = Keywords::parse(&args.rest, &["lladdr", "vni"])?;
    let mac = kw.required("lladdr", |s| s.parse::<Mac>().and_then(Mac::check_unicast))?;
    let vni = kw.required("vni", |s| s.parse::<Vni>())?;
    pins.require_up()?;
    let mut neigh = pins.hash::<IpVni, NeighEntry>(map_name::NEIGH)?;
    let key = IpVni {
        ip: args.ip.octets(),
        vni: vni.0,
    };
    Ok(neigh.insert(
        key,
        NeighEntry {
            mac: mac.0,
            _pad: [0; 2],
        },
        0,
    )?)
}

pub fn del(pins: &Pins, args: &NeighArgs) -> Result<()> {
    let kw = Keywords::parse(&args.rest, &["vni"])?;
    let vni = kw.required("vni", |s| s.parse::<Vni>())?;
    pins.require_up()?;
    let mut neigh = pins.hash::<IpVni, NeighEntry>(map_name::NEIGH)?;
    match neigh.remove(&IpVni {
        ip: args.ip.octets(),
        vni: vni.0,
    }) {
        Err(MapError::KeyNotFound) | Err(MapError::ElementNotFound) => {
            bail!("no neighbour {} in VNI {}", args.ip, vni.0)
        }
        Err(MapError::SyscallError(e)) if e.io_error.raw_os_error() == Some(libc::ENOENT) => {
            bail!("no neighbour {} in VNI {}", args.ip, vni.0)
        }
        r => Ok(r?),
    }
}

#[derive(Serialize)]
struct NeighRow {
    dst: Ipv4Addr,
    lladdr: String,
    vni: u32,
}

pub fn show(pins: &Pins, json: bool) -> Result<()> {
    pins.require_up()?;
    let neigh = pins.hash::<IpVni, NeighEntry>(map_name::NEIGH)?;
    let mut rows = Vec::new();
    for entry in neigh.iter() {
        let (k, v) = entry?;
        rows.push(NeighRow {
            dst: Ipv4Addr::from(k.ip),
            lladdr: Mac(v.mac).to_string(),
            vni: k.vni,
        });
    }
    rows.sort_by_key(|r| (r.vni, r.dst));
    output::rows(json, &rows, |r| {
        format!("{} lladdr {} vni {} PERMANENT", r.dst, r.lladdr, r.vni)
    })
}
