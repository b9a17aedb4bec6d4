//! `vtep fdb`: the forwarding database, like `bridge fdb ... dev vxlan1 self`. The all-zeros
//! MAC names a VNI's flood list, as it does for the kernel's vxlan device.

use std::net::Ipv4Addr;

use anyhow::{bail, Result};
use aya::maps::{HashMap, MapData, MapError};
use serde::Serialize;
use vtep_common::{
    map_name, wire::VXLAN_PORT, FdbEntry, FloodList, IpVni, MacVni, Remote, FDB_PERMANENT,
    MAX_FLOOD,
};

use crate::{
    args::{parse_ipv4, Keywords, Mac, UdpPort, Vni},
    cli::{FdbEntryArgs, FdbKeyArgs},
    output,
    pins::Pins,
    port,
    topology::Netlink,
};

const BPF_NOEXIST: u64 = 1;
const ZERO_MAC: [u8; 6] = [0; 6];

#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Op {
    Add,
    Replace,
    Append,
}

struct Entry {
    mac: Mac,
    vni: u32,
    remote: Remote,
}

fn parse_entry(args: &FdbEntryArgs) -> Result<Entry> {
    let kw = Keywords::parse(&args.rest, &["dst", "vni", "port"])?;
    let dst = kw.required("dst", parse_ipv4)?;
    let vni = kw.required("vni", |s| s.parse::<Vni>())?;
    let port = kw
        .optional("port", |s| s.parse::<UdpPort>())?
        .map_or(VXLAN_PORT, |p| p.0);
    if args.mac.0[0] & 1 == 1 {
        bail!("MAC address {} is not a unicast address", args.mac);
    }
    Ok(Entry {
        mac: args.mac,
        vni: vni.0,
        remote: Remote {
            ip: dst.octets(),
            port,
            _pad: 0,
        },
    })
}

pub fn add(pins: &Pins, args: &FdbEntryArgs, op: Op) -> Result<()> {
    let e = parse_entry(args)?;
    pins.require_up()?;
    if e.mac.0 == ZERO_MAC {
        return flood_add(pins, &e, op);
    }
    if op == Op::Append {
        bail!("`fdb append` takes 00:00:00:00:00:00 (a flood-list VTEP); use `fdb add` or `fdb replace` for {}", e.mac);
    }
    let key = MacVni::new(e.mac.0, e.vni);
    if pins
        .hash::<MacVni, u32>(map_name::LOCAL)?
        .get(&key, 0)
        .is_ok()
    {
        bail!("{} is a local port in VNI {}", e.mac, e.vni);
    }
    let (mut fdb, mut learned) = (table(pins, map_name::FDB)?, table(pins, map_name::LEARNED)?);
    let old = fdb.get(&key, 0).ok();
    // As with the kernel, an entry already learned makes `fdb add` fail.
    if op == Op::Add && (old.is_some() || learned.get(&key, 0).is_ok()) {
        bail!(
            "FDB entry for {} in VNI {} already exists (use `vtep fdb replace`)",
            e.mac,
            e.vni
        );
    }
    let value = FdbEntry {
        remote_ip: e.remote.ip,
        port: e.remote.port,
        flags: FDB_PERMANENT,
        seen_ns: 0,
    };
    fdb.insert(key, value, if op == Op::Replace { 0 } else { BPF_NOEXIST })?;
    if let Err(err) = learned.remove(&key) {
        if !is_missing(&err) {
            return Err(err.into());
        }
    }
    peer_ref(pins, e.vni, e.remote.ip, 1)?;
    match old {
        Some(old) => peer_ref(pins, e.vni, old.remote_ip, -1),
        None => Ok(()),
    }
}

