//! `vtep fdb`: the forwarding database, like `bridge fdb ... dev vxlan1 self`. The all-zeros
//! MAC names a VNI's flood list, as it does for the kernel's vxlan device.

use std::net::IpAddr;

use anyhow::{bail, Result};
use serde::Serialize;
use vtep_common::Remote;

use crate::{
    args::{parse_ip, Keywords, Mac, UdpPort, Vni},
    cli::{FdbEntryArgs, FdbKeyArgs, FilterArgs},
    output,
    state::{FdbFilter, FdbOp, FdbRowKind, Origin, State},
    topology::Netlink,
};

const ZERO_MAC: [u8; 6] = [0; 6];

pub async fn add(st: &mut State, args: &FdbEntryArgs, op: FdbOp) -> Result<()> {
    let kw = Keywords::parse(&args.rest, &["dst", "vni", "port"], &["extern_learn"])?;
    let dst = kw.required("dst", parse_ip)?;
    let vni = kw.required("vni", |s| s.parse::<Vni>())?.0;
    let port = kw.optional("port", |s| s.parse::<UdpPort>())?;
    if args.mac.0[0] & 1 == 1 {
        bail!("MAC address {} is not a unicast address", args.mac);
    }
    let origin = if kw.flag("extern_learn") {
        Origin::ExternLearn
    } else {
        Origin::Permanent
    };
    // Like the kernel's `dstport`: the tunnel's port unless the entry names another.
    let port = match port {
        Some(p) => p.0,
        None => st.config()?.udp_port,
    };
    let remote = Remote {
        ip: dst.into(),
        port,
        flags: 0,
    };
    if args.mac.0 == ZERO_MAC {
        return Ok(st.flood_set(vni, remote, origin, op).await?);
    }
    if op == FdbOp::Append {
        bail!("`fdb append` takes 00:00:00:00:00:00 (a flood-list VTEP); use `fdb add` or `fdb replace` for {}", args.mac);
    }
    Ok(st.fdb_set(args.mac, vni, remote, origin, op).await?)
}

pub async fn del(st: &mut State, args: &FdbKeyArgs) -> Result<()> {
    let kw = Keywords::parse(&args.rest, &["vni", "dst"], &[])?;
    let vni = kw.required("vni", |s| s.parse::<Vni>())?.0;
    let dst = kw.optional("dst", parse_ip)?;
    st.tables()?;
    if args.mac.0 == ZERO_MAC {
        return Ok(st.flood_del(vni, dst).await?);
    }
    Ok(st.fdb_del(args.mac, vni, dst).await?)
}

/// `[vni N] [dst IP] [permanent | dynamic | extern_learn]`, as `bridge fdb flush` takes them.
fn filter(args: &FilterArgs) -> Result<FdbFilter> {
    let words = ["permanent", "dynamic", "extern_learn"];
    let kw = Keywords::parse(&args.rest, &["vni", "dst"], &words)?;
    let origins: Vec<Origin> = [Origin::Permanent, Origin::Learned, Origin::ExternLearn]
        .into_iter()
        .zip(words)
        .filter(|(_, w)| kw.flag(w))
        .map(|(o, _)| o)
        .collect();
    if origins.len() > 1 {
        bail!("give at most one of permanent, dynamic, extern_learn");
    }
    Ok(FdbFilter {
        vni: kw.optional("vni", |s| s.parse::<Vni>())?.map(|v| v.0),
        dst: kw.optional("dst", parse_ip)?,
        origin: origins.first().copied(),
    })
}

pub async fn flush(st: &mut State, args: &FilterArgs) -> Result<()> {
    let filter = filter(args)?;
    st.fdb_flush(filter).await?;
    Ok(())
}

/// A row of `fdb show`, with `bridge -j fdb show`'s keys where the concept is the same.
#[derive(Serialize)]
struct FdbJson {
    mac: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    ifname: Option<String>,
    flags: Vec<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    dst: Option<IpAddr>,
    vni: u32,
    #[serde(skip_serializing_if = "Option::is_none")]
    port: Option<u16>,
    /// "permanent", or "" for a learned entry, as `bridge` says.
    state: &'static str,
    origin: Origin,
    /// Seconds since a learned entry was last seen.
    #[serde(skip_serializing_if = "Option::is_none")]
    age: Option<u64>,
}

pub async fn show(st: &mut State, args: &FilterArgs, json: bool) -> Result<()> {
    let filter = filter(args)?;
    let nl = Netlink::connect()?;
    let mut rows = Vec::new();
    // Local ports first, as `bridge fdb show` lists the bridge's own ports.
    if filter.dst.is_none() && filter.origin.is_none_or(|o| o == Origin::Permanent) {
        for p in st.ports()? {
            if filter.vni.is_some_and(|v| v != p.port.vni) {
                continue;
            }
            rows.push(FdbJson {
                mac: Mac(p.port.mac).to_string(),
                ifname: Some(nl.link_name(p.host_ifindex).await?.unwrap_or_default()),
                flags: vec!["master"],
                dst: None,
                vni: p.port.vni,
                port: None,
                state: "permanent",
                origin: Origin::Permanent,
                age: None,
            });
        }
    }
    for r in st.fdb_rows()?.into_iter().filter(|r| filter.matches(r)) {
        let age = match r.kind {
            FdbRowKind::Remote { age } => age,
            FdbRowKind::Flood => None,
        };
        rows.push(FdbJson {
            mac: r.mac.to_string(),
            ifname: None,
            flags: match r.origin {
                Origin::ExternLearn => vec!["self", "extern_learn"],
                _ => vec!["self"],
            },
            dst: Some(r.dst),
            vni: r.vni,
            port: Some(r.port),
            state: match r.origin {
                Origin::Learned => "",
                _ => "permanent",
            },
            origin: r.origin,
            age,
        });
    }
    output::rows(json, &rows, |r| match (&r.ifname, r.dst, r.port) {
        (Some(dev), ..) => format!("{} dev {} vni {} {}", r.mac, dev, r.vni, r.state),
        (None, Some(dst), Some(port)) => {
            let tail = match (r.origin, r.age) {
                (Origin::Learned, Some(age)) => format!("learned age {age}s"),
                (Origin::ExternLearn, _) => "extern_learn permanent".to_string(),
                _ => "permanent".to_string(),
            };
            format!("{} dst {} vni {} port {} {tail}", r.mac, dst, r.vni, port)
        }
        _ => format!("{} vni {} {}", r.mac, r.vni, r.state),
    })
}
