//! Running commands as a user would, with errors that say what failed.

use std::{
    path::PathBuf,
    process::{Command, Output},
};

use anyhow::{bail, Context, Result};

/// Runs `prog args`, failing with its stderr unless it exits 0; returns stdout.
pub fn run(prog: &str, args: &[&str]) -> Result<String> {
    let out = output(prog, args)?;
    if !out.status.success() {
        bail!(
            "`{prog} {}` failed ({}): {}",
            args.join(" "),
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

pub fn output(prog: &str, args: &[&str]) -> Result<Output> {
    Command::new(prog)
        .args(args)
        .output()
        .with_context(|| format!("running {prog}"))
}

/// Runs a command inside network namespace `ns` (`ip netns exec`).
pub fn in_ns(ns: &str, args: &[&str]) -> Result<String> {
    let mut full = vec!["netns", "exec", ns];
    full.extend_from_slice(args);
    run("ip", &full)
}

/// `in_ns` with the command written as one line (words split at spaces, no quoting).
pub fn in_ns_line(ns: &str, line: &str) -> Result<String> {
    in_ns(ns, &line.split_whitespace().collect::<Vec<_>>())
}

/// The `vtep` binary under test: $VTEP_BIN, or the workspace's release build.
pub fn vtep_bin() -> PathBuf {
    std::env::var_os("VTEP_BIN")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(concat!(
                env!("CARGO_MANIFEST_DIR"),
                "/../target/release/vtep"
            ))
        })
}

/// Runs `vtep args` and returns its raw output (status, stdout, stderr).
pub fn vtep_output(args: &[&str]) -> Result<Output> {
    let bin = vtep_bin();
    if !bin.exists() {
        bail!(
            "{} is missing: run `cargo build --release` (or `cargo xtask test`)",
            bin.display()
        );
    }
    Command::new(&bin)
        .args(args)
        .output()
        .context("running vtep")
}

/// Runs `vtep args`, failing with its error line unless it succeeds.
pub fn vtep(args: &[&str]) -> Result<String> {
    let out = vtep_output(args)?;
    if !out.status.success() {
        bail!(
            "`vtep {}` failed: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}
