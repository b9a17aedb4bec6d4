//! Every node's records as last read from etcd, and what they ask of this host's tables.
//!
//! Two nodes may claim one (VNI, MAC) (a container moved, or a conflict). The claim made
//! last wins, like EVPN's MAC mobility sequence: etcd's create revision of the key orders
//! the claims the same way on every host, and the node name breaks a tie, so every host
//! picks the same winner without talking to the others.

use std::{
    collections::{BTreeMap, BTreeSet},
    net::IpAddr,
};

use vtep_common::Remote;

use super::records::{Kind, Record};
use crate::{args::Mac, state::Want};

/// One node's claim on a MAC: its addresses and when the claim was made.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Claim {
    ips: Vec<IpAddr>,
    revision: i64,
}

/// The address families this host has a local address for: a remote VTEP is reached at its
/// address of one of them.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Families {
    pub v4: bool,
    pub v6: bool,
}

impl Families {
    fn reach(&self, ip: IpAddr) -> bool {
        if ip.is_ipv4() {
            self.v4
        } else {
            self.v6
        }
    }
}

/// A key of the tables that records feed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Target {
    Mac { vni: u32, mac: Mac },
    Ip { vni: u32, ip: IpAddr },
    Flood { vni: u32 },
}

/// Two or more nodes claiming one MAC, and who won.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Conflict {
    pub vni: u32,
    pub mac: Mac,
    pub winner: String,
    pub losers: Vec<String>,
}

pub struct Model {
    me: String,
    local: Families,
    vteps: BTreeMap<String, Remote>,
    floods: BTreeMap<u32, BTreeSet<String>>,
    macs: BTreeMap<(u32, Mac), BTreeMap<String, Claim>>,
    /// Which MACs claim an IP, to answer ARP for it.
    ips: BTreeMap<(u32, IpAddr), BTreeSet<Mac>>,
    /// Endpoint records of other nodes, kept as they come and go (counting them would
    /// walk every claim after each batch).
    remote_endpoints: usize,
    /// Each node's flood and endpoint records, so a node's VTEP record coming or going
    /// touches its own records without a walk of everyone's.
    owned: BTreeMap<String, BTreeSet<Kind>>,
}

impl Model {
    pub fn new(me: &str, local: Families) -> Self {
        Model {
            me: me.to_string(),
            local,
            vteps: BTreeMap::new(),
            floods: BTreeMap::new(),
            macs: BTreeMap::new(),
            ips: BTreeMap::new(),
            remote_endpoints: 0,
            owned: BTreeMap::new(),
        }
    }

    /// Records a put of `record` by `node` (created at `revision`); returns the targets
    /// whose wants may have changed.
    pub fn put(&mut self, node: &str, record: Record, revision: i64) -> Vec<Target> {
        let mut touched = self.delete(node, record.kind());
        if !matches!(record, Record::Vtep { .. }) {
            let owned = self.owned.entry(node.to_string()).or_default();
            owned.insert(record.kind());
        }
        match record {
            Record::Vtep { addr, addr6, port } => {
                // IPv4 when both ends have it; a node this host has no family in common
                // with has no VTEP here, so its endpoints are not programmed.
                let reachable = [Some(addr), addr6.map(IpAddr::V6)]
                    .into_iter()
                    .flatten()
                    .find(|&a| self.local.reach(a));
                if let Some(ip) = reachable {
                    let remote = Remote {
                        ip: ip.into(),
                        port,
                        flags: 0,
                    };
                    self.vteps.insert(node.to_string(), remote);
                }
                touched.extend(self.targets_of(node));
            }
            Record::Flood { vni } => {
                self.floods.entry(vni).or_default().insert(node.to_string());
                touched.push(Target::Flood { vni });
            }
            Record::Endpoint { vni, mac, ips } => {
                if node != self.me {
                    self.remote_endpoints += 1;
                }
                touched.push(Target::Mac { vni, mac });
                for &ip in &ips {
                    self.ips.entry((vni, ip)).or_default().insert(mac);
                    touched.push(Target::Ip { vni, ip });
                }
                self.macs
                    .entry((vni, mac))
                    .or_default()
                    .insert(node.to_string(), Claim { ips, revision });
            }
        }
        touched
    }

