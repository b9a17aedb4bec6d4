//! Two virtual machines joined by a virtio-net link, for what namespaces on one kernel
//! cannot show: other kernels (Debian 12's 6.1 and a current one) and a real NIC driver
//! (virtio_net, with native XDP). QEMU runs under TCG (this machine kind's KVM cannot run a
//! stock kernel), so a VM is slow but boots in seconds from a kernel and an initramfs cached
//! under `target/vm/`.
//!
//! - [`apt`]: Debian's kernel packages through a private APT configuration;
//! - [`kernel`]: a kernel unpacked from its package, and its modules in load order;
//! - [`initramfs`]: the VM's whole userspace, built from the host's own binaries;
//! - [`link`]: the wire between the two VMs (taps on a bridge in a namespace of their own);
//! - [`qemu`]: one VM, killed on drop;
//! - [`control`]: the serial line the tests run commands through.

pub mod apt;
pub mod bench;
pub mod control;
pub mod initramfs;
pub mod kernel;
pub mod link;
pub mod qemu;
pub mod reference;

use std::{
    fs::File,
    path::PathBuf,
    time::{Duration, Instant},
};

use anyhow::{bail, Context, Result};

pub use kernel::{Kernel, Series};
pub use link::Wire;
pub use qemu::Vm;

/// Everything the VMs need and leave, under the workspace's target directory.
pub fn dir() -> PathBuf {
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/../target")));
    target.join("vm")
}

/// An exclusive lock on `target/vm/NAME.lock`, released on drop.
pub(crate) fn lock(name: &str) -> Result<File> {
    std::fs::create_dir_all(dir())?;
    let path = dir().join(format!("{name}.lock"));
    let file = File::create(&path).with_context(|| format!("creating {}", path.display()))?;
    file.lock()
        .with_context(|| format!("locking {}", path.display()))?;
    Ok(file)
}

/// Both kernels and the APT lists, fetched if missing (for `cargo xtask setup`).
pub fn prepare() -> Result<()> {
    for series in Series::ALL {
        let k = Kernel::get(series)?;
        eprintln!("vm: kernel {} at {}", k.release, k.vmlinuz().display());
    }
    Ok(())
}

/// Two VMs on one kernel, each with a virtio-net `eth1` (192.168.104.2 and .3, the reference
/// scenario's underlay) on a shared wire. Only one pair runs at a time on the machine:
/// under TCG a VM keeps a core busy, and the machine has two.
pub struct Pair {
    pub vms: [Vm; 2],
    pub kernel: Kernel,
    _wire: Wire,
    _slot: File,
}

impl Pair {
    pub fn boot(series: Series, tag: &str) -> Result<Pair> {
        let slot = lock("slot")?;
        link::remove_stale();
        let kernel = Kernel::get(series)?;
        let initrd = initramfs::build(&kernel, &crate::cmd::vtep_bin())?;
        let wire = Wire::new(tag)?;
        let vms = match Self::start_both(&kernel, &initrd, &wire, tag) {
            Ok(vms) => vms,
            // TCG occasionally crashes a guest in early boot (VM-NOTES: 6.12 double faults
            // with cx16; rarer without): one fresh attempt, with the first error kept.
            Err(first) => Self::start_both(&kernel, &initrd, &wire, tag)
                .with_context(|| format!("second boot, after: {first:#}"))?,
        };
        for (i, vm) in vms.iter().enumerate() {
            vm.run(&format!(
                "ip addr add 192.168.104.{}/24 dev eth1 && ip link set eth1 up",
                i + 2
            ))?;
        }
        let pair = Pair {
            vms,
            kernel,
            _wire: wire,
            _slot: slot,
        };
        pair.wait_underlay()?;
        Ok(pair)
    }

    fn start_both(
        kernel: &Kernel,
        initrd: &std::path::Path,
        wire: &Wire,
        tag: &str,
    ) -> Result<[Vm; 2]> {
        let specs = [0, 1].map(|i| qemu::Spec {
            name: format!("{tag}v{}", i + 1),
            kernel: kernel.clone(),
            initrd: initrd.to_path_buf(),
            netns: wire.ns.name.clone(),
            tap: wire.taps[i].clone(),
            mac: format!("52:54:00:10:04:{:02x}", i + 2),
        });
        // Started together (each takes seconds to boot under TCG), then waited for in turn.
        let [a, b] = specs;
        let (a, b) = (Vm::start(a)?, Vm::start(b)?);
        Ok([a.ready()?, b.ready()?])
    }

    /// Until the VMs reach each other over eth1 (the link comes up asynchronously).
    fn wait_underlay(&self) -> Result<()> {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let (rc, _) = self.vms[0].output("ping -c 1 -W 1 192.168.104.3")?;
            if rc == 0 {
                return Ok(());
            }
            if Instant::now() > deadline {
                bail!("the VMs never reached each other over eth1");
            }
        }
    }
}
