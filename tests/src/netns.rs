//! Network namespaces that delete themselves.

use std::sync::atomic::{AtomicU32, Ordering};

use anyhow::Result;

use crate::cmd::{output, run};

/// A network namespace created with `ip netns add` and deleted, with every process still
/// running in it, when dropped.
pub struct Netns {
    pub name: String,
}

impl Netns {
    pub fn add(name: &str) -> Result<Self> {
        run("ip", &["netns", "add", name])?;
        let ns = Netns {
            name: name.to_string(),
        };
        run("ip", &["-n", name, "link", "set", "lo", "up"])?;
        Ok(ns)
    }
}

/// Kills what runs in `name`, takes down a vtep host still up there, and deletes it, if it
/// exists; never fails (used on teardown).
pub fn remove(name: &str) {
    if let Ok(out) = output("ip", &["netns", "pids", name]) {
        for pid in String::from_utf8_lossy(&out.stdout).split_whitespace() {
            if let Ok(pid) = pid.parse::<i32>() {
                let pid = nix::unistd::Pid::from_raw(pid);
                nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGKILL).ok();
            }
        }
    }
    down_leftover(name);
    output("ip", &["netns", "del", name]).ok();
}

/// A host namespace deleted while vtep is up leaves its pins and lock directory for `vtep
/// prune`: every test would have to get `vtep down` right on every path. Doing it here
/// catches them all, and saying so names the test that forgot.
fn down_leftover(name: &str) {
    let Ok(out) = crate::cmd::vtep_output(&["-n", name, "down"]) else {
        return;
    };
    let said = String::from_utf8_lossy(&out.stderr);
    if out.status.success() {
        eprintln!("netns::remove: {name} was still up: `vtep down` removed its state");
    } else if !said.contains("not up") && !said.contains("does not exist") {
        eprintln!(
            "netns::remove: `vtep -n {name} down` failed: {}",
            said.trim()
        );
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        remove(&self.name);
    }
}

/// A short name prefix unique to this process and call, so tests can run in parallel
/// (and beside a demo) without sharing a namespace.
pub fn unique_tag(kind: &str) -> String {
    static NEXT: AtomicU32 = AtomicU32::new(0);
    format!(
        "{kind}{}x{}",
        std::process::id() % 100_000,
        NEXT.fetch_add(1, Ordering::Relaxed)
    )
}

/// The calling thread inside network namespace `name` until dropped (for work that must
/// happen there, like BPF_PROG_TEST_RUN with a device of that namespace).
pub struct Inside {
    home: std::fs::File,
}

pub fn enter(name: &str) -> Result<Inside> {
    let home = std::fs::File::open("/proc/thread-self/ns/net")?;
    let target = std::fs::File::open(format!("/run/netns/{name}"))?;
    nix::sched::setns(&target, nix::sched::CloneFlags::CLONE_NEWNET)
        .map_err(|e| anyhow::anyhow!("entering {name}: {e}"))?;
    Ok(Inside { home })
}

impl Drop for Inside {
    fn drop(&mut self) {
        nix::sched::setns(&self.home, nix::sched::CloneFlags::CLONE_NEWNET).ok();
    }
}
