//! One VM: QEMU under TCG with `-smp 1 -m 256`, booted straight into the kernel and the
//! initramfs, its console on a file and its control shell on a socket. Killed on drop.

use std::{
    fs,
    os::unix::process::CommandExt,
    path::PathBuf,
    process::{Child, Command, Stdio},
    sync::Mutex,
    time::{Duration, Instant},
};

use anyhow::{bail, Context, Result};

use super::{control::Control, Kernel};

pub struct Spec {
    pub name: String,
    pub kernel: Kernel,
    pub initrd: PathBuf,
    /// Where QEMU runs: the wire's namespace, which holds `tap`.
    pub netns: String,
    pub tap: String,
    pub mac: String,
}

/// A VM whose QEMU is running but whose shell may not be ready yet.
pub struct Starting {
    vm: Vm,
}

pub struct Vm {
    pub name: String,
    pub series: super::Series,
    child: Child,
    dir: PathBuf,
    control: Option<Mutex<Control>>,
}

/// How long a command may take by default; longer ones pass their own timeout.
const COMMAND_TIMEOUT: Duration = Duration::from_secs(60);

impl Vm {
    pub fn start(spec: Spec) -> Result<Starting> {
        let runs = super::dir().join("run");
        prune_runs(&runs);
        let dir = runs.join(&spec.name);
        fs::remove_dir_all(&dir).ok();
        fs::create_dir_all(&dir)?;
        let console = dir.join("console.log");
        let socket = dir.join("control.sock");
        let log = fs::File::create(dir.join("qemu.log"))?;
        let append = format!(
            "console=ttyS0 panic=-1 loglevel=4 net.ifnames=0 tsc=reliable vtep_vm={}",
            spec.name
        );
        let mut command = Command::new("ip");
        // Drop kills QEMU on every path a test unwinds through; a test process killed
        // outright takes its VMs with it through the parent-death signal (kept across
        // `ip netns exec`'s exec of QEMU).
        // SAFETY: the closure runs between fork and exec and only makes one
        // async-signal-safe system call (prctl).
        unsafe {
            command.pre_exec(|| {
                nix::sys::prctl::set_pdeathsig(nix::sys::signal::Signal::SIGKILL)
                    .map_err(std::io::Error::from)
            });
        }
        let child = command
            .args(["netns", "exec", &spec.netns, "qemu-system-x86_64"])
            .args(["-accel", "tcg", "-cpu", spec.kernel.series.qemu_cpu()])
            .args(["-smp", "1", "-m", "256", "-nodefaults", "-no-user-config"])
            .args(["-display", "none", "-no-reboot"])
            .arg("-kernel")
            .arg(spec.kernel.vmlinuz())
            .arg("-initrd")
            .arg(&spec.initrd)
            .args(["-append", &append])
            .arg("-chardev")
            .arg(format!("file,id=console,path={}", console.display()))
            .args(["-serial", "chardev:console"])
            .arg("-chardev")
            .arg(format!(
                "socket,id=control,path={},server=on,wait=off",
                socket.display()
            ))
            .args(["-serial", "chardev:control"])
            .arg("-netdev")
            .arg(format!(
                "tap,id=wire,ifname={},script=no,downscript=no,queues=2",
                spec.tap
            ))
            .arg("-device")
            .arg(format!(
                "virtio-net-pci,netdev=wire,mac={},mq=on,vectors=6",
                spec.mac
            ))
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()
            .context("starting qemu-system-x86_64")?;
        Ok(Starting {
            vm: Vm {
                name: spec.name,
                series: spec.kernel.series,
                child,
                dir,
                control: None,
            },
        })
    }

    /// Runs `cmd` in the VM, failing with its output unless it exits 0.
    pub fn run(&self, cmd: &str) -> Result<String> {
        let (rc, out) = self.output(cmd)?;
        if rc != 0 {
            bail!("[{}] `{cmd}` failed ({rc}): {}", self.name, out.trim());
        }
        Ok(out)
    }

    /// Runs `cmd` in the VM: (exit status, output).
    pub fn output(&self, cmd: &str) -> Result<(i32, String)> {
        self.output_within(cmd, COMMAND_TIMEOUT)
    }

    pub fn output_within(&self, cmd: &str, timeout: Duration) -> Result<(i32, String)> {
        let control = self.control.as_ref().context("VM not ready")?;
        let mut control = control.lock().unwrap_or_else(|e| e.into_inner());
        control
            .exec(cmd, timeout)
            .with_context(|| format!("[{}] console: {}", self.name, self.console_tail()))
    }

    /// The end of the kernel console, for error messages.
    pub fn console_tail(&self) -> String {
        let text = fs::read_to_string(self.dir.join("console.log")).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(15)..].join("\n")
    }

    fn check_alive(&mut self) -> Result<()> {
        if let Some(status) = self.child.try_wait()? {
            let log = fs::read_to_string(self.dir.join("qemu.log")).unwrap_or_default();
            bail!(
                "[{}] QEMU exited ({status}): {}\nconsole:\n{}",
                self.name,
                log.trim(),
                self.console_tail()
            );
        }
        Ok(())
    }
}

impl Starting {
    /// Waits until the VM's shell answers on the control channel.
    pub fn ready(mut self) -> Result<Vm> {
        let deadline = Instant::now() + Duration::from_secs(60);
        let socket = self.vm.dir.join("control.sock");
        let vm = &mut self.vm;
        let mut control = Control::connect(&socket, deadline, &mut || vm.check_alive())?;
        control
            .wait_ready(deadline, &mut || vm.check_alive())
            .with_context(|| format!("[{}] booting; console:\n{}", vm.name, vm.console_tail()))?;
        self.vm.control = Some(Mutex::new(control));
        Ok(self.vm)
    }
}

impl Drop for Vm {
    fn drop(&mut self) {
        self.child.kill().ok();
        self.child.wait().ok();
        // The logs stay for a failed test to be read; `start` removes old ones.
    }
}

/// Run directories (logs) of VMs gone for more than an hour.
fn prune_runs(runs: &std::path::Path) {
    let Ok(entries) = fs::read_dir(runs) else {
        return;
    };
    for e in entries.filter_map(|e| e.ok()) {
        let old = e
            .metadata()
            .and_then(|m| m.modified())
            .ok()
            .and_then(|t| t.elapsed().ok())
            .is_some_and(|age| age > Duration::from_secs(3600));
        if old {
            fs::remove_dir_all(e.path()).ok();
        }
    }
}
