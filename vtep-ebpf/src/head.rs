//! The first bytes of a TC frame, used in place in packet memory. Copying headers onto the
//! stack first costs a byte load and a store per byte (BPF has no unaligned word loads, and
//! the copies spill): most of a program's work, before any of it is used.
//!
//! A view lives until the next helper that moves packet data (adjust_room, change_head):
//! the verifier rejects any use after that, so callers copy what they need beyond it.

use aya_ebpf::programs::TcContext;

/// The first `N` bytes, pulled into the linear part first when they are not there (rare:
/// the stack builds headers linear).
#[inline(always)]
pub fn view<const N: usize>(ctx: &TcContext) -> Option<&[u8; N]> {
    // SAFETY: see `start`; a byte array needs no alignment.
    start::<N>(ctx).map(|p| unsafe { &*p })
}

/// The same, to rewrite in place (the kernel unclones the skb of a program that writes).
#[inline(always)]
#[allow(clippy::mut_from_ref)] // The bytes are the packet's, not the context's.
pub fn view_mut<const N: usize>(ctx: &TcContext) -> Option<&mut [u8; N]> {
    // SAFETY: as for `view`; callers hold one view at a time.
    start::<N>(ctx).map(|p| unsafe { &mut *p })
}

#[inline(always)]
fn start<const N: usize>(ctx: &TcContext) -> Option<*mut [u8; N]> {
    if ctx.data() + N > ctx.data_end() {
        ctx.pull_data(N as u32).ok()?;
    }
    // Pointers are re-derived: pulling (or a caller's adjust_room) moves the data.
    let (start, end) = (ctx.data(), ctx.data_end());
    // Checked against data_end right before use, as the verifier requires.
    (start + N <= end).then_some(start as *mut [u8; N])
}

/// Overwrites the first `N` bytes (after adjust_room or change_head made room for them).
#[inline(always)]
pub fn write<const N: usize>(ctx: &TcContext, bytes: &[u8; N]) -> bool {
    match view_mut::<N>(ctx) {
        Some(head) => {
            *head = *bytes;
            true
        }
        None => false,
    }
}