    /// Forgets `node`'s record `kind`; returns the targets whose wants may have changed.
    pub fn delete(&mut self, node: &str, kind: Kind) -> Vec<Target> {
        if let Some(owned) = self.owned.get_mut(node) {
            owned.remove(&kind);
            if owned.is_empty() {
                self.owned.remove(node);
            }
        }
        match kind {
            Kind::Vtep => match self.vteps.remove(node) {
                Some(_) => self.targets_of(node),
                None => Vec::new(),
            },
            Kind::Flood { vni } => {
                let Some(nodes) = self.floods.get_mut(&vni) else {
                    return Vec::new();
                };
                nodes.remove(node);
                if nodes.is_empty() {
                    self.floods.remove(&vni);
                }
                vec![Target::Flood { vni }]
            }
            Kind::Endpoint { vni, mac } => {
                let Some(claims) = self.macs.get_mut(&(vni, mac)) else {
                    return Vec::new();
                };
                let Some(old) = claims.remove(node) else {
                    return Vec::new();
                };
                if node != self.me {
                    self.remote_endpoints -= 1;
                }
                if claims.is_empty() {
                    self.macs.remove(&(vni, mac));
                }
                let mut touched = vec![Target::Mac { vni, mac }];
                for ip in old.ips {
                    // The IP may still be claimed for this MAC by another node.
                    if !self
                        .macs
                        .get(&(vni, mac))
                        .is_some_and(|c| c.values().any(|c| c.ips.contains(&ip)))
                    {
                        if let Some(macs) = self.ips.get_mut(&(vni, ip)) {
                            macs.remove(&mac);
                            if macs.is_empty() {
                                self.ips.remove(&(vni, ip));
                            }
                        }
                    }
                    touched.push(Target::Ip { vni, ip });
                }
                touched
            }
        }
    }

    /// Every target a node's records feed (its VTEP address changed or went).
    fn targets_of(&self, node: &str) -> Vec<Target> {
        let mut out = Vec::new();
        for kind in self.owned.get(node).into_iter().flatten() {
            match *kind {
                Kind::Flood { vni } => out.push(Target::Flood { vni }),
                Kind::Endpoint { vni, mac } => {
                    out.push(Target::Mac { vni, mac });
                    let claim = self.macs.get(&(vni, mac)).and_then(|c| c.get(node));
                    let ips = claim.into_iter().flat_map(|c| &c.ips);
                    out.extend(ips.map(|&ip| Target::Ip { vni, ip }));
                }
                Kind::Vtep => {}
            }
        }
        out
    }

    /// Every target the records feed, for a reconcile.
    pub fn all_targets(&self) -> Vec<Target> {
        let floods = self.floods.keys().map(|&vni| Target::Flood { vni });
        let macs = self.macs.keys().map(|&(vni, mac)| Target::Mac { vni, mac });
        let ips = self.ips.keys().map(|&(vni, ip)| Target::Ip { vni, ip });
        floods.chain(macs).chain(ips).collect()
    }

    /// The claims on (VNI, MAC) of nodes with a VTEP record (or this node), best first.
    fn ranked(&self, vni: u32, mac: Mac) -> Vec<(&str, &Claim)> {
        let mut claims: Vec<(&str, &Claim)> = self
            .macs
            .get(&(vni, mac))
            .into_iter()
            .flatten()
            .filter(|(node, _)| **node == self.me || self.vteps.contains_key(*node))
            .map(|(node, c)| (node.as_str(), c))
            .collect();
        claims.sort_by(|a, b| (b.1.revision, b.0).cmp(&(a.1.revision, a.0)));
        claims
    }

    /// The winning claim on (VNI, MAC) and its node.
    fn winner(&self, vni: u32, mac: Mac) -> Option<(&str, &Claim)> {
        self.ranked(vni, mac).into_iter().next()
    }

