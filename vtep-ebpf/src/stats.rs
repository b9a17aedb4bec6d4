use crate::maps::STATS;

#[inline(always)]
pub fn count(id: u32) {
    if let Some(slot) = STATS.get_ptr_mut(id) {
        // Per-CPU slot: no other writer can race with this increment.
        unsafe { *slot += 1 };
    }
}
