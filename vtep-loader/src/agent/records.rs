//! The agent's records in etcd, one per BGP EVPN route so that a later EVPN bridge is only
//! a translation. Under `PREFIX/v1/nodes/NODE/` (one subtree per node, so etcd RBAC can
//! let a node write only its own):
//!
//! - `vtep`: the node's VTEP, `{"addr":"192.168.104.2","port":4789}` (the next hop and
//!   originator every route of the node carries); a node with a local address of each
//!   family adds `"addr6":"2001:db8::2"`, and every other node tunnels to the one of a family
//!   it has a local address for;
//! - `flood/VNI`: the node has ports in VNI and wants its broadcast, `{}` (type 3,
//!   inclusive multicast Ethernet tag);
//! - `endpoints/VNI/MAC`: a port, `{"ip":"12.12.12.2"}` (type 2, MAC/IP advertisement); a
//!   port with several addresses (IPv6 ones, its link-local one) lists them all in `ips`,
//!   `{"ip":"12.12.12.2","ips":["12.12.12.2","fd00:12::2"]}`, `ip` being the first (a
//!   port with one address writes only `ip`, as before).
//!
//! Every record of a node hangs on the node's one lease. The VTEP address lives only in
//! the `vtep` record, so a node cannot point its endpoints at another node's address
//! without also claiming that address as its own.

use std::{
    fmt,
    net::{IpAddr, Ipv6Addr},
};

use serde::{Deserialize, Serialize};

use crate::args::Mac;

/// Version of the key layout and record encoding; a reader skips other versions' keys.
const VERSION: &str = "v1";

/// What one key says, parsed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Record {
    /// `addr6` only beside an IPv4 `addr`: a node with a local address of each family.
    Vtep {
        addr: IpAddr,
        addr6: Option<Ipv6Addr>,
        port: u16,
    },
    Flood {
        vni: u32,
    },
    /// The port's addresses, at least one, in the port's order.
    Endpoint {
        vni: u32,
        mac: Mac,
        ips: Vec<IpAddr>,
    },
}

