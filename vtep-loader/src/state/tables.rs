//! Typed handles on a host's pinned maps, opened once per command, with the layout check:
//! key and value sizes (aya refuses a mismatch) and capacities (checked here), so a map
//! pinned by another vtep is never silently reused.

use std::collections::HashMap as StdHashMap;

use anyhow::{bail, Context, Result};
use aya::{
    maps::{Array, HashMap, Map, MapData, MapError, PerCpuArray, RingBuf},
    Pod,
};
use serde::Serialize;
use vtep_common::{
    counter, map_name, Config, FdbEntry, IpVni, MacVni, NeighEntry, Port, Remote, Slot, VniLists,
    MAX_FLOOD_SLOTS, MAX_PEERS, MAX_PORTS, MAX_VNIS, MISS_SEEN_ENTRIES,
};

use super::{ignore_missing, StateResult};
use crate::pins::Pins;

/// What each table can hold, as pinned.
#[derive(Clone, Copy, Debug, Serialize)]
pub struct Capacities {
    pub ports: u32,
    pub fdb: u32,
    pub learned: u32,
    pub neigh: u32,
    pub peers: u32,
    pub vnis: u32,
    /// Flood-list VTEPs of all VNIs together.
    pub flood_slots: u32,
}

pub struct Tables {
    pub(super) config: Array<MapData, Config>,
    pub(super) ports: HashMap<MapData, u32, Port>,
    pub(super) local: HashMap<MapData, MacVni, u32>,
    pub(super) fdb: HashMap<MapData, MacVni, FdbEntry>,
    pub(super) learned: HashMap<MapData, MacVni, FdbEntry>,
    pub(super) neigh: HashMap<MapData, IpVni, NeighEntry>,
    pub(super) peers: HashMap<MapData, IpVni, u32>,
    pub(super) vnis: HashMap<MapData, u32, VniLists>,
    pub(super) flood: HashMap<MapData, Slot, Remote>,
    pub(super) vni_ports: HashMap<MapData, Slot, u32>,
    stats: PerCpuArray<MapData, u64>,
    miss_reader: Array<MapData, u32>,
    pub capacity: Capacities,
    /// Map ids, for `vtep show` (and bpftool).
    pub ids: Vec<(&'static str, u32)>,
    /// Kernel memory each map uses, in bytes (its fdinfo's memlock: on Linux 6.4 and
    /// later what it holds, before that what it may hold).
    pub memory: Vec<(&'static str, u64)>,
}

struct Opener<'a> {
    pins: &'a Pins,
    ids: Vec<(&'static str, u32)>,
    memory: Vec<(&'static str, u64)>,
}

/// The port table alone, for `down` of state whose other tables have another layout: it
/// names the devices and namespaces to remove, and nothing else is read.
pub fn open_ports(pins: &Pins) -> Result<HashMap<MapData, u32, Port>> {
    Ok(Opener::new(pins).hash(map_name::PORTS, Some(MAX_PORTS))?.0)
}

impl<'a> Opener<'a> {
    fn new(pins: &'a Pins) -> Self {
        Opener {
            pins,
            ids: Vec::new(),
            memory: Vec::new(),
        }
    }

    /// The pinned map `name`, and its capacity; `expect` is the capacity this vtep builds
    /// it with, when that is fixed.
    fn map(&mut self, name: &'static str, expect: Option<u32>) -> Result<(Map, u32)> {
        let md = MapData::from_pin(self.pins.dir.join(name))
            .with_context(|| format!("opening pinned map {name}"))?;
        let info = md.info()?;
        let size = info.max_entries();
        if let Some(expect) = expect.filter(|e| *e != size) {
            bail!(
                "pinned map {name} holds {size} entries, this vtep builds it with {expect}: \
                 the state was made by another vtep (run `vtep down` with it first)"
            );
        }
        self.ids.push((name, info.id()));
        self.memory.push((name, memlock(&md)?));
        Ok((Map::from_map_data(md)?, size))
    }

    fn hash<K: Pod, V: Pod>(
        &mut self,
        name: &'static str,
        expect: Option<u32>,
    ) -> Result<(HashMap<MapData, K, V>, u32)> {
        let (map, size) = self.map(name, expect)?;
        let typed = HashMap::try_from(map).map_err(|e| {
            // `down` needs only the port table to take the rest down.
            let way = if name == map_name::PORTS {
                "take it down with that vtep"
            } else {
                "`vtep down` takes it down"
            };
            anyhow::anyhow!(
                "pinned map {name} has another layout ({}): the state was made by another vtep; \
                 {way}, or unpin {} (rm -r)",
                match e {
                    MapError::InvalidKeySize { size, expected } =>
                        format!("key size {expected}, this vtep's is {size}"),
                    MapError::InvalidValueSize { size, expected } =>
                        format!("value size {expected}, this vtep's is {size}"),
                    e => e.to_string(),
                },
                self.pins.dir.display()
            )
        })?;
        Ok((typed, size))
    }
}

fn memlock(md: &MapData) -> Result<u64> {
    use std::os::fd::{AsFd, AsRawFd};
    let fd = md.fd().as_fd().as_raw_fd();
    let info = std::fs::read_to_string(format!("/proc/self/fdinfo/{fd}"))?;
    info.lines()
        .find_map(|l| l.strip_prefix("memlock:"))
        .and_then(|v| v.trim().parse().ok())
        .context("no memlock in a map's fdinfo")
}

impl Tables {
    pub fn open(pins: &Pins) -> Result<Self> {
        let mut o = Opener::new(pins);
        let config = Array::try_from(o.map(map_name::CONFIG, Some(1))?.0)?;
        let (ports, ports_size) = o.hash(map_name::PORTS, Some(MAX_PORTS))?;
        let (local, _) = o.hash(map_name::LOCAL, Some(MAX_PORTS))?;
        let (fdb, fdb_size) = o.hash(map_name::FDB, None)?;
        let (learned, learned_size) = o.hash(map_name::LEARNED, None)?;
        let (neigh, neigh_size) = o.hash(map_name::NEIGH, None)?;
        let (peers, peers_size) = o.hash(map_name::PEERS, Some(MAX_PEERS))?;
        let (vnis_map, vnis) = o.hash(map_name::VNIS, Some(MAX_VNIS))?;
        let (flood, flood_slots) = o.hash(map_name::FLOOD, Some(MAX_FLOOD_SLOTS))?;
        let (vni_ports, _) = o.hash(map_name::VNI_PORTS, Some(MAX_PORTS))?;
        let stats = PerCpuArray::try_from(o.map(map_name::STATS, Some(counter::COUNT))?.0)?;
        let miss_reader = Array::try_from(o.map(map_name::MISS_READER, Some(1))?.0)?;
        o.map(map_name::MISS_SEEN, Some(MISS_SEEN_ENTRIES))?;
        Ok(Self {
            config,
            ports,
            local,
            fdb,
            learned,
            neigh,
            peers,
            vnis: vnis_map,
            flood,
            vni_ports,
            stats,
            miss_reader,
            capacity: Capacities {
                ports: ports_size,
                fdb: fdb_size,
                learned: learned_size,
                neigh: neigh_size,
                peers: peers_size,
                vnis,
                flood_slots,
            },
            ids: o.ids,
            memory: o.memory,
        })
    }

    pub fn config(&self) -> Result<Config> {
        Ok(self.config.get(&0, 0)?)
    }

    /// Every counter, summed over CPUs, in `counter::ALL` order.
    pub fn counters(&self) -> Result<Vec<(&'static str, u64)>> {
        let mut out = Vec::new();
        for (id, (name, _)) in counter::ALL.iter().enumerate() {
            let per_cpu = self.stats.get(&(id as u32), 0)?;
            out.push((*name, per_cpu.iter().sum()));
        }
        Ok(out)
    }

    /// Tells the data path whether anyone reads miss events (it writes none otherwise).
    pub fn set_miss_reader(&mut self, reading: bool) -> Result<()> {
        Ok(self.miss_reader.set(0, u32::from(reading), 0)?)
    }

    /// The miss ring, for a reader that streams it (`vtep monitor`).
    pub fn misses(pins: &Pins) -> Result<RingBuf<MapData>> {
        let md =
            MapData::from_pin(pins.dir.join(map_name::MISSES)).context("opening the miss ring")?;
        Ok(RingBuf::try_from(Map::from_map_data(md)?)?)
    }

    /// Sets PEERS to what the FDB and the flood lists say, after a writer was killed
    /// between a table write and its count.
    pub fn recount_peers(&mut self) -> StateResult<()> {
        let mut want: StdHashMap<IpVni, u32> = StdHashMap::new();
        for entry in self.fdb.iter() {
            let (k, v) = entry?;
            *want
                .entry(IpVni {
                    ip: v.remote_ip,
                    vni: k.vni,
                })
                .or_default() += 1;
        }
        let vnis: Vec<u32> = self.vnis.keys().collect::<Result<_, _>>()?;
        for vni in vnis {
            for r in self.members::<Remote>(vni)? {
                *want.entry(IpVni { ip: r.ip, vni }).or_default() += 1;
            }
        }
        let have: Vec<IpVni> = self.peers.keys().collect::<Result<_, _>>()?;
        for key in have {
            if !want.contains_key(&key) {
                ignore_missing(self.peers.remove(&key))?;
            }
        }
        for (key, refs) in want {
            self.peers.insert(key, refs, 0)?;
        }
        Ok(())
    }

    /// Port records as stored (for state whose host is gone: no health to check).
    pub fn port_records(&self) -> Result<Vec<Port>> {
        Ok(self
            .ports
            .iter()
            .map(|e| e.map(|(_, p)| p))
            .collect::<Result<_, _>>()?)
    }

    /// PEERS exactly as stored, for checks.
    pub fn peer_counts(&self) -> Result<Vec<(IpVni, u32)>> {
        Ok(self.peers.iter().collect::<Result<_, _>>()?)
    }
}
