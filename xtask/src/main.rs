//! `cargo xtask setup|demo|test|bench`: the project's own set-up, demo, test runner and benchmark.

mod bench;
mod demo;
mod demo_agent;
mod setup;
mod vms;

use std::{
    io::{BufRead, BufReader},
    process::{Command, ExitCode, Stdio},
};

use anyhow::{bail, Context, Result};

const USAGE: &str = "usage: cargo xtask setup | demo [--agent | --vms [--kernel 6.1|6.12]] | test [-- cargo test args...] | bench [--quick] [--programs] [--scale] [--control-plane] [--vms [--kernel 6.1|6.12] [--runs N]] | soak [--seconds N]";

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let result = match args.first().map(String::as_str) {
        Some("setup") => setup::ensure(),
        Some("demo") if args.iter().any(|a| a == "--vms") => setup::ensure()
            .and_then(|()| build())
            .and_then(|()| vms::demo(&args[1..])),
        Some("demo") => setup::ensure()
            .and_then(|()| build())
            .and_then(|()| match &args[1..] {
                [] => demo::run(),
                [agent] if agent == "--agent" => demo_agent::run(),
                _ => bail!("usage: cargo xtask demo [--agent]"),
            }),
        Some("test") => setup::ensure()
            .and_then(|()| build())
            .and_then(|()| test(&args[1..])),
        Some("soak") => setup::ensure()
            .and_then(|()| build())
            .and_then(|()| soak(&args[1..])),
        Some("bench") if args.iter().any(|a| a == "--vms") => setup::ensure()
            .and_then(|()| build())
            .and_then(|()| vms::bench(&args[1..])),
        Some("bench") => setup::ensure()
            .and_then(|()| build())
            .and_then(|()| bench::run(&args[1..])),
        _ => {
            eprintln!("{USAGE}");
            return ExitCode::from(2);
        }
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("xtask: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn workspace_root() -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("xtask lives in the workspace")
        .to_path_buf()
}

fn cargo(args: &[&str]) -> Result<()> {
    let status = Command::new(env!("CARGO"))
        .args(args)
        .current_dir(workspace_root())
        .env("VTEP_BIN", workspace_root().join("target/release/vtep"))
        .status()
        .context("running cargo")?;
    if !status.success() {
        bail!("`cargo {}` failed", args.join(" "));
    }
    Ok(())
}

/// The `vtep` binary (and with it the eBPF object, built by its build script).
fn build() -> Result<()> {
    cargo(&["build", "--release", "--bin", "vtep"])
}

/// Unit tests of every crate, then the integration tests against the real kernel; ends
/// with one line totalling every test binary's result.
fn test(extra: &[String]) -> Result<()> {
    if !nix::unistd::geteuid().is_root() {
        bail!("the tests create namespaces and load eBPF programs: run as root");
    }
    let mut child = Command::new(env!("CARGO"))
        .args(["test", "--release", "--no-fail-fast"])
        .args(extra)
        .current_dir(workspace_root())
        .env("VTEP_BIN", workspace_root().join("target/release/vtep"))
        .stdout(Stdio::piped())
        .spawn()
        .context("running cargo test")?;
    let (mut passed, mut failed) = (0u64, 0u64);
    for line in BufReader::new(child.stdout.take().context("cargo test stdout")?).lines() {
        let line = line?;
        println!("{line}");
        if let Some(rest) = line.strip_prefix("test result: ") {
            passed += count_before(rest, " passed");
            failed += count_before(rest, " failed");
        }
    }
    let ok = child.wait()?.success();
    println!("vtep: {passed} passed, {failed} failed");
    if !ok || failed > 0 {
        bail!("tests failed");
    }
    Ok(())
}

/// `cargo xtask soak [--seconds N]`: traffic, upgrades and FDB churn together, then loss,
/// table sizes and the loader's memory.
fn soak(args: &[String]) -> Result<()> {
    let seconds = match args {
        [] => 60,
        [flag, n] if flag == "--seconds" => n.parse().context("--seconds takes a whole number")?,
        _ => bail!("usage: cargo xtask soak [--seconds N]"),
    };
    eprintln!("xtask: soaking for {seconds} s (500 pps ping, 500 Mbit/s TCP, FDB churn, `vtep up` every 2 s)");
    let r = vtep_testbed::soak::run(seconds)?;
    println!(
        "pings           {} sent, {} received, {} lost",
        r.pings_sent,
        r.pings_received,
        r.lost()
    );
    println!("tcp             {:.2} Gbit/s", r.tcp_gbits);
    println!("upgrades        {}", r.upgrades);
    println!("fdb operations  {}", r.fdb_ops);
    println!(
        "fdb entries     {} ({} learned)",
        r.fdb_entries, r.learned_entries
    );
    println!("vtep peak RSS   {} KiB", r.loader_max_rss_kib);
    if r.lost() > 0 {
        bail!("{} replies lost", r.lost());
    }
    Ok(())
}

/// The number just before `word` in a `test result:` line.
fn count_before(line: &str, word: &str) -> u64 {
    line.find(word)
        .and_then(|end| line[..end].rsplit([' ', '.']).next())
        .and_then(|n| n.parse().ok())
        .unwrap_or(0)
}
