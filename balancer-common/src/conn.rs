//! The connection table: each receiving node remembers which node a flow went to.
//!
//! An LRU hash keyed by the 5-tuple. A SYN always takes the ring's choice and records it;
//! later packets of the flow follow the record while that node is usable, so a ring change
//! does not move established flows that keep arriving at the same receiving node.

/// Key of [`crate::maps::CONN_TABLE`]. Aligned to 8 (size unchanged) so that building it
/// compiles to word moves, not byte moves, in BPF.
#[repr(C, align(8))]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
pub struct FlowKey {
    /// Client address (IPv4-mapped for IPv4).
    pub src: [u8; 16],
    /// Virtual IP (IPv4-mapped for IPv4).
    pub dst: [u8; 16],
    /// Client port, host byte order (so that dumps read as numbers).
    pub sport: u16,
    /// VIP port, host byte order.
    pub dport: u16,
    pub proto: u8,
    pub _pad0: u8,
    pub _pad1: u16,
}
const _: () = assert!(core::mem::size_of::<FlowKey>() == 40);

/// Value of [`crate::maps::CONN_TABLE`].
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct FlowEntry {
    /// Node id the flow was sent to.
    pub node: u32,
}
const _: () = assert!(core::mem::size_of::<FlowEntry>() == 4);