    /// The conflict on (VNI, MAC), if more than one node claims it.
    pub fn conflict(&self, vni: u32, mac: Mac) -> Option<Conflict> {
        let ranked = self.ranked(vni, mac);
        let (winner, losers) = ranked.split_first()?;
        (!losers.is_empty()).then(|| Conflict {
            vni,
            mac,
            winner: winner.0.to_string(),
            losers: losers.iter().map(|(n, _)| n.to_string()).collect(),
        })
    }

    /// What the records ask of the tables at `target`. This host's own records ask for
    /// nothing: its ports are in the tables already.
    pub fn want(&self, target: Target) -> Want {
        let remote = |node: &str| (node != self.me).then(|| self.vteps.get(node)).flatten();
        match target {
            Target::Mac { vni, mac } => Want::Fdb {
                vni,
                mac,
                remote: self
                    .winner(vni, mac)
                    .and_then(|(node, _)| remote(node))
                    .copied(),
            },
            Target::Ip { vni, ip } => {
                // Of the MACs claiming the IP, the one whose claim is newest answers ARP.
                let best = self
                    .ips
                    .get(&(vni, ip))
                    .into_iter()
                    .flatten()
                    .filter_map(|&mac| {
                        self.winner(vni, mac)
                            .filter(|(_, c)| c.ips.contains(&ip))
                            .map(|(node, c)| (c.revision, node, mac))
                    })
                    .max();
                Want::Neigh {
                    vni,
                    ip,
                    mac: best
                        .filter(|(_, node, _)| remote(node).is_some())
                        .map(|(_, _, mac)| mac),
                }
            }
            Target::Flood { vni } => Want::Flood {
                vni,
                remotes: self
                    .floods
                    .get(&vni)
                    .into_iter()
                    .flatten()
                    .filter_map(|node| remote(node).copied())
                    .collect(),
            },
        }
    }

