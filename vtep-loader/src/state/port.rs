//! Container ports: the PORTS record, the VNI's port list and the local MAC, kept together
//! with the veth and namespace they describe. A port is recorded only once it is complete;
//! until then the journal names it, so a `port add` killed at any step is undone by the next
//! writer. Removal goes the other way: kernel objects first, the record last.

use anyhow::{Context, Result};
use aya::maps::{HashMap, MapData};
use vtep_common::{
    Addr, FdbEntry, MacVni, Port, IFNAME_MAX, MAX_PORT_ADDRS, MAX_VNI_PORTS, NETNS_NAME_MAX,
};

use super::{fdb::Origin, full, ignore_missing, State, StateError, StateResult};
use crate::{
    args::{IpPrefix, Mac},
    datapath,
    host::remove_if_present,
    lock::Step,
    netns,
    output::{fixed, text_of},
    topology::{self, Netlink},
};

pub struct PortRequest {
    pub netns: String,
    pub mac: Mac,
    /// As given; the IPv6 link-local address is added unless one is among them.
    pub addrs: Vec<IpPrefix>,
    pub vni: u32,
    pub mtu: u32,
    pub ifname: String,
    pub allow_spoofing: bool,
}

impl PortRequest {
    /// Every address the container gets, the link-local one last (derived from the MAC, as
    /// the kernel's default `addr_gen_mode` does, unless one was given).
    pub fn addresses(&self) -> Result<Vec<IpPrefix>> {
        let mut all = self.addrs.clone();
        if !all.iter().any(IpPrefix::is_link_local) {
            all.push(IpPrefix {
                addr: std::net::Ipv6Addr::from(vtep_common::nd::link_local(self.mac.0)).into(),
                len: 64,
            });
        }
        if let Some(dup) = all
            .iter()
            .enumerate()
            .find(|(i, a)| all[..*i].iter().any(|b| b.addr == a.addr))
        {
            anyhow::bail!("address {} given twice", dup.1.addr);
        }
        if all.len() > MAX_PORT_ADDRS {
            anyhow::bail!(
                "too many addresses: a port has at most {MAX_PORT_ADDRS}, its IPv6 link-local one included ({} here)",
                all.len()
            );
        }
        Ok(all)
    }
}

/// Whether what a port record describes still exists.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum PortHealth {
    Ok,
    /// The container namespace was deleted (or replaced by another of the same name).
    NetnsGone,
    /// The host-side veth was deleted.
    VethGone,
}

/// A port as recorded in the PORTS map.
pub struct PortState {
    pub host_ifindex: u32,
    pub port: Port,
    pub health: PortHealth,
}

impl PortState {
    pub fn netns(&self) -> String {
        text_of(&self.port.netns)
    }

    pub fn host_ifname(&self) -> String {
        host_ifname(&self.netns())
    }
}

/// Host-side veth name: derived from the namespace name so it is stable and unique per port,
/// and short enough for IFNAMSIZ.
/// The largest port MTU an underlay of `underlay_mtu` carries to every VTEP the host
/// `cfg` can reach, and the VXLAN overhead that leaves it: 50 bytes over IPv4, 70 over
/// IPv6 (the kernel's vxlan device on a lower device allows the same), the larger one when
/// the host has a local address of each family.
pub fn port_mtu_limit(underlay_mtu: u32, cfg: &vtep_common::Config) -> (u32, &'static str) {
    let (overhead, words) = if cfg.local_ip6 != [0; 16] {
        (
            vtep_common::outer6::ENCAP6_LEN,
            "VXLAN over IPv6's 70 bytes",
        )
    } else {
        (vtep_common::wire::ENCAP_LEN, "VXLAN's 50 bytes")
    };
    (underlay_mtu.saturating_sub(overhead as u32), words)
}

pub fn host_ifname(netns: &str) -> String {
    let hash = netns.bytes().fold(0x811c_9dc5u32, |h, b| {
        (h ^ b as u32).wrapping_mul(0x0100_0193)
    });
    format!("vt{hash:08x}")
}

/// Whether the link `ifindex` is the host veth vtep made for `netns` (an ifindex alone
/// may since name another device).
async fn is_our_veth(nl: &Netlink, ifindex: u32, netns: &str) -> Result<bool> {
    Ok(nl.link_name(ifindex).await?.as_deref() == Some(host_ifname(netns).as_str()))
}

impl State {
    /// Every port, by namespace name, with whether its namespace and veth still exist.
    pub async fn ports_checked(&mut self, nl: &Netlink) -> StateResult<Vec<PortState>> {
        let mut ports = self.ports()?;
        for p in &mut ports {
            let netns = p.netns();
            p.health = if netns::cookie(&netns) != Some(p.port.netns_cookie) {
                PortHealth::NetnsGone
            } else if !is_our_veth(nl, p.host_ifindex, &netns).await? {
                PortHealth::VethGone
            } else {
                PortHealth::Ok
            };
        }
        Ok(ports)
    }

