//! The `vtep` command line, after iproute2's grammar (`ip -n NETNS -j ...`,
//! `bridge fdb add MAC dst IP vni N`).

use std::net::IpAddr;

use clap::{Parser, Subcommand, ValueEnum};

use crate::args::{self, IpPrefix, Mac, Tos, UdpPort, Vni};

#[derive(Parser, Debug)]
#[command(
    name = "vtep",
    version,
    about = "A VXLAN tunnel endpoint whose data path is eBPF"
)]
pub struct Cli {
    /// Act in network namespace NETNS, like `ip -n`; each namespace has its own vtep state.
    #[arg(short = 'n', long = "netns", global = true, value_name = "NETNS", value_parser = args::parse_netns)]
    pub netns: Option<String>,
    /// JSON output for show and stats.
    #[arg(short = 'j', long = "json", global = true)]
    pub json: bool,
    /// Run the commands in FILE (`-` for standard input), one per line, in one process
    /// under one lock, like `ip -batch`.
    #[arg(
        short = 'b',
        long = "batch",
        value_name = "FILE",
        conflicts_with = "command"
    )]
    pub batch: Option<String>,
    /// With --batch: go on after a line fails.
    #[arg(long, requires = "batch")]
    pub force: bool,
    #[command(subcommand)]
    pub command: Option<Command>,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Load the data path and attach it to the underlay device.
    Up(UpArgs),
    /// Remove everything `up` and `port add` created.
    Down,
    /// The tunnel's settings, attachment and tables (like `ip -d link show vxlan1`).
    Show,
    /// Remove the state of network namespaces that are gone (deleted without `vtep down`).
    Prune,
    /// Container ports (the bridge ports of the classic setup).
    Port {
        #[command(subcommand)]
        command: PortCommand,
    },
    /// The forwarding database: which remote VTEP holds a MAC.
    Fdb {
        #[command(subcommand)]
        command: FdbCommand,
    },
    /// The neighbour table answering ARP for remote containers.
    Neigh {
        #[command(subcommand)]
        command: NeighCommand,
    },
    /// Data-path counters, summed over CPUs.
    Stats {
        /// Prometheus text with the tables' use and capacity (for node_exporter's textfile
        /// collector; an agent's --metrics serves the same).
        #[arg(long, conflicts_with = "json")]
        prometheus: bool,
    },
    /// Stream FDB and neighbour misses as they happen (like `ip monitor` with l2miss/l3miss).
    Monitor,
    /// Control plane: publish this host's ports to etcd and program every other host's
    /// (runs in the foreground; SIGTERM withdraws this host's records). `agent status`:
    /// the state of the agent running for this host.
    #[command(subcommand_negates_reqs = true, args_conflicts_with_subcommands = true)]
    Agent(AgentArgs),
    /// Print a shell completion script (install: `vtep completions bash >
    /// /etc/bash_completion.d/vtep`).
    Completions {
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
    /// Print the manual page (install: `vtep man > /usr/local/share/man/man8/vtep.8`).
    Man,
}

