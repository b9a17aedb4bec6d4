//! The VM's userspace: one cpio archive holding the host's own binaries (vtep, iproute2,
//! ping, iperf3, tcpdump, bpftool) with the libraries `ldd` names, busybox for the small
//! utilities, the kernel modules the scenarios need, and an init that gives the control
//! channel a shell. Cached under `target/vm/initramfs/`, keyed by everything that goes in.

use std::{
    collections::hash_map::DefaultHasher,
    fs,
    hash::{Hash, Hasher},
    os::unix::fs::{symlink, MetadataExt, PermissionsExt},
    path::{Path, PathBuf},
    process::Command,
};

use anyhow::{bail, Context, Result};

use super::{apt::run, Kernel};

/// Tools run in the VMs, as the host has them.
const TOOLS: &[&str] = &[
    "dash", "ip", "bridge", "tc", "ss", "ping", "iperf3", "tcpdump", "bpftool",
];

/// Small utilities taken from busybox. Never one of TOOLS: a busybox applet under a real
/// tool's name would shadow it.
const APPLETS: &[&str] = &[
    "mount", "umount", "insmod", "lsmod", "stty", "sleep", "cat", "mkdir", "grep", "sed", "awk",
    "head", "tail", "wc", "kill", "ls", "rm", "timeout", "seq", "sysctl", "tr", "cut", "uname",
    "ps", "dmesg", "sort", "cp", "ln", "touch", "pidof", "xargs", "find", "stat", "hostname",
    "date", "env", "usleep", "readlink", "basename", "dirname",
];

/// What the scenarios load: the NIC, veths, the kernel's own vxlan and bridge (reference
/// and interop), and clsact/cls_bpf for netlink TC where TCX is missing.
pub const MODULES: &[&str] = &[
    "virtio_pci",
    "virtio_net",
    "veth",
    "vxlan",
    "bridge",
    "sch_ingress",
    "cls_bpf",
];

/// Runs as PID 1. The control shell reads the second serial port directly (a pipe from
/// `cat` deadlocks busybox), raw and without echo so what the host reads back is only
/// output. It answers the first line the host sends with READY, so the host knows input
/// is being read (bytes sent before the port is opened are lost). Init keeps the port
/// open throughout: the last close of a tty discards its input, and with it whatever the
/// host sent between READY and the shell's start.
const INIT: &str = r#"#!/bin/sh
export PATH=/usr/sbin:/usr/bin HOME=/root
mount -t proc proc /proc
mount -t sysfs sys /sys
mount -t devtmpfs dev /dev
mount -t tmpfs run /run
mount -t tmpfs tmp /tmp
mount -t bpf bpf /sys/fs/bpf
mount -t debugfs debugfs /sys/kernel/debug 2>/dev/null
while read -r m; do insmod "/lib/modules/$m" || echo "init: insmod $m failed"; done < /etc/modules
ip link set lo up
ip link set eth0 name eth1
hostname "${vtep_vm:-vm}"
exec 3<>/dev/ttyS1
stty -F /dev/ttyS1 raw -echo
read -r _ <&3
echo READY >&3
while :; do
  PS1= PS2= dash +i <&3 >&3 2>&3 3>&-
done
"#;

