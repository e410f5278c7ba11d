//! Per-CPU counters, one [`Counters`] per VIP and one per node.
//!
//! Userspace sums the per-CPU values; `bpftool map dump` prints them by field name.

/// Value of [`crate::maps::VIP_STATS`] and [`crate::maps::NODE_STATS`].
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct Counters {
    /// Packets seen (for a node: packets steered to it).
    pub packets: u64,
    /// Bytes of those packets, as received.
    pub bytes: u64,
    /// Passed to this node's own stack (XDP_PASS).
    pub passed_local: u64,
    /// Encapsulated and sent to another node.
    pub forwarded: u64,
    /// Arrived encapsulated from a peer and were decapsulated here.
    pub decapsulated: u64,
    /// Malformed or truncated packets to a VIP address, dropped.
    pub dropped_malformed: u64,
    /// Steered by the connection table to a node other than the current ring's choice.
    pub continuity_hits: u64,
    /// Sent on to the previous owner because this node has no socket for them.
    pub second_chance: u64,
    /// Could not be forwarded: no route or no neighbour entry for the next hop (dropped).
    pub fib_failures: u64,
}
const _: () = assert!(core::mem::size_of::<Counters>() == 72);
