//! `vtep agent`: the control plane on etcd. It publishes this host's VTEP, flood and
//! endpoint records under one lease, and programs every other node's records into the
//! tables (origin `extern_learn`) through the state layer.
//!
//! Failures: while etcd is unreachable the tables stay as they are (forwarding goes on with
//! the last known state) and the agent retries with backoff; every new session grants a
//! new lease, publishes everything again and reconciles from a full list, which also covers
//! an etcd restarted empty.

mod etcd;
mod metrics;
mod model;
mod program;
mod publish;
mod records;
mod status;

use std::{collections::BTreeSet, net::SocketAddr, sync::Arc, time::Duration};

use anyhow::{bail, Context, Result};
use etcd_client::{Client, WatchOptions};
use futures::FutureExt;
use tokio::{
    signal::unix::{signal, SignalKind},
    time::{interval, sleep, Instant, MissedTickBehavior},
};
use tracing::{debug, info, warn};

pub use etcd::Tls;

use self::{
    program::Programmer,
    publish::{own_records, Publisher, POLL},
    records::Schema,
    status::Status,
};
use crate::state::{Access, State, StateError};

pub struct Options {
    pub endpoints: Vec<String>,
    pub node: String,
    pub prefix: String,
    pub ttl: i64,
    pub metrics: Option<SocketAddr>,
    pub tls: Option<Tls>,
}

pub async fn run(opts: Options) -> Result<()> {
    init_logging();
    let tls = opts.tls.as_ref().map(Tls::options).transpose()?;
    // A host that is not up has nothing to publish: say so now rather than retry forever.
    State::open(Access::Read).await?.config()?;
    let status = Arc::new(Status::default());
    let status_file = crate::host::agent_status_file(crate::netns::this_cookie()?);
    std::fs::create_dir_all(crate::host::RUN_DIR)?;
    if let Some(addr) = opts.metrics {
        metrics::serve(addr, status.clone()).await?;
    }
    let mut stop = Stop::new()?;
    let schema = Schema::new(&opts.prefix);
    let mut programmer = Programmer::new(schema.clone(), &opts.node);
    info!(
        "agent {} starting: etcd {}, records under {}",
        opts.node,
        opts.endpoints.join(","),
        schema.node_prefix(&opts.node)
    );
    let mut backoff = Duration::ZERO;
    // Whether etcd is known to be unreachable (and was said so).
    let mut down = false;
    loop {
        let session = Session {
            opts: &opts,
            programmer: &mut programmer,
            status: &status,
            down: &mut down,
            stop: &mut stop,
        };
        let ended = session.run(tls.as_ref(), &status_file).await;
        let Err(e) = ended else {
            return stopped(&status_file);
        };
        if host_gone(&e) {
            stopped(&status_file)?;
            bail!(
                "this host went down (`vtep down`): its records are withdrawn and the agent stops"
            );
        }
        let msg = format!("{e:#}");
        status.connected(false);
        status.error(&msg);
        save(&status, &status_file, &opts);
        // Once per state change, not per attempt: later failures differ only in detail.
        if down {
            debug!("etcd still unreachable: {msg}");
        } else {
            warn!("etcd session failed, retrying with backoff: {msg}");
            backoff = Duration::ZERO;
        }
        down = true;
        backoff = (backoff * 2).clamp(Duration::from_millis(200), Duration::from_secs(5));
        tokio::select! {
            _ = sleep(backoff) => {}
            _ = stop.recv() => return stopped(&status_file),
        }
    }
}

/// Whether a session ended because the host is no longer up: nothing is left to publish or
/// program, and retrying cannot help (and must not read as an etcd failure).
fn host_gone(e: &anyhow::Error) -> bool {
    e.chain()
        .any(|c| matches!(c.downcast_ref::<StateError>(), Some(StateError::NotUp)))
}

fn stopped(status_file: &std::path::Path) -> Result<()> {
    // Gone with the agent: `vtep agent status` then says none runs.
    if let Err(e) = std::fs::remove_file(status_file) {
        debug!("removing {}: {e}", status_file.display());
    }
    info!("stopped; the data path keeps running");
    Ok(())
}

fn save(status: &Status, file: &std::path::Path, opts: &Options) {
    if let Err(e) = status.save(file, &opts.node, &opts.endpoints) {
        debug!("status file: {e:#}");
    }
}