    /// Every port as recorded, by namespace name (health not checked).
    pub fn ports(&mut self) -> StateResult<Vec<PortState>> {
        Ok(port_states(&self.tables()?.ports)?)
    }

    fn port_of(&mut self, netns: &str) -> StateResult<Option<PortState>> {
        Ok(self.ports()?.into_iter().find(|p| p.netns() == netns))
    }

    pub async fn port_add(&mut self, req: &PortRequest) -> StateResult<()> {
        self.check_port(req).await?;
        let step = Step::PortAdd {
            netns: req.netns.clone(),
            netns_existed: netns::exists(&req.netns),
        };
        let netns_existed = matches!(
            step,
            Step::PortAdd {
                netns_existed: true,
                ..
            }
        );
        self.step(step, async |s| {
            let result = s.build_port(req, !netns_existed).await;
            if result.is_err() {
                undo_add(s, &req.netns, netns_existed).await?;
            }
            result
        })
        .await
    }

    /// Everything that could refuse the port, before anything is made.
    async fn check_port(&mut self, req: &PortRequest) -> StateResult<()> {
        req.addresses()?;
        let cfg = self.config()?;
        let dev = crate::output::text_of(&cfg.underlay_name);
        if let Some((mtu, _)) = Netlink::connect()?
            .mtu_and_veth(cfg.underlay_ifindex)
            .await?
        {
            let (limit, overhead) = port_mtu_limit(mtu, &cfg);
            if req.mtu > limit {
                return Err(anyhow::anyhow!(
                    "--mtu {} does not fit the underlay: {dev} has MTU {mtu}, which leaves {limit} inside {overhead}",
                    req.mtu
                )
                .into());
            }
        }
        let existing = self.ports()?;
        if existing.iter().any(|p| p.netns() == req.netns) {
            return Err(StateError::Exists(format!(
                "a port for namespace \"{}\" already exists",
                req.netns
            )));
        }
        if let Some(p) = existing
            .iter()
            .find(|p| p.port.mac == req.mac.0 && p.port.vni == req.vni)
        {
            return Err(StateError::Exists(format!(
                "MAC {} is already used in VNI {} by the port of \"{}\"",
                req.mac,
                req.vni,
                p.netns()
            )));
        }
        let t = self.tables()?;
        // The data path looks up permanent entries before local MACs: keep the two apart.
        // A control plane's entry is the MAC's last known place: the port moves it here.
        let key = MacVni::new(req.mac.0, req.vni);
        let by_hand = |e: &FdbEntry| Origin::of_flags(e.flags) != Origin::ExternLearn;
        if let Some(entry) = t.fdb.get(&key, 0).ok().filter(by_hand) {
            return Err(StateError::Exists(format!(
                "MAC {} has a permanent FDB entry in VNI {} (dst {}); delete it first",
                req.mac,
                req.vni,
                std::net::IpAddr::from(entry.remote_ip)
            )));
        }
        if existing.len() as u32 >= t.capacity.ports {
            return Err(StateError::Full {
                table: "port",
                size: t.capacity.ports,
            });
        }
        let in_vni = existing.iter().filter(|p| p.port.vni == req.vni).count();
        if in_vni >= MAX_VNI_PORTS as usize {
            return Err(StateError::Full {
                table: "VNI port list",
                size: MAX_VNI_PORTS,
            });
        }
        let host_name = host_ifname(&req.netns);
        if Netlink::connect()?.ifindex(&host_name).await?.is_some() {
            return Err(StateError::Exists(format!(
                "interface {host_name} already exists"
            )));
        }
        Ok(())
    }

