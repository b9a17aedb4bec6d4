//! VXLAN encapsulation of a container's frame towards remote VTEPs (RFC 7348).

use core::{ffi::c_void, mem, ptr};

use aya_ebpf::{
    bindings::{
        bpf_adj_room_mode::BPF_ADJ_ROOM_MAC, bpf_fib_lookup as FibLookup,
        bpf_redir_neigh as RedirNeigh, bpf_redir_neigh__bindgen_ty_1 as NextHopAddr,
        BPF_ADJ_ROOM_ENCAP_L2_SHIFT, BPF_FIB_LKUP_RET_FWD_DISABLED, BPF_FIB_LKUP_RET_NO_NEIGH,
        BPF_FIB_LKUP_RET_SUCCESS, BPF_F_ADJ_ROOM_ENCAP_L2_ETH, BPF_F_ADJ_ROOM_ENCAP_L3_IPV4,
        BPF_F_ADJ_ROOM_ENCAP_L3_IPV6, BPF_F_ADJ_ROOM_ENCAP_L4_UDP, BPF_F_ADJ_ROOM_FIXED_GSO,
        BPF_F_INGRESS,
    },
    helpers::{
        bpf_fib_lookup, bpf_get_hash_recalc, bpf_redirect, bpf_redirect_neigh, bpf_skb_change_head,
    },
    programs::TcContext,
};
use vtep_common::{
    counter, ecn,
    outer6::ENCAP6_LEN,
    wire::{self, ENCAP_LEN, ETH_LEN, ETH_P_IP, ETH_P_IPV6, MAX_VLAN_TAGS, VLAN_LEN},
    Config, Remote, REFLECT_MARK,
};

use crate::{
    encap6, head,
    maps::FIB_SCRATCH,
    mtu,
    stats::{count, drop, redirected, Verdict},
    vlan,
};

const AF_INET: u8 = 2;
pub const AF_INET6: u8 = 10;

/// Keeps GSO/TSO intact: the kernel marks the skb as UDP-tunnelled Ethernet and segments it
/// (inner TCP included) only at the last moment, exactly as for its own vxlan device. The
/// inner MAC header length (added per frame) is 14 plus its VLAN tags: the kernel's
/// segmentation finds the inner network header by it, so any other value corrupts segments.
const ROOM_FLAGS: u64 = BPF_F_ADJ_ROOM_FIXED_GSO as u64
    | BPF_F_ADJ_ROOM_ENCAP_L4_UDP as u64
    | BPF_F_ADJ_ROOM_ENCAP_L2_ETH as u64;

/// The outer family of a tunnel: which local address, headers and room.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Family {
    V4,
    V6,
}

impl Family {
    /// Outer headers, Ethernet included.
    #[inline(always)]
    pub const fn overhead(self) -> usize {
        match self {
            Family::V4 => ENCAP_LEN,
            Family::V6 => ENCAP6_LEN,
        }
    }

    /// The ether type skb->protocol must hold for the kernel to route the outer packet.
    #[inline(always)]
    const fn ethertype(self) -> u16 {
        match self {
            Family::V4 => ETH_P_IP,
            Family::V6 => ETH_P_IPV6,
        }
    }

    #[inline(always)]
    const fn room_flag(self) -> u64 {
        match self {
            Family::V4 => BPF_F_ADJ_ROOM_ENCAP_L3_IPV4 as u64,
            Family::V6 => BPF_F_ADJ_ROOM_ENCAP_L3_IPV6 as u64,
        }
    }
}

/// What stays the same for every copy of one encapsulated frame.
pub struct Tunnel {
    pub inner_eth: [u8; ETH_LEN],
    pub tags: vlan::Tags,
    pub inner_len: u16,
    pub src_port: u16,
    pub tos: u8,
    pub vni: u32,
    /// The inner flow's hash, for an IPv6 flow label.
    pub hash: u32,
}

