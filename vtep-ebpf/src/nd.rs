//! IPv6 inside the tunnel, for frames from a port: neighbour solicitations answered from the
//! neighbour table (the vxlan device's `proxy`), the anti-spoofing rules of IPv6 and its
//! neighbour discovery, and the router and multicast listener messages counted on the way
//! to the flood.

use aya_ebpf::{helpers::bpf_redirect, helpers::bpf_skb_change_tail, programs::TcContext};
use vtep_common::{
    counter,
    icmp::{IPPROTO_ICMPV6, IPV6_LEN},
    nd::{self, Solicitation, MAX_EXT_HEADERS, MAX_ND_OPTIONS, NA_FRAME_LEN, NS_LEN, SUMMED_FROM},
    Addr, IpVni, Port, MAX_PORT_ADDRS,
};

use crate::{
    head,
    maps::NEIGH,
    mtu::csum,
    stats::{count, Verdict},
};

pub enum Nd {
    Answered(Verdict<i32>),
    /// A solicitation for an address the table does not know.
    Unknown([u8; 16]),
    /// Not a solicitation the proxy answers.
    Other,
}

/// Answers a neighbour solicitation from the neighbour table, back out of the port it came
/// in on. Only an untagged NS that is the whole frame, with no option or one, is answered:
/// what every stack sends; anything else goes on like any frame.
#[inline(never)]
pub fn proxy(ctx: &TcContext, ifindex: u32, vni: u32) -> Nd {
    let len = ctx.len() as usize;
    let ns = if len == NA_FRAME_LEN {
        read::<NA_FRAME_LEN, { NA_FRAME_LEN - SUMMED_FROM }>(ctx)
    } else if len == NS_LEN {
        read::<NS_LEN, { NS_LEN - SUMMED_FROM }>(ctx)
    } else {
        None
    };
    let Some(ns) = ns else {
        return Nd::Other;
    };
    let key = IpVni {
        ip: Addr::v6(ns.target),
        vni,
    };
    let Some(neigh) = (unsafe { NEIGH.get(key) }) else {
        return Nd::Unknown(ns.target);
    };
    let mac = neigh.mac;
    answer(ctx, ifindex, &ns, &mac)
}

/// The solicitation that is the whole `N`-byte frame; `M` is `N - SUMMED_FROM`.
#[inline(always)]
fn read<const N: usize, const M: usize>(ctx: &TcContext) -> Option<Solicitation> {
    let f = head::view::<N>(ctx)?;
    let summed = f.get(SUMMED_FROM..)?.first_chunk::<M>()?;
    nd::solicitation(f, csum(summed, 0)?)
}

#[inline(always)]
fn answer(ctx: &TcContext, ifindex: u32, ns: &Solicitation, mac: &[u8; 6]) -> Nd {
    if ctx.len() as usize != NA_FRAME_LEN
        && unsafe { bpf_skb_change_tail(ctx.skb.skb, NA_FRAME_LEN as u32, 0) } != 0
    {
        return Nd::Other;
    }
    // Re-derived: growing the tail may move the data.
    let Some(frame) = head::view_mut::<NA_FRAME_LEN>(ctx) else {
        return Nd::Other;
    };
    nd::advertise(frame, ns, mac);
    let Some(sum) = frame
        .last_chunk::<{ NA_FRAME_LEN - SUMMED_FROM }>()
        .and_then(|b| csum(b, 0))
    else {
        return Nd::Other;
    };
    nd::set_checksum(frame, sum);
    Nd::Answered(Verdict::new(
        unsafe { bpf_redirect(ifindex, 0) as i32 },
        counter::ND_REPLY,
    ))
}

/// The upper-layer protocol of the IPv6 packet at `ip` and its offset, past the extension
/// headers vtep sees through; None for a chain longer than that or cut short.
#[inline(always)]
fn upper(ctx: &TcContext, ip: usize, first: u8) -> Option<(u8, usize)> {
    let (mut proto, mut off) = (first, ip + IPV6_LEN);
    for _ in 0..MAX_EXT_HEADERS {
        if !nd::is_ext(proto) {
            return Some((proto, off));
        }
        let h: [u8; 2] = ctx.load(off).ok()?;
        (proto, off) = (h[0], off + nd::ext_len(h[1]));
    }
    (!nd::is_ext(proto)).then_some((proto, off))
}

