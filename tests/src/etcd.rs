//! A real etcd (Debian's etcd-server) for the agent's tests and demo, in a network
//! namespace of the testbed, with a temporary data directory; stopped and removed on drop.

use std::{
    fs,
    path::PathBuf,
    process::{Child, Command, Stdio},
    time::Duration,
};

use anyhow::{Context, Result};

use crate::{cmd::run, netns::unique_tag, pki::Pki, wait};

/// The client port. The namespace is the test's own, so the well-known ports are free.
const CLIENT_PORT: u16 = 2379;
const PEER_PORT: u16 = 2380;

pub struct Etcd {
    ns: String,
    ip: String,
    pub url: String,
    dir: PathBuf,
    child: Option<Child>,
    /// With TLS: etcd's own certificate options, and etcdctl's (as the `root` user).
    tls: Option<(Vec<String>, Vec<String>)>,
}

impl Etcd {
    /// Starts etcd in `ns` listening on `ip`, and waits until it answers.
    pub fn start(ns: &str, ip: &str) -> Result<Self> {
        Self::launch(ns, ip, None)
    }

    /// etcd serving TLS only, and requiring a client certificate signed by `pki`'s CA;
    /// `etcdctl` runs as the `root` user (`pki` must have issued its certificate).
    pub fn start_tls(ns: &str, ip: &str, pki: &Pki) -> Result<Self> {
        let server = [
            "--cert-file",
            &pki.path("server.crt"),
            "--key-file",
            &pki.path("server.key"),
            "--trusted-ca-file",
            &pki.path("ca.crt"),
            "--client-cert-auth",
        ]
        .map(str::to_string)
        .to_vec();
        Self::launch(ns, ip, Some((server, pki.client_args("root", ""))))
    }

    fn launch(ns: &str, ip: &str, tls: Option<(Vec<String>, Vec<String>)>) -> Result<Self> {
        // Clients in the namespace itself (etcdctl, etcd's own gateway) reach it over `lo`.
        run("ip", &["-n", ns, "link", "set", "lo", "up"])?;
        let scheme = if tls.is_some() { "https" } else { "http" };
        let mut etcd = Etcd {
            ns: ns.to_string(),
            ip: ip.to_string(),
            url: format!("{scheme}://{ip}:{CLIENT_PORT}"),
            dir: std::env::temp_dir().join(unique_tag("etcd")),
            child: None,
            tls,
        };
        etcd.resume()?;
        Ok(etcd)
    }

    /// Starts it again on the same data directory (after `stop`).
    pub fn resume(&mut self) -> Result<()> {
        let peer = format!("http://{}:{PEER_PORT}", self.ip);
        let child = Command::new("ip")
            .args(["netns", "exec", &self.ns, "etcd", "--name", "test"])
            .arg("--data-dir")
            .arg(&self.dir)
            .args(["--listen-client-urls", &self.url])
            .args(["--advertise-client-urls", &self.url])
            .args(["--listen-peer-urls", &peer])
            .args(["--initial-advertise-peer-urls", &peer])
            .args(["--initial-cluster", &format!("test={peer}")])
            .args(self.tls.iter().flat_map(|(server, _)| server))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .context("starting etcd (is etcd-server installed? `cargo xtask setup`)")?;
        self.child = Some(child);
        let mut last = None;
        wait::until("etcd healthy", Duration::from_secs(15), || {
            let r = self.ctl(&["endpoint", "health"]);
            let ok = r.is_ok();
            last = r.err();
            Ok(ok)
        })
        .with_context(|| format!("last answer: {last:?}"))?;
        Ok(())
    }

    /// Stops etcd (SIGTERM) and waits for it to exit; the data stays.
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            // `ip netns exec` execs etcd, so the child is etcd itself.
            let pid = nix::unistd::Pid::from_raw(child.id() as i32);
            nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM).ok();
            child.wait().ok();
        }
    }

    /// Stops etcd, deletes its data and starts it empty (a rebuilt cluster).
    pub fn wipe(&mut self) -> Result<()> {
        self.stop();
        fs::remove_dir_all(&self.dir).context("removing etcd's data")?;
        self.resume()
    }

    /// `etcdctl ARGS` against this etcd, from its namespace (as `root` with TLS).
    pub fn ctl(&self, args: &[&str]) -> Result<String> {
        let root: Vec<&str> = self
            .tls
            .iter()
            .flat_map(|(_, client)| client.iter().map(String::as_str))
            .collect();
        self.ctl_as(&root, args)
    }

    /// `etcdctl CREDENTIALS ARGS` against this etcd, from its namespace.
    pub fn ctl_as(&self, credentials: &[&str], args: &[&str]) -> Result<String> {
        let endpoints = format!("--endpoints={}", self.url);
        let mut full = vec!["netns", "exec", &self.ns, "etcdctl", &endpoints];
        full.extend_from_slice(credentials);
        full.extend_from_slice(args);
        run("ip", &full)
    }

    /// Every key under `prefix`.
    pub fn keys(&self, prefix: &str) -> Result<Vec<String>> {
        Ok(self
            .ctl(&["get", "--prefix", "--keys-only", prefix])?
            .lines()
            .filter(|l| !l.is_empty())
            .map(str::to_string)
            .collect())
    }
}

impl Drop for Etcd {
    fn drop(&mut self) {
        self.stop();
        fs::remove_dir_all(&self.dir).ok();
    }
}
