//! Where a host's vtep state lives: one bpffs directory per network namespace, named by the
//! namespace's cookie, versioned by map layout so an older loader's maps are never reused.

use std::{
    fs,
    path::{Path, PathBuf},
};

use anyhow::{bail, Context, Result};
use vtep_common::LAYOUT_VERSION;

use crate::host::BPFFS;

pub struct Pins {
    pub dir: PathBuf,
}

/// The directory holding every host's state of this layout.
fn layout_dir() -> PathBuf {
    Path::new(BPFFS)
        .join("vtep")
        .join(format!("v{LAYOUT_VERSION}"))
}

impl Pins {
    /// The state directory of the host whose namespace has this cookie.
    pub fn of(cookie: u64) -> Self {
        Self {
            dir: layout_dir().join(format!("netns-{cookie}")),
        }
    }

    /// Every host with state of this layout, by cookie.
    pub fn all() -> Vec<(u64, Self)> {
        let Ok(entries) = fs::read_dir(layout_dir()) else {
            return Vec::new();
        };
        entries
            .flatten()
            .filter_map(|e| {
                let name = e.file_name();
                let cookie = name.to_str()?.strip_prefix("netns-")?.parse().ok()?;
                Some((cookie, Self::of(cookie)))
            })
            .collect()
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
            // Not empty while other namespaces (or layouts) use it.
            fs::remove_dir(parent).ok();
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
