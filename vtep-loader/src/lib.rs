//! vtep's control plane: the `vtep` CLI, netlink topology, the eBPF programs' loading and
//! attachment, and the state layer every read and write of the tables goes through.

pub mod agent;
pub mod args;
pub mod batch;
pub mod cli;
pub mod clsact;
pub mod datapath;
pub mod fdb;
pub mod host;
pub mod lock;
pub mod monitor;
pub mod neigh;
pub mod netns;
pub mod output;
pub mod pins;
pub mod port;
pub mod state;
pub mod stats;
pub mod topology;
pub mod tunnel;

use anyhow::{bail, Context, Result};
use clap::CommandFactory;

use crate::{
    cli::{Cli, Command, FdbCommand, NeighCommand, PortCommand},
    state::{Access, FdbOp, State},
};

/// Runs one parsed command line. Everything happens on the calling thread: it has entered
/// the target namespace, and netlink sockets and XDP/TC attachments follow the thread.
pub fn run(cli: Cli) -> Result<()> {
    match &cli.command {
        Some(Command::Completions { shell }) => {
            clap_complete::generate(*shell, &mut Cli::command(), "vtep", &mut std::io::stdout());
            return Ok(());
        }
        Some(Command::Man) => {
            return clap_mangen::Man::new(Cli::command())
                .render(&mut std::io::stdout())
                .context("writing the manual page");
        }
        _ => {}
    }
    if !nix::unistd::geteuid().is_root() {
        bail!("must run as root (needs CAP_BPF and CAP_NET_ADMIN)");
    }
    let _inside = match &cli.netns {
        Some(name) => Some(netns::enter(&netns::open(name)?)?),
        None => None,
    };
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting tokio")?;
    rt.block_on(async {
        match (cli.batch, cli.command) {
            (Some(file), _) => batch::run(&file, cli.force, cli.json).await,
            (None, Some(command)) => one(command, cli.json).await,
            (None, None) => bail!(args::BadInput("missing command (try `vtep --help`)".into())),
        }
    })
}

/// One command in its own process: opens the state it needs, as reader or writer.
async fn one(command: Command, json: bool) -> Result<()> {
    if let Command::Prune = command {
        return tunnel::prune(json);
    }
    // The agent is a long-running writer: it takes the lock per batch, never for its life.
    if let Command::Agent(a) = command {
        return match a.command {
            Some(cli::AgentCommand::Status) => agent::show_status(json),
            None => agent::run(agent_options(a)).await,
        };
    }
    let access = match &command {
        Command::Down => Access::Down,
        c if writes(c) => Access::Write,
        _ => Access::Read,
    };
    let mut st = State::open(access).await?;
    if let Command::Down = command {
        return tunnel::down(st).await;
    }
    let result = exec(&mut st, command, json).await;
    // A writer that leaves the host down (refused, or a failed first `up`) leaves no lock.
    if access == Access::Write {
        st.release_if_down()?;
    }
    result
}

/// Whether a command changes the host (and so must hold its lock).
pub fn writes(command: &Command) -> bool {
    match command {
        Command::Show
        | Command::Stats { .. }
        | Command::Monitor
        | Command::Agent(_)
        | Command::Completions { .. }
        | Command::Man => false,
        Command::Port { command } => !matches!(command, PortCommand::Show),
        Command::Fdb { command } => !matches!(command, FdbCommand::Show(_)),
        Command::Neigh { command } => !matches!(command, NeighCommand::Show(_)),
        Command::Up(_) | Command::Down | Command::Prune => true,
    }
}

/// Runs one command against an open state (a command line's, or one line of a batch).
pub async fn exec(st: &mut State, command: Command, json: bool) -> Result<()> {
    match command {
        Command::Up(args) => tunnel::up(st, &args).await,
        Command::Down => {
            st.step(lock::Step::Down, async |s| Ok(s.teardown().await?))
                .await?;
            Ok(())
        }
        Command::Show => tunnel::show(st, json).await,
        Command::Prune => tunnel::prune(json),
        Command::Port { command } => match command {
            PortCommand::Add {
                container,
                mac,
                addr,
                vni,
                mtu,
                ifname,
                allow_spoofing,
            } => {
                let req = port::PortRequest {
                    netns: container,
                    mac,
                    addrs: addr,
                    vni: vni.0,
                    mtu,
                    ifname,
                    allow_spoofing,
                };
                Ok(st.port_add(&req).await?)
            }
            PortCommand::Del { container } => Ok(st.port_del(&container).await?),
            PortCommand::Show => port::show(st, json).await,
        },
        Command::Fdb { command } => match command {
            FdbCommand::Add(a) => fdb::add(st, &a, FdbOp::Add).await,
            FdbCommand::Replace(a) => fdb::add(st, &a, FdbOp::Replace).await,
            FdbCommand::Append(a) => fdb::add(st, &a, FdbOp::Append).await,
            FdbCommand::Del(a) => fdb::del(st, &a).await,
            FdbCommand::Show(f) => fdb::show(st, &f, json).await,
            FdbCommand::Flush(f) => fdb::flush(st, &f).await,
        },
        Command::Neigh { command } => match command {
            NeighCommand::Add(a) => neigh::add(st, &a, false),
            NeighCommand::Replace(a) => neigh::add(st, &a, true),
            NeighCommand::Del(a) => neigh::del(st, &a),
            NeighCommand::Show(f) => neigh::show(st, &f, json),
            NeighCommand::Flush(f) => neigh::flush(st, &f),
        },
        Command::Stats { prometheus } => stats::show(st, json, prometheus),
        Command::Monitor => monitor::run(st, json).await,
        Command::Completions { .. } | Command::Man | Command::Agent(_) => {
            bail!(args::BadInput("not a command for a batch".into()))
        }
    }
}

fn agent_options(a: cli::AgentArgs) -> agent::Options {
    let tls = match (a.etcd_cacert, a.etcd_cert, a.etcd_key) {
        (Some(cacert), Some(cert), Some(key)) => Some(agent::Tls { cacert, cert, key }),
        _ => None,
    };
    agent::Options {
        endpoints: a.etcd,
        // clap requires it unless a subcommand is given.
        node: a.node.unwrap_or_default(),
        prefix: a.prefix,
        ttl: a.ttl,
        metrics: a.metrics,
        tls,
    }
}
