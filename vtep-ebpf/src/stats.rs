//! Counters, and the verdict shape that keeps them honest: helpers return a `Verdict` (what
//! to do with the frame and the counter saying why), and each program's entry point counts
//! it, so every frame is counted exactly once per program.

use aya_ebpf::bindings::{TC_ACT_REDIRECT, TC_ACT_SHOT};

use crate::maps::STATS;

#[inline(always)]
pub fn add(id: u32, n: u64) {
    if let Some(slot) = STATS.get_ptr_mut(id) {
        // Per-CPU slot: no other writer can race with this increment.
        unsafe { *slot += n };
    }
}

/// Counts an event that is not a frame's verdict (a copy made, an entry learned).
#[inline(always)]
pub fn count(id: u32) {
    add(id, 1);
}

#[derive(Clone, Copy)]
pub struct Verdict<A> {
    pub action: A,
    pub counter: u32,
}

impl<A> Verdict<A> {
    #[inline(always)]
    pub const fn new(action: A, counter: u32) -> Self {
        Verdict { action, counter }
    }

    /// Counts the verdict and returns the program's return value.
    #[inline(always)]
    pub fn finish(self) -> A {
        count(self.counter);
        self.action
    }
}

/// A TC verdict that consumes the frame.
#[inline(always)]
pub const fn drop(reason: u32) -> Verdict<i32> {
    Verdict::new(TC_ACT_SHOT, reason)
}

/// `counter` when a redirect helper accepted the frame (its return value `rc`), else a drop
/// as `otherwise`: the frame is counted for what really happened to it.
#[inline(always)]
pub const fn redirected(rc: i32, counter: u32, otherwise: u32) -> Verdict<i32> {
    if rc == TC_ACT_REDIRECT {
        Verdict::new(rc, counter)
    } else {
        drop(otherwise)
    }
}
