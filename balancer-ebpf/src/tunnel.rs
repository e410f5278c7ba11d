//! Forwarding to a peer node and receiving from one: next-hop lookup, encapsulation
//! (IPv4-in-IPv4, IPv6-in-IPv6) and decapsulation.
//!
//! Encapsulation replaces the Ethernet header and any VLAN tags with a fresh Ethernet header
//! (addresses from `bpf_fib_lookup`, so the underlay can be routed) and an outer IP header
//! from this node's underlay address to the owner's. The frame leaves by XDP_TX when the
//! next hop is behind the ingress interface, by redirect otherwise. Decapsulation strips the
//! outer IP header and keeps the Ethernet header and tags, so the inner packet goes up the
//! stack as if it had arrived directly.

use crate::packet::{ptr_at_mut, read};
use crate::parse::{ETH_P_IP, ETH_P_IPV6};
use aya_ebpf::{
    bindings::{
        bpf_fib_lookup as FibParams, xdp_action, BPF_FIB_LKUP_RET_SUCCESS, BPF_FIB_LOOKUP_OUTPUT,
    },
    helpers::{bpf_fib_lookup, bpf_redirect, bpf_xdp_adjust_head},
    programs::XdpContext,
    EbpfContext,
};
use balancer_common::{encap, node::NodeInfo};
use core::mem::size_of;
use network_types::{
    eth::EthHdr,
    ip::{Ipv4Hdr, Ipv6Hdr},
    vlan::VlanHdr,
};

const AF_INET: u8 = 2;
const AF_INET6: u8 = 10;
const IPV4_DONT_FRAGMENT: u16 = 0x4000;

/// Why a packet could not be forwarded (it is dropped and counted as a fib failure).
pub struct NoRoute;

/// One packet to forward: where its IP header is, and the outer header's fields.
pub struct Encapsulation<'a> {
    /// Offset of the inner IP header (after Ethernet and any VLAN tags).
    pub l3_off: usize,
    pub is_v4: bool,
    /// Length of the inner IP packet.
    pub inner_len: usize,
    pub from: &'a NodeInfo,
    pub to: &'a NodeInfo,
    pub second_chance: bool,
    /// The flow's affinity hash: entropy for the IPv6 flow label.
    pub hash: u32,
}

struct NextHop {
    ifindex: u32,
    smac: [u8; 6],
    dmac: [u8; 6],
}

/// Output-route lookup from our underlay address to the peer's, constrained to the ingress
/// interface (BPF_FIB_LOOKUP_OUTPUT: no need for IP forwarding to be enabled on the node).
#[inline(always)]
fn next_hop(ctx: &XdpContext, is_v4: bool, outer: &Encapsulation, outer_len: u16) -> Result<NextHop, NoRoute> {
    // SAFETY: an all-zero `bpf_fib_lookup` is a valid "no fields set" request.
    let mut params: FibParams = unsafe { core::mem::zeroed() };
    params.ifindex = ctx.ingress_ifindex() as u32;
    params.__bindgen_anon_1.tot_len = outer_len;
    if is_v4 {
        params.family = AF_INET;
        params.l4_protocol = encap::PROTO_IPIP;
        params.__bindgen_anon_3.ipv4_src = u32::from_ne_bytes(outer.from.underlay_v4);
        params.__bindgen_anon_4.ipv4_dst = u32::from_ne_bytes(outer.to.underlay_v4);
    } else {
        params.family = AF_INET6;
        params.l4_protocol = encap::PROTO_IPV6;
        params.__bindgen_anon_3.ipv6_src = words(&outer.from.underlay_v6);
        params.__bindgen_anon_4.ipv6_dst = words(&outer.to.underlay_v6);
    }
    // SAFETY: `params` is a valid, fully sized `bpf_fib_lookup` on our stack.
    let ret = unsafe {
        bpf_fib_lookup(
            ctx.as_ptr(),
            &mut params,
            size_of::<FibParams>() as i32,
            BPF_FIB_LOOKUP_OUTPUT,
        )
    };
    if ret != BPF_FIB_LKUP_RET_SUCCESS as i64 {
        return Err(NoRoute);
    }
    Ok(NextHop { ifindex: params.ifindex, smac: params.smac, dmac: params.dmac })
}

#[inline(always)]
fn words(addr: &[u8; 16]) -> [u32; 4] {
    [
        u32::from_ne_bytes([addr[0], addr[1], addr[2], addr[3]]),
        u32::from_ne_bytes([addr[4], addr[5], addr[6], addr[7]]),
        u32::from_ne_bytes([addr[8], addr[9], addr[10], addr[11]]),
        u32::from_ne_bytes([addr[12], addr[13], addr[14], addr[15]]),
    ]
}

/// The Internet checksum of an IPv4 header built on the stack.
#[inline(always)]
fn ipv4_checksum(ip: &Ipv4Hdr) -> u16 {
    // SAFETY: `Ipv4Hdr` is 20 bytes of plain data; we read it as ten 16-bit words.
    let bytes: [u8; Ipv4Hdr::LEN] = unsafe { core::mem::transmute_copy(ip) };
    let mut sum = 0u32;
    for i in 0..Ipv4Hdr::LEN / 2 {
        sum += u16::from_be_bytes([bytes[2 * i], bytes[2 * i + 1]]) as u32;
    }
    sum = (sum & 0xffff) + (sum >> 16);
    sum = (sum & 0xffff) + (sum >> 16);
    !(sum as u16)
}

