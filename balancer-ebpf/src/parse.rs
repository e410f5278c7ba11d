//! Parsing, top to bottom like the packet: Ethernet (and up to two VLAN tags), then IPv4 or
//! IPv6 (with a bounded walk over extension headers), then TCP or an ICMP error.
//!
//! The result says what the packet is *for the balancer*: a TCP segment, a fragment (steered
//! by source address only, so every fragment of a datagram meets the first at one node), an
//! ICMP error about one of our flows (steered like the flow it quotes), malformed (for a VIP
//! address: dropped; otherwise passed), or not ours (passed untouched).

use crate::packet::{len, read};
use aya_ebpf::programs::XdpContext;
use balancer_common::{hash::FlowTuple, vip::PROTO_TCP};
use network_types::{
    eth::EthHdr,
    ip::{Ipv4Hdr, Ipv6Hdr},
    tcp::TcpHdr,
    vlan::VlanHdr,
};

pub const ETH_P_IP: u16 = 0x0800;
pub const ETH_P_IPV6: u16 = 0x86dd;
const ETH_P_8021Q: u16 = 0x8100;
const ETH_P_8021AD: u16 = 0x88a8;

const PROTO_ICMP: u8 = 1;
const PROTO_ICMPV6: u8 = 58;
const ICMP_DEST_UNREACH: u8 = 3;
const ICMP_TIME_EXCEEDED: u8 = 11;
const ICMPV6_DEST_UNREACH: u8 = 1;
const ICMPV6_PACKET_TOO_BIG: u8 = 2;
const ICMPV6_TIME_EXCEEDED: u8 = 3;
const ICMP_HEADER_LEN: usize = 8;

/// Most IPv6 extension headers walked before giving up (treated as malformed if for a VIP).
const MAX_EXTENSION_HEADERS: usize = 6;
/// Farthest an IPv6 upper-layer header may start from the IPv6 header.
const MAX_IPV6_HEADER_CHAIN: usize = 512;

/// Where the network header starts and which family it is.
#[repr(C)]
#[derive(Clone, Copy)]
pub struct L2 {
    /// Offset of the IP header: 14, 18 or 22 (Ethernet, plus 0, 1 or 2 VLAN tags).
    pub l3_off: usize,
    pub is_v4: bool,
}

/// Parses Ethernet and up to two VLAN tags (802.1Q, 802.1ad). `None`: not IP, pass.
#[inline(always)]
pub fn l2(ctx: &XdpContext) -> Option<L2> {
    let eth: EthHdr = read(ctx, 0)?;
    let mut ether_type = u16::from_be(eth.ether_type);
    let mut l3_off = EthHdr::LEN;
    for _ in 0..2 {
        if ether_type != ETH_P_8021Q && ether_type != ETH_P_8021AD {
            break;
        }
        let tag: VlanHdr = read(ctx, l3_off)?;
        ether_type = u16::from_be(tag.ether_type);
        l3_off += VlanHdr::LEN;
    }
    match ether_type {
        ETH_P_IP => Some(L2 {
            l3_off,
            is_v4: true,
        }),
        ETH_P_IPV6 => Some(L2 {
            l3_off,
            is_v4: false,
        }),
        _ => None,
    }
}

/// What kind of packet a [`Flow`] is. Fieldless and `repr(u8)`: types in the signatures of
/// BPF-to-BPF calls go into the object's BTF, which has no room for Rust's data-carrying enums.
#[repr(u8)]
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// A TCP segment other than a connection request.
    Tcp,
    /// A connection request (SYN without ACK).
    TcpSyn,
    /// An IP fragment (first or not): no ports, steered by source address.
    Fragment,
    /// An ICMP error quoting one of our flows; the tuple is the quoted flow, client first.
    IcmpError,
}

/// A packet for a (possible) VIP, with the fields steering needs.
#[repr(C)]
#[derive(Clone, Copy)]
pub struct Flow {
    pub tuple: FlowTuple,
    pub kind: Kind,
    /// Offset of the IP header in the frame (after Ethernet and VLAN tags).
    pub l3_off: u16,
    /// Length of the whole IP packet (header included), from its own length fields.
    pub ip_len: u16,
}

/// The parser's verdict on an IP packet.
#[repr(u8)]
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Not for the balancer (too short to tell, other protocol, not an error about TCP): pass.
    NotOurs,
    /// Broken or truncated after the destination address: drop if `flow.tuple.dst` is a VIP
    /// address.
    Malformed,
    /// An IPv4-in-IPv4 / IPv6-in-IPv6 packet: a peer's forwarded packet if `flow.tuple.dst`
    /// is our underlay address; `header_len` is the outer header's length.
    Tunnel,
    /// A TCP segment, fragment or ICMP error, to look up in the VIP map.
    Flow,
}

