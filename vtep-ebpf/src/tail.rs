//! The port program's second half, in programs of their own reached by tail call: flooding
//! (copies to the VNI's other ports and to its flood list) and encapsulation towards an
//! IPv6 VTEP. Each gets its own 512 bytes of stack and its own budget of verified
//! instructions: in one program, IPv6 outer headers built in a flood walk's callback,
//! stacked on the port program's frame, needed more than the 512 bytes a call chain may use.
//!
//! What the port program decided travels in per-CPU scratch (`HANDOFF`): a tail call runs
//! at once, on the same CPU, with nothing in between. The frame itself is untouched.

use aya_ebpf::programs::TcContext;
use vtep_common::{counter, tail, wire::ETH_LEN, Config, Remote};

use crate::{
    encap::{self, Family},
    flood, head,
    maps::{CONFIG, HANDOFF, TAILS},
    stats::{drop, Verdict},
};

#[repr(C)]
#[derive(Clone, Copy)]
pub struct Handoff {
    pub vni: u32,
    /// For a flood: the drop counter when there is nowhere to flood to.
    pub reason: u32,
    /// For an IPv6 unicast: the VTEP.
    pub to: Remote,
}

/// Hands the frame on to `vtep_flood`.
#[inline(always)]
pub fn to_flood(ctx: &TcContext, vni: u32, reason: u32) -> Verdict<i32> {
    let Some(h) = HANDOFF.get_ptr_mut(0) else {
        return drop(counter::DROP_NOT_READY);
    };
    unsafe {
        (*h).vni = vni;
        (*h).reason = reason;
    }
    jump(ctx, tail::FLOOD)
}

/// Hands the frame on to `vtep_unicast6`, towards `to`.
#[inline(always)]
pub fn to_unicast6(ctx: &TcContext, vni: u32, to: &Remote) -> Verdict<i32> {
    let Some(h) = HANDOFF.get_ptr_mut(0) else {
        return drop(counter::DROP_NOT_READY);
    };
    unsafe {
        (*h).vni = vni;
        (*h).to = *to;
    }
    jump(ctx, tail::UNICAST6)
}

#[inline(always)]
fn jump(ctx: &TcContext, slot: u32) -> Verdict<i32> {
    unsafe { TAILS.tail_call(ctx, slot) };
    // Only an empty slot comes back: `vtep up` fills the slots before any port links.
    drop(counter::DROP_NOT_READY)
}

/// `vtep_flood`: the frame `to_flood` handed on.
#[inline(always)]
pub fn flood(ctx: &TcContext) -> i32 {
    resume(ctx, |cfg, h, eth, from| {
        flood::from_port(ctx, cfg, h.vni, from, eth, h.reason)
    })
}

/// `vtep_unicast6`: the frame `to_unicast6` handed on.
#[inline(always)]
pub fn unicast6(ctx: &TcContext) -> i32 {
    resume(ctx, |cfg, h, eth, from| {
        encap::unicast(ctx, cfg, &h.to, Family::V6, h.vni, from, eth)
    })
}

/// Picks up where the port program left off: its settings, its decision, the frame's
/// Ethernet header and the port it came from (the frame's ifindex is still the port's).
#[inline(always)]
fn resume(
    ctx: &TcContext,
    then: impl FnOnce(&Config, &Handoff, &[u8; ETH_LEN], u32) -> Verdict<i32>,
) -> i32 {
    let from = unsafe { (*ctx.skb.skb).ifindex };
    let verdict = match (
        CONFIG.get(0),
        HANDOFF.get(0).copied(),
        head::view::<ETH_LEN>(ctx).copied(),
    ) {
        (Some(cfg), Some(h), Some(eth)) => then(cfg, &h, &eth, from),
        _ => drop(counter::DROP_NOT_READY),
    };
    verdict.finish()
}
