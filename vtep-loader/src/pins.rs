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
use vtep_common::{map_name, Config, LAYOUT_VERSION};

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
    let ino = |p: &str| fs::metadata(p).map(|m| std::os::unix::fs::MetadataExt::ino(&m)).ok();
    if ino("/proc/self/ns/mnt") != ino("/proc/1/ns/mnt") {
        bail!("no bpffs in this mount namespace (under `ip netns exec`?): use `vtep -n NETNS` instead");
    }
    netns::mount_bpffs(Path::new(BPFFS)).context("mounting bpffs at /sys/fs/bpf")
}

impl Pins {
    /// The state directory of the calling thread's network namespace.
    pub fn current() -> Result<Self> {
        let id = netns::current_id()?;
        let dir = Path::new(BPFFS).join("vtep").join(format!("v{LAYOUT_VERSION}")).join(format!("netns-{id}"));
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

    pub fn port_link(&self, ifindex: u32) -> PathBuf {
        self.dir.join(format!("link_port_{ifindex}"))
    }

    pub fn is_up(&self) -> bool {
        self.underlay_link().exists()
    }

    pub fn require_up(&self) -> Result<()> {
        if !self.is_up() {
            bail!("vtep is not up in this network namespace (run `vtep up` first)");
        }
        Ok(())
    }

    pub fn map(&self, name: &str) -> Result<Map> {
        let md = MapData::from_pin(self.dir.join(name)).with_context(|| format!("opening pinned map {name}"))?;
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
            fs::remove_dir_all(&self.dir).with_context(|| format!("removing {}", self.dir.display()))?;
        }
        // Drop the version and vtep directories too once no namespace uses them.
        for parent in self.dir.ancestors().skip(1).take(2) {
            let _ = fs::remove_dir(parent);
        }
        Ok(())
    }
}
