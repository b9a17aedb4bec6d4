//! `cargo xtask bench [--quick] [--programs] [--scale]`: the benchmark of issue 4
//! (`--programs`: only the eBPF program costs, for quick feedback on the data path;
//! `--scale`: long flood lists and a million-entry load, issue 12) (the measuring lives in
//! the testbed library, so the test suite can run it too). Results go to target/bench/.

use anyhow::{bail, Context, Result};
use vtep_testbed::bench;

pub fn run(args: &[String]) -> Result<()> {
    let (mut quick, mut traffic, mut scale) = (false, true, false);
    for arg in args {
        match arg.as_str() {
            "--quick" => quick = true,
            "--programs" => traffic = false,
            "--scale" => scale = true,
            _ => bail!("usage: cargo xtask bench [--quick] [--programs] [--scale]"),
        }
    }
    if !nix::unistd::geteuid().is_root() {
        bail!("the bench creates namespaces and loads eBPF programs: run as root");
    }
    // Stop at the next measurement and tear everything down, rather than die and leak it.
    ctrlc::set_handler(bench::interrupt).context("installing the Ctrl-C handler")?;
    let out = crate::workspace_root().join("target/bench");
    if scale {
        let report = bench::scale::run()?;
        print!("{}", report.table());
        std::fs::create_dir_all(&out)?;
        let path = out.join("scale.json");
        std::fs::write(&path, format!("{:#}\n", report.to_json()))?;
        println!("\nwrote {}", path.display());
        return Ok(());
    }
    let report = bench::run(quick, traffic, &out)?;
    print!("{}", report.table());
    println!(
        "\nwrote {} and {}",
        out.join("bench.json").display(),
        out.join("bench.svg").display()
    );
    Ok(())
}