/// Grows the frame starting with `eth` by the outer headers of `family` (filled in later,
/// per destination), taking its VLAN tags out of metadata to push them inside. Err is the
/// drop counter.
#[inline(always)]
pub fn open(
    ctx: &TcContext,
    cfg: &Config,
    vni: u32,
    eth: &[u8; ETH_LEN],
    family: Family,
) -> Result<Tunnel, u32> {
    let tags = vlan::take(ctx).ok_or(counter::DROP_VLAN)?;
    let mut inner_eth = *eth;
    if tags.n > 0 {
        // Taking a QinQ frame's second tag out of its bytes moved its ether type.
        inner_eth = *head::view::<ETH_LEN>(ctx).ok_or(counter::DROP_MALFORMED)?;
    }
    let ethertype = u16::from_be_bytes([inner_eth[12], inner_eth[13]]);
    let dsfield = match head::view::<{ ETH_LEN + 2 }>(ctx) {
        Some(h) => ecn::dsfield(ethertype, &[h[ETH_LEN], h[ETH_LEN + 1]]),
        None => None,
    };
    let dscp_from = match dsfield {
        Some(inner) if cfg.tos_inherit != 0 => inner,
        _ if cfg.tos_inherit != 0 => 0,
        _ => cfg.tos,
    };
    let tos = ecn::encap_tos(dscp_from, dsfield.unwrap_or(0));
    let hash = flow_hash(ctx, ethertype == ETH_P_IP);
    let pushed = tags.n * VLAN_LEN;
    // A GSO super-packet can exceed what the 16-bit length fields hold; its outer lengths are
    // only a template the kernel rewrites per segment, so saturate rather than wrap.
    let inner_len =
        (ctx.len() + pushed as u32).min(u16::MAX as u32 - (ENCAP_LEN - ETH_LEN) as u32) as u16;
    let room = (family.overhead() + pushed) as u32;
    let proto = ctx.skb.protocol();
    if proto == ETH_P_IP.to_be() as u32 || proto == ETH_P_IPV6.to_be() as u32 {
        let l2 = ((ETH_LEN + pushed) as u64) << BPF_ADJ_ROOM_ENCAP_L2_SHIFT;
        let flags = ROOM_FLAGS | family.room_flag() | l2;
        ctx.adjust_room(room as i32, BPF_ADJ_ROOM_MAC, flags)
            .map_err(|_| counter::DROP_ENCAP_FAIL)?;
    } else if unsafe { bpf_skb_change_head(ctx.skb.skb, room, 0) } != 0 {
        // adjust_room takes only IP skbs; other frames (ARP) are never GSO, so pushing
        // plain headroom in front of the whole frame loses nothing.
        return Err(counter::DROP_ENCAP_FAIL);
    }
    Ok(Tunnel {
        inner_eth,
        tags,
        inner_len,
        src_port: wire::src_port(hash, cfg.srcport_min, cfg.srcport_max),
        tos,
        vni,
        hash,
    })
}

/// The inner flow's hash, for the outer source port: the skb's own when the stack set one
/// (TCP sockets do), else the IPv4 flow mixed here (cheaper than the flow dissector), else
/// the dissector's.
#[inline(always)]
fn flow_hash(ctx: &TcContext, inner_ipv4: bool) -> u32 {
    let hash = unsafe { (*ctx.skb.skb).hash };
    if hash != 0 {
        return hash;
    }
    if inner_ipv4 {
        if let Some(headers) = head::view::<38>(ctx) {
            return wire::ipv4_flow_hash(headers);
        }
    }
    unsafe { bpf_get_hash_recalc(ctx.skb.skb) }
}

/// Writes the outer headers towards `remote_ip:port` and the inner Ethernet header with
/// its tags (which the growth displaced).
#[inline(always)]
pub fn address(
    ctx: &TcContext,
    cfg: &Config,
    t: &Tunnel,
    remote_ip: [u8; 4],
    port: u16,
    macs: ([u8; 6], [u8; 6]),
) -> bool {
    let outer = wire::Outer {
        dst_mac: macs.0,
        src_mac: macs.1,
        src_ip: cfg.local_ip,
        dst_ip: remote_ip,
        src_port: t.src_port,
        dst_port: port,
        vni: t.vni,
        ttl: cfg.ttl,
        tos: t.tos,
        inner_len: t.inner_len,
    };
    let write = |o: &mut [u8; ENCAP_LEN]| wire::write_outer(o, &outer);
    // One fixed-size write per tag count: the verifier needs constant bounds.
    match t.tags.n {
        0 => write_head::<{ ENCAP_LEN + ETH_LEN }, ENCAP_LEN>(ctx, write, t),
        1 => write_head::<{ ENCAP_LEN + ETH_LEN + VLAN_LEN }, ENCAP_LEN>(ctx, write, t),
        _ => write_head::<{ ENCAP_LEN + ETH_LEN + MAX_VLAN_TAGS * VLAN_LEN }, ENCAP_LEN>(
            ctx, write, t,
        ),
    }
}

/// Writes the outer headers (`O` bytes, by `outer`), then the inner MACs, tags and ether
/// type: the first `N` bytes.
#[inline(always)]
pub fn write_head<const N: usize, const O: usize>(
    ctx: &TcContext,
    outer: impl FnOnce(&mut [u8; O]),
    t: &Tunnel,
) -> bool {
    let Some((o, inner)) = head::view_mut::<N>(ctx).and_then(|h| h.split_first_chunk_mut::<O>())
    else {
        return false;
    };
    outer(o);
    let Some((macs, rest)) = inner.split_first_chunk_mut::<12>() else {
        return false;
    };
    macs.copy_from_slice(&t.inner_eth[..12]);
    for (dst, tag) in rest.chunks_exact_mut(VLAN_LEN).zip(&t.tags.tag) {
        dst.copy_from_slice(tag);
    }
    match rest.last_chunk_mut::<2>() {
        Some(ty) => {
            ty.copy_from_slice(&t.inner_eth[12..]);
            true
        }
        None => false,
    }
}

