//! Where a namespace's vtep state lives: one bpffs directory per network namespace, in the
//! caller's bpffs, versioned by map layout so an older loader's maps are never reused.

use std::{
    fs,
    path::{Path, PathBuf},
};

use anyhow::{bail, Context, Result};
use aya::{
    maps::{Array, HashMap, Map, MapData, PerCpuArray},
    Pod,
};
use vtep_common::{
    counter, map_name, Config, FdbEntry, FloodList, IpVni, MacVni, NeighEntry, Port, VniPorts,
    LAYOUT_VERSION,
};

use crate::netns;

pub const BPFFS: &str = "/sys/fs/bpf";
const BPF_FS_MAGIC: i64 = 0xcafe_4a11;

pub struct Pins {
    pub dir: PathBuf,
}

/// Mounts bpffs at /sys/fs/bpf when it is missing (it is not mounted by default everywhere).
/// Refuses inside a private mount namespace (`ip netns exec`): a bpffs mounted there dies
/// with the process, and the data path with it.
pub fn ensure_bpffs() -> Result<()> {
    let path = std::ffi::CString::new(BPFFS)?;
    let mut st: libc::statfs = unsafe { std::mem::zeroed() };
    if unsafe { libc::statfs(path.as_ptr(), &mut st) } == 0 && st.f_type as i64 == BPF_FS_MAGIC {
        return Ok(());
    }
    let ino = |p: &str| {
        fs::metadata(p)
            .map(|m| std::os::unix::fs::MetadataExt::ino(&m))
            .ok()
    };
    if ino("/proc/self/ns/mnt") != ino("/proc/1/ns/mnt") {
        bail!("no bpffs in this mount namespace (under `ip netns exec`?): use `vtep -n NETNS` instead");
    }
    netns::mount_bpffs(Path::new(BPFFS)).context("mounting bpffs at /sys/fs/bpf")
}

impl Pins {
    /// The state directory of the calling thread's network namespace.
    pub fn current() -> Result<Self> {
        let id = netns::current_id()?;
        let dir = Path::new(BPFFS)
            .join("vtep")
            .join(format!("v{LAYOUT_VERSION}"))
            .join(format!("netns-{id}"));
        Ok(Self { dir })
    }

    pub fn underlay_link(&self) -> PathBuf {
        self.dir.join("link_underlay")
    }

    pub fn underlay_xdp_link(&self) -> PathBuf {
        self.dir.join("link_underlay_xdp")
    }

    pub fn port_program(&self) -> PathBuf {
        self.dir.join("prog_port")
    }

    pub fn underlay_tc_program(&self) -> PathBuf {
        self.dir.join("prog_underlay_tc")
    }

    pub fn underlay_xdp_program(&self) -> PathBuf {
        self.dir.join("prog_underlay_xdp")
    }

    pub fn port_link(&self, ifindex: u32) -> PathBuf {
        self.dir.join(format!("link_port_{ifindex}"))
    }

    pub fn is_up(&self) -> bool {
        self.underlay_link().exists()
    }

    pub fn require_up(&self) -> Result<()> {
        if !self.is_up() {
            self.refuse_other_layouts()?;
            bail!("vtep is not up in this network namespace (run `vtep up` first)");
        }
        Ok(())
    }

    /// State pinned by a vtep with another map layout is never reused (aya would reuse a
    /// pinned map without comparing layouts): say so instead.
    pub fn refuse_other_layouts(&self) -> Result<()> {
        let (Some(root), Some(leaf)) = (
            self.dir.parent().and_then(Path::parent),
            self.dir.file_name(),
        ) else {
            return Ok(());
        };
        let Ok(versions) = fs::read_dir(root) else {
            return Ok(());
        };
        for version in versions.flatten() {
            let other = version.path().join(leaf);
            if version.file_name() != format!("v{LAYOUT_VERSION}").as_str() && other.exists() {
                bail!(
                    "vtep state with another map layout is live in this network namespace ({}); this vtep \
                     uses layout v{LAYOUT_VERSION}: take it down with the vtep that made it, or unpin it (rm -r)",
                    other.display()
                );
            }
        }
        Ok(())
    }

    /// Opens every pinned map with the types this binary uses; aya refuses a map whose key
    /// or value size differs, so a layout change without a version bump is caught too.
    pub fn check_layout(&self) -> Result<()> {
        self.config()?;
        self.hash::<u32, Port>(map_name::PORTS)?;
        self.hash::<MacVni, u32>(map_name::LOCAL)?;
        self.hash::<MacVni, FdbEntry>(map_name::FDB)?;
        self.hash::<MacVni, FdbEntry>(map_name::LEARNED)?;
        self.hash::<IpVni, NeighEntry>(map_name::NEIGH)?;
        self.hash::<IpVni, u32>(map_name::PEERS)?;
        self.hash::<u32, FloodList>(map_name::FLOOD)?;
        self.hash::<u32, VniPorts>(map_name::VNI_PORTS)?;
        let stats = self.stats()?;
        if stats.len() < counter::COUNT {
            bail!(
                "the pinned counters have {} slots, this vtep needs {}",
                stats.len(),
                counter::COUNT
            );
        }
        Ok(())
    }

    pub fn map(&self, name: &str) -> Result<Map> {
        let md = MapData::from_pin(self.dir.join(name))
            .with_context(|| format!("opening pinned map {name}"))?;
        Ok(Map::from_map_data(md)?)
    }

    pub fn hash<K: Pod, V: Pod>(&self, name: &str) -> Result<HashMap<MapData, K, V>> {
        Ok(HashMap::try_from(self.map(name)?)?)
    }

    pub fn stats(&self) -> Result<PerCpuArray<MapData, u64>> {
        Ok(PerCpuArray::try_from(self.map(map_name::STATS)?)?)
    }

    pub fn config(&self) -> Result<Config> {
        let arr: Array<MapData, Config> = Array::try_from(self.map(map_name::CONFIG)?)?;
        Ok(arr.get(&0, 0)?)
    }

    pub fn set_config(&self, cfg: &Config) -> Result<()> {
        let mut arr: Array<MapData, Config> = Array::try_from(self.map(map_name::CONFIG)?)?;
        Ok(arr.set(0, cfg, 0)?)
    }

    /// Removes the directory and everything pinned in it; pinned links detach as they go.
    pub fn remove(&self) -> Result<()> {
        if self.dir.exists() {
            fs::remove_dir_all(&self.dir)
                .with_context(|| format!("removing {}", self.dir.display()))?;
        }
        Ok(())
    }

    /// Drops the version and vtep directories once no namespace uses them (after `down`).
    pub fn prune_parents(&self) {
        for parent in self.dir.ancestors().skip(1).take(2) {
            let _ = fs::remove_dir(parent);
        }
    }

    /// Creates the directory. A `down` in another namespace may remove an empty parent
    /// between our creating it and our own directory inside: try again then.
    pub fn create(&self) -> Result<()> {
        let mut tries = 0;
        loop {
            match fs::create_dir_all(&self.dir) {
                Err(e) if e.kind() == std::io::ErrorKind::NotFound && tries < 5 => tries += 1,
                r => return r.with_context(|| format!("creating {}", self.dir.display())),
            }
        }
    }
}
