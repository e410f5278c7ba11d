//! The site's array: its nodes and the consistent-hash rings that map clients to them.
//!
//! Userspace computes the rings (Maglev, see `balancer-user`'s `maglev` module) and writes
//! them whole into [`crate::maps::RING`], which holds [`RING_SLOTS`] rings of `ring_size`
//! entries laid end to end. The kernel only reads: it picks the *active* ring, and the
//! *previous* ring (the one in force before the last change) for second-chance forwarding.
//! Userspace writes a new ring into a slot that is neither active nor previous, then flips the
//! selector in one 32-bit store, so a packet never sees a half-written ring.

/// Number of rings in [`crate::maps::RING`]: active, previous, and one being written.
pub const RING_SLOTS: u32 = 3;
/// Default ring size: a prime, as Maglev requires, and about 256 slots per node at 256 nodes.
pub const DEFAULT_RING_SIZE: u32 = 65_537;
/// Node id meaning "no node".
pub const NO_NODE: u32 = 0;

/// The node is part of the configured array.
pub const NODE_FLAG_CONFIGURED: u32 = 1;
/// The node passes its health checks and may receive traffic.
pub const NODE_FLAG_HEALTHY: u32 = 2;
/// The node has been up at least once: it has its place in the table (userspace only; see
/// `balancer-user`'s `maglev` module on joining members).
pub const NODE_FLAG_JOINED: u32 = 4;
/// An operator took the node out (`balancer xdp health NODE down`): health checks that pass
/// do not put it back; only the operator does (userspace only).
pub const NODE_FLAG_DRAINED: u32 = 8;

/// Value of [`crate::maps::NODES`], indexed by node id (aligned to 8, size unchanged: word
/// moves in BPF).
#[repr(C, align(8))]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct NodeInfo {
    /// Underlay IPv4 address (outer header of IPv4-in-IPv4); all zero if none.
    pub underlay_v4: [u8; 4],
    /// `NODE_FLAG_*` bits.
    pub flags: u32,
    /// Underlay IPv6 address (outer header of IPv6-in-IPv6); all zero if none.
    pub underlay_v6: [u8; 16],
}
const _: () = assert!(core::mem::size_of::<NodeInfo>() == 24);

impl NodeInfo {
    /// Whether traffic may be sent to this node.
    #[inline(always)]
    pub const fn is_usable(&self) -> bool {
        self.flags & (NODE_FLAG_CONFIGURED | NODE_FLAG_HEALTHY)
            == (NODE_FLAG_CONFIGURED | NODE_FLAG_HEALTHY)
    }
}

/// The single entry of [`crate::maps::CONFIG`].
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct DataplaneConfig {
    /// This node's id; [`NO_NODE`] until userspace has configured the program, which then
    /// passes every packet untouched.
    pub self_node: u32,
    /// Entries per ring (a prime); the ring map holds `RING_SLOTS * ring_size` entries.
    pub ring_size: u32,
    /// Active and previous ring slots, see [`ring_select`]; read once per packet.
    pub ring_select: u32,
    /// Seed of the affinity hash: identical on every node of an array.
    pub hash_seed: u32,
}
const _: () = assert!(core::mem::size_of::<DataplaneConfig>() == 16);

/// Packs the active and previous ring slots into [`DataplaneConfig::ring_select`].
/// `previous == active` means there is no previous ring.
#[inline(always)]
pub const fn ring_select(active: u32, previous: u32) -> u32 {
    (active & 0xff) | ((previous & 0xff) << 8)
}

/// The active ring slot of a packed selector.
#[inline(always)]
pub const fn active_slot(select: u32) -> u32 {
    select & 0xff
}

/// The previous ring slot of a packed selector.
#[inline(always)]
pub const fn previous_slot(select: u32) -> u32 {
    (select >> 8) & 0xff
}
