//! A Debian cloud kernel unpacked from its package (never installed), cached under
//! `target/vm/kernels/SERIES/`.

use std::{
    fs,
    path::{Path, PathBuf},
    process::Command,
};

use anyhow::{bail, Context, Result};

use super::apt::{run, Apt};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Series {
    /// Debian 12's own kernel (bookworm): no TCX.
    V6_1,
    /// bookworm-backports' kernel: TCX, netkit.
    V6_12,
}

impl Series {
    pub const ALL: [Series; 2] = [Series::V6_1, Series::V6_12];

    pub fn name(self) -> &'static str {
        match self {
            Series::V6_1 => "6.1",
            Series::V6_12 => "6.12",
        }
    }

    /// QEMU's `-cpu`. 6.12 under QEMU 7.2's TCG double-faults at random in the slab
    /// allocator's cmpxchg16b path; without cx16 it boots every time.
    pub fn qemu_cpu(self) -> &'static str {
        match self {
            Series::V6_1 => "max",
            Series::V6_12 => "max,cx16=off",
        }
    }
}

#[derive(Clone, Debug)]
pub struct Kernel {
    pub series: Series,
    /// `uname -r` in the VM, e.g. 6.1.0-50-cloud-amd64.
    pub release: String,
    /// The unpacked package: boot/ and lib/modules/.
    pub root: PathBuf,
}

impl Kernel {
    /// The cached kernel of `series`, fetched and unpacked first if missing.
    pub fn get(series: Series) -> Result<Kernel> {
        let dir = super::dir().join("kernels").join(series.name());
        if let Some(k) = Self::cached(series, &dir) {
            return Ok(k);
        }
        let _lock = super::lock("kernels")?;
        if let Some(k) = Self::cached(series, &dir) {
            return Ok(k);
        }
        let apt = Apt::private()?;
        apt.update(false)?;
        let package = match apt.image_package(&format!("{}.", series.name())) {
            Ok(p) => p,
            // Lists from an earlier run may no longer name what the mirror has.
            Err(_) => {
                apt.update(true)?;
                apt.image_package(&format!("{}.", series.name()))?
            }
        };
        let deb = apt.download(&package)?;
        let release = package
            .strip_prefix("linux-image-")
            .context("package name")?
            .to_string();
        let tmp = dir.with_extension("tmp");
        fs::remove_dir_all(&tmp).ok();
        fs::create_dir_all(&tmp)?;
        let root = tmp.join("root");
        run(Command::new("dpkg-deb").arg("-x").arg(&deb).arg(&root))?;
        // Debian generates modules.dep at install time; we resolve load order with it.
        run(Command::new("depmod").arg("-b").arg(&root).arg(&release))?;
        fs::write(tmp.join("release"), &release)?;
        fs::remove_dir_all(&dir).ok();
        fs::rename(&tmp, &dir)?;
        Self::cached(series, &dir).context("kernel cache incomplete after unpacking")
    }

    fn cached(series: Series, dir: &Path) -> Option<Kernel> {
        let release = fs::read_to_string(dir.join("release")).ok()?;
        let k = Kernel {
            series,
            release: release.trim().to_string(),
            root: dir.join("root"),
        };
        k.vmlinuz().exists().then_some(k)
    }

    pub fn vmlinuz(&self) -> PathBuf {
        self.root.join(format!("boot/vmlinuz-{}", self.release))
    }

    /// Module files (`.ko` or `.ko.xz`) to load, in order, for `names` and their
    /// dependencies; built-in ones are left out.
    pub fn modules_in_order(&self, names: &[&str]) -> Result<Vec<PathBuf>> {
        let mut order: Vec<PathBuf> = Vec::new();
        for name in names {
            let out = run(Command::new("modprobe").arg("-d").arg(&self.root).args([
                "-S",
                &self.release,
                "--show-depends",
                name,
            ]))?;
            for line in out.lines() {
                match line.split_whitespace().collect::<Vec<_>>()[..] {
                    ["insmod", path, ..] => {
                        let path = PathBuf::from(path);
                        if !order.contains(&path) {
                            order.push(path);
                        }
                    }
                    ["builtin", ..] => {}
                    _ => bail!("modprobe --show-depends {name}: unexpected `{line}`"),
                }
            }
        }
        Ok(order)
    }
}
