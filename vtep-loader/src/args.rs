//! Typed command-line values (MAC, VNI, UDP port, address prefix, names) and the iproute2-style
//! `KEYWORD VALUE` parser. Each parse error is one line naming the bad value.

use std::{
    collections::BTreeMap,
    fmt,
    net::{IpAddr, Ipv4Addr},
    str::FromStr,
};

use anyhow::{anyhow, bail, Result};
use vtep_common::{IFNAME_MAX, NETNS_NAME_MAX, VNI_MAX};

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct Mac(pub [u8; 6]);

impl FromStr for Mac {
    type Err = anyhow::Error;
    fn from_str(s: &str) -> Result<Self> {
        let bad = || anyhow!("invalid MAC address \"{s}\" (expected xx:xx:xx:xx:xx:xx)");
        let parts: Vec<&str> = s.split(':').collect();
        if parts.len() != 6 {
            return Err(bad());
        }
        let mut mac = [0u8; 6];
        for (byte, part) in mac.iter_mut().zip(parts) {
            if part.is_empty() || part.len() > 2 {
                return Err(bad());
            }
            *byte = u8::from_str_radix(part, 16).map_err(|_| bad())?;
        }
        Ok(Mac(mac))
    }
}

impl fmt::Display for Mac {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let m = self.0;
        write!(
            f,
            "{:02x}:{:02x}:{:02x}:{:02x}:{:02x}:{:02x}",
            m[0], m[1], m[2], m[3], m[4], m[5]
        )
    }
}

impl Mac {
    /// A MAC a container port may own: unicast and not all zeros.
    pub fn check_unicast(self) -> Result<Self> {
        if self.0[0] & 1 == 1 || self.0 == [0; 6] {
            bail!("MAC address {self} is not a unicast address");
        }
        Ok(self)
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct Vni(pub u32);

impl FromStr for Vni {
    type Err = anyhow::Error;
    fn from_str(s: &str) -> Result<Self> {
        match s.parse::<u32>() {
            Ok(v) if v <= VNI_MAX => Ok(Vni(v)),
            _ => bail!("invalid VNI \"{s}\" (expected 0..={VNI_MAX})"),
        }
    }
}

/// A UDP port: 1..=65535 (0 is not a port one can send to).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct UdpPort(pub u16);

impl FromStr for UdpPort {
    type Err = anyhow::Error;
    fn from_str(s: &str) -> Result<Self> {
        match s.parse::<u16>() {
            Ok(p) if p != 0 => Ok(UdpPort(p)),
            _ => bail!("invalid UDP port \"{s}\" (expected 1..=65535)"),
        }
    }
}

pub fn parse_ipv4(s: &str) -> Result<Ipv4Addr> {
    s.parse()
        .map_err(|_| anyhow!("invalid IPv4 address \"{s}\""))
}

/// An IPv4 or IPv6 address. IPv4-mapped IPv6 (`::ffff:a.b.c.d`) is refused: the tables
/// store IPv4 that way, and no real IPv6 packet carries such an address.
pub fn parse_ip(s: &str) -> Result<IpAddr> {
    match s.parse::<IpAddr>() {
        Ok(IpAddr::V6(v6)) if v6.to_ipv4_mapped().is_some() => {
            bail!("invalid address \"{s}\" (IPv4-mapped IPv6; write the IPv4 address)")
        }
        Ok(ip) => Ok(ip),
        Err(_) => bail!("invalid IP address \"{s}\""),
    }
}

/// An interface address of either family with its prefix, `12.12.12.2/24` or
/// `fd00:12::2/64`: one a container can have (unicast, not IPv4-mapped, a prefix length its
/// family has).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct IpPrefix {
    pub addr: IpAddr,
    pub len: u8,
}

impl FromStr for IpPrefix {
    type Err = anyhow::Error;
    fn from_str(s: &str) -> Result<Self> {
        let expected = "expected ADDRESS/PREFIX, like 12.12.12.2/24 or fd00:12::2/64";
        let (addr, len) = s
            .split_once('/')
            .ok_or_else(|| anyhow!("invalid address \"{s}\" ({expected})"))?;
        let addr = parse_ip(addr)?;
        let max = if addr.is_ipv4() { 32 } else { 128 };
        let len = match len.parse::<u8>() {
            Ok(len) if len <= max => len,
            _ => bail!("invalid prefix length in \"{s}\" (0 to {max} for this family)"),
        };
        let unusable = match addr {
            IpAddr::V4(a) => a.is_multicast() || a.is_broadcast() || a.is_unspecified(),
            IpAddr::V6(a) => a.is_multicast() || a.is_unspecified(),
        };
        if unusable || addr.is_loopback() {
            bail!("invalid address \"{s}\" (a container address must be unicast)");
        }
        Ok(IpPrefix { addr, len })
    }
}

impl IpPrefix {
    /// An IPv6 link-local address (fe80::/10).
    pub fn is_link_local(&self) -> bool {
        matches!(self.addr, IpAddr::V6(a) if a.is_unicast_link_local())
    }
}

impl fmt::Display for IpPrefix {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.addr, self.len)
    }
}