/// What the parser found (a plain struct: see [`Kind`] for why not an enum with data).
#[repr(C)]
#[derive(Clone, Copy)]
pub struct Parsed {
    pub verdict: Verdict,
    /// For [`Verdict::Tunnel`]: the outer header marks a second-chance packet.
    pub second_chance: bool,
    /// For [`Verdict::Tunnel`]: length of the outer header.
    pub header_len: u16,
    /// For [`Verdict::Flow`]: the flow; otherwise only `tuple.dst` is meaningful.
    pub flow: Flow,
}

// The parser writes its answer field by field into the caller's scratch slot: a struct
// literal with zero-filled arrays compiles to calls of a byte-loop `memset` in BPF, several
// per packet. Fields a verdict does not use keep stale values and are not read.
impl Parsed {
    /// A malformed packet to `dst`; `Some` so that parsers can `return` it.
    #[inline(always)]
    fn malformed(&mut self) -> Option<()> {
        self.verdict = Verdict::Malformed;
        Some(())
    }

    /// A tunnel packet to `flow.tuple.dst` (already stored).
    #[inline(always)]
    fn tunnel(&mut self, header_len: usize, second_chance: bool) -> Option<()> {
        self.verdict = Verdict::Tunnel;
        self.header_len = header_len as u16;
        self.second_chance = second_chance;
        Some(())
    }

    /// A flow whose addresses are already stored.
    #[inline(always)]
    fn flow(
        &mut self,
        kind: Kind,
        sport_be: u16,
        dport_be: u16,
        l3_off: usize,
        ip_len: usize,
        is_v4: bool,
    ) -> Option<()> {
        self.verdict = Verdict::Flow;
        let t = &mut self.flow.tuple;
        t.sport_be = sport_be;
        t.dport_be = dport_be;
        t.proto = PROTO_TCP;
        t.is_v4 = is_v4;
        self.flow.kind = kind;
        self.flow.l3_off = l3_off as u16;
        self.flow.ip_len = ip_len as u16;
        Some(())
    }
}

/// Stores the IPv4-mapped form of `v4` (`::ffff:a.b.c.d`) with three writes (see above on
/// zero-filled literals).
#[inline(always)]
fn store_v4_mapped(dst: &mut [u8; 16], v4: [u8; 4]) {
    let p = dst.as_mut_ptr();
    // SAFETY: 8 + 4 + 4 bytes inside the 16-byte array; unaligned writes.
    unsafe {
        (p as *mut u64).write_unaligned(0);
        (p.add(8) as *mut [u8; 4]).write_unaligned([0, 0, 0xff, 0xff]);
        (p.add(12) as *mut [u8; 4]).write_unaligned(v4);
    }
}

#[inline(always)]
fn tcp_kind(tcp: &TcpHdr) -> Kind {
    if tcp.syn() != 0 && tcp.ack() == 0 {
        Kind::TcpSyn
    } else {
        Kind::Tcp
    }
}

/// Reads the TCP header at `l4_off`, which must fit in `l4_end` with its options.
#[inline(always)]
fn tcp_at(ctx: &XdpContext, l4_off: usize, l4_end: usize) -> Option<TcpHdr> {
    let tcp: TcpHdr = read(ctx, l4_off)?;
    let doff = tcp.doff() as usize * 4;
    if doff < TcpHdr::LEN || l4_off + doff > l4_end {
        return None;
    }
    Some(tcp)
}

/// Source and destination ports of a quoted (ICMP-embedded) transport header: only its first
/// four bytes are guaranteed to be quoted.
#[inline(always)]
fn quoted_ports(ctx: &XdpContext, off: usize) -> Option<(u16, u16)> {
    let ports: [u8; 4] = read(ctx, off)?;
    Some((
        u16::from_ne_bytes([ports[0], ports[1]]),
        u16::from_ne_bytes([ports[2], ports[3]]),
    ))
}

/// Parses an IPv4 packet at `l3_off` into `out` (a per-CPU scratch slot, not the stack: BPF
/// allows 512 bytes of stack for the whole call chain).
/// Not inlined: a BPF-to-BPF call keeps its stack frame apart from the caller's.
#[inline(never)]
pub fn ipv4(ctx: &XdpContext, l3_off: usize, out: &mut Parsed) {
    if parse_ipv4(ctx, l3_off, out).is_none() {
        out.verdict = Verdict::NotOurs;
    }
}

