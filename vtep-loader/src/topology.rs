//! The netlink side of a port: veth pairs, addresses, link state, in whichever namespace the
//! netlink socket was opened (a socket stays in the namespace it was created in).

use std::{fs::File, io, net::IpAddr, os::fd::AsRawFd};

use anyhow::{anyhow, Context, Result};
use futures::TryStreamExt;
use nix::sys::socket::{socket, AddressFamily, SockFlag, SockType};
use rtnetlink::{
    packet_route::{
        address::{AddressAttribute, AddressFlags, AddressHeaderFlags},
        link::{InfoData, InfoKind, InfoVeth, LinkAttribute, LinkInfo, LinkMessage},
    },
    Handle, LinkMessageBuilder, LinkUnspec, LinkVeth,
};

use crate::{args::IpPrefix, netns};

pub struct Netlink {
    handle: Handle,
}

impl Netlink {
    /// A netlink connection bound to the calling thread's current network namespace.
    pub fn connect() -> Result<Self> {
        let (conn, handle, _) = rtnetlink::new_connection().context("opening a netlink socket")?;
        tokio::spawn(conn);
        Ok(Self { handle })
    }

    /// A netlink connection inside the namespace `ns`.
    pub fn connect_in(ns: &File) -> Result<Self> {
        let _inside = netns::enter(ns)?;
        Self::connect()
    }

    pub async fn ifindex(&self, name: &str) -> Result<Option<u32>> {
        Ok(self
            .find(self.handle.link().get().match_name(name.to_string()))
            .await?
            .map(|m| m.header.index))
    }

    pub async fn link_name(&self, index: u32) -> Result<Option<String>> {
        let msg = self
            .find(self.handle.link().get().match_index(index))
            .await?;
        Ok(msg.and_then(|m| {
            m.attributes.into_iter().find_map(|a| match a {
                LinkAttribute::IfName(n) => Some(n),
                _ => None,
            })
        }))
    }

    /// The MTU of link `index`, and whether it is a veth.
    pub async fn mtu_and_veth(&self, index: u32) -> Result<Option<(u32, bool)>> {
        let msg = self
            .find(self.handle.link().get().match_index(index))
            .await?;
        Ok(msg.map(|m| {
            let mut mtu = 0;
            let mut veth = false;
            for a in m.attributes {
                match a {
                    LinkAttribute::Mtu(n) => mtu = n,
                    LinkAttribute::LinkInfo(infos) => {
                        veth |= infos
                            .iter()
                            .any(|i| matches!(i, LinkInfo::Kind(InfoKind::Veth)))
                    }
                    _ => {}
                }
            }
            (mtu, veth)
        }))
    }

    async fn find(&self, req: rtnetlink::LinkGetRequest) -> Result<Option<LinkMessage>> {
        match req.execute().try_next().await {
            Ok(m) => Ok(m),
            Err(rtnetlink::Error::NetlinkError(e)) if e.raw_code() == -libc::ENODEV => Ok(None),
            Err(e) => Err(e).context("querying links"),
        }
    }

    /// Creates a veth pair: `host` here, `peer` born directly inside `peer_ns` with its MTU
    /// and MAC, so no other interface of the host ever carries the peer's name.
    pub async fn add_veth(
        &self,
        host: &str,
        mtu: u32,
        peer: &str,
        peer_ns: &File,
        peer_mac: [u8; 6],
    ) -> Result<u32> {
        let peer_msg = LinkMessageBuilder::<LinkUnspec>::new()
            .name(peer.to_string())
            .mtu(mtu)
            .address(peer_mac.to_vec())
            .setns_by_fd(peer_ns.as_raw_fd())
            .build();
        let msg = LinkVeth::new(host, peer)
            .mtu(mtu)
            .set_info_data(InfoData::Veth(InfoVeth::Peer(peer_msg)))
            .up()
            .build();
        self.handle
            .link()
            .add(msg)
            .execute()
            .await
            .with_context(|| format!("creating veth pair {host}/{peer}"))?;
        self.ifindex(host)
            .await?
            .ok_or_else(|| anyhow!("veth {host} vanished after creation"))
    }

