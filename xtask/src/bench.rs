//! `cargo xtask bench [--quick] [--programs | --control-plane]`: the benchmark of issue 4
//! (`--programs`: only the eBPF program costs, for quick feedback on the data path;
//! `--control-plane`: `vtep agent` against 1,000 simulated nodes on etcd) (the measuring
//! lives in the testbed library, so the test suite can run it too). Results go to
//! target/bench/.

use anyhow::{bail, Context, Result};
use vtep_testbed::bench;

pub fn run(args: &[String]) -> Result<()> {
    let (mut quick, mut traffic, mut control_plane) = (false, true, false);
    for arg in args {
        match arg.as_str() {
            "--quick" => quick = true,
            "--programs" => traffic = false,
            "--control-plane" => control_plane = true,
            _ => bail!("usage: cargo xtask bench [--quick] [--programs | --control-plane]"),
        }
    }
    if !nix::unistd::geteuid().is_root() {
        bail!("the bench creates namespaces and loads eBPF programs: run as root");
    }
    let out = crate::workspace_root().join("target/bench");
    if control_plane {
        let scale = if quick {
            bench::control_plane::Scale::QUICK
        } else {
            bench::control_plane::Scale::FULL
        };
        let figures = bench::control_plane::run(scale)?;
        let text = serde_json::to_string_pretty(&figures)?;
        println!("{text}");
        std::fs::create_dir_all(&out)?;
        let file = out.join("control-plane.json");
        std::fs::write(&file, text).with_context(|| format!("writing {}", file.display()))?;
        println!("\nwrote {}", file.display());
        return Ok(());
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
