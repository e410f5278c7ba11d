//! Per-CPU counter updates (no atomics needed: each CPU owns its copy).

use crate::maps::{NODE_STATS, VIP_STATS};
use balancer_common::{maps::UNATTRIBUTED_STATS_INDEX, stats::Counters};

/// Applies `update` to the counters of VIP `index`.
#[inline(always)]
pub fn vip(index: u32, update: impl FnOnce(&mut Counters)) {
    if let Some(c) = VIP_STATS.get_ptr_mut(index) {
        // SAFETY: per-CPU array slot, valid for the program's run and touched by this CPU only.
        update(unsafe { &mut *c });
    }
}

/// Applies `update` to the counters of node `id`.
#[inline(always)]
pub fn node(id: u32, update: impl FnOnce(&mut Counters)) {
    if let Some(c) = NODE_STATS.get_ptr_mut(id) {
        // SAFETY: as above.
        update(unsafe { &mut *c });
    }
}

/// Counts a malformed packet that belongs to no VIP we could name.
#[inline(always)]
pub fn unattributed_malformed() {
    vip(UNATTRIBUTED_STATS_INDEX, |c| c.dropped_malformed += 1);
}
