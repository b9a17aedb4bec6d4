//! `vtep neigh`: the neighbour table the data path answers ARP from (the vxlan `proxy`
//! behaviour, filled like `ip neigh add IP lladdr MAC dev vxlan1`).

use std::net::IpAddr;

use anyhow::{bail, Result};
use serde::Serialize;

use crate::{
    args::{parse_ip, BadInput, Keywords, Mac, Vni},
    cli::{FilterArgs, NeighArgs},
    output,
    state::{NeighRow, Origin, State},
};

pub fn add(st: &mut State, args: &NeighArgs, replace: bool) -> Result<()> {
    let kw = Keywords::parse(&args.rest, &["lladdr", "vni"], &["extern_learn"])?;
    let mac = kw.required("lladdr", |s| s.parse::<Mac>().and_then(Mac::check_unicast))?;
    let vni = kw.required("vni", |s| s.parse::<Vni>())?.0;
    let origin = if kw.flag("extern_learn") {
        Origin::ExternLearn
    } else {
        Origin::Permanent
    };
    Ok(st.neigh_set(args.ip, vni, mac, origin, replace)?)
}

pub fn del(st: &mut State, args: &NeighArgs) -> Result<()> {
    let kw = Keywords::parse(&args.rest, &["vni"], &[])?;
    let vni = kw.required("vni", |s| s.parse::<Vni>())?.0;
    Ok(st.neigh_del(args.ip, vni)?)
}

/// `[IP] [vni N] [permanent | extern_learn]`, as `ip neigh show|flush` take them.
fn selected(st: &mut State, args: &FilterArgs) -> Result<Vec<NeighRow>> {
    let (ip, rest) = match args.rest.first().map(|w| parse_ip(w)) {
        Some(Ok(ip)) => (Some(ip), &args.rest[1..]),
        _ => (None, &args.rest[..]),
    };
    let kw = Keywords::parse(rest, &["vni"], &["permanent", "extern_learn"])?;
    let vni = kw.optional("vni", |s| s.parse::<Vni>())?.map(|v| v.0);
    let origin = match (kw.flag("permanent"), kw.flag("extern_learn")) {
        (true, true) => bail!(BadInput(
            "give at most one of permanent, extern_learn".into()
        )),
        (true, false) => Some(Origin::Permanent),
        (false, true) => Some(Origin::ExternLearn),
        (false, false) => None,
    };
    Ok(st
        .neigh_rows()?
        .into_iter()
        .filter(|r| ip.is_none_or(|ip| ip == r.dst))
        .filter(|r| vni.is_none_or(|v| v == r.vni))
        .filter(|r| origin.is_none_or(|o| o == r.origin))
        .collect())
}

pub fn flush(st: &mut State, args: &FilterArgs) -> Result<()> {
    for r in selected(st, args)? {
        st.neigh_del(r.dst, r.vni)?;
    }
    Ok(())
}

/// A row of `neigh show`, with `ip -j neigh show`'s keys where the concept is the same.
#[derive(Serialize)]
struct NeighJson {
    dst: IpAddr,
    lladdr: String,
    state: [&'static str; 1],
    vni: u32,
    origin: Origin,
}

pub fn show(st: &mut State, args: &FilterArgs, json: bool) -> Result<()> {
    let rows: Vec<NeighJson> = selected(st, args)?
        .into_iter()
        .map(|r| NeighJson {
            dst: r.dst,
            lladdr: r.lladdr.to_string(),
            state: ["PERMANENT"],
            vni: r.vni,
            origin: r.origin,
        })
        .collect();
    output::rows(json, &rows, |r| {
        let ext = if r.origin == Origin::ExternLearn {
            " extern_learn"
        } else {
            ""
        };
        format!("{} lladdr {} vni {}{ext} PERMANENT", r.dst, r.lladdr, r.vni)
    })
}
