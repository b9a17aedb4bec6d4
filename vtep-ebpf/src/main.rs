//! vtep data path: a VXLAN tunnel endpoint in two programs.
//!
//! * `vtep_port` (TC ingress on the host side of every container veth): proxy ARP, local
//!   switching, encapsulation towards remote VTEPs and miss events; it tail-calls
//!   `vtep_flood` to flood and `vtep_unicast6` to encapsulate over IPv6 (`tail`).
//! * `vtep_underlay_tc` (TC ingress on the underlay device, optionally behind
//!   `vtep_underlay_xdp`): decapsulation into local ports and learning; anything else goes
//!   on to the host untouched.
#![no_std]
#![no_main]

mod csum;
mod decap;
mod decap6;
mod encap;
mod encap6;
mod fdb;
mod flood;
mod head;
mod maps;
mod miss;
mod mtu;
mod nd;
mod port;
mod stats;
mod tail;
mod vlan;

use aya_ebpf::{
    macros::{classifier, xdp},
    programs::{TcContext, XdpContext},
};

#[classifier]
pub fn vtep_port(ctx: TcContext) -> i32 {
    port::ingress(&ctx)
}

#[classifier]
pub fn vtep_flood(ctx: TcContext) -> i32 {
    tail::flood(&ctx)
}

#[classifier]
pub fn vtep_unicast6(ctx: TcContext) -> i32 {
    tail::unicast6(&ctx)
}

#[xdp]
pub fn vtep_underlay_xdp(ctx: XdpContext) -> u32 {
    decap::underlay_xdp(&ctx)
}

#[classifier]
pub fn vtep_underlay_tc(ctx: TcContext) -> i32 {
    decap::underlay_tc(&ctx)
}

// The shared header layout agrees with network-types' independent definitions.
const _: () = {
    use core::mem::size_of;
    use network_types::{eth::EthHdr, ip::Ipv4Hdr, udp::UdpHdr, vxlan::VxlanHdr};
    use vtep_common::wire::{ETH_LEN, IPV4_LEN, UDP_LEN, VXLAN_LEN};
    assert!(size_of::<EthHdr>() == ETH_LEN);
    assert!(size_of::<Ipv4Hdr>() == IPV4_LEN);
    assert!(size_of::<UdpHdr>() == UDP_LEN);
    assert!(size_of::<VxlanHdr>() == VXLAN_LEN);
};

#[cfg(not(test))]
#[panic_handler]
fn panic(_info: &core::panic::PanicInfo) -> ! {
    loop {}
}

// GPL-compatible, or the kernel refuses bpf_redirect_neigh and bpf_fib_lookup.
#[link_section = "license"]
#[no_mangle]
static LICENSE: [u8; 13] = *b"Dual MIT/GPL\0";