/// Every option keeps its current value when not given on a host that is up (like
/// `ip link set`); the defaults apply when the host comes up.
#[derive(clap::Args, Debug, Default)]
pub struct UpArgs {
    /// Underlay device VXLAN is sent and received on (required the first time).
    #[arg(long, value_parser = args::parse_ifname)]
    pub dev: Option<String>,
    /// This VTEP's underlay address, the outer source IP (required the first time): IPv4 or
    /// IPv6, or one of each (given twice) so one VNI can reach VTEPs of both families.
    /// Given, it replaces the live addresses.
    #[arg(long, value_parser = args::parse_ip, action = clap::ArgAction::Append)]
    pub local: Vec<IpAddr>,
    /// UDP port VXLAN is received on, and the default destination port of FDB entries
    /// [default: 4789].
    #[arg(long, value_parser = |s: &str| s.parse::<UdpPort>())]
    pub port: Option<UdpPort>,
    /// Where VXLAN is decapsulated on the underlay device [default: tc, or xdp when
    /// --xdp-mode is given].
    #[arg(long, value_enum)]
    pub decap: Option<DecapArg>,
    /// XDP attach mode on the underlay device (implies --decap xdp).
    #[arg(long, value_enum)]
    pub xdp_mode: Option<XdpModeArg>,
    /// Learn remote MACs from received frames (the default).
    #[arg(long, conflicts_with = "no_learning")]
    pub learning: bool,
    /// Do not learn remote MACs from received frames (the kernel's `nolearning`).
    #[arg(long)]
    pub no_learning: bool,
    /// Seconds a learned FDB entry lives without being seen again [default: 300].
    #[arg(long, value_parser = args::parse_ageing)]
    pub ageing: Option<u32>,
    /// Outer UDP source port range; the port is hashed from the inner flow
    /// [default: 49152 65535].
    #[arg(long, num_args = 2, value_names = ["MIN", "MAX"], value_parser = |s: &str| s.parse::<UdpPort>())]
    pub srcport: Option<Vec<UdpPort>>,
    /// Outer IPv4 TTL [default: 64].
    #[arg(long, value_parser = args::parse_ttl)]
    pub ttl: Option<u8>,
    /// Outer IPv4 TOS: a number, or `inherit` to copy the inner IPv4 TOS (DSCP and ECN)
    /// [default: 0].
    #[arg(long, value_parser = |s: &str| s.parse::<Tos>())]
    pub tos: Option<Tos>,
    /// Accept VXLAN only from VTEPs in the VNI's FDB (permanent entries) or flood list.
    #[arg(long, conflicts_with = "no_strict_peers")]
    pub strict_peers: bool,
    /// Accept VXLAN from any VTEP (the default).
    #[arg(long)]
    pub no_strict_peers: bool,
    /// Send VXLAN over IPv6 with a zero UDP checksum (RFC 6935; the kernel's
    /// `udp6zerocsumtx`). Off by default: the checksum is computed.
    #[arg(long, conflicts_with = "no_udp6zerocsumtx")]
    pub udp6zerocsumtx: bool,
    /// Compute the UDP checksum of VXLAN over IPv6 (the default).
    #[arg(long)]
    pub no_udp6zerocsumtx: bool,
    /// Accept VXLAN over IPv6 with a zero UDP checksum (RFC 6936; the kernel's
    /// `udp6zerocsumrx`). Off by default: such frames are left to the host.
    #[arg(long, conflicts_with = "no_udp6zerocsumrx")]
    pub udp6zerocsumrx: bool,
    /// Refuse VXLAN over IPv6 with a zero UDP checksum (the default).
    #[arg(long)]
    pub no_udp6zerocsumrx: bool,
    /// Most learned FDB entries kept (least recently used go first; permanent entries never)
    /// [default: 65536]. Fixed until `vtep down`.
    #[arg(long, value_parser = args::parse_capacity)]
    pub max_learned: Option<u32>,
    /// Most permanent FDB entries [default: 1048576]. Fixed until `vtep down`.
    #[arg(long, value_parser = args::parse_capacity)]
    pub max_fdb: Option<u32>,
    /// Most neighbour entries [default: 1048576]. Fixed until `vtep down`.
    #[arg(long, value_parser = args::parse_capacity)]
    pub max_neigh: Option<u32>,
}

#[derive(clap::Args, Debug)]
pub struct AgentArgs {
    #[command(subcommand)]
    pub command: Option<AgentCommand>,
    /// etcd endpoints, comma separated (http://IP:2379, or https:// with the TLS options).
    #[arg(
        long,
        required = true,
        value_delimiter = ',',
        value_name = "URL[,URL...]"
    )]
    pub etcd: Vec<String>,
    /// This host's name in etcd: its records live under PREFIX/v1/nodes/NODE/.
    #[arg(long, required = true, value_parser = crate::agent::parse_node)]
    pub node: Option<String>,
    /// Key prefix of every vtep record.
    #[arg(long, default_value = "/vtep", value_parser = args::parse_prefix)]
    pub prefix: String,
    /// Seconds this host's records outlive the agent if it dies (its lease's TTL).
    #[arg(long, default_value = "10", value_parser = clap::value_parser!(i64).range(2..=3600))]
    pub ttl: i64,
    /// Serve Prometheus metrics on ADDR (IP:PORT).
    #[arg(long, value_name = "ADDR")]
    pub metrics: Option<std::net::SocketAddr>,
    /// CA certificate (PEM) that signed etcd's server certificate.
    #[arg(long, requires_all = ["etcd_cert", "etcd_key"])]
    pub etcd_cacert: Option<std::path::PathBuf>,
    /// This host's client certificate (PEM) for etcd.
    #[arg(long, requires_all = ["etcd_cacert", "etcd_key"])]
    pub etcd_cert: Option<std::path::PathBuf>,
    /// The client certificate's key (PEM).
    #[arg(long, requires_all = ["etcd_cacert", "etcd_cert"])]
    pub etcd_key: Option<std::path::PathBuf>,
}

#[derive(Subcommand, Debug)]
pub enum AgentCommand {
    /// The state of the agent running for this host (etcd, lease, records, conflicts).
    Status,
}

#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum DecapArg {
    /// TC ingress: keeps checksum offload and GSO of skbs from a veth underlay.
    Tc,
    /// XDP: before the stack allocates an skb; best on a NIC.
    Xdp,
}

#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum XdpModeArg {
    /// In the driver (veth supports it).
    Native,
    /// On the skb, after the driver (works on every device).
    Generic,
}

