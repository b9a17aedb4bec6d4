//! `cargo xtask bench [--quick]`: the benchmark of issue 4 (the measuring lives in the
//! testbed library, so the test suite can run it too). Results go to target/bench/.

use anyhow::{bail, Context, Result};
use vtep_testbed::bench;

pub fn run(args: &[String]) -> Result<()> {
    let quick = match args {
        [] => false,
        [flag] if flag == "--quick" => true,
        _ => bail!("usage: cargo xtask bench [--quick]"),
    };
    if unsafe { libc::geteuid() } != 0 {
        bail!("the bench creates namespaces and loads eBPF programs: run as root");
    }
    // Stop at the next measurement and tear everything down, rather than die and leak it.
    ctrlc::set_handler(bench::interrupt).context("installing the Ctrl-C handler")?;
    let out = crate::workspace_root().join("target/bench");
    let report = bench::run(quick, &out)?;
    print!("{}", report.table());
    println!(
        "\nwrote {} and {}",
        out.join("bench.json").display(),
        out.join("bench.svg").display()
    );
    Ok(())
}
