//! Forwarding to a peer node and receiving from one: next-hop lookup, encapsulation
//! (IPv4-in-IPv4, IPv6-in-IPv6) and decapsulation.
//!
//! Encapsulation replaces the Ethernet header and any VLAN tags with a fresh Ethernet header
//! (addresses from `bpf_fib_lookup`, so the underlay can be routed) and an outer IP header
//! from this node's underlay address to the owner's. The frame leaves by XDP_TX when the
//! next hop is behind the ingress interface, by redirect otherwise. Decapsulation strips the
//! outer IP header and keeps the Ethernet header and tags, so the inner packet goes up the
//! stack as if it had arrived directly.

use crate::next_hop;
use crate::packet::{ptr_at_mut, read};
use crate::parse::{Flow, ETH_P_IP, ETH_P_IPV6};
use aya_ebpf::{
    bindings::xdp_action,
    helpers::{bpf_redirect, bpf_xdp_adjust_head},
    programs::XdpContext,
};
use balancer_common::{encap, node::NodeInfo};
use network_types::{
    eth::EthHdr,
    ip::{Ipv4Hdr, Ipv6Hdr},
    vlan::VlanHdr,
};

const IPV4_DONT_FRAGMENT: u16 = 0x4000;

/// Returned by [`encapsulate`] when the packet cannot be forwarded (no route or neighbour to
/// the peer, no underlay address of the family, no headroom): drop it and count it.
/// Not a `Result`: see `parse::Kind` on what BTF allows in BPF-to-BPF signatures.
pub const NO_ROUTE: u32 = u32::MAX;

/// The largest Ethernet header we parse: Ethernet plus two VLAN tags. Checking offsets
/// against it also keeps them bounded for the verifier.
const MAX_L2_LEN: usize = EthHdr::LEN + 2 * VlanHdr::LEN;

struct NoRoute;

/// Where a forwarded packet goes, and how its outer header is marked.
#[repr(C)]
pub struct Hop {
    /// Node id of the receiver.
    pub to: u32,
    /// Sent on to the previous owner (the receiver must not send it on again).
    pub second_chance: bool,
}

/// The Internet checksum of the IPv4 header at `offset` (its checksum field zeroed).
#[inline(always)]
fn ipv4_checksum(ctx: &XdpContext, offset: usize) -> Result<u16, NoRoute> {
    let words: [[u8; 2]; Ipv4Hdr::LEN / 2] = read(ctx, offset).ok_or(NoRoute)?;
    let mut sum = 0u32;
    for w in words {
        sum += u16::from_be_bytes(w) as u32;
    }
    sum = (sum & 0xffff) + (sum >> 16);
    sum = (sum & 0xffff) + (sum >> 16);
    Ok(!(sum as u16))
}

/// Encapsulates the flow's IP packet from node `from` to node `hop.to` (`to`) and returns the
/// XDP action that sends it, or [`NO_ROUTE`].
#[inline(never)]
pub fn encapsulate(
    ctx: &XdpContext,
    flow: &Flow,
    from: &NodeInfo,
    to: &NodeInfo,
    hop: &Hop,
) -> u32 {
    try_encapsulate(ctx, flow, from, to, hop).unwrap_or(NO_ROUTE)
}