/// Counts how many FDB entries and flood-list slots name a VTEP: the set of peers
/// `--strict-peers` accepts follows the tables without the data path searching them.
fn peer_ref(pins: &Pins, vni: u32, ip: [u8; 4], delta: i32) -> Result<()> {
    let mut peers = pins.hash::<IpVni, u32>(map_name::PEERS)?;
    let key = IpVni { ip, vni };
    let refs = peers.get(&key, 0).unwrap_or(0).saturating_add_signed(delta);
    if refs == 0 {
        return match peers.remove(&key) {
            Err(e) if !is_missing(&e) => Err(e.into()),
            _ => Ok(()),
        };
    }
    Ok(peers.insert(key, refs, 0)?)
}

/// The all-zeros entries: `add` and `append` put a VTEP on the VNI's flood list (`add`
/// only as its first), `replace` makes it the only one.
fn flood_add(pins: &Pins, e: &Entry, op: Op) -> Result<()> {
    let mut map = pins.hash::<u32, FloodList>(map_name::FLOOD)?;
    let old = map.get(&e.vni, 0).unwrap_or_default();
    let mut list = match op {
        Op::Replace => FloodList::default(),
        _ => old,
    };
    let n = list.count as usize;
    let dst = Ipv4Addr::from(e.remote.ip);
    if op == Op::Add && n > 0 {
        bail!(
            "VNI {} already has a flood list (use `vtep fdb append` to add {dst})",
            e.vni
        );
    }
    if list.remotes.iter().take(n).any(|r| r.ip == e.remote.ip) {
        bail!("{dst} is already in the flood list of VNI {}", e.vni);
    }
    if n >= MAX_FLOOD {
        bail!(
            "the flood list of VNI {} is full ({MAX_FLOOD} VTEPs)",
            e.vni
        );
    }
    list.remotes[n] = e.remote;
    list.count += 1;
    map.insert(e.vni, list, 0)?;
    peer_ref(pins, e.vni, e.remote.ip, 1)?;
    if op == Op::Replace {
        for r in old.remotes.iter().take(old.count as usize) {
            peer_ref(pins, e.vni, r.ip, -1)?;
        }
    }
    Ok(())
}

pub fn del(pins: &Pins, args: &FdbKeyArgs) -> Result<()> {
    let kw = Keywords::parse(&args.rest, &["vni", "dst"])?;
    let vni = kw.required("vni", |s| s.parse::<Vni>())?.0;
    let dst = kw.optional("dst", parse_ipv4)?;
    pins.require_up()?;
    if args.mac.0 == ZERO_MAC {
        return flood_del(pins, vni, dst);
    }
    let key = MacVni::new(args.mac.0, vni);
    for (name, permanent) in [(map_name::FDB, true), (map_name::LEARNED, false)] {
        let mut map = table(pins, name)?;
        let Ok(entry) = map.get(&key, 0) else {
            continue;
        };
        if dst.is_some_and(|d| d.octets() != entry.remote_ip) {
            continue;
        }
        map.remove(&key)?;
        if permanent {
            peer_ref(pins, vni, entry.remote_ip, -1)?;
        }
        return Ok(());
    }
    match dst {
        Some(dst) => bail!("no FDB entry for {} dst {dst} in VNI {vni}", args.mac),
        None => bail!("no FDB entry for {} in VNI {vni}", args.mac),
    }
}

/// Removes one VTEP from a VNI's flood list, or the whole list without `dst`.
fn flood_del(pins: &Pins, vni: u32, dst: Option<Ipv4Addr>) -> Result<()> {
    let mut map = pins.hash::<u32, FloodList>(map_name::FLOOD)?;
    let Ok(list) = map.get(&vni, 0) else {
        bail!("VNI {vni} has no flood list");
    };
    let remotes: Vec<Remote> = list
        .remotes
        .iter()
        .take(list.count as usize)
        .copied()
        .collect();
    let kept: Vec<Remote> = match dst {
        Some(dst) => remotes
            .iter()
            .copied()
            .filter(|r| r.ip != dst.octets())
            .collect(),
        None => Vec::new(),
    };
    if let Some(dst) = dst.filter(|_| kept.len() == remotes.len()) {
        bail!("{dst} is not in the flood list of VNI {vni}");
    }
    if kept.is_empty() {
        map.remove(&vni)?;
    } else {
        let mut next = FloodList::default();
        next.remotes[..kept.len()].copy_from_slice(&kept);
        next.count = kept.len() as u32;
        map.insert(vni, next, 0)?;
    }
    for gone in remotes.iter().filter(|r| !kept.contains(r)) {
        peer_ref(pins, vni, gone.ip, -1)?;
    }
    Ok(())
}