    async fn build_port(&mut self, req: &PortRequest, create_netns: bool) -> StateResult<()> {
        let netns_cookie = if create_netns {
            netns::create(&req.netns)?
        } else {
            netns::cookie(&req.netns)
                .with_context(|| format!("reading namespace \"{}\"", req.netns))?
        };
        let nl = Netlink::connect()?;
        let ns = netns::open(&req.netns)?;
        let host_name = host_ifname(&req.netns);
        let host_ifindex = nl
            .add_veth(&host_name, req.mtu, &req.ifname, &ns, req.mac.0)
            .await?;
        let inside = Netlink::connect_in(&ns)?;
        let Some(index) = inside.ifindex(&req.ifname).await? else {
            return Err(anyhow::anyhow!(
                "{} did not appear in namespace \"{}\"",
                req.ifname,
                req.netns
            )
            .into());
        };
        let addrs = req.addresses()?;
        {
            // Before the link comes up, or the kernel makes its own link-local address.
            let _in = netns::enter(&ns)?;
            topology::no_auto_link_local(&req.ifname)?;
        }
        for &a in &addrs {
            inside.add_address(index, a).await?;
        }
        inside.set_up(index).await?;
        if let Some(lo) = inside.ifindex("lo").await? {
            inside.set_up(lo).await?;
        }
        {
            // Once the link is up: on Linux 6.12 GRO turned on while the veth is down does
            // not start the NAPI that XDP redirects into it need.
            let _in = netns::enter(&ns)?;
            topology::enable_gro(&req.ifname)?;
        }
        let mut list = [Addr::default(); MAX_PORT_ADDRS];
        let mut lens = [0; MAX_PORT_ADDRS];
        for (i, a) in addrs.iter().enumerate() {
            list[i] = Addr::from(a.addr);
            lens[i] = a.len;
        }
        let port = Port {
            vni: req.vni,
            mac: req.mac.0,
            owns_netns: u8::from(create_netns),
            n_addrs: addrs.len() as u8,
            addrs: list,
            prefix_lens: lens,
            mtu: req.mtu,
            allow_spoofing: u8::from(req.allow_spoofing),
            _pad: [0; 7],
            netns: fixed::<NETNS_NAME_MAX>(&req.netns),
            ifname: fixed::<IFNAME_MAX>(&req.ifname),
            netns_cookie,
        };
        let key = MacVni::new(req.mac.0, req.vni);
        if self.tables()?.fdb.get(&key, 0).is_ok() {
            self.fdb_del(req.mac, req.vni, None).await?;
        }
        // The records, then the program: a port whose link is pinned is whole, and one
        // without is undone from its record.
        let t = self.tables()?;
        let size = t.capacity.ports;
        t.ports
            .insert(host_ifindex, port, 0)
            .map_err(full("port", size))?;
        t.push(req.vni, host_ifindex)?;
        t.local
            .insert(MacVni::new(req.mac.0, req.vni), host_ifindex, 0)
            .map_err(full("local MAC", size))?;
        Ok(datapath::attach_port(
            &self.pins.port_program(),
            &host_name,
            &self.pins.port_link(host_ifindex),
        )?)
    }

    /// Removes whatever exists of a port: its program link, veth and (if vtep made it)
    /// namespace, then its records.
    pub async fn remove_port(&mut self, p: &PortState, nl: &Netlink) -> StateResult<()> {
        self.remove_port_devices(p, nl).await?;
        let t = self.tables()?;
        let key = MacVni::new(p.port.mac, p.port.vni);
        if t.local.get(&key, 0).ok() == Some(p.host_ifindex) {
            ignore_missing(t.local.remove(&key))?;
        }
        t.remove_where::<u32>(p.port.vni, |&i| i == p.host_ifindex)?;
        ignore_missing(t.ports.remove(&p.host_ifindex))
    }

    /// The kernel side of a port: its program link, its veth and the namespace it made.
    /// Each is checked to be the port's before it goes, so a retry after a kill is safe.
    pub(super) async fn remove_port_devices(&self, p: &PortState, nl: &Netlink) -> Result<()> {
        let netns = p.netns();
        remove_if_present(&self.pins.port_link(p.host_ifindex))?;
        if is_our_veth(nl, p.host_ifindex, &netns).await? {
            nl.del_link(p.host_ifindex).await?;
        }
        if p.port.owns_netns != 0 && netns::cookie(&netns) == Some(p.port.netns_cookie) {
            netns::delete(&netns)?;
        }
        Ok(())
    }

    pub async fn port_del(&mut self, netns: &str) -> StateResult<()> {
        let Some(p) = self.port_of(netns)? else {
            return Err(StateError::NotFound(format!(
                "no port for namespace \"{netns}\""
            )));
        };
        self.remove_port(&p, &Netlink::connect()?).await
    }
}

/// The ports a PORTS table records, by namespace.
pub(super) fn port_states(ports: &HashMap<MapData, u32, Port>) -> Result<Vec<PortState>> {
    let mut out: Vec<PortState> = ports
        .iter()
        .map(|e| {
            e.map(|(host_ifindex, port)| PortState {
                host_ifindex,
                port,
                health: PortHealth::Ok,
            })
        })
        .collect::<Result<_, _>>()?;
    out.sort_by_key(|p| p.netns());
    Ok(out)
}

/// Undoes a `port add` for `netns` that did not finish: a port already recorded is whole
/// and stays; otherwise whatever was made of it goes.
pub(super) async fn undo_add(s: &mut State, netns: &str, netns_existed: bool) -> Result<()> {
    let nl = Netlink::connect()?;
    if let Some(p) = s.port_of(netns)? {
        if s.pins.port_link(p.host_ifindex).exists() {
            return Ok(());
        }
        s.remove_port(&p, &nl).await?;
        return Ok(());
    }
    let host_name = host_ifname(netns);
    if let Some(index) = nl.ifindex(&host_name).await? {
        remove_if_present(&s.pins.port_link(index))?;
        nl.del_link(index).await?;
    }
    if !netns_existed && netns::exists(netns) {
        netns::delete(netns)?;
    } else if !netns_existed {
        // A placeholder file of a creation killed before its bind mount.
        remove_if_present(&netns::path(netns))?;
    }
    Ok(())
}
