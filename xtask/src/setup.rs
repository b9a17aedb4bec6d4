//! Installs what building and testing vtep needs, idempotently: a second run only checks
//! (a few seconds).

use std::process::Command;

use anyhow::{bail, Context, Result};

/// Debian packages: LLVM 22 for bpf-linker, and the tools the tests and demo use as a user
/// would (ip, ping, iperf3, tcpdump, tshark, bpftool, jq; strace injects faults); etcd for
/// the agent's tests and demo, and protoc with the well-known protos, which the etcd-client
/// crate's build script needs.
const PACKAGES: &[&str] = &[
    "llvm-22-dev",
    "libpolly-22-dev",
    "libzstd-dev",
    "zlib1g-dev",
    "iproute2",
    "iputils-ping",
    "iperf3",
    "tcpdump",
    "tshark",
    "bpftool",
    "jq",
    "strace",
    // The VM testbed: QEMU, busybox for the VMs' small utilities, cpio for the
    // initramfs, kmod for module load order, xz for 6.12's compressed modules.
    "qemu-system-x86",
    "busybox-static",
    "cpio",
    "kmod",
    "xz-utils",
    "etcd-server",
    "etcd-client",
    "protobuf-compiler",
    "libprotobuf-dev",
];

const BPF_LINKER_VERSION: &str = "0.13.0";

pub fn ensure() -> Result<()> {
    ensure_packages()?;
    ensure_nightly_rust_src()?;
    ensure_bpf_linker()?;
    // Debian's kernels for the VMs (bookworm's 6.1, bookworm-backports' 6.12) through a
    // private APT configuration under target/vm/apt; cached after the first run.
    vtep_testbed::vm::prepare()
}

fn quiet(cmd: &mut Command) -> Result<String> {
    let out = cmd.output().with_context(|| format!("running {cmd:?}"))?;
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

fn loud(cmd: &mut Command) -> Result<()> {
    eprintln!("xtask: {cmd:?}");
    if !cmd
        .status()
        .with_context(|| format!("running {cmd:?}"))?
        .success()
    {
        bail!("{cmd:?} failed");
    }
    Ok(())
}

fn ensure_packages() -> Result<()> {
    let missing: Vec<&str> = PACKAGES
        .iter()
        .copied()
        .filter(|p| {
            quiet(Command::new("dpkg-query").args(["-W", "-f=${Status}", p]))
                .map(|s| s != "install ok installed")
                .unwrap_or(true)
        })
        .collect();
    if missing.is_empty() {
        return Ok(());
    }
    if !nix::unistd::geteuid().is_root() {
        bail!("missing packages {missing:?}: run as root to install them");
    }
    loud(Command::new("apt-get").args(["update", "-qq"]))?;
    loud(
        Command::new("apt-get")
            .args(["install", "-y", "-qq", "--no-install-recommends"])
            .args(&missing)
            .env("DEBIAN_FRONTEND", "noninteractive"),
    )
}

fn ensure_nightly_rust_src() -> Result<()> {
    let installed = quiet(Command::new("rustup").args([
        "component",
        "list",
        "--toolchain",
        "nightly",
        "--installed",
    ]))?;
    if installed.lines().any(|l| l.starts_with("rust-src")) {
        return Ok(());
    }
    if !quiet(Command::new("rustup").args(["toolchain", "list"]))?.contains("nightly") {
        loud(Command::new("rustup").args([
            "toolchain",
            "install",
            "nightly",
            "--profile",
            "minimal",
        ]))?;
    }
    loud(Command::new("rustup").args(["component", "add", "rust-src", "--toolchain", "nightly"]))
}

fn ensure_bpf_linker() -> Result<()> {
    let version = Command::new("bpf-linker").arg("--version").output();
    if let Ok(out) = version {
        if String::from_utf8_lossy(&out.stdout).contains(BPF_LINKER_VERSION) {
            return Ok(());
        }
    }
    // Built against Debian's LLVM 22, the LLVM the nightly compiler emits bitcode for.
    loud(
        Command::new(env!("CARGO"))
            .args([
                "install",
                "bpf-linker",
                "--version",
                BPF_LINKER_VERSION,
                "--locked",
            ])
            .args(["--no-default-features", "--features", "llvm-22"])
            .env("LLVM_PREFIX", "/usr/lib/llvm-22"),
    )
}