pub fn parse_ttl(s: &str) -> Result<u8> {
    match s.parse::<u8>() {
        Ok(t) if t > 0 => Ok(t),
        _ => bail!("invalid TTL \"{s}\" (expected 1..=255)"),
    }
}

/// A table capacity: at least 1, at most 16,777,216 entries (the kernel allocates FDB and
/// neighbour entries on demand, so a large capacity costs nothing until used).
pub fn parse_capacity(s: &str) -> Result<u32> {
    const MOST: u32 = 1 << 24;
    match s.parse::<u32>() {
        Ok(n) if (1..=MOST).contains(&n) => Ok(n),
        _ => bail!("invalid table size \"{s}\" (expected 1..={MOST})"),
    }
}

pub fn parse_ageing(s: &str) -> Result<u32> {
    match s.parse::<u32>() {
        Ok(a) if a > 0 => Ok(a),
        _ => bail!("invalid ageing time \"{s}\" (expected seconds, at least 1)"),
    }
}

/// The outer TOS: fixed, or copied from the inner IPv4 header (`tos inherit`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Tos {
    Fixed(u8),
    Inherit,
}

impl FromStr for Tos {
    type Err = anyhow::Error;
    fn from_str(s: &str) -> Result<Self> {
        if s == "inherit" {
            return Ok(Tos::Inherit);
        }
        let value = match s.strip_prefix("0x") {
            Some(hex) => u8::from_str_radix(hex, 16),
            None => s.parse::<u8>(),
        };
        value
            .map(Tos::Fixed)
            .map_err(|_| anyhow!("invalid TOS \"{s}\" (expected 0..=255, 0xNN or inherit)"))
    }
}

/// A network namespace name as `ip netns` accepts it.
pub fn parse_netns(s: &str) -> Result<String> {
    if s.is_empty() || s == "." || s == ".." || s.contains('/') || s.contains('\0') {
        bail!("invalid namespace name \"{s}\"");
    }
    if s.len() >= NETNS_NAME_MAX {
        bail!(
            "namespace name \"{s}\" is longer than {} bytes",
            NETNS_NAME_MAX - 1
        );
    }
    Ok(s.to_string())
}

/// An interface name as the kernel accepts it (IFNAMSIZ).
pub fn parse_ifname(s: &str) -> Result<String> {
    if s.is_empty() || s.len() >= IFNAME_MAX || s.contains(['/', ' ', ':', '\0']) {
        bail!(
            "invalid interface name \"{s}\" (1 to {} characters, no '/', ':' or spaces)",
            IFNAME_MAX - 1
        );
    }
    Ok(s.to_string())
}

pub fn parse_mtu(s: &str) -> Result<u32> {
    match s.parse::<u32>() {
        Ok(m) if (68..=65535).contains(&m) => Ok(m),
        _ => bail!("invalid MTU \"{s}\" (expected 68..=65535)"),
    }
}

/// Input the command line or a batch line got wrong: one line, exit code 2, like every
/// other parse error (clap's included), and nothing changed.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct BadInput(pub String);

fn bad(msg: String) -> anyhow::Error {
    BadInput(msg).into()
}

/// `KEYWORD VALUE` pairs and lone flag words after a command's positional arguments, as
/// iproute2 takes them (`dst 192.168.104.3 vni 42 port 4789 extern_learn`).
pub struct Keywords {
    values: BTreeMap<&'static str, String>,
    flags: Vec<&'static str>,
}