#[derive(Subcommand, Debug)]
pub enum PortCommand {
    /// Create a container port: namespace (if missing), veth pair, MAC, address, data path.
    Add {
        /// Container network namespace (created if it does not exist).
        #[arg(value_name = "CONTAINER_NETNS", value_parser = args::parse_netns)]
        container: String,
        #[arg(long, value_parser = |s: &str| s.parse::<Mac>().and_then(Mac::check_unicast))]
        mac: Mac,
        /// Container address with prefix, like 12.12.12.2/24 or fd00:12::2/64; repeat for
        /// more (8 in all, with the IPv6 link-local one, derived from the MAC unless given).
        #[arg(long, required = true, value_parser = |s: &str| s.parse::<IpPrefix>())]
        addr: Vec<IpPrefix>,
        #[arg(long, value_parser = |s: &str| s.parse::<Vni>())]
        vni: Vni,
        #[arg(long, default_value = "1450", value_parser = args::parse_mtu)]
        mtu: u32,
        /// Interface name inside the container.
        #[arg(long, default_value = "eth0", value_parser = args::parse_ifname)]
        ifname: String,
        /// Let the container send with any source MAC and IP (off: only its own).
        #[arg(long)]
        allow_spoofing: bool,
    },
    /// Remove a container port (and its namespace, if `port add` created it).
    Del {
        #[arg(value_name = "CONTAINER_NETNS", value_parser = args::parse_netns)]
        container: String,
    },
    /// List ports, flagging those whose namespace or veth is gone.
    Show,
}

#[derive(Subcommand, Debug)]
pub enum FdbCommand {
    /// Add a remote MAC: MAC dst IP vni N [port P] [extern_learn]. Fails if the entry exists.
    Add(FdbEntryArgs),
    /// Add or overwrite a remote MAC: MAC dst IP vni N [port P].
    Replace(FdbEntryArgs),
    /// Add a remote VTEP to a VNI's flood list: 00:00:00:00:00:00 dst IP vni N [port P].
    Append(FdbEntryArgs),
    /// Delete a remote MAC (MAC vni N), or a flood-list VTEP (00:00:00:00:00:00 dst IP vni N).
    Del(FdbKeyArgs),
    /// List entries: [vni N] [dst IP] [permanent | dynamic | extern_learn].
    Show(FilterArgs),
    /// Delete every remote entry and flood-list VTEP matching: [vni N] [dst IP]
    /// [permanent | dynamic | extern_learn].
    Flush(FilterArgs),
}

#[derive(clap::Args, Debug)]
pub struct FilterArgs {
    #[arg(num_args = 0.., trailing_var_arg = true, allow_hyphen_values = true, value_name = "FILTER")]
    pub rest: Vec<String>,
}

#[derive(clap::Args, Debug)]
pub struct FdbEntryArgs {
    #[arg(value_parser = |s: &str| s.parse::<Mac>())]
    pub mac: Mac,
    /// dst IP vni N [port P]
    #[arg(num_args = 0.., trailing_var_arg = true, allow_hyphen_values = true, value_name = "dst IP vni N [port P]")]
    pub rest: Vec<String>,
}

#[derive(clap::Args, Debug)]
pub struct FdbKeyArgs {
    #[arg(value_parser = |s: &str| s.parse::<Mac>())]
    pub mac: Mac,
    /// vni N [dst IP]
    #[arg(num_args = 0.., trailing_var_arg = true, allow_hyphen_values = true, value_name = "vni N [dst IP]")]
    pub rest: Vec<String>,
}

#[derive(Subcommand, Debug)]
pub enum NeighCommand {
    /// Add a neighbour: IP lladdr MAC vni N [extern_learn]. Fails if it exists.
    Add(NeighArgs),
    /// Add or overwrite a neighbour: IP lladdr MAC vni N [extern_learn].
    Replace(NeighArgs),
    /// Delete a neighbour: IP vni N.
    Del(NeighArgs),
    /// List neighbours: [IP] [vni N] [permanent | extern_learn].
    Show(FilterArgs),
    /// Delete every neighbour matching: [IP] [vni N] [permanent | extern_learn].
    Flush(FilterArgs),
}

#[derive(clap::Args, Debug)]
pub struct NeighArgs {
    #[arg(value_parser = args::parse_ip)]
    pub ip: IpAddr,
    #[arg(num_args = 0.., trailing_var_arg = true, allow_hyphen_values = true, value_name = "lladdr MAC vni N")]
    pub rest: Vec<String>,
}

/// A clap error as one line, like iproute2's: clap's usage block would bury the problem,
/// but a missing argument's name is on the lines after the first, so it is kept.
pub fn one_line(e: &clap::Error) -> String {
    let text = e.to_string();
    let mut lines = text.lines();
    let first = lines
        .next()
        .unwrap_or_default()
        .trim_start_matches("error: ")
        .trim_end_matches(':');
    if e.kind() == clap::error::ErrorKind::MissingRequiredArgument
        || e.kind() == clap::error::ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand
    {
        let names: Vec<&str> = lines.take_while(|l| !l.is_empty()).map(str::trim).collect();
        if !names.is_empty() {
            return format!("{first}: {}", names.join(", "));
        }
        if e.kind() == clap::error::ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand {
            return "missing subcommand (see --help)".to_string();
        }
    }
    first.to_string()
}