    /// How many endpoint records of other nodes the model holds.
    pub fn remote_endpoints(&self) -> usize {
        self.remote_endpoints
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use vtep_common::Addr;

    fn mac(s: &str) -> Mac {
        s.parse().unwrap()
    }

    const V4: Families = Families {
        v4: true,
        v6: false,
    };

    fn vtep(last: u8) -> Record {
        Record::Vtep {
            addr: IpAddr::from([192, 168, 104, last]),
            addr6: None,
            port: 4789,
        }
    }

    fn endpoint(m: &str, ip: u8) -> Record {
        Record::Endpoint {
            vni: 42,
            mac: mac(m),
            ips: vec![IpAddr::from([12, 12, 12, ip])],
        }
    }

    /// Where an FDB want sends the MAC, if anywhere.
    fn fdb_dst(want: Want) -> Option<Addr> {
        match want {
            Want::Fdb { remote, .. } => remote.map(|r| r.ip),
            other => panic!("not an FDB want: {other:?}"),
        }
    }

    #[test]
    fn a_remote_endpoint_wants_an_fdb_and_a_neighbour_entry_once_its_node_has_a_vtep() {
        let mut m = Model::new("h1", V4);
        let t = m.put("h2", endpoint("02:00:00:00:00:03", 3), 5);
        assert_eq!(fdb_dst(m.want(t[0])), None);
        let t = m.put("h2", vtep(3), 6);
        assert_eq!(t.len(), 2);
        assert_eq!(fdb_dst(m.want(t[0])), Some(Addr::v4([192, 168, 104, 3])));
        assert_eq!(
            m.want(t[1]),
            Want::Neigh {
                vni: 42,
                ip: IpAddr::from([12, 12, 12, 3]),
                mac: Some(mac("02:00:00:00:00:03"))
            }
        );
        let t = m.delete("h2", Kind::Vtep);
        assert_eq!(fdb_dst(m.want(t[0])), None);
    }

    #[test]
    fn the_newest_claim_wins_and_the_conflict_is_seen() {
        let mut m = Model::new("h1", V4);
        m.put("h2", vtep(3), 1);
        m.put("h3", vtep(4), 2);
        m.put("h3", endpoint("02:00:00:00:00:09", 9), 10);
        m.put("h2", endpoint("02:00:00:00:00:09", 9), 11);
        let target = Target::Mac {
            vni: 42,
            mac: mac("02:00:00:00:00:09"),
        };
        assert_eq!(fdb_dst(m.want(target)), Some(Addr::v4([192, 168, 104, 3])));
        let c = m.conflict(42, mac("02:00:00:00:00:09")).unwrap();
        assert_eq!(
            (c.winner.as_str(), c.losers),
            ("h2", vec!["h3".to_string()])
        );
        // The move's source withdraws: the other claim is the only one left.
        m.delete(
            "h2",
            Kind::Endpoint {
                vni: 42,
                mac: mac("02:00:00:00:00:09"),
            },
        );
        assert_eq!(fdb_dst(m.want(target)), Some(Addr::v4([192, 168, 104, 4])));
        assert!(m.conflict(42, mac("02:00:00:00:00:09")).is_none());
    }

    #[test]
    fn own_records_want_nothing_and_flood_lists_name_only_other_nodes() {
        let mut m = Model::new("h1", V4);
        m.put("h1", vtep(2), 1);
        m.put("h2", vtep(3), 2);
        m.put("h1", Record::Flood { vni: 42 }, 3);
        m.put("h2", Record::Flood { vni: 42 }, 4);
        let Want::Flood { remotes, .. } = m.want(Target::Flood { vni: 42 }) else {
            panic!()
        };
        assert_eq!(
            remotes.iter().map(|r| r.ip).collect::<Vec<_>>(),
            vec![Addr::v4([192, 168, 104, 3])]
        );
        let t = m.put("h1", endpoint("02:00:00:00:00:02", 2), 5);
        assert_eq!(fdb_dst(m.want(t[0])), None);
        assert!(matches!(m.want(t[1]), Want::Neigh { mac: None, .. }));
    }

    #[test]
    fn every_address_of_an_endpoint_gets_a_neighbour_and_a_vtep_is_reached_in_a_shared_family() {
        let dual = Record::Vtep {
            addr: IpAddr::from([192, 168, 104, 3]),
            addr6: Some("2001:db8::3".parse().unwrap()),
            port: 4789,
        };
        let v6: IpAddr = "fd00:12::3".parse().unwrap();
        let ep = Record::Endpoint {
            vni: 42,
            mac: mac("02:00:00:00:00:03"),
            ips: vec![IpAddr::from([12, 12, 12, 3]), v6],
        };
        for (local, dst) in [
            (V4, Some(Addr::v4([192, 168, 104, 3]))),
            (
                Families {
                    v4: false,
                    v6: true,
                },
                Some(Addr::v6(
                    "2001:db8::3"
                        .parse::<std::net::Ipv6Addr>()
                        .unwrap()
                        .octets(),
                )),
            ),
            (
                Families { v4: true, v6: true },
                Some(Addr::v4([192, 168, 104, 3])),
            ),
            (Families::default(), None),
        ] {
            let mut m = Model::new("h1", local);
            m.put("h2", dual.clone(), 1);
            let t = m.put("h2", ep.clone(), 2);
            assert_eq!(t.len(), 3, "the MAC and both addresses");
            assert_eq!(fdb_dst(m.want(t[0])), dst, "{local:?}");
            if dst.is_some() {
                assert_eq!(
                    m.want(t[2]),
                    Want::Neigh {
                        vni: 42,
                        ip: v6,
                        mac: Some(mac("02:00:00:00:00:03"))
                    }
                );
            }
            // Withdrawn: both addresses go.
            let gone = m.delete(
                "h2",
                Kind::Endpoint {
                    vni: 42,
                    mac: mac("02:00:00:00:00:03"),
                },
            );
            assert!(gone.iter().all(|&t| matches!(
                m.want(t),
                Want::Neigh { mac: None, .. } | Want::Fdb { remote: None, .. }
            )));
        }
    }
}
