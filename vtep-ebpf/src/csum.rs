//! One's-complement sums of packet bytes, for the outer UDP checksum over IPv6 (sent and
//! received). bpf_csum_diff takes a constant size of at most 512 bytes and the packet may be
//! nonlinear, so the bytes are copied to per-CPU scratch in chunks of fixed sizes, largest
//! first: every load and sum has a constant length the verifier can check.

use core::ffi::c_void;

use aya_ebpf::{
    helpers::{bpf_csum_diff, bpf_skb_load_bytes},
    programs::TcContext,
};

use crate::maps::SUM_SCRATCH;

const CHUNK: usize = 512;
/// 512-byte chunks at most: a 9216-byte jumbo frame. A non-GSO frame that fits the underlay
/// is never longer.
const MAX_CHUNKS: usize = 18;

/// The sum of the frame's bytes from `from` (an even offset) to its end, folded to 16 bits
/// and native-endian (an odd last byte padded with zero); None when the frame is longer
/// than a jumbo frame or cannot be read.
#[inline(never)]
pub fn sum_from(ctx: &TcContext, from: u32) -> Option<u32> {
    let buf = SUM_SCRATCH.get_ptr_mut(0)? as *mut u8;
    let len = ctx.len();
    let mut off = from;
    let mut sum = 0u32;
    for _ in 0..MAX_CHUNKS {
        if off + CHUNK as u32 > len {
            break;
        }
        sum = chunk::<CHUNK>(ctx, off, buf, sum)?;
        off += CHUNK as u32;
    }
    for _ in 0..CHUNK / 64 {
        if off + 64 > len {
            break;
        }
        sum = chunk::<64>(ctx, off, buf, sum)?;
        off += 64;
    }
    for _ in 0..64 / 4 {
        if off + 4 > len {
            break;
        }
        sum = chunk::<4>(ctx, off, buf, sum)?;
        off += 4;
    }
    // The last one to three bytes, zero-padded to a word.
    let mut last = [0u8; 4];
    for b in last.iter_mut().take(3) {
        if off >= len {
            break;
        }
        *b = ctx.load::<u8>(off as usize).ok()?;
        off += 1;
    }
    if off < len {
        return None;
    }
    let sum = diff(last.as_ptr(), 4, sum)?;
    let s = (sum & 0xffff) + (sum >> 16);
    Some((s & 0xffff) + (s >> 16))
}

/// `sum` plus the `N` bytes at `off`, copied to `buf` first.
#[inline(always)]
fn chunk<const N: usize>(ctx: &TcContext, off: u32, buf: *mut u8, sum: u32) -> Option<u32> {
    let rc = unsafe {
        bpf_skb_load_bytes(
            ctx.skb.skb as *const c_void,
            off,
            buf as *mut c_void,
            N as u32,
        )
    };
    if rc != 0 {
        return None;
    }
    diff(buf, N as u32, sum)
}

#[inline(always)]
fn diff(bytes: *const u8, n: u32, seed: u32) -> Option<u32> {
    let s = unsafe { bpf_csum_diff(core::ptr::null_mut(), 0, bytes as *mut u32, n, seed) };
    (s >= 0).then_some(s as u32)
}

/// Copies the first 40 bytes of an inner network header, at `off`, to `l3`: what
/// `outer6::inner` reads to decide how much of the packet a checksum must sum. False when
/// the frame ends sooner.
#[inline(always)]
pub fn load_l3(ctx: &TcContext, off: u32, l3: &mut [u8; 40]) -> bool {
    unsafe {
        bpf_skb_load_bytes(
            ctx.skb.skb as *const c_void,
            off,
            l3.as_mut_ptr() as *mut c_void,
            40,
        ) == 0
    }
}
