//! Rare events reported to userspace with aya-log (`balancer run` forwards them into its
//! tracing logs). Each kind is reported at most once a second per CPU, so a misconfiguration
//! that hits every packet costs a clock read, not a flood; the counters keep the full count.

use crate::maps::EVENT_CLOCK;
use aya_ebpf::{helpers::bpf_ktime_get_ns, programs::XdpContext};
use aya_log_ebpf::warn;

/// Event kinds: indices into [`EVENT_CLOCK`].
pub const FORWARD_FAILED: u32 = 0;
pub const KINDS: u32 = 1;

const PERIOD_NS: u64 = 1_000_000_000;

/// Whether an event of `kind` may be reported now, and if so, records that it was.
#[inline(always)]
fn due(kind: u32) -> bool {
    // SAFETY: a helper with no arguments.
    let now = unsafe { bpf_ktime_get_ns() };
    let Some(last) = EVENT_CLOCK.get_ptr_mut(kind) else {
        return false;
    };
    // SAFETY: per-CPU array slot, valid for the program's run and touched by this CPU only.
    let last = unsafe { &mut *last };
    if *last != 0 && now.wrapping_sub(*last) < PERIOD_NS {
        return false;
    }
    *last = now;
    true
}

/// A packet for `node` could not be forwarded (no route or neighbour towards its underlay
/// address, or the encapsulated packet exceeds the MTU) and was dropped.
#[inline(never)]
pub fn forward_failed(ctx: &XdpContext, node: u32) {
    if due(FORWARD_FAILED) {
        warn!(
            ctx,
            "cannot forward to node {}: no route or neighbour towards its underlay address, or the encapsulated packet exceeds the MTU; dropped (counted in fib_failures)",
            node
        );
    }
}
