//! vtep's control plane: the `vtep` CLI, netlink topology, and the eBPF programs' loading,
//! attachment and maps.

pub mod args;
pub mod cli;
pub mod clsact;
pub mod datapath;
pub mod fdb;
pub mod monitor;
pub mod neigh;
pub mod netns;
pub mod output;
pub mod pins;
pub mod port;
pub mod stats;
pub mod topology;
pub mod tunnel;

use anyhow::{Context, Result};

use crate::{
    cli::{Cli, Command, FdbCommand, NeighCommand, PortCommand},
    pins::Pins,
};

/// Runs one parsed command. Everything happens on the calling thread: it has entered the
/// target namespace, and netlink sockets and XDP/TC attachments follow the thread.
pub fn run(cli: Cli) -> Result<()> {
    if unsafe { libc::geteuid() } != 0 {
        anyhow::bail!("must run as root (needs CAP_BPF and CAP_NET_ADMIN)");
    }
    let _inside = match &cli.netns {
        Some(name) => Some(netns::enter(&netns::open(name)?)?),
        None => None,
    };
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting tokio")?;
    rt.block_on(dispatch(cli))
}

async fn dispatch(cli: Cli) -> Result<()> {
    let json = cli.json;
    if let Command::Up(args) = &cli.command {
        return tunnel::up(args).await;
    }
    if let Command::Down = &cli.command {
        return tunnel::down().await;
    }
    pins::ensure_bpffs()?;
    let pins = Pins::current()?;
    match cli.command {
        Command::Up(_) | Command::Down => unreachable!("handled above"),
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
                    addr,
                    vni,
                    mtu,
                    ifname,
                    allow_spoofing,
                };
                port::add(&pins, &req).await
            }
            PortCommand::Del { container } => port::del(&pins, &container).await,
            PortCommand::Show => port::show(&pins, json).await,
        },
        Command::Fdb { command } => match command {
            FdbCommand::Add(a) => fdb::add(&pins, &a, fdb::Op::Add),
            FdbCommand::Replace(a) => fdb::add(&pins, &a, fdb::Op::Replace),
            FdbCommand::Append(a) => fdb::add(&pins, &a, fdb::Op::Append),
            FdbCommand::Del(a) => fdb::del(&pins, &a),
            FdbCommand::Show => fdb::show(&pins, json).await,
        },
        Command::Neigh { command } => match command {
            NeighCommand::Add(a) => neigh::add(&pins, &a),
            NeighCommand::Del(a) => neigh::del(&pins, &a),
            NeighCommand::Show => neigh::show(&pins, json),
        },
        Command::Stats => stats::show(&pins, json),
        Command::Monitor => monitor::run(&pins, json).await,
    }
}
