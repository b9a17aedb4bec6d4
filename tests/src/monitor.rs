//! `vtep -j monitor` as a user runs it: started in the background, its JSON lines read as
//! they come, stopped with a signal. Killed on drop.

use std::{
    io::{BufRead, BufReader},
    process::{Child, Command, Stdio},
    sync::mpsc,
    time::Duration,
};

use anyhow::{bail, Context, Result};
use nix::{sys::signal::Signal, unistd::Pid};
use serde_json::Value;

use crate::cmd::vtep_bin;

pub struct Monitor {
    child: Child,
    events: mpsc::Receiver<String>,
}

impl Monitor {
    /// Starts `vtep -n NS -j monitor` and waits until it says it is reading.
    pub fn start(ns: &str) -> Result<Self> {
        let mut child = Command::new(vtep_bin())
            .args(["-n", ns, "-j", "monitor"])
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()?;
        let first = BufReader::new(child.stderr.take().context("stderr")?)
            .lines()
            .next()
            .transpose()?
            .unwrap_or_default();
        if !first.contains("monitoring") {
            child.kill().ok();
            child.wait().ok();
            bail!("monitor did not start: {first}");
        }
        let (tx, events) = mpsc::channel();
        let stdout = child.stdout.take().context("stdout")?;
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        Ok(Self { child, events })
    }

    /// The next event, or None when none comes within `wait`.
    pub fn next(&self, wait: Duration) -> Result<Option<Value>> {
        match self.events.recv_timeout(wait) {
            Ok(line) => Ok(Some(serde_json::from_str(&line)?)),
            Err(_) => Ok(None),
        }
    }

    /// Sends `signal` and waits for the exit; true when the monitor exited with success.
    pub fn stop(mut self, signal: Signal) -> Result<bool> {
        nix::sys::signal::kill(Pid::from_raw(self.child.id() as i32), signal)?;
        Ok(self.child.wait()?.success())
    }
}

impl Drop for Monitor {
    fn drop(&mut self) {
        self.child.kill().ok();
        self.child.wait().ok();
    }
}