/// Marks an encapsulated frame for the detour through the underlay's ingress (redirect with
/// `REFLECT_FLAGS`), where the kernel re-derives skb->protocol (IPv4 or IPv6) and `reflected`
/// hands it to `bpf_redirect_neigh`.
#[inline(always)]
pub fn reflect_mark(ctx: &TcContext) {
    ctx.set_mark(REFLECT_MARK);
}

pub const REFLECT_FLAGS: u64 = BPF_F_INGRESS as u64;

/// The second half of a detour at the underlay's ingress: our own encapsulated frame, now
/// with skb->protocol derived from its outer header, goes to the kernel's next hop. None
/// for every other frame.
#[inline(always)]
pub fn reflected(ctx: &TcContext, cfg: &Config) -> Option<Verdict<i32>> {
    if unsafe { (*ctx.skb.skb).mark } != REFLECT_MARK {
        return None;
    }
    ctx.set_mark(0);
    let rc = unsafe { bpf_redirect_neigh(cfg.underlay_ifindex, ptr::null_mut(), 0, 0) } as i32;
    Some(redirected(rc, counter::REFLECT, counter::DROP_ENCAP_FAIL))
}

/// How an encapsulated frame reaches the underlay's next hop.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Route {
    /// Route and neighbour known: outer MACs and egress device.
    Resolved,
    /// On the underlay's own subnet: the kernel only resolves the neighbour, no route.
    OnLink,
    /// The kernel has to route and resolve it.
    Unresolved,
}

/// The next hop. A struct whose every field is set on every path, not an enum with data:
/// LLVM loads an enum's payload before matching on it, and on a path that never wrote it
/// that reads uninitialised stack, which Linux 6.1's verifier refuses.
pub struct NextHop {
    pub route: Route,
    pub ifindex: u32,
    pub dst_mac: [u8; 6],
    pub src_mac: [u8; 6],
}

impl NextHop {
    /// Where the FIB helper would refuse (no IP forwarding on the underlay): straight to
    /// the kernel, which only resolves the neighbour of a VTEP `on_link`.
    #[inline(always)]
    pub const fn without_fib(on_link: bool, cfg: &Config) -> Self {
        let route = if on_link {
            Route::OnLink
        } else {
            Route::Unresolved
        };
        Self::by_kernel(route, cfg.underlay_ifindex)
    }

    /// A hop the kernel resolves, out of the underlay device.
    pub const fn by_kernel(route: Route, ifindex: u32) -> Self {
        NextHop {
            route,
            ifindex,
            dst_mac: [0; 6],
            src_mac: [0; 6],
        }
    }
}