#[inline(always)]
fn try_encapsulate(
    ctx: &XdpContext,
    flow: &Flow,
    from: &NodeInfo,
    to: &NodeInfo,
    hop: &Hop,
) -> Result<u32, NoRoute> {
    let (l3_off, is_v4, inner_len) = (flow.l3_off as usize, flow.tuple.is_v4, flow.ip_len as usize);
    if l3_off > MAX_L2_LEN {
        return Err(NoRoute);
    }
    let has_family = if is_v4 {
        from.underlay_v4 != [0; 4] && to.underlay_v4 != [0; 4]
    } else {
        from.underlay_v6 != [0; 16] && to.underlay_v6 != [0; 16]
    };
    if !has_family {
        return Err(NoRoute);
    }
    let outer_len = if is_v4 { Ipv4Hdr::LEN } else { Ipv6Hdr::LEN };
    // Read once, straight from the context: the verifier refuses a ctx access through a
    // pointer LLVM has offset and kept in a register.
    let ingress = ctx.ingress_ifindex() as u32;
    let next = next_hop::towards(ctx, ingress, hop.to, from, to, is_v4).map_err(|_| NoRoute)?;
    if inner_len + outer_len > next.mtu as usize {
        return Err(NoRoute);
    }
    // The inner header's first word: TOS / traffic class, copied to the outer header
    // (RFC 2983), and for IPv6 the flow label, kept as the outer label (ECMP entropy).
    let first_word: [u8; 4] = read(ctx, l3_off).ok_or(NoRoute)?;
    let grow = (EthHdr::LEN + outer_len) as i32 - l3_off as i32;
    // SAFETY: adjusting the head of our own packet; on failure the packet is unchanged.
    if unsafe { bpf_xdp_adjust_head(ctx.ctx, -grow) } != 0 {
        return Err(NoRoute);
    }
    // Headers are written in place: building them on the stack would cost the call chain
    // more than BPF's 512 bytes allow.
    let eth = ptr_at_mut::<EthHdr>(ctx, 0).ok_or(NoRoute)?;
    // SAFETY (all writes below): `ptr_at_mut` checked the bounds; fields are byte arrays or
    // written unaligned.
    unsafe {
        // Explicit non-overlapping copies: plain assignments compile to `memmove` calls.
        core::ptr::copy_nonoverlapping(next.dmac.as_ptr(), (*eth).dst_addr.as_mut_ptr(), 6);
        core::ptr::copy_nonoverlapping(next.smac.as_ptr(), (*eth).src_addr.as_mut_ptr(), 6);
        core::ptr::addr_of_mut!((*eth).ether_type)
            .write_unaligned(if is_v4 { ETH_P_IP } else { ETH_P_IPV6 }.to_be());
    }
    if is_v4 {
        let ip = ptr_at_mut::<Ipv4Hdr>(ctx, EthHdr::LEN).ok_or(NoRoute)?;
        let id = if hop.second_chance {
            encap::V4_ID_SECOND_CHANCE
        } else {
            0
        };
        unsafe {
            (*ip).vihl = 0x45;
            (*ip).tos = first_word[1];
            (*ip).tot_len = ((inner_len + Ipv4Hdr::LEN) as u16).to_be_bytes();
            (*ip).id = id.to_be_bytes();
            (*ip).frags = IPV4_DONT_FRAGMENT.to_be_bytes();
            (*ip).ttl = encap::OUTER_TTL;
            (*ip).proto = encap::PROTO_IPIP;
            (*ip).check = [0; 2];
            (*ip).src_addr = from.underlay_v4;
            (*ip).dst_addr = to.underlay_v4;
        }
        let check = ipv4_checksum(ctx, EthHdr::LEN)?;
        let ip = ptr_at_mut::<Ipv4Hdr>(ctx, EthHdr::LEN).ok_or(NoRoute)?;
        unsafe { (*ip).check = check.to_be_bytes() };
    } else {
        let ip = ptr_at_mut::<Ipv6Hdr>(ctx, EthHdr::LEN).ok_or(NoRoute)?;
        let inner_vcf = u32::from_be_bytes(first_word);
        let mut outer_vcf =
            (6 << 28) | (inner_vcf & 0x0ff0_0000) | (inner_vcf & encap::V6_FLOW_HASH_MASK);
        if hop.second_chance {
            outer_vcf |= encap::V6_FLOW_SECOND_CHANCE;
        }
        unsafe {
            (*ip).vcf = outer_vcf.to_be_bytes();
            (*ip).payload_len = (inner_len as u16).to_be_bytes();
            (*ip).next_hdr = encap::PROTO_IPV6;
            (*ip).hop_limit = encap::OUTER_TTL;
            (*ip).src_addr = from.underlay_v6;
            (*ip).dst_addr = to.underlay_v6;
        }
    }
    if next.ifindex == ingress {
        Ok(xdp_action::XDP_TX)
    } else {
        // SAFETY: plain helper call; it returns the XDP action to take.
        Ok(unsafe { bpf_redirect(next.ifindex, 0) } as u32)
    }
}

/// Removes the outer IP header (`header_len` bytes at `l3_off`), keeping Ethernet and tags.
/// `false`: the packet could not be rewritten.
#[inline(never)]
pub fn decapsulate(ctx: &XdpContext, l3_off: usize, header_len: usize) -> bool {
    try_decapsulate(ctx, l3_off, header_len).is_some()
}

#[inline(always)]
fn try_decapsulate(ctx: &XdpContext, l3_off: usize, header_len: usize) -> Option<()> {
    if l3_off > MAX_L2_LEN || header_len > 60 {
        return None;
    }
    let eth: EthHdr = read(ctx, 0)?;
    let outer_tag: VlanHdr = read(ctx, EthHdr::LEN).unwrap_or(VlanHdr {
        tci: [0; 2],
        ether_type: 0,
    });
    let inner_tag: VlanHdr = read(ctx, EthHdr::LEN + VlanHdr::LEN).unwrap_or(VlanHdr {
        tci: [0; 2],
        ether_type: 0,
    });
    // SAFETY: shrinking our own packet's head by the outer header, which it contains.
    if unsafe { bpf_xdp_adjust_head(ctx.ctx, header_len as i32) } != 0 {
        return None;
    }
    // SAFETY (all writes): `ptr_at_mut` checked the bounds.
    unsafe { ptr_at_mut::<EthHdr>(ctx, 0)?.write_unaligned(eth) };
    if l3_off >= EthHdr::LEN + VlanHdr::LEN {
        unsafe { ptr_at_mut::<VlanHdr>(ctx, EthHdr::LEN)?.write_unaligned(outer_tag) };
    }
    if l3_off >= EthHdr::LEN + 2 * VlanHdr::LEN {
        unsafe {
            ptr_at_mut::<VlanHdr>(ctx, EthHdr::LEN + VlanHdr::LEN)?.write_unaligned(inner_tag)
        };
    }
    Some(())
}