/// A record's key without its value (what a delete event carries).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Kind {
    Vtep,
    Flood { vni: u32 },
    Endpoint { vni: u32, mac: Mac },
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct VtepValue {
    addr: IpAddr,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    addr6: Option<Ipv6Addr>,
    port: u16,
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct FloodValue {}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct EndpointValue {
    ip: IpAddr,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    ips: Vec<IpAddr>,
}

/// The key space of one `--prefix`.
#[derive(Clone, Debug)]
pub struct Schema {
    /// `PREFIX/v1/nodes/`: every node's records.
    pub nodes: String,
}

impl Schema {
    pub fn new(prefix: &str) -> Self {
        Schema {
            nodes: format!("{}/{VERSION}/nodes/", prefix.trim_end_matches('/')),
        }
    }

    /// Every key of `node` starts with this.
    pub fn node_prefix(&self, node: &str) -> String {
        format!("{}{node}/", self.nodes)
    }

    pub fn key(&self, node: &str, kind: Kind) -> String {
        let base = self.node_prefix(node);
        match kind {
            Kind::Vtep => format!("{base}vtep"),
            Kind::Flood { vni } => format!("{base}flood/{vni}"),
            Kind::Endpoint { vni, mac } => format!("{base}endpoints/{vni}/{mac}"),
        }
    }

    /// The node and kind a key names.
    pub fn parse_key(&self, key: &[u8]) -> Result<(String, Kind), Malformed> {
        let key = std::str::from_utf8(key).map_err(|_| Malformed("key is not UTF-8".into()))?;
        let rest = key
            .strip_prefix(&self.nodes)
            .ok_or_else(|| Malformed("outside the nodes' prefix".into()))?;
        let parts: Vec<&str> = rest.split('/').collect();
        let node = parts[0];
        check_node(node).map_err(Malformed)?;
        let vni = |s: &str| -> Result<u32, Malformed> {
            s.parse::<crate::args::Vni>()
                .map(|v| v.0)
                .map_err(|e| Malformed(format!("VNI: {e}")))
        };
        let kind = match &parts[1..] {
            ["vtep"] => Kind::Vtep,
            ["flood", v] => Kind::Flood { vni: vni(v)? },
            ["endpoints", v, mac] => Kind::Endpoint {
                vni: vni(v)?,
                mac: mac
                    .parse::<Mac>()
                    .and_then(Mac::check_unicast)
                    .map_err(|e| Malformed(format!("MAC: {e}")))?,
            },
            _ => return Err(Malformed("not a vtep record key".into())),
        };
        Ok((node.to_string(), kind))
    }

    /// The node and record a key and value say.
    pub fn parse(&self, key: &[u8], value: &[u8]) -> Result<(String, Record), Malformed> {
        let (node, kind) = self.parse_key(key)?;
        let bad = |e: serde_json::Error| Malformed(format!("value: {e}"));
        let record = match kind {
            Kind::Vtep => {
                let v: VtepValue = serde_json::from_slice(value).map_err(bad)?;
                let unusable = |a: IpAddr| a.is_unspecified() || a.is_multicast();
                if unusable(v.addr) || v.addr6.is_some_and(|a| unusable(a.into())) || v.port == 0 {
                    return Err(Malformed(format!("not a VTEP: {}:{}", v.addr, v.port)));
                }
                if v.addr6.is_some() && v.addr.is_ipv6() {
                    return Err(Malformed("addr6 beside an IPv6 addr".into()));
                }
                Record::Vtep {
                    addr: v.addr,
                    addr6: v.addr6,
                    port: v.port,
                }
            }
            Kind::Flood { vni } => {
                let FloodValue {} = serde_json::from_slice(value).map_err(bad)?;
                Record::Flood { vni }
            }
            Kind::Endpoint { vni, mac } => {
                let v: EndpointValue = serde_json::from_slice(value).map_err(bad)?;
                let ips = if v.ips.is_empty() { vec![v.ip] } else { v.ips };
                let unique = ips.iter().collect::<std::collections::BTreeSet<_>>().len();
                if ips[0] != v.ip || unique != ips.len() {
                    return Err(Malformed(
                        "ips must start with ip and list each address once".into(),
                    ));
                }
                Record::Endpoint { vni, mac, ips }
            }
        };
        Ok((node, record))
    }
}

impl Record {
    pub fn kind(&self) -> Kind {
        match *self {
            Record::Vtep { .. } => Kind::Vtep,
            Record::Flood { vni } => Kind::Flood { vni },
            Record::Endpoint { vni, mac, .. } => Kind::Endpoint { vni, mac },
        }
    }

    pub fn value(&self) -> String {
        let json = match self {
            &Record::Vtep { addr, addr6, port } => {
                serde_json::to_string(&VtepValue { addr, addr6, port })
            }
            Record::Flood { .. } => serde_json::to_string(&FloodValue {}),
            Record::Endpoint { ips, .. } => serde_json::to_string(&EndpointValue {
                ip: ips[0],
                // A single address keeps the record as readers of one address know it.
                ips: if ips.len() > 1 {
                    ips.clone()
                } else {
                    Vec::new()
                },
            }),
        };
        json.unwrap_or_default()
    }
}

/// Why a key or value under the prefix is not a record this agent can use.
#[derive(Debug)]
pub struct Malformed(pub String);

impl fmt::Display for Malformed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A node name is one path segment of letters, digits, `.`, `_` and `-` (it is part of
/// every key, and of the RBAC rule that lets the node write them).
pub fn check_node(node: &str) -> Result<(), String> {
    let ok = !node.is_empty()
        && node.len() <= 64
        && node != "."
        && node != ".."
        && node
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b));
    if ok {
        Ok(())
    } else {
        Err(format!(
            "bad node name {node:?}: 1 to 64 letters, digits, '.', '_' or '-'"
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_record_reads_back_from_its_key_and_value() {
        let s = Schema::new("/vtep/");
        let records = [
            Record::Vtep {
                addr: IpAddr::from([192, 168, 104, 2]),
                addr6: None,
                port: 4789,
            },
            Record::Vtep {
                addr: IpAddr::from([192, 168, 104, 2]),
                addr6: Some("2001:db8::2".parse().unwrap()),
                port: 4789,
            },
            Record::Vtep {
                addr: "2001:db8::2".parse().unwrap(),
                addr6: None,
                port: 4789,
            },
            Record::Flood { vni: 42 },
            Record::Endpoint {
                vni: 42,
                mac: "02:42:c0:a8:00:02".parse().unwrap(),
                ips: vec![IpAddr::from([12, 12, 12, 2])],
            },
            Record::Endpoint {
                vni: 42,
                mac: "02:42:c0:a8:00:02".parse().unwrap(),
                ips: vec![IpAddr::from([12, 12, 12, 2]), "fd00:12::2".parse().unwrap()],
            },
        ];
        for r in records {
            let key = s.key("host1", r.kind());
            assert!(key.starts_with("/vtep/v1/nodes/host1/"), "{key}");
            let (node, back) = s.parse(key.as_bytes(), r.value().as_bytes()).unwrap();
            assert_eq!((node.as_str(), back), ("host1", r));
        }
    }

    #[test]
    fn malformed_keys_and_values_are_refused_with_a_reason() {
        let s = Schema::new("/vtep");
        let bad: &[(&str, &str)] = &[
            ("/vtep/v1/nodes/h1/vtep", "{}"),
            (
                "/vtep/v1/nodes/h1/vtep",
                r#"{"addr":"0.0.0.0","port":4789}"#,
            ),
            (
                "/vtep/v1/nodes/h1/vtep",
                r#"{"addr":"1.2.3.4","port":4789,"x":1}"#,
            ),
            (
                "/vtep/v1/nodes/h1/vtep",
                r#"{"addr":"2001:db8::1","addr6":"2001:db8::2","port":4789}"#,
            ),
            (
                "/vtep/v1/nodes/h1/endpoints/42/02:42:c0:a8:00:02",
                r#"{"ip":"1.2.3.4","ips":["fd00::1","1.2.3.4"]}"#,
            ),
            ("/vtep/v1/nodes/h1/flood/16777216", "{}"),
            ("/vtep/v1/nodes/h1/flood/42", "garbage"),
            (
                "/vtep/v1/nodes/h1/endpoints/42/01:00:5e:00:00:01",
                r#"{"ip":"1.2.3.4"}"#,
            ),
            ("/vtep/v1/nodes/h1/endpoints/42/zz", r#"{"ip":"1.2.3.4"}"#),
            (
                "/vtep/v1/nodes/h1/endpoints/42/02:42:c0:a8:00:02",
                r#"{"ip":"x"}"#,
            ),
            ("/vtep/v1/nodes/h1/other", "{}"),
            ("/vtep/v1/nodes/../vtep", "{}"),
            ("/vtep/v2/nodes/h1/vtep", "{}"),
        ];
        for (k, v) in bad {
            assert!(s.parse(k.as_bytes(), v.as_bytes()).is_err(), "{k} {v}");
        }
    }
}
