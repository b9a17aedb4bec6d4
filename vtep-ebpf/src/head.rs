//! The first bytes of a TC frame, read and written straight in packet memory when they are
//! in the linear part (the usual case), through the skb helpers otherwise. The helpers cost
//! a call and a copy each; the header fast path is most of a program's work.

use aya_ebpf::programs::TcContext;

#[inline(always)]
pub fn read<const N: usize>(ctx: &TcContext) -> Option<[u8; N]> {
    let (start, end) = (ctx.data(), ctx.data_end());
    if start + N <= end {
        // SAFETY: the range was just checked against data_end, as the verifier requires.
        return Some(unsafe { (start as *const [u8; N]).read_unaligned() });
    }
    ctx.load::<[u8; N]>(0).ok()
}

#[inline(always)]
pub fn write<const N: usize>(ctx: &TcContext, bytes: &[u8; N]) -> bool {
    // Pointers are re-derived here: callers write right after adjust_room/change_head.
    let (start, end) = (ctx.data(), ctx.data_end());
    if start + N <= end {
        // SAFETY: as above; the kernel unclones the skb before a program writes to it.
        unsafe { (start as *mut [u8; N]).write_unaligned(*bytes) };
        return true;
    }
    ctx.store(0, bytes, 0).is_ok()
}