#[inline(always)]
fn outer_v4(outer: &Encapsulation, inner_len: usize, tos: u8) -> Ipv4Hdr {
    let id = if outer.second_chance { encap::V4_ID_SECOND_CHANCE } else { 0 };
    let mut ip = Ipv4Hdr {
        vihl: 0x45,
        tos,
        tot_len: ((inner_len + Ipv4Hdr::LEN) as u16).to_be_bytes(),
        id: id.to_be_bytes(),
        frags: IPV4_DONT_FRAGMENT.to_be_bytes(),
        ttl: encap::OUTER_TTL,
        proto: encap::PROTO_IPIP,
        check: [0; 2],
        src_addr: outer.from.underlay_v4,
        dst_addr: outer.to.underlay_v4,
    };
    ip.check = ipv4_checksum(&ip).to_be_bytes();
    ip
}

#[inline(always)]
fn outer_v6(outer: &Encapsulation, inner_len: usize, traffic_class: u8) -> Ipv6Hdr {
    let mut flow = outer.hash & encap::V6_FLOW_HASH_MASK;
    if outer.second_chance {
        flow |= encap::V6_FLOW_SECOND_CHANCE;
    }
    Ipv6Hdr {
        vcf: ((6u32 << 28) | ((traffic_class as u32) << 20) | flow).to_be_bytes(),
        payload_len: (inner_len as u16).to_be_bytes(),
        next_hdr: encap::PROTO_IPV6,
        hop_limit: encap::OUTER_TTL,
        src_addr: outer.from.underlay_v6,
        dst_addr: outer.to.underlay_v6,
    }
}

/// Encapsulates the IP packet towards `outer.to` and returns the XDP action that sends it.
#[inline(never)]
pub fn encapsulate(ctx: &XdpContext, outer: &Encapsulation) -> Result<u32, NoRoute> {
    let (l3_off, is_v4, inner_len) = (outer.l3_off, outer.is_v4, outer.inner_len);
    let has_family = if is_v4 {
        outer.from.underlay_v4 != [0; 4] && outer.to.underlay_v4 != [0; 4]
    } else {
        outer.from.underlay_v6 != [0; 16] && outer.to.underlay_v6 != [0; 16]
    };
    if !has_family {
        return Err(NoRoute);
    }
    let outer_len = if is_v4 { Ipv4Hdr::LEN } else { Ipv6Hdr::LEN };
    let hop = next_hop(ctx, is_v4, outer, (inner_len + outer_len) as u16)?;
    // The inner header's TOS / traffic class byte(s), copied to the outer header (RFC 2983).
    let class: [u8; 2] = read(ctx, l3_off).ok_or(NoRoute)?;
    let grow = (EthHdr::LEN + outer_len) as i32 - l3_off as i32;
    // SAFETY: adjusting the head of our own packet; on failure the packet is unchanged.
    if unsafe { bpf_xdp_adjust_head(ctx.ctx, -grow) } != 0 {
        return Err(NoRoute);
    }
    let ether_type = if is_v4 { ETH_P_IP } else { ETH_P_IPV6 };
    let eth = EthHdr { dst_addr: hop.dmac, src_addr: hop.smac, ether_type: ether_type.to_be() };
    let eth_ptr = ptr_at_mut::<EthHdr>(ctx, 0).ok_or(NoRoute)?;
    // SAFETY: `ptr_at_mut` checked the bounds; header structs are written unaligned.
    unsafe { eth_ptr.write_unaligned(eth) };
    if is_v4 {
        let ip = outer_v4(outer, inner_len, class[1]);
        let ip_ptr = ptr_at_mut::<Ipv4Hdr>(ctx, EthHdr::LEN).ok_or(NoRoute)?;
        // SAFETY: as above.
        unsafe { ip_ptr.write_unaligned(ip) };
    } else {
        let traffic_class = (class[0] << 4) | (class[1] >> 4);
        let ip = outer_v6(outer, inner_len, traffic_class);
        let ip_ptr = ptr_at_mut::<Ipv6Hdr>(ctx, EthHdr::LEN).ok_or(NoRoute)?;
        // SAFETY: as above.
        unsafe { ip_ptr.write_unaligned(ip) };
    }
    if hop.ifindex == ctx.ingress_ifindex() as u32 {
        Ok(xdp_action::XDP_TX)
    } else {
        // SAFETY: plain helper call; it returns the XDP action to take.
        Ok(unsafe { bpf_redirect(hop.ifindex, 0) } as u32)
    }
}

/// Removes the outer IP header (`header_len` bytes at `l3_off`), keeping Ethernet and tags.
#[inline(never)]
pub fn decapsulate(ctx: &XdpContext, l3_off: usize, header_len: usize) -> Option<()> {
    let eth: EthHdr = read(ctx, 0)?;
    let outer_tag: VlanHdr = read(ctx, EthHdr::LEN).unwrap_or(VlanHdr { tci: [0; 2], ether_type: 0 });
    let inner_tag: VlanHdr =
        read(ctx, EthHdr::LEN + VlanHdr::LEN).unwrap_or(VlanHdr { tci: [0; 2], ether_type: 0 });
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
        unsafe { ptr_at_mut::<VlanHdr>(ctx, EthHdr::LEN + VlanHdr::LEN)?.write_unaligned(inner_tag) };
    }
    Some(())
}