/// Unicast from port `from` to one remote VTEP of `family` (a constant where inlined, so
/// each program holds only its family's path). The frame is encapsulated and handed to the
/// underlay (`encap`), answered with ICMP when too big (`icmp_too_big`), or dropped
/// with the reason; the caller counts the verdict.
#[inline(always)]
pub fn unicast(
    ctx: &TcContext,
    cfg: &Config,
    to: &Remote,
    family: Family,
    vni: u32,
    from: u32,
    eth: &[u8; ETH_LEN],
) -> Verdict<i32> {
    let a = &to.ip.0;
    let v4 = [a[12], a[13], a[14], a[15]];
    if let Some(limit) = mtu::exceeded(ctx, cfg, eth, family.overhead()) {
        return mtu::answer(ctx, from, eth, limit);
    }
    let hop = match family {
        Family::V4 => next_hop(ctx, cfg, v4),
        Family::V6 => encap6::next_hop(ctx, cfg, a),
    };
    let Some(hop) = hop else {
        return drop(counter::DROP_NO_ROUTE);
    };
    let tunnel = match open(ctx, cfg, vni, eth, family) {
        Ok(t) => t,
        Err(reason) => return drop(reason),
    };
    // Read after `open`: taking the tags out can change skb->protocol.
    let routable = ctx.skb.protocol() == family.ethertype().to_be() as u32;
    let macs = (hop.dst_mac, hop.src_mac);
    let written = match family {
        Family::V4 => address(ctx, cfg, &tunnel, v4, to.port, macs),
        Family::V6 => encap6::address_unicast(ctx, cfg, &tunnel, to, &macs),
    };
    if !written {
        return drop(counter::DROP_ENCAP_FAIL);
    }
    let rc = match hop.route {
        Route::Resolved => unsafe { bpf_redirect(hop.ifindex, 0) as i32 },
        Route::OnLink if routable => {
            count(counter::NEIGH_RESOLVE);
            // Every byte set by value: mem::zeroed() becomes a byte-loop memset call here.
            let word = |i: usize| u32::from_ne_bytes([a[i], a[i + 1], a[i + 2], a[i + 3]]);
            let mut nh = match family {
                Family::V4 => RedirNeigh {
                    nh_family: AF_INET as u32,
                    __bindgen_anon_1: NextHopAddr {
                        ipv6_nh: [word(12), 0, 0, 0],
                    },
                },
                Family::V6 => RedirNeigh {
                    nh_family: AF_INET6 as u32,
                    __bindgen_anon_1: NextHopAddr {
                        ipv6_nh: [word(0), word(4), word(8), word(12)],
                    },
                },
            };
            unsafe {
                bpf_redirect_neigh(
                    cfg.underlay_ifindex,
                    &mut nh,
                    mem::size_of::<RedirNeigh>() as i32,
                    0,
                ) as i32
            }
        }
        Route::Unresolved if routable => {
            count(counter::NEIGH_RESOLVE);
            unsafe { bpf_redirect_neigh(cfg.underlay_ifindex, ptr::null_mut(), 0, 0) as i32 }
        }
        // skb->protocol still names the inner frame (ARP, say), which bpf_redirect_neigh
        // refuses: take the detour through the underlay's ingress.
        Route::OnLink | Route::Unresolved => {
            count(counter::NEIGH_RESOLVE);
            reflect_mark(ctx);
            unsafe { bpf_redirect(cfg.underlay_ifindex, REFLECT_FLAGS) as i32 }
        }
    };
    redirected(rc, counter::ENCAP, counter::DROP_ENCAP_FAIL)
}

/// The underlay route to the remote VTEP, from the kernel's FIB and neighbour table (never
/// a constant MAC: the underlay may change under us).
pub fn next_hop(ctx: &TcContext, cfg: &Config, remote_ip: [u8; 4]) -> Option<NextHop> {
    if cfg.fib_ok == 0 {
        let on_link = wire::same_subnet(cfg.local_ip, remote_ip, cfg.onlink_prefix);
        return Some(NextHop::without_fib(on_link, cfg));
    }
    route(ctx, cfg, |fib| {
        fib.family = AF_INET;
        fib.__bindgen_anon_2.tos = 0;
        fib.__bindgen_anon_3.ipv4_src = u32::from_ne_bytes(cfg.local_ip);
        fib.__bindgen_anon_4.ipv4_dst = u32::from_ne_bytes(remote_ip);
    })
}

/// The next hop of either family from the FIB, asked the query `address` completes.
#[inline(always)]
pub fn route(
    ctx: &TcContext,
    cfg: &Config,
    address: impl FnOnce(&mut FibLookup),
) -> Option<NextHop> {
    // In a per-CPU scratch slot, not on the stack: a flood copy looks its hop up from a
    // bpf_loop callback, and the kernel allows 512 bytes of stack for the whole call chain
    // (6.1 counted 544 with this struct on it). Every input field is written each time;
    // the others are outputs.
    let Some(fib) = FIB_SCRATCH.get_ptr_mut(0) else {
        return Some(NextHop::by_kernel(Route::Unresolved, cfg.underlay_ifindex));
    };
    let fib = unsafe { &mut *fib };
    fib.l4_protocol = 0;
    fib.sport = 0;
    fib.dport = 0;
    fib.__bindgen_anon_1.tot_len = 0;
    fib.ifindex = cfg.underlay_ifindex;
    address(fib);
    fib_answer(ctx, fib, cfg)
}

/// Asks the FIB about the query in `fib` (either family).
#[inline(always)]
fn fib_answer(ctx: &TcContext, fib: &mut FibLookup, cfg: &Config) -> Option<NextHop> {
    let rc = unsafe {
        bpf_fib_lookup(
            ctx.skb.skb as *mut c_void,
            fib,
            mem::size_of::<FibLookup>() as i32,
            0,
        )
    };
    match rc as u32 {
        BPF_FIB_LKUP_RET_SUCCESS => Some(NextHop {
            route: Route::Resolved,
            ifindex: fib.ifindex,
            dst_mac: fib.dmac,
            src_mac: fib.smac,
        }),
        // Without IP forwarding on the underlay the FIB helper refuses to answer; the
        // kernel's own output path still knows the way.
        BPF_FIB_LKUP_RET_NO_NEIGH | BPF_FIB_LKUP_RET_FWD_DISABLED => {
            Some(NextHop::by_kernel(Route::Unresolved, cfg.underlay_ifindex))
        }
        _ => None,
    }
}
