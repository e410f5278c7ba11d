//! The classifier: which (virtual IP, port, protocol) triples the XDP program steers.
//!
//! Addresses are 16 bytes; IPv4 uses the IPv4-mapped form `::ffff:a.b.c.d`, so one map holds
//! both families and a dump shows the address bytes in order.
//!
//! A key with `port_be == 0` is the *address entry* of a VIP address. Packets that carry no
//! port (non-first fragments, and first fragments too, so that all fragments of a datagram
//! meet at one node) and malformed packets to a VIP address are looked up with it.

/// Client IP affinity (NLB "single"): every connection from one source address goes to one node.
pub const AFFINITY_SINGLE: u32 = 0;
/// Network affinity (NLB "network"): one node per client /24 (IPv4) or /64 (IPv6).
pub const AFFINITY_NETWORK: u32 = 1;
/// No affinity (NLB "none"): each connection (5-tuple) is placed on its own.
pub const AFFINITY_NONE: u32 = 2;

/// IP protocol number of TCP.
pub const PROTO_TCP: u8 = 6;

/// Key of [`crate::maps::VIPS`]. Aligned to 4 (size unchanged) so that copying the address
/// compiles to word moves, not byte moves, in BPF.
#[repr(C, align(4))]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
pub struct VipKey {
    /// Virtual IP; IPv4 as `::ffff:a.b.c.d`.
    pub addr: [u8; 16],
    /// Destination port in host byte order (so that `bpftool map dump` shows `"port": 443`);
    /// 0 for the address entry.
    pub port: u16,
    /// IP protocol (only [`PROTO_TCP`] is steered today).
    pub proto: u8,
    pub _pad: u8,
}
const _: () = assert!(core::mem::size_of::<VipKey>() == 20);

/// Value of [`crate::maps::VIPS`].
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct VipInfo {
    /// Index into [`crate::maps::VIP_STATS`].
    pub vip_index: u32,
    /// One of the `AFFINITY_*` constants.
    pub affinity: u32,
}
const _: () = assert!(core::mem::size_of::<VipInfo>() == 8);

/// The IPv4-mapped IPv6 form of an IPv4 address, as stored in [`VipKey::addr`].
#[inline(always)]
pub const fn v4_mapped(v4: [u8; 4]) -> [u8; 16] {
    [
        0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, v4[0], v4[1], v4[2], v4[3],
    ]
}