/// The archive for `kernel` with `vtep` inside, built unless cached.
pub fn build(kernel: &Kernel, vtep: &Path) -> Result<PathBuf> {
    if !vtep.exists() {
        bail!(
            "{} is missing: run `cargo build --release` (or `cargo xtask test`)",
            vtep.display()
        );
    }
    let mut files: Vec<PathBuf> = Vec::new();
    for tool in TOOLS {
        files.push(which(tool)?);
    }
    let mut libs = Vec::new();
    for f in files.iter().chain([&vtep.to_path_buf()]) {
        libs.extend(libraries(f)?);
    }
    let busybox = which("busybox")?;
    let modules = kernel.modules_in_order(MODULES)?;

    let mut h = DefaultHasher::new();
    (INIT, TOOLS, APPLETS, MODULES).hash(&mut h);
    kernel.release.hash(&mut h);
    let vtep = vtep.to_path_buf();
    for f in files
        .iter()
        .chain(&libs)
        .chain([&busybox, &vtep])
        .chain(&modules)
    {
        let m = fs::metadata(f).with_context(|| format!("{}", f.display()))?;
        (f, m.len(), m.mtime(), m.mtime_nsec()).hash(&mut h);
    }
    let out_dir = super::dir().join("initramfs");
    fs::create_dir_all(&out_dir)?;
    let out = out_dir.join(format!("{}-{:016x}.cpio", kernel.release, h.finish()));
    if out.exists() {
        return Ok(out);
    }

    let stage = out.with_extension(format!("stage{}", std::process::id()));
    fs::remove_dir_all(&stage).ok();
    let result = (|| {
        for d in [
            "usr/bin",
            "usr/sbin",
            "usr/lib",
            "usr/lib64",
            "proc",
            "sys",
            "dev",
            "run",
            "tmp",
            "etc",
            "root",
            "usr/lib/modules",
        ] {
            fs::create_dir_all(stage.join(d))?;
        }
        // Debian 12's merged /usr, so the paths ldd reports resolve.
        for (link, to) in [
            ("bin", "usr/bin"),
            ("sbin", "usr/sbin"),
            ("lib", "usr/lib"),
            ("lib64", "usr/lib64"),
        ] {
            symlink(to, stage.join(link))?;
        }
        for f in files.iter().chain(&libs) {
            copy_host_file(&stage, f)?;
        }
        fs::copy(&vtep, stage.join("usr/bin/vtep"))?;
        symlink("dash", stage.join("usr/bin/sh"))?;
        fs::copy(&busybox, stage.join("usr/bin/busybox"))?;
        for applet in APPLETS {
            let at = stage.join("usr/bin").join(applet);
            if !at.exists() {
                symlink("busybox", at)?;
            }
        }
        let mut order = String::new();
        for m in &modules {
            let name = m
                .file_name()
                .and_then(|n| n.to_str())
                .context("module file name")?;
            let plain = name.strip_suffix(".xz").unwrap_or(name);
            let to = stage.join("lib/modules").join(plain);
            if name.ends_with(".xz") {
                // busybox insmod hands the bytes to init_module as they are.
                let out = Command::new("xz").arg("-dc").arg(m).output()?;
                if !out.status.success() {
                    bail!("xz -dc {} failed", m.display());
                }
                fs::write(&to, out.stdout)?;
            } else {
                fs::copy(m, &to)?;
            }
            order.push_str(plain);
            order.push('\n');
        }
        fs::write(stage.join("etc/modules"), order)?;
        // tcpdump drops privileges to its own user by default.
        fs::write(
            stage.join("etc/passwd"),
            "root:x:0:0:root:/root:/bin/sh\ntcpdump:x:104:110::/nonexistent:/usr/sbin/nologin\n",
        )?;
        fs::write(stage.join("etc/group"), "root:x:0:\ntcpdump:x:110:\n")?;
        let init = stage.join("init");
        fs::write(&init, INIT)?;
        fs::set_permissions(&init, fs::Permissions::from_mode(0o755))?;
        let tmp = out.with_extension("cpio.tmp");
        let archive = fs::File::create(&tmp)?;
        let status = Command::new("sh")
            .args([
                "-c",
                "find . -print0 | cpio --null --quiet -o -H newc -R 0:0",
            ])
            .current_dir(&stage)
            .stdout(archive)
            .status()?;
        if !status.success() {
            bail!("cpio failed");
        }
        fs::rename(&tmp, &out)?;
        Ok(())
    })();
    fs::remove_dir_all(&stage).ok();
    result.context("building the initramfs")?;
    prune(&out_dir, &kernel.release, &out);
    Ok(out)
}

/// Older archives of the same kernel (a new vtep binary makes a new one each build).
fn prune(dir: &Path, release: &str, keep: &Path) {
    let Ok(entries) = fs::read_dir(dir) else {
        return;
    };
    for e in entries.filter_map(|e| e.ok()) {
        let p = e.path();
        let name = e.file_name().to_string_lossy().into_owned();
        if p != keep && name.starts_with(&format!("{release}-")) && name.ends_with(".cpio") {
            fs::remove_file(p).ok();
        }
    }
}

fn which(tool: &str) -> Result<PathBuf> {
    for dir in ["/usr/sbin", "/usr/bin", "/sbin", "/bin"] {
        let p = Path::new(dir).join(tool);
        if p.exists() {
            return Ok(p);
        }
    }
    bail!("{tool} is not installed (cargo xtask setup installs it)")
}

/// Shared libraries `bin` loads, the dynamic loader included.
fn libraries(bin: &Path) -> Result<Vec<PathBuf>> {
    let out = run(Command::new("ldd").arg(bin))?;
    Ok(out
        .lines()
        .filter_map(|l| {
            let l = l.trim();
            let path = match l.split_once("=>") {
                Some((_, rest)) => rest.split_whitespace().next()?,
                None => l.split_whitespace().next()?,
            };
            path.starts_with('/').then(|| PathBuf::from(path))
        })
        .collect())
}

/// `file` at its real path in `stage`, plus a symlink at the path it was named by when
/// that differs after /usr merging (e.g. /lib64/ld-linux-x86-64.so.2).
fn copy_host_file(stage: &Path, file: &Path) -> Result<()> {
    let real = fs::canonicalize(file)?;
    let to = stage.join(real.strip_prefix("/")?);
    fs::create_dir_all(to.parent().context("parent")?)?;
    if !to.exists() {
        fs::copy(&real, &to).with_context(|| format!("copying {}", real.display()))?;
    }
    let named = usr_merged(file);
    if named != real {
        let at = stage.join(named.strip_prefix("/")?);
        if fs::symlink_metadata(&at).is_err() {
            fs::create_dir_all(at.parent().context("parent")?)?;
            symlink(&real, &at)?;
        }
    }
    Ok(())
}

fn usr_merged(p: &Path) -> PathBuf {
    for top in ["/bin", "/sbin", "/lib", "/lib64"] {
        if let Ok(rest) = p.strip_prefix(top) {
            return Path::new("/usr").join(&top[1..]).join(rest);
        }
    }
    p.to_path_buf()
}