impl Keywords {
    /// Splits `args`; every keyword must be one of `allowed` (taking a value) or `flags`
    /// (taking none), each at most once.
    pub fn parse(
        args: &[String],
        allowed: &[&'static str],
        flags: &[&'static str],
    ) -> Result<Self> {
        let mut kw = Keywords {
            values: BTreeMap::new(),
            flags: Vec::new(),
        };
        let mut it = args.iter();
        while let Some(word) = it.next() {
            if let Some(&flag) = flags.iter().find(|f| **f == word.as_str()) {
                if kw.flags.contains(&flag) {
                    return Err(bad(format!("\"{flag}\" given twice")));
                }
                kw.flags.push(flag);
                continue;
            }
            let Some(&key) = allowed.iter().find(|k| **k == word.as_str()) else {
                let expected: Vec<&str> = allowed.iter().chain(flags).copied().collect();
                return Err(bad(format!(
                    "unknown argument \"{word}\" (expected one of: {})",
                    expected.join(", ")
                )));
            };
            let Some(value) = it.next() else {
                return Err(bad(format!("\"{key}\" needs a value")));
            };
            if kw.values.insert(key, value.clone()).is_some() {
                return Err(bad(format!("\"{key}\" given twice")));
            }
        }
        Ok(kw)
    }

    pub fn required<T>(&self, key: &str, parse: impl Fn(&str) -> Result<T>) -> Result<T> {
        match self.values.get(key) {
            Some(v) => parse(v).map_err(|e| bad(e.to_string())),
            None => Err(bad(format!("missing \"{key}\""))),
        }
    }

    pub fn optional<T>(&self, key: &str, parse: impl Fn(&str) -> Result<T>) -> Result<Option<T>> {
        self.values
            .get(key)
            .map(|v| parse(v).map_err(|e| bad(e.to_string())))
            .transpose()
    }

    pub fn flag(&self, flag: &str) -> bool {
        self.flags.contains(&flag)
    }
}

/// An etcd key prefix: absolute, printable, no spaces (`/vtep`).
pub fn parse_prefix(s: &str) -> Result<String> {
    if !s.starts_with('/') || s.chars().any(|c| c.is_whitespace() || c.is_control()) {
        bail!("bad prefix {s:?}: an absolute key path like /vtep");
    }
    Ok(s.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn words(s: &str) -> Vec<String> {
        s.split_whitespace().map(str::to_string).collect()
    }

    #[test]
    fn macs() {
        assert_eq!(
            "02:42:c0:a8:00:02".parse::<Mac>().unwrap().0,
            [2, 0x42, 0xc0, 0xa8, 0, 2]
        );
        assert_eq!(
            "2:42:C0:A8:0:2".parse::<Mac>().unwrap().to_string(),
            "02:42:c0:a8:00:02"
        );
        for bad in [
            "",
            "02:42:c0:a8:00",
            "02:42:c0:a8:00:02:03",
            "zz:42:c0:a8:00:02",
            "002:42:c0:a8:00:02",
        ] {
            let err = bad.parse::<Mac>().unwrap_err().to_string();
            assert!(err.starts_with("invalid MAC address"), "{bad}: {err}");
        }
        assert!("ff:ff:ff:ff:ff:ff"
            .parse::<Mac>()
            .unwrap()
            .check_unicast()
            .is_err());
        assert!("01:00:5e:00:00:01"
            .parse::<Mac>()
            .unwrap()
            .check_unicast()
            .is_err());
    }

    #[test]
    fn vnis_and_ports() {
        assert_eq!("16777215".parse::<Vni>().unwrap().0, VNI_MAX);
        assert!("16777216".parse::<Vni>().is_err());
        assert!("-1".parse::<Vni>().is_err());
        assert_eq!("4789".parse::<UdpPort>().unwrap().0, 4789);
        assert!("0".parse::<UdpPort>().is_err());
        assert!("65536".parse::<UdpPort>().is_err());
    }

    #[test]
    fn prefixes_and_names() {
        let p: IpPrefix = "12.12.12.2/24".parse().unwrap();
        assert_eq!((p.addr, p.len), (IpAddr::from([12, 12, 12, 2]), 24));
        let p: IpPrefix = "fd00:12::2/64".parse().unwrap();
        assert_eq!(p.to_string(), "fd00:12::2/64");
        assert!("fe80::1/64".parse::<IpPrefix>().unwrap().is_link_local());
        for bad in [
            "12.12.12.2",
            "12.12.12.2/33",
            "12.12.12/24",
            "x/24",
            "fd00::2/129",
            "::ffff:12.12.12.2/120",
            "ff02::1/64",
            "224.0.0.1/24",
            "::/64",
            "::1/128",
        ] {
            assert!(bad.parse::<IpPrefix>().is_err(), "{bad}");
        }
        assert!(parse_netns("pinkns").is_ok());
        assert!(parse_netns("a/b").is_err());
        assert!(parse_netns(&"x".repeat(64)).is_err());
        assert!(parse_ifname("eth0").is_ok());
        assert!(parse_ifname("much-too-long-name").is_err());
        assert!(parse_mtu("1450").is_ok());
        assert!(parse_mtu("67").is_err());
        assert!(parse_ttl("0").is_err());
        assert_eq!(parse_ttl("255").unwrap(), 255);
        assert!(parse_ageing("0").is_err());
        assert_eq!("inherit".parse::<Tos>().unwrap(), Tos::Inherit);
        assert_eq!("0x28".parse::<Tos>().unwrap(), Tos::Fixed(0x28));
        assert!("256".parse::<Tos>().is_err());
    }

    #[test]
    fn keywords() {
        let k = Keywords::parse(
            &words("dst 192.168.104.3 vni 42 extern_learn"),
            &["dst", "vni", "port"],
            &["extern_learn"],
        )
        .unwrap();
        assert_eq!(
            k.required("dst", parse_ipv4).unwrap(),
            Ipv4Addr::new(192, 168, 104, 3)
        );
        assert_eq!(k.required("vni", |s| s.parse::<Vni>()).unwrap(), Vni(42));
        assert_eq!(k.optional("port", |s| s.parse::<UdpPort>()).unwrap(), None);
        assert!(k.required("port", |s| s.parse::<UdpPort>()).is_err());
        assert!(k.flag("extern_learn"));
        assert!(Keywords::parse(&words("dst"), &["dst"], &[]).is_err());
        assert!(Keywords::parse(&words("via 1.2.3.4"), &["dst"], &[]).is_err());
        assert!(Keywords::parse(&words("vni 1 vni 2"), &["vni"], &[]).is_err());
    }
}
