//! iperf3 between two namespaces, results from its JSON report.

use std::{
    fs::File,
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use anyhow::{bail, Context, Result};
use nix::fcntl::{Flock, FlockArg};
use serde_json::Value;

use crate::cmd::{in_ns, output};

/// A one-shot `iperf3 -s -1` in a namespace, killed on drop if still running. Holds a
/// machine-wide lock: two measurements sharing two cores would each measure the other.
pub struct Server {
    child: Child,
    _exclusive: Flock<File>,
}

impl Server {
    /// Starts the server and returns once it accepts connections.
    pub fn start(ns: &str) -> Result<Self> {
        let lock = measurement_lock()?;
        let child = Command::new("ip")
            .args(["netns", "exec", ns, "iperf3", "-s", "-1"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .context("starting iperf3 -s")?;
        let server = Server {
            child,
            _exclusive: lock,
        };
        let deadline = Instant::now() + Duration::from_secs(10);
        while !in_ns(ns, &["ss", "-Hltn", "sport = :5201"])?.contains("5201") {
            if Instant::now() > deadline {
                bail!("iperf3 server in {ns} never listened");
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        Ok(server)
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.child.kill().ok();
        self.child.wait().ok();
    }
}

#[derive(Debug, Clone, Copy)]
pub struct TcpResult {
    pub gbits: f64,
    pub bytes: f64,
    pub retransmits: f64,
}

impl TcpResult {
    /// Retransmitted share of segments, taking every segment as full-sized (MSS 1398 at MTU
    /// 1450), which overstates the share: a conservative figure.
    pub fn retransmit_ratio(&self) -> f64 {
        self.retransmits / (self.bytes / 1398.0).max(1.0)
    }
}

/// How long a client waits for iperf3's control connection: a path that cannot carry TCP
/// fails in seconds instead of after TCP's SYN retries (about two minutes).
const CONNECT_TIMEOUT_MS: &str = "2000";

fn client(ns: &str, args: &[&str]) -> Result<Value> {
    let mut full = vec![
        "netns",
        "exec",
        ns,
        "iperf3",
        "-J",
        "--connect-timeout",
        CONNECT_TIMEOUT_MS,
    ];
    full.extend_from_slice(args);
    let out = output("ip", &full)?;
    let report: Value = serde_json::from_slice(&out.stdout).context("parsing iperf3 -J output")?;
    if let Some(err) = report.get("error") {
        bail!("iperf3 failed: {err}");
    }
    Ok(report)
}

/// One iperf3 exchange with any client arguments (`-u`, `-b`, ...); its JSON report.
pub fn exchange(client_ns: &str, server_ns: &str, dst: &str, args: &[&str]) -> Result<Value> {
    let _server = Server::start(server_ns)?;
    let mut full = vec!["-c", dst];
    full.extend_from_slice(args);
    client(client_ns, &full)
}

/// TCP from `client_ns` to `dst` (served in `server_ns`) for `secs` seconds.
pub fn tcp(
    client_ns: &str,
    server_ns: &str,
    dst: &str,
    secs: u32,
    streams: u32,
) -> Result<TcpResult> {
    let _server = Server::start(server_ns)?;
    let report = client(
        client_ns,
        &[
            "-c",
            dst,
            "-t",
            &secs.to_string(),
            "-P",
            &streams.to_string(),
        ],
    )?;
    let sent = &report["end"]["sum_sent"];
    Ok(TcpResult {
        gbits: sent["bits_per_second"]
            .as_f64()
            .context("bits_per_second")?
            / 1e9,
        bytes: sent["bytes"].as_f64().context("bytes")?,
        retransmits: sent["retransmits"].as_f64().unwrap_or(0.0),
    })
}

/// UDP with `payload`-byte datagrams at full speed; received packets per second.
pub fn udp_pps(
    client_ns: &str,
    server_ns: &str,
    dst: &str,
    secs: u32,
    payload: u32,
) -> Result<f64> {
    let _server = Server::start(server_ns)?;
    let report = client(
        client_ns,
        &[
            "-c",
            dst,
            "-u",
            "-b",
            "0",
            "-l",
            &payload.to_string(),
            "-t",
            &secs.to_string(),
        ],
    )?;
    let sum = &report["end"]["sum"];
    let packets = sum["packets"].as_f64().context("packets")?;
    let lost = sum["lost_packets"].as_f64().unwrap_or(0.0);
    let seconds = sum["seconds"].as_f64().context("seconds")?;
    Ok((packets - lost) / seconds)
}

/// The machine-wide measurement lock `Server` holds, for measurements that run no iperf3
/// (ping floods, program costs): while the returned file is open, no other measurement of
/// this testbed runs.
pub fn measurement_lock() -> Result<Flock<File>> {
    let lock = File::create(std::env::temp_dir().join("vtep-iperf.lock"))?;
    Flock::lock(lock, FlockArg::LockExclusive)
        .map_err(|(_, e)| anyhow::anyhow!("locking the measurement lock: {e}"))
}
