//! The outer header of a packet forwarded from the receiving node to the owner.
//!
//! IPv4 flows go IPv4-in-IPv4 (protocol 4), IPv6 flows IPv6-in-IPv6 (next header 41), from this
//! node's underlay address to the owner's. There is no kernel tunnel on the owner: its own XDP
//! program recognises outer packets addressed to its underlay address and strips the header.

/// IP protocol number of IPv4-in-IP encapsulation.
pub const PROTO_IPIP: u8 = 4;
/// IP protocol number of IPv6-in-IP encapsulation.
pub const PROTO_IPV6: u8 = 41;
/// TTL / hop limit of the outer header.
pub const OUTER_TTL: u8 = 64;
/// Outer IPv4 identification of a second-chance packet (sent on to the previous owner).
/// The outer header has DF set, so the identification field is free (RFC 6864).
pub const V4_ID_SECOND_CHANCE: u16 = 0x5c5c;
/// Bit of the outer IPv6 flow label that marks a second-chance packet.
pub const V6_FLOW_SECOND_CHANCE: u32 = 0x8_0000;
/// Mask of the outer IPv6 flow label bits copied from the inner packet's flow label (entropy
/// for ECMP); the remaining bit is [`V6_FLOW_SECOND_CHANCE`].
pub const V6_FLOW_HASH_MASK: u32 = 0x7_ffff;
