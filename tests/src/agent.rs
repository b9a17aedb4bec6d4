//! `vtep agent` as a user runs it: a foreground process per host, its log in a file;
//! killed on drop.

use std::{
    fs,
    path::PathBuf,
    process::{Child, Command, ExitStatus, Stdio},
    time::Duration,
};

use anyhow::{Context, Result};
use nix::{sys::signal::Signal, unistd::Pid};

use crate::{cmd::vtep_bin, netns::unique_tag, wait};

pub struct Agent {
    child: Option<Child>,
    log: PathBuf,
}

impl Agent {
    /// `vtep -n HOST agent --etcd URL --node NODE EXTRA...`, once its session is up.
    pub fn start(host: &str, etcd: &str, node: &str, extra: &[&str]) -> Result<Self> {
        let log = std::env::temp_dir().join(format!("{}.log", unique_tag("agent")));
        let file = fs::File::create(&log)?;
        let child = Command::new(vtep_bin())
            .args(["-n", host, "agent", "--etcd", etcd, "--node", node])
            .args(extra)
            // The caller's VTEP_LOG (e.g. `debug`) carries over.
            .env(
                "VTEP_LOG",
                std::env::var("VTEP_LOG").unwrap_or_else(|_| "info".into()),
            )
            .stdout(Stdio::null())
            .stderr(file)
            .spawn()
            .context("starting vtep agent")?;
        let mut agent = Agent {
            child: Some(child),
            log,
        };
        agent.wait_log("session up", Duration::from_secs(10))?;
        Ok(agent)
    }

    /// Everything the agent logged so far.
    pub fn log(&self) -> String {
        fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Waits for a log line containing `needle`; fails with the log if the agent exits.
    pub fn wait_log(&mut self, needle: &str, timeout: Duration) -> Result<()> {
        let what = format!("agent log line {needle:?}");
        let result = wait::until(&what, timeout, || {
            if self.log().contains(needle) {
                return Ok(true);
            }
            if let Some(status) = self
                .child
                .as_mut()
                .and_then(|c| c.try_wait().ok().flatten())
            {
                anyhow::bail!("the agent exited ({status})");
            }
            Ok(false)
        });
        result
            .map(|_| ())
            .with_context(|| format!("agent log:\n{}", self.log()))
    }

    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    pub fn signal(&self, sig: Signal) -> Result<()> {
        let child = self.child.as_ref().context("agent already reaped")?;
        nix::sys::signal::kill(Pid::from_raw(child.id() as i32), sig)?;
        Ok(())
    }

    /// Waits for the agent to exit.
    pub fn wait(&mut self, timeout: Duration) -> Result<ExitStatus> {
        let child = self.child.as_mut().context("agent already reaped")?;
        let mut status = None;
        wait::until("agent exit", timeout, || {
            status = child.try_wait()?;
            Ok(status.is_some())
        })?;
        self.child = None;
        status.context("agent exit status")
    }
}

impl Drop for Agent {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            child.kill().ok();
            child.wait().ok();
        }
        fs::remove_file(&self.log).ok();
    }
}

/// `GET /metrics` from `addr` inside namespace `ns`, as Prometheus would scrape it.
pub fn scrape(ns: &str, addr: &str) -> Result<String> {
    use std::io::{Read, Write};
    let _inside = crate::netns::enter(ns)?;
    let mut conn =
        std::net::TcpStream::connect(addr).with_context(|| format!("connecting to {addr}"))?;
    conn.write_all(b"GET /metrics HTTP/1.1\r\nHost: vtep\r\nConnection: close\r\n\r\n")?;
    let mut reply = String::new();
    conn.read_to_string(&mut reply)?;
    let (head, body) = reply.split_once("\r\n\r\n").context("no HTTP reply")?;
    anyhow::ensure!(head.starts_with("HTTP/1.1 200"), "{head}");
    Ok(body.to_string())
}