/// `None`: not ours (too short to tell where it goes, or another protocol): pass.
#[inline(always)]
fn parse_ipv4(ctx: &XdpContext, l3_off: usize, out: &mut Parsed) -> Option<()> {
    let ip: Ipv4Hdr = read(ctx, l3_off)?;
    store_v4_mapped(&mut out.flow.tuple.dst, ip.dst_addr);
    // network-types' `ihl()` is already the header length in bytes (the IHL field times 4).
    let header_len = ip.ihl() as usize;
    let ip_len = u16::from_be_bytes(ip.tot_len) as usize;
    if ip.version() != 4 || header_len < Ipv4Hdr::LEN || ip_len < header_len {
        return out.malformed();
    }
    if l3_off + ip_len > len(ctx) {
        return out.malformed();
    }
    let l4_off = l3_off + header_len;
    let l4_end = l3_off + ip_len;
    if ip.proto == balancer_common::encap::PROTO_IPIP {
        let second_chance =
            u16::from_be_bytes(ip.id) == balancer_common::encap::V4_ID_SECOND_CHANCE;
        return out.tunnel(header_len, second_chance);
    }
    let frags = u16::from_be_bytes(ip.frags);
    let more_fragments = frags & 0x2000 != 0;
    let fragment_offset = frags & 0x1fff;
    if more_fragments || fragment_offset != 0 {
        if ip.proto != PROTO_TCP {
            return None;
        }
        store_v4_mapped(&mut out.flow.tuple.src, ip.src_addr);
        return out.flow(Kind::Fragment, 0, 0, l3_off, ip_len, true);
    }
    match ip.proto {
        PROTO_TCP => {
            let Some(tcp) = tcp_at(ctx, l4_off, l4_end) else {
                return out.malformed();
            };
            store_v4_mapped(&mut out.flow.tuple.src, ip.src_addr);
            let (sport, dport) = (u16::from_ne_bytes(tcp.source), u16::from_ne_bytes(tcp.dest));
            out.flow(tcp_kind(&tcp), sport, dport, l3_off, ip_len, true)
        }
        PROTO_ICMP => icmpv4_error(ctx, l3_off, l4_off, l4_end, ip_len, out),
        _ => None,
    }
}

/// An ICMPv4 destination-unreachable (fragmentation needed among them) or time-exceeded
/// message quoting a TCP segment: steered as the quoted flow, seen from the client.
#[inline(always)]
fn icmpv4_error(
    ctx: &XdpContext,
    l3_off: usize,
    l4_off: usize,
    l4_end: usize,
    ip_len: usize,
    out: &mut Parsed,
) -> Option<()> {
    // Type and code together: a one-byte bounds check compiles to a form the verifier does not
    // credit with any range (`pkt + off < pkt_end` at offset 0).
    let [icmp_type, _code]: [u8; 2] = read(ctx, l4_off)?;
    if icmp_type != ICMP_DEST_UNREACH && icmp_type != ICMP_TIME_EXCEEDED {
        return None;
    }
    let quoted_off = l4_off + ICMP_HEADER_LEN;
    let quoted: Ipv4Hdr = read(ctx, quoted_off)?;
    let quoted_len = quoted.ihl() as usize; // in bytes already, as in `parse_ipv4`
    if quoted.version() != 4 || quoted.proto != PROTO_TCP || quoted_len < Ipv4Hdr::LEN {
        return None;
    }
    if quoted_off + quoted_len + 4 > l4_end {
        return None;
    }
    let (sport_be, dport_be) = quoted_ports(ctx, quoted_off + quoted_len)?;
    store_v4_mapped(&mut out.flow.tuple.src, quoted.dst_addr);
    store_v4_mapped(&mut out.flow.tuple.dst, quoted.src_addr);
    out.flow(Kind::IcmpError, dport_be, sport_be, l3_off, ip_len, true)
}

/// Parses an IPv6 packet at `l3_off` into `out` (as [`ipv4`]).
#[inline(never)]
pub fn ipv6(ctx: &XdpContext, l3_off: usize, out: &mut Parsed) {
    if parse_ipv6(ctx, l3_off, out).is_none() {
        out.verdict = Verdict::NotOurs;
    }
}