/// `vtep agent status`: what the agent of this host last wrote, if one runs.
pub fn show_status(json: bool) -> Result<()> {
    let file = crate::host::agent_status_file(crate::netns::this_cookie()?);
    let report: Option<status::Report> = std::fs::read(&file)
        .ok()
        .and_then(|b| serde_json::from_slice(&b).ok());
    // A killed agent leaves its file: trust it only while its process is a vtep.
    let alive = |pid: u32| {
        std::fs::read_to_string(format!("/proc/{pid}/comm")).is_ok_and(|c| c.trim() == "vtep")
    };
    let Some(r) = report.filter(|r| alive(r.pid)) else {
        bail!("no vtep agent runs for this host");
    };
    if json {
        println!("{}", serde_json::to_string(&r)?);
        return Ok(());
    }
    let lease = r.lease_ttl.map_or("none".to_string(), |t| format!("{t} s"));
    println!(
        "agent {} pid {}: etcd {} ({}), lease {lease}",
        r.node,
        r.pid,
        if r.connected {
            "connected"
        } else {
            "unreachable"
        },
        r.etcd.join(",")
    );
    println!(
        "  {} records published, {} endpoints of other nodes programmed, {} malformed records skipped, {} MAC conflicts, {} refused",
        r.published, r.programmed, r.malformed, r.conflicts, r.refused
    );
    if let Some(e) = r.last_error {
        println!("  last error: {e}");
    }
    Ok(())
}

/// SIGTERM or SIGINT (withdraw this node's records and exit), or SIGHUP (exit and leave
/// them to their lease, so an agent restarted within the TTL takes them over and no other
/// host ever sees them go: a restart without a blip).
struct Stop {
    term: tokio::signal::unix::Signal,
    int: tokio::signal::unix::Signal,
    hup: tokio::signal::unix::Signal,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Exit {
    Withdraw,
    Restart,
}

impl Stop {
    fn new() -> Result<Self> {
        Ok(Stop {
            term: signal(SignalKind::terminate()).context("SIGTERM handler")?,
            int: signal(SignalKind::interrupt()).context("SIGINT handler")?,
            hup: signal(SignalKind::hangup()).context("SIGHUP handler")?,
        })
    }

    async fn recv(&mut self) -> Exit {
        tokio::select! {
            _ = self.term.recv() => Exit::Withdraw,
            _ = self.int.recv() => Exit::Withdraw,
            _ = self.hup.recv() => Exit::Restart,
        }
    }
}

fn init_logging() {
    use std::io::IsTerminal;
    let filter = tracing_subscriber::EnvFilter::try_from_env("VTEP_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .with_target(false)
        .with_env_filter(filter)
        .init();
}

/// One session with etcd: a lease, this node's records on it, and list-then-watch of
/// every node's records, until etcd fails (an error) or a signal comes (Ok). A signal
/// revokes the lease, so this node's records vanish everywhere at once.
struct Session<'a> {
    opts: &'a Options,
    programmer: &'a mut Programmer,
    status: &'a Arc<Status>,
    down: &'a mut bool,
    stop: &'a mut Stop,
}

impl Session<'_> {
    async fn run(
        self,
        tls: Option<&etcd_client::TlsOptions>,
        status_file: &std::path::Path,
    ) -> Result<()> {
        let Session {
            opts,
            programmer,
            status,
            down,
            stop,
        } = self;
        let connecting = async {
            let mut client = etcd::connect(&opts.endpoints, tls).await?;
            let lease = etcd::rpc(client.lease_grant(opts.ttl, None)).await?.id();
            anyhow::Ok((client, lease))
        };
        let (mut client, lease) = tokio::select! {
            r = connecting => r?,
            _ = stop.recv() => return Ok(()),
        };
        let client = &mut client;
        let mut renewal = Renewal::start(client.clone(), lease, opts.ttl, status.clone()).await?;
        let mut publisher = Publisher::new(programmer.schema.clone(), opts.node.clone(), lease);
        publisher.publish_all(client, &own_records().await?).await?;
        status.published(publisher.count());
        let revision = programmer.relist(client, status).await?;
        let mut watch = watch_from(client, &programmer.schema, revision).await?;
        status.connected(true);
        status.renewed(opts.ttl);
        if std::mem::take(down) {
            info!("etcd reachable again");
        }
        info!(
            "session up: lease {lease:x} ({} s), {} records published",
            opts.ttl,
            publisher.count()
        );
        let mut poll = interval(POLL);
        poll.set_missed_tick_behavior(MissedTickBehavior::Delay);
        let mut ports_error: Option<String> = None;
        let ended: Result<()> = async { loop {
            tokio::select! {
                exit = stop.recv() => {
                    if exit == Exit::Restart {
                        info!(
                            "leaving lease {lease:x} to expire in {} s: an agent started before then takes the records over",
                            opts.ttl
                        );
                        return Ok(());
                    }
                    withdraw(client, lease).await;
                    return Ok(());
                }
                ended = &mut renewal.0 => {
                    ended.context("lease renewal task")??;
                    bail!("lease renewal ended");
                }
                _ = poll.tick() => match own_records().await {
                    Ok(want) => {
                        save(status, status_file, opts);
                        ports_error = None;
                        publisher.sync(client, &want).await?;
                        status.published(publisher.count());
                    }
                    Err(StateError::NotUp) => return Err(StateError::NotUp.into()),
                    Err(e) => {
                        let msg = e.to_string();
                        if ports_error.as_deref() != Some(msg.as_str()) {
                            warn!("cannot read this host's ports: {msg}");
                            ports_error = Some(msg);
                        }
                    }
                },
                m = watch.message() => {
                    let mut batch = vec![m?.context("etcd closed the watch")?];
                    // Whatever else already arrived goes into the same batch (one lock).
                    while let Some(Ok(Some(more))) = watch.message().now_or_never() {
                        batch.push(more);
                    }
                    let mut targets = BTreeSet::new();
                    for resp in &batch {
                        if resp.canceled() || resp.compact_revision() > 0 {
                            info!(
                                "watch lost its place (compacted at revision {}): listing again",
                                resp.compact_revision()
                            );
                            let revision = programmer.relist(client, status).await?;
                            watch = watch_from(client, &programmer.schema, revision).await?;
                            targets.clear();
                            break;
                        }
                        for ev in resp.events() {
                            let Some(kv) = ev.kv() else { continue };
                            let change = programmer.change(ev.event_type(), kv, status);
                            targets.extend(change.targets);
                            if let Some((kind, record)) = change.own {
                                publisher.forget(kind, record.as_ref());
                            }
                        }
                    }
                    programmer.apply(targets, status).await?;
                    save(status, status_file, opts);
                }
            }
        } }
        .await;
        if ended.as_ref().is_err_and(host_gone) {
            withdraw(client, lease).await;
        }
        ended
    }
}