    pub async fn set_up(&self, index: u32) -> Result<()> {
        let msg = LinkUnspec::new_with_index(index).up().build();
        self.handle
            .link()
            .set(msg)
            .execute()
            .await
            .context("bringing a link up")
    }

    /// Adds an address; IPv6 ones without duplicate address detection (`nodad`), so the
    /// container can use them at once.
    pub async fn add_address(&self, index: u32, prefix: IpPrefix) -> Result<()> {
        let mut req = self.handle.address().add(index, prefix.addr, prefix.len);
        if prefix.addr.is_ipv6() {
            let msg = req.message_mut();
            msg.header.flags |= AddressHeaderFlags::Nodad;
            msg.attributes
                .push(AddressAttribute::Flags(AddressFlags::Nodad));
        }
        req.execute()
            .await
            .with_context(|| format!("adding address {prefix}"))
    }

    pub async fn del_link(&self, index: u32) -> Result<()> {
        self.handle
            .link()
            .del(index)
            .execute()
            .await
            .context("deleting a link")
    }

    /// The prefix length `addr` is configured with on this host, if it is one of its
    /// addresses.
    pub async fn address_prefix(&self, addr: IpAddr) -> Result<Option<u8>> {
        let mut addrs = self.handle.address().get().execute();
        while let Some(msg) = addrs.try_next().await.context("listing addresses")? {
            let found = msg.attributes.iter().any(|a| {
                matches!(a, AddressAttribute::Local(a) | AddressAttribute::Address(a) if *a == addr)
            });
            if found {
                return Ok(Some(msg.header.prefix_len));
            }
        }
        Ok(None)
    }
}

/// Stops the kernel from making an IPv6 link-local address for `ifname` (in the calling
/// thread's namespace) when it comes up: `port add` adds the one it records itself, without
/// duplicate address detection, so the container never sends from an address anti-spoofing
/// does not know nor waits a second before it can talk.
pub fn no_auto_link_local(ifname: &str) -> Result<()> {
    // IN6_ADDR_GEN_MODE_NONE
    let path = format!("/proc/sys/net/ipv6/conf/{ifname}/addr_gen_mode");
    std::fs::write(&path, "1").with_context(|| format!("writing {path}"))
}

/// Turns on GRO for `ifname` in the calling thread's namespace. A veth only takes frames
/// redirected by XDP into its peer when it runs NAPI, which GRO enables; and GRO merges the
/// decapsulated TCP segments again.
pub fn enable_gro(ifname: &str) -> Result<()> {
    const SIOCETHTOOL: libc::c_ulong = 0x8946;
    const ETHTOOL_SGRO: u32 = 0x2c;
    #[repr(C)]
    struct EthtoolValue {
        cmd: u32,
        data: u32,
    }
    #[repr(C)]
    struct IfReq {
        name: [u8; libc::IFNAMSIZ],
        data: *mut EthtoolValue,
        _pad: [u8; 16],
    }
    let mut value = EthtoolValue {
        cmd: ETHTOOL_SGRO,
        data: 1,
    };
    let mut req = IfReq {
        name: [0; libc::IFNAMSIZ],
        data: &mut value,
        _pad: [0; 16],
    };
    req.name[..ifname.len()].copy_from_slice(ifname.as_bytes());
    let sock = socket(
        AddressFamily::Inet,
        SockType::Datagram,
        SockFlag::SOCK_CLOEXEC,
        None,
    )
    .context("opening an ethtool socket")?;
    // SAFETY: SIOCETHTOOL reads the ifreq and the ethtool_value it points to, both alive
    // and laid out as the kernel's structs for the whole call.
    if unsafe { libc::ioctl(sock.as_raw_fd(), SIOCETHTOOL, &mut req) } != 0 {
        return Err(io::Error::last_os_error())
            .with_context(|| format!("enabling GRO on {ifname}"));
    }
    Ok(())
}