/// The permanent (FDB) or learned (LEARNED) table.
fn table(pins: &Pins, name: &str) -> Result<HashMap<MapData, MacVni, FdbEntry>> {
    pins.hash::<MacVni, FdbEntry>(name)
}

fn is_missing(e: &MapError) -> bool {
    match e {
        MapError::KeyNotFound | MapError::ElementNotFound => true,
        MapError::SyscallError(err) => err.io_error.raw_os_error() == Some(libc::ENOENT),
        _ => false,
    }
}

/// Now on the clock bpf_ktime_get_ns() reads (CLOCK_MONOTONIC), in nanoseconds.
fn monotonic_ns() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
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
    /// Seconds since a learned entry was last seen.
    #[serde(skip_serializing_if = "Option::is_none")]
    age: Option<u64>,
}

pub async fn show(pins: &Pins, json: bool) -> Result<()> {
    pins.require_up()?;
    let ageing_ns = pins.config()?.ageing_ns;
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
            age: None,
        });
    }
    let flood = pins.hash::<u32, FloodList>(map_name::FLOOD)?;
    let mut lists = Vec::new();
    for entry in flood.iter() {
        lists.push(entry?);
    }
    lists.sort_by_key(|(vni, _)| *vni);
    for (vni, list) in lists {
        for r in list.remotes.iter().take(list.count as usize) {
            rows.push(FdbRow {
                mac: Mac(ZERO_MAC).to_string(),
                vni,
                dst: Some(Ipv4Addr::from(r.ip)),
                port: Some(r.port),
                dev: None,
                state: "permanent",
                age: None,
            });
        }
    }
    let mut learned_table = table(pins, map_name::LEARNED)?;
    let mut remote = Vec::new();
    for entry in table(pins, map_name::FDB)?
        .iter()
        .chain(learned_table.iter())
    {
        remote.push(entry?);
    }
    remote.sort_by_key(|(k, _)| (k.vni, k.mac));
    let now = monotonic_ns();
    for (k, v) in remote {
        let learned = v.flags & FDB_PERMANENT == 0;
        let age_ns = now.saturating_sub(v.seen_ns);
        if learned && age_ns > ageing_ns {
            // Expired: the data path ignores it already; tidy the table like the kernel does.
            let _ = learned_table.remove(&k);
            continue;
        }
        rows.push(FdbRow {
            mac: Mac(k.mac).to_string(),
            vni: k.vni,
            dst: Some(Ipv4Addr::from(v.remote_ip)),
            port: Some(v.port),
            dev: None,
            state: if learned { "learned" } else { "permanent" },
            age: learned.then_some(age_ns / 1_000_000_000),
        });
    }
    output::rows(json, &rows, |r| match (&r.dev, r.dst, r.port, r.age) {
        (Some(dev), ..) => format!("{} dev {} vni {} {}", r.mac, dev, r.vni, r.state),
        (None, Some(dst), Some(port), Some(age)) => {
            format!(
                "{} dst {} vni {} port {} learned age {}s",
                r.mac, dst, r.vni, port, age
            )
        }
        (None, Some(dst), Some(port), None) => format!(
            "{} dst {} vni {} port {} {}",
            r.mac, dst, r.vni, port, r.state
        ),
        _ => format!("{} vni {} {}", r.mac, r.vni, r.state),
    })
}