/// Revokes the session's lease: this node's records vanish everywhere at once.
async fn withdraw(client: &mut Client, lease: i64) {
    match etcd::rpc(client.lease_revoke(lease)).await {
        Ok(_) => info!("lease {lease:x} revoked: this node's records are withdrawn"),
        Err(e) => {
            warn!("could not revoke lease {lease:x} (the records expire with it): {e:#}")
        }
    }
}

/// Lease renewal in a task of its own: the session waits for the host's lock while it
/// programs a batch, and a CLI command may hold that lock for longer than the TTL; a
/// renewal must never wait for it. Ends (with the error) when renewal fails; aborted with
/// the session.
struct Renewal(tokio::task::JoinHandle<Result<()>>);

impl Renewal {
    async fn start(mut client: Client, lease: i64, ttl: i64, status: Arc<Status>) -> Result<Self> {
        let (mut keeper, mut renewals) = etcd::rpc(client.lease_keep_alive(lease)).await?;
        let ttl_s = Duration::from_secs(ttl as u64);
        let task = tokio::spawn(async move {
            let mut renew = interval(Duration::from_secs((ttl as u64 / 3).max(1)));
            let mut last_renewal = Instant::now();
            loop {
                tokio::select! {
                    _ = renew.tick() => {
                        if last_renewal.elapsed() > ttl_s {
                            bail!("etcd has not renewed the lease for {ttl} s");
                        }
                        keeper.keep_alive().await?;
                    }
                    m = renewals.message() => {
                        let m = m?.context("etcd closed the lease renewal stream")?;
                        if m.ttl() <= 0 {
                            bail!("lease {lease:x} expired");
                        }
                        last_renewal = Instant::now();
                        status.renewed(m.ttl());
                    }
                }
            }
        });
        Ok(Renewal(task))
    }
}

impl Drop for Renewal {
    fn drop(&mut self) {
        self.0.abort();
    }
}

async fn watch_from(
    client: &mut Client,
    schema: &Schema,
    revision: i64,
) -> Result<etcd_client::WatchStream> {
    let opts = WatchOptions::new()
        .with_prefix()
        .with_start_revision(revision + 1);
    etcd::rpc(client.watch(schema.nodes.clone(), Some(opts))).await
}

/// `--node` as clap checks it.
pub fn parse_node(s: &str) -> Result<String> {
    match records::check_node(s) {
        Ok(()) => Ok(s.to_string()),
        Err(e) => bail!(e),
    }
}
