//! `cargo xtask bench [--quick] [--programs]`: the benchmark of issue 4 (`--programs`: only
//! the eBPF program costs, for quick feedback on the data path) (the measuring lives in the
//! testbed library, so the test suite can run it too). Results go to target/bench/.

use anyhow::{bail, Context, Result};
use vtep_testbed::bench;

pub fn run(args: &[String]) -> Result<()> {
    let (mut quick, mut traffic) = (false, true);
    for arg in args {
        match arg.as_str() {
            "--quick" => quick = true,
            "--programs" => traffic = false,
            _ => bail!("usage: cargo xtask bench [--quick] [--programs]"),
        }
    }
    if !nix::unistd::geteuid().is_root() {
        bail!("the bench creates namespaces and loads eBPF programs: run as root");
    }
    // Stop at the next measurement and tear everything down, rather than die and leak it.
    ctrlc::set_handler(bench::interrupt).context("installing the Ctrl-C handler")?;
    let out = crate::workspace_root().join("target/bench");
    let report = bench::run(quick, traffic, &out)?;
    print!("{}", report.table());
    println!(
        "\nwrote {} and {}",
        out.join("bench.json").display(),
        out.join("bench.svg").display()
    );
    Ok(())
}
