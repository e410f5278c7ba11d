//! The affinity hash: which slot of the ring a packet's client falls on.
//!
//! The same function runs in the XDP program and in userspace (tests, `balancer` tools that
//! answer "which node owns this client"), so it lives here once. It is MurmurHash3 (x86_32)
//! over 32-bit words: a fixed, documented function, so every node of an array, whatever the
//! build, agrees on it; cheap enough for the per-packet path (no loops the verifier cannot
//! bound: the word count is a compile-time constant per mode).

use crate::vip::{AFFINITY_NETWORK, AFFINITY_NONE};

const C1: u32 = 0xcc9e_2d51;
const C2: u32 = 0x1b87_3593;

#[inline(always)]
const fn mix(h: u32, word: u32) -> u32 {
    let k = word.wrapping_mul(C1).rotate_left(15).wrapping_mul(C2);
    (h ^ k)
        .rotate_left(13)
        .wrapping_mul(5)
        .wrapping_add(0xe654_6b64)
}

#[inline(always)]
const fn finish(mut h: u32, words: u32) -> u32 {
    h ^= words * 4;
    h ^= h >> 16;
    h = h.wrapping_mul(0x85eb_ca6b);
    h ^= h >> 13;
    h = h.wrapping_mul(0xc2b2_ae35);
    h ^ (h >> 16)
}

#[inline(always)]
const fn word(addr: &[u8; 16], i: usize) -> u32 {
    u32::from_be_bytes([
        addr[i * 4],
        addr[i * 4 + 1],
        addr[i * 4 + 2],
        addr[i * 4 + 3],
    ])
}

/// The fields of a packet that affinity may depend on. Addresses are 16 bytes, IPv4 in the
/// IPv4-mapped form (see [`crate::vip::v4_mapped`]).
/// Aligned to 8 so that copying addresses compiles to word moves, not byte moves, in BPF.
#[repr(C, align(8))]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FlowTuple {
    pub src: [u8; 16],
    pub dst: [u8; 16],
    pub sport_be: u16,
    pub dport_be: u16,
    pub proto: u8,
    pub is_v4: bool,
}

/// Hash of the client address only (single affinity; also used for every fragment).
#[inline(always)]
pub const fn source_hash(seed: u32, src: &[u8; 16]) -> u32 {
    let mut h = seed;
    h = mix(h, word(src, 0));
    h = mix(h, word(src, 1));
    h = mix(h, word(src, 2));
    h = mix(h, word(src, 3));
    finish(h, 4)
}

/// Hash of the client network: the /24 of an IPv4 client, the /64 of an IPv6 client.
#[inline(always)]
pub const fn network_hash(seed: u32, src: &[u8; 16], is_v4: bool) -> u32 {
    let mut h = seed;
    if is_v4 {
        h = mix(h, word(src, 3) & 0xffff_ff00);
        finish(h, 1)
    } else {
        h = mix(h, word(src, 0));
        h = mix(h, word(src, 1));
        finish(h, 2)
    }
}

/// Hash of the whole 5-tuple (no affinity).
#[inline(always)]
pub const fn tuple_hash(seed: u32, t: &FlowTuple) -> u32 {
    let mut h = source_hash(seed, &t.src);
    h = mix(h, word(&t.dst, 0));
    h = mix(h, word(&t.dst, 1));
    h = mix(h, word(&t.dst, 2));
    h = mix(h, word(&t.dst, 3));
    h = mix(h, ((t.sport_be as u32) << 16) | t.dport_be as u32);
    h = mix(h, t.proto as u32);
    finish(h, 10)
}

/// The affinity hash of a packet under one of the `AFFINITY_*` modes.
#[inline(always)]
pub const fn affinity_hash(seed: u32, affinity: u32, t: &FlowTuple) -> u32 {
    match affinity {
        AFFINITY_NETWORK => network_hash(seed, &t.src, t.is_v4),
        AFFINITY_NONE => tuple_hash(seed, t),
        _ => source_hash(seed, &t.src),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::vip::{v4_mapped, AFFINITY_SINGLE};

    fn tuple(src: [u8; 4], sport: u16) -> FlowTuple {
        FlowTuple {
            src: v4_mapped(src),
            dst: v4_mapped([10, 200, 0, 10]),
            sport_be: sport.to_be(),
            dport_be: 443u16.to_be(),
            proto: 6,
            is_v4: true,
        }
    }

    #[test]
    fn single_affinity_ignores_ports() {
        let a = affinity_hash(7, AFFINITY_SINGLE, &tuple([192, 0, 2, 1], 1000));
        let b = affinity_hash(7, AFFINITY_SINGLE, &tuple([192, 0, 2, 1], 2000));
        assert_eq!(a, b);
    }

    #[test]
    fn network_affinity_groups_a_slash_24() {
        let a = affinity_hash(7, AFFINITY_NETWORK, &tuple([192, 0, 2, 1], 1000));
        let b = affinity_hash(7, AFFINITY_NETWORK, &tuple([192, 0, 2, 200], 2000));
        let c = affinity_hash(7, AFFINITY_NETWORK, &tuple([192, 0, 3, 1], 1000));
        assert_eq!(a, b);
        assert_ne!(a, c);
    }

    #[test]
    fn no_affinity_spreads_ports() {
        let a = affinity_hash(7, AFFINITY_NONE, &tuple([192, 0, 2, 1], 1000));
        let b = affinity_hash(7, AFFINITY_NONE, &tuple([192, 0, 2, 1], 1001));
        assert_ne!(a, b);
    }

    #[test]
    fn seed_changes_the_hash() {
        let t = tuple([192, 0, 2, 1], 1000);
        assert_ne!(
            affinity_hash(1, AFFINITY_SINGLE, &t),
            affinity_hash(2, AFFINITY_SINGLE, &t)
        );
    }

    /// MurmurHash3_x86_32 of 4 zero bytes with seed 0 is 0x2362f9de (reference value).
    #[test]
    fn matches_reference_murmur3() {
        assert_eq!(finish(mix(0, 0), 1), 0x2362_f9de);
    }
}
