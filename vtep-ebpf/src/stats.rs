use crate::maps::STATS;

#[inline(always)]
pub fn add(id: u32, n: u64) {
    if let Some(slot) = STATS.get_ptr_mut(id) {
        // Per-CPU slot: no other writer can race with this increment.
        unsafe { *slot += n };
    }
}

#[inline(always)]
pub fn count(id: u32) {
    add(id, 1);
}