/// `None`: not ours (too short to tell where it goes, or another protocol): pass.
#[inline(always)]
fn parse_ipv6(ctx: &XdpContext, l3_off: usize, out: &mut Parsed) -> Option<()> {
    let ip: Ipv6Hdr = read(ctx, l3_off)?;
    out.flow.tuple.dst = ip.dst_addr;
    let ip_len = Ipv6Hdr::LEN + u16::from_be_bytes(ip.payload_len) as usize;
    if ip.version() != 6 || l3_off + ip_len > len(ctx) {
        return out.malformed();
    }
    let l4_end = l3_off + ip_len;
    if ip.next_hdr == balancer_common::encap::PROTO_IPV6 {
        let flow = u32::from_be_bytes(ip.vcf) & 0x000f_ffff;
        let second_chance = flow & balancer_common::encap::V6_FLOW_SECOND_CHANCE != 0;
        return out.tunnel(Ipv6Hdr::LEN, second_chance);
    }
    out.flow.tuple.src = ip.src_addr;
    let mut next = ip.next_hdr;
    let mut off = l3_off + Ipv6Hdr::LEN;
    for _ in 0..MAX_EXTENSION_HEADERS {
        // Each extension header starts with its next-header byte and a length byte.
        let (next_header, ext_len) = match next {
            0 | 43 | 60 | 135 | 139 | 140 => {
                let Some(ext) = read::<[u8; 2]>(ctx, off) else {
                    return out.malformed();
                };
                (ext[0], (ext[1] as usize + 1) * 8)
            }
            51 => {
                let Some(ext) = read::<[u8; 2]>(ctx, off) else {
                    return out.malformed();
                };
                (ext[0], (ext[1] as usize + 2) * 4)
            }
            44 => {
                let Some(ext) = read::<[u8; 4]>(ctx, off) else {
                    return out.malformed();
                };
                let offset_flags = u16::from_be_bytes([ext[2], ext[3]]);
                // Offset in the top 13 bits, M flag in the lowest: either makes a fragment
                // (neither: an atomic fragment, RFC 6946, a whole packet; walk on). The walk
                // ends here for a fragment: what follows is data in all but the first.
                if offset_flags & 0xfff9 != 0 {
                    if off + 8 > l4_end {
                        return out.malformed();
                    }
                    if !ipv6_fragment_is_steered(ext[0]) {
                        return None;
                    }
                    return out.flow(Kind::Fragment, 0, 0, l3_off, ip_len, false);
                }
                (ext[0], 8)
            }
            _ => break,
        };
        next = next_header;
        off += ext_len;
        if off > l3_off + MAX_IPV6_HEADER_CHAIN || off > l4_end {
            return out.malformed();
        }
    }
    match next {
        PROTO_TCP => {
            let Some(tcp) = tcp_at(ctx, off, l4_end) else {
                return out.malformed();
            };
            let (sport, dport) = (u16::from_ne_bytes(tcp.source), u16::from_ne_bytes(tcp.dest));
            out.flow(tcp_kind(&tcp), sport, dport, l3_off, ip_len, false)
        }
        PROTO_ICMPV6 => icmpv6_error(ctx, l3_off, off, l4_end, ip_len, out),
        // Extension headers beyond the walk limit, before TCP: treat as malformed if for us.
        0 | 43 | 44 | 51 | 60 | 135 | 139 | 140 => out.malformed(),
        _ => None,
    }
}

/// A fragment whose fragmentable part starts with header `first` (its fragment header's
/// next-header field). Only the first fragment holds the headers that follow the fragment
/// header, later ones start with data (RFC 8200 4.5), so the verdict uses only what every
/// fragment of a datagram carries alike (addresses and `first`), and all of them meet at one
/// node. TCP, or an extension header that TCP may follow, is steered; when that header hides
/// another protocol the datagram still reaches a node of the array that holds the VIP, while
/// passing a TCP datagram here would split it from its connection.
#[inline(always)]
fn ipv6_fragment_is_steered(first: u8) -> bool {
    matches!(first, PROTO_TCP | 0 | 43 | 44 | 51 | 60 | 135 | 139 | 140)
}

/// An ICMPv6 destination-unreachable, packet-too-big or time-exceeded message quoting a TCP
/// segment (directly after the quoted IPv6 header).
#[inline(always)]
fn icmpv6_error(
    ctx: &XdpContext,
    l3_off: usize,
    l4_off: usize,
    l4_end: usize,
    ip_len: usize,
    out: &mut Parsed,
) -> Option<()> {
    // Type and code together: a one-byte bounds check compiles to a form the verifier does not
    // credit with any range (`pkt + off < pkt_end` at offset 0).
    let [icmp_type, _code]: [u8; 2] = read(ctx, l4_off)?;
    if icmp_type != ICMPV6_DEST_UNREACH
        && icmp_type != ICMPV6_PACKET_TOO_BIG
        && icmp_type != ICMPV6_TIME_EXCEEDED
    {
        return None;
    }
    let quoted_off = l4_off + ICMP_HEADER_LEN;
    let quoted: Ipv6Hdr = read(ctx, quoted_off)?;
    if quoted.version() != 6 || quoted.next_hdr != PROTO_TCP {
        return None;
    }
    if quoted_off + Ipv6Hdr::LEN + 4 > l4_end {
        return None;
    }
    let (sport_be, dport_be) = quoted_ports(ctx, quoted_off + Ipv6Hdr::LEN)?;
    out.flow.tuple.src = quoted.dst_addr;
    out.flow.tuple.dst = quoted.src_addr;
    out.flow(Kind::IcmpError, dport_be, sport_be, l3_off, ip_len, false)
}
