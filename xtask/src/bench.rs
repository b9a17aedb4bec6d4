//! `cargo xtask bench [--quick] [--programs | --scale | --control-plane]`: the benchmark of
//! issue 4 (`--programs`: only the eBPF program costs, for quick feedback on the data path;
//! `--scale`: long flood lists and a million-entry load; `--control-plane`: `vtep agent`
//! against 1,000 simulated nodes on etcd) (the measuring lives in the testbed library, so
//! the test suite can run it too). Results go to target/bench/.

use std::path::Path;

use anyhow::{bail, Context, Result};
use vtep_testbed::bench;

const USAGE: &str = "usage: cargo xtask bench [--quick] [--programs | --scale | --control-plane]";

pub fn run(args: &[String]) -> Result<()> {
    let (mut quick, mut traffic, mut scale, mut control_plane) = (false, true, false, false);
    for arg in args {
        match arg.as_str() {
            "--quick" => quick = true,
            "--programs" => traffic = false,
            "--scale" => scale = true,
            "--control-plane" => control_plane = true,
            _ => bail!(USAGE),
        }
    }
    if !nix::unistd::geteuid().is_root() {
        bail!("the bench creates namespaces and loads eBPF programs: run as root");
    }
    let out = crate::workspace_root().join("target/bench");
    if control_plane {
        let figures = control_plane_figures(quick)?;
        println!("{figures:#}");
        return write_json(&out, "control-plane.json", &figures);
    }
    if scale {
        let report = bench::scale::run()?;
        print!("{}", report.table());
        return write_json(&out, "scale.json", &report.to_json());
    }
    // Stop at the next measurement and tear everything down, rather than die and leak it.
    ctrlc::set_handler(bench::interrupt).context("installing the Ctrl-C handler")?;
    let report = bench::run(quick, traffic, &out)?;
    print!("{}", report.table());
    println!(
        "\nwrote {} and {}",
        out.join("bench.json").display(),
        out.join("bench.svg").display()
    );
    Ok(())
}

/// The control-plane bench, run as the testbed's own binary (it links etcd-client, which
/// xtask cannot: see xtask/Cargo.toml).
fn control_plane_figures(quick: bool) -> Result<serde_json::Value> {
    let mut cmd = std::process::Command::new(env!("CARGO"));
    cmd.args([
        "run",
        "--quiet",
        "--release",
        "-p",
        "vtep-testbed",
        "--bin",
        "control-plane-bench",
        "--",
    ])
    .current_dir(crate::workspace_root())
    .env(
        "VTEP_BIN",
        crate::workspace_root().join("target/release/vtep"),
    )
    .stderr(std::process::Stdio::inherit());
    if quick {
        cmd.arg("--quick");
    }
    let out = cmd.output().context("running the control-plane bench")?;
    if !out.status.success() {
        bail!("the control-plane bench failed");
    }
    serde_json::from_slice(&out.stdout).context("reading the control-plane bench's figures")
}

fn write_json(dir: &Path, name: &str, value: &serde_json::Value) -> Result<()> {
    std::fs::create_dir_all(dir)?;
    let file = dir.join(name);
    std::fs::write(&file, format!("{value:#}\n"))
        .with_context(|| format!("writing {}", file.display()))?;
    println!("\nwrote {}", file.display());
    Ok(())
}