/// Whether the IPv6 packet at `ip` comes from the port: from
/// one of its addresses, or from `::` only for duplicate address detection (an NS, and the
/// MLD reports sent meanwhile); and neighbour discovery only about itself (an NA only for its
/// own address, link-layer address options only with its MAC).
#[inline(never)]
pub fn from_port(ctx: &TcContext, port: &Port, ip: usize) -> bool {
    let Ok(h) = ctx.load::<[u8; 24]>(ip) else {
        return false;
    };
    let mut src = [0u8; 16];
    src.copy_from_slice(&h[8..24]);
    let unspecified = src == [0; 16];
    if !unspecified && !owns(port, &Addr::v6(src)) {
        return false;
    }
    let Some((proto, l4)) = upper(ctx, ip, h[6]) else {
        return false;
    };
    if proto != IPPROTO_ICMPV6 {
        return !unspecified;
    }
    let Ok(ty) = ctx.load::<u8>(l4) else {
        return !unspecified;
    };
    match ty {
        nd::NEIGH_SOLICIT | nd::NEIGH_ADVERT => nd_about_itself(ctx, port, ip, l4, ty),
        nd::MLD_REPORT | nd::MLD2_REPORT => true,
        _ => !unspecified,
    }
}

/// An NS or NA at `l4`: an NA's target is the port's, and every link-layer address option
/// carries its MAC.
#[inline(never)]
fn nd_about_itself(ctx: &TcContext, port: &Port, ip: usize, l4: usize, ty: u8) -> bool {
    if ty == nd::NEIGH_ADVERT {
        let Ok(target) = ctx.load::<[u8; 16]>(l4 + 8) else {
            return false;
        };
        if !owns(port, &Addr::v6(target)) {
            return false;
        }
    }
    let Ok(plen) = ctx.load::<[u8; 2]>(ip + 4) else {
        return false;
    };
    let end = ip + IPV6_LEN + u16::from_be_bytes(plen) as usize;
    let mut off = l4 + 24;
    for _ in 0..MAX_ND_OPTIONS {
        if off >= end {
            return true;
        }
        let Ok(opt) = ctx.load::<[u8; 8]>(off) else {
            // Cut short: receivers discard it.
            return true;
        };
        if opt[1] == 0 {
            return false;
        }
        let lladdr = opt[0] == nd::OPT_SOURCE_LLADDR || opt[0] == nd::OPT_TARGET_LLADDR;
        if lladdr && opt[2..8] != port.mac {
            return false;
        }
        off += opt[1] as usize * 8;
    }
    off >= end
}

/// Whether `addr` is one of the port's addresses. Unrolled by hand: Linux 6.1's verifier
/// loses a loop's bound on a pointer into map memory ("invalid access to map value").
#[inline(always)]
pub fn owns(port: &Port, addr: &Addr) -> bool {
    let n = (port.n_addrs as usize).min(MAX_PORT_ADDRS);
    // Constant indices, so every access has a constant offset.
    let hit = |i: usize| i < n && port.addrs[i] == *addr;
    const _: () = assert!(MAX_PORT_ADDRS == 8);
    hit(0) || hit(1) || hit(2) || hit(3) || hit(4) || hit(5) || hit(6) || hit(7)
}

/// Counts a multicast IPv6 frame that is a router or multicast listener message.
#[inline(always)]
pub fn count_control(ctx: &TcContext, ip: usize) {
    let Ok(next) = ctx.load::<u8>(ip + 6) else {
        return;
    };
    let Some((IPPROTO_ICMPV6, l4)) = upper(ctx, ip, next) else {
        return;
    };
    let id = match ctx.load::<u8>(l4) {
        Ok(nd::ROUTER_SOLICIT) => counter::ROUTER_SOLICIT,
        Ok(nd::ROUTER_ADVERT) => counter::ROUTER_ADVERT,
        Ok(nd::MLD_QUERY | nd::MLD_REPORT | nd::MLD_DONE | nd::MLD2_REPORT) => counter::MLD,
        _ => return,
    };
    count(id);
}
