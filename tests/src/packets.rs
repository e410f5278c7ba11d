//! Packet builders for the XDP fixtures: Ethernet frames (with 802.1Q / 802.1ad tags), IPv4
//! (with options, fragments), IPv6 (with a fragment header), TCP, UDP, ICMP errors, ARP, and
//! the IPv4-in-IPv4 / IPv6-in-IPv6 outer headers the data plane puts on forwarded packets.
//!
//! Everything is built with `etherparse`, so lengths and checksums (IPv4 header, TCP, UDP,
//! ICMP, ICMPv6) are valid unless a test breaks them on purpose ([`set_ipv4_header_byte`] and
//! friends recompute the IPv4 header checksum after a deliberate lie, so that only the lie is
//! wrong). The builders know nothing about the balancer's configuration: addresses and MACs
//! are arguments. The outer headers follow `balancer_common::encap`, written out field by field
//! here so that a test compares the program's output with an independent construction.

use etherparse::{
    icmpv4, EtherType, Ethernet2Header, Icmpv4Header, Icmpv4Type, Icmpv6Header, Icmpv6Type,
    IpFragOffset, IpNumber, Ipv4Dscp, Ipv4Ecn, Ipv4Header, Ipv4Options, Ipv6FlowLabel, Ipv6Header,
    SingleVlanHeader, TcpHeader, UdpHeader, VlanId, VlanPcp,
};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// Length of an Ethernet header without tags.
pub const ETH_LEN: usize = 14;
/// Length of one VLAN tag.
pub const VLAN_LEN: usize = 4;
/// TTL / hop limit of the inner packets built here (any value; the data plane keeps it).
pub const INNER_TTL: u8 = 57;

/// A VLAN tag in front of the payload's EtherType.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Tag {
    /// IEEE 802.1Q customer tag (TPID 0x8100) with this VLAN id.
    Dot1Q(u16),
    /// IEEE 802.1ad service tag (TPID 0x88a8) with this VLAN id: the outer tag of QinQ.
    Dot1Ad(u16),
}

impl Tag {
    fn tpid(self) -> EtherType {
        match self {
            Tag::Dot1Q(_) => EtherType::VLAN_TAGGED_FRAME,
            Tag::Dot1Ad(_) => EtherType::PROVIDER_BRIDGING,
        }
    }

    fn vid(self) -> u16 {
        match self {
            Tag::Dot1Q(v) | Tag::Dot1Ad(v) => v,
        }
    }
}

/// The EtherType of an IP packet, from its version nibble.
pub fn ether_type_of(ip: &[u8]) -> EtherType {
    match ip.first().map(|b| b >> 4) {
        Some(6) => EtherType::IPV6,
        _ => EtherType::IPV4,
    }
}

/// An Ethernet frame from `src` to `dst` carrying `payload` of type `ether_type` behind `tags`
/// (outermost first). No padding to 60 bytes: the fixtures test the program's own bounds.
pub fn ethernet_raw(
    src: [u8; 6],
    dst: [u8; 6],
    tags: &[Tag],
    ether_type: EtherType,
    payload: &[u8],
) -> Vec<u8> {
    let first_type = tags.first().map(|t| t.tpid()).unwrap_or(ether_type);
    let mut out = Ethernet2Header {
        source: src,
        destination: dst,
        ether_type: first_type,
    }
    .to_bytes()
    .to_vec();
    for (i, tag) in tags.iter().enumerate() {
        let next = tags.get(i + 1).map(|t| t.tpid()).unwrap_or(ether_type);
        let header = SingleVlanHeader {
            pcp: VlanPcp::try_new(0).expect("valid pcp"),
            drop_eligible_indicator: false,
            vlan_id: VlanId::try_new(tag.vid()).expect("VLAN id below 4096"),
            ether_type: next,
        };
        out.extend_from_slice(&header.to_bytes());
    }
    out.extend_from_slice(payload);
    out
}

/// An Ethernet frame carrying the IP packet `ip` (IPv4 or IPv6, from its version nibble).
pub fn ethernet(src: [u8; 6], dst: [u8; 6], tags: &[Tag], ip: &[u8]) -> Vec<u8> {
    ethernet_raw(src, dst, tags, ether_type_of(ip), ip)
}

/// An ARP request (who has `target`? tell `sender`), broadcast.
pub fn arp_request(src_mac: [u8; 6], sender: Ipv4Addr, target: Ipv4Addr) -> Vec<u8> {
    let mut arp = Vec::with_capacity(28);
    arp.extend_from_slice(&1u16.to_be_bytes()); // hardware type: Ethernet
    arp.extend_from_slice(&0x0800u16.to_be_bytes()); // protocol type: IPv4
    arp.extend_from_slice(&[6, 4]); // address lengths
    arp.extend_from_slice(&1u16.to_be_bytes()); // operation: request
    arp.extend_from_slice(&src_mac);
    arp.extend_from_slice(&sender.octets());
    arp.extend_from_slice(&[0; 6]);
    arp.extend_from_slice(&target.octets());
    ethernet_raw(src_mac, [0xff; 6], &[], EtherType::ARP, &arp)
}

/// Fields of an IPv4 header other than addresses, protocol and length.
#[derive(Clone, Debug, Default)]
pub struct V4Fields {
    /// The whole TOS byte (DSCP and ECN).
    pub tos: u8,
    pub id: u16,
    pub dont_fragment: bool,
    pub more_fragments: bool,
    /// Fragment offset in 8-byte units.
    pub fragment_offset: u16,
    /// Options (a multiple of 4 bytes, at most 40): IHL = 5 + len / 4.
    pub options: Vec<u8>,
}

/// An IPv4 packet with a valid header checksum.
pub fn ipv4(
    src: Ipv4Addr,
    dst: Ipv4Addr,
    proto: IpNumber,
    fields: &V4Fields,
    payload: &[u8],
) -> Vec<u8> {
    let mut header = Ipv4Header::new(
        payload.len() as u16,
        INNER_TTL,
        proto,
        src.octets(),
        dst.octets(),
    )
    .expect("payload fits an IPv4 packet");
    header.dscp = Ipv4Dscp::try_new(fields.tos >> 2).expect("6-bit DSCP");
    header.ecn = Ipv4Ecn::try_new(fields.tos & 3).expect("2-bit ECN");
    header.identification = fields.id;
    header.dont_fragment = fields.dont_fragment;
    header.more_fragments = fields.more_fragments;
    header.fragment_offset = IpFragOffset::try_new(fields.fragment_offset).expect("13-bit offset");
    header.options = Ipv4Options::try_from(fields.options.as_slice())
        .expect("options: a multiple of 4, at most 40 bytes");
    header.total_len = (header.header_len() + payload.len()) as u16;
    header.header_checksum = header.calc_header_checksum();
    let mut out = header.to_bytes().to_vec();
    out.extend_from_slice(payload);
    out
}

/// Fields of an IPv6 header other than addresses, next header and length.
#[derive(Clone, Copy, Debug, Default)]
pub struct V6Fields {
    pub traffic_class: u8,
    /// 20 bits.
    pub flow_label: u32,
}

/// An IPv6 packet whose payload (extension headers included) is `payload`.
pub fn ipv6(
    src: Ipv6Addr,
    dst: Ipv6Addr,
    next: IpNumber,
    fields: V6Fields,
    payload: &[u8],
) -> Vec<u8> {
    let header = Ipv6Header {
        traffic_class: fields.traffic_class,
        flow_label: Ipv6FlowLabel::try_new(fields.flow_label).expect("20-bit flow label"),
        payload_length: payload.len() as u16,
        next_header: next,
        hop_limit: INNER_TTL,
        source: src.octets(),
        destination: dst.octets(),
    };
    let mut out = header.to_bytes().to_vec();
    out.extend_from_slice(payload);
    out
}

/// A TCP segment inside an IPv4 or IPv6 packet: what a client sends to a VIP.
#[derive(Clone, Debug)]
pub struct Tcp {
    pub src: IpAddr,
    pub dst: IpAddr,
    pub sport: u16,
    pub dport: u16,
    pub syn: bool,
    pub ack: bool,
    /// IPv4 TOS byte, or IPv6 traffic class.
    pub tos: u8,
    /// IPv6 flow label (ignored for IPv4).
    pub flow_label: u32,
    /// IPv4 options (ignored for IPv6).
    pub ipv4_options: Vec<u8>,
    /// IPv4 identification (for IPv6 fragments: the fragment header's identification).
    pub id: u32,
    /// TCP options (a multiple of 4 bytes, at most 40).
    pub tcp_options: Vec<u8>,
    pub payload: Vec<u8>,
}

impl Tcp {
    /// An established-flow segment (ACK, with a little data) from `src:sport` to `dst:dport`.
    pub fn new(src: IpAddr, sport: u16, dst: IpAddr, dport: u16) -> Self {
        assert_eq!(
            src.is_ipv4(),
            dst.is_ipv4(),
            "one address family per packet"
        );
        Self {
            src,
            dst,
            sport,
            dport,
            syn: false,
            ack: true,
            tos: 0,
            flow_label: 0,
            ipv4_options: Vec::new(),
            id: 0x1234,
            tcp_options: Vec::new(),
            payload: b"GET / HTTP/1.1\r\nHost: mail\r\n\r\n".to_vec(),
        }
    }

    /// A connection request: SYN without ACK, no data.
    pub fn syn(mut self) -> Self {
        self.syn = true;
        self.ack = false;
        self.payload.clear();
        self
    }

    pub fn tos(mut self, tos: u8) -> Self {
        self.tos = tos;
        self
    }

    pub fn flow_label(mut self, label: u32) -> Self {
        self.flow_label = label;
        self
    }

    pub fn ipv4_options(mut self, options: Vec<u8>) -> Self {
        self.ipv4_options = options;
        self
    }

    pub fn payload(mut self, payload: Vec<u8>) -> Self {
        self.payload = payload;
        self
    }

    pub fn tcp_options(mut self, options: Vec<u8>) -> Self {
        self.tcp_options = options;
        self
    }

    fn header(&self) -> TcpHeader {
        let mut tcp = TcpHeader::new(self.sport, self.dport, 0x0100_0000, 64240);
        tcp.syn = self.syn;
        tcp.ack = self.ack;
        if self.ack {
            tcp.acknowledgment_number = 0x0200_0000;
            tcp.psh = !self.payload.is_empty();
        }
        tcp.set_options_raw(&self.tcp_options)
            .expect("TCP options: a multiple of 4, at most 40 bytes");
        tcp
    }

    /// The TCP segment (header and payload) with its checksum over the pseudo-header.
    pub fn segment(&self) -> Vec<u8> {
        let mut tcp = self.header();
        tcp.checksum = match (self.src, self.dst) {
            (IpAddr::V4(s), IpAddr::V4(d)) => {
                let ip = Ipv4Header::new(0, INNER_TTL, IpNumber::TCP, s.octets(), d.octets())
                    .expect("header");
                tcp.calc_checksum_ipv4(&ip, &self.payload)
                    .expect("checksum")
            }
            (IpAddr::V6(s), IpAddr::V6(d)) => tcp
                .calc_checksum_ipv6_raw(s.octets(), d.octets(), &self.payload)
                .expect("checksum"),
            _ => unreachable!("checked in new()"),
        };
        let mut out = tcp.to_bytes().to_vec();
        out.extend_from_slice(&self.payload);
        out
    }

    /// The whole IP packet.
    pub fn packet(&self) -> Vec<u8> {
        let segment = self.segment();
        match (self.src, self.dst) {
            (IpAddr::V4(s), IpAddr::V4(d)) => {
                ipv4(s, d, IpNumber::TCP, &self.v4_fields(), &segment)
            }
            (IpAddr::V6(s), IpAddr::V6(d)) => ipv6(s, d, IpNumber::TCP, self.v6_fields(), &segment),
            _ => unreachable!("checked in new()"),
        }
    }

    fn v4_fields(&self) -> V4Fields {
        V4Fields {
            tos: self.tos,
            id: self.id as u16,
            dont_fragment: true,
            options: self.ipv4_options.clone(),
            ..V4Fields::default()
        }
    }

    fn v6_fields(&self) -> V6Fields {
        V6Fields {
            traffic_class: self.tos,
            flow_label: self.flow_label,
        }
    }

    /// The segment split into two fragments of one datagram: the first carries the TCP
    /// header and `first_len` bytes in all (a multiple of 8), the second the rest.
    pub fn fragments(&self, first_len: usize) -> [Vec<u8>; 2] {
        assert_eq!(
            first_len % 8,
            0,
            "fragment payloads other than the last are multiples of 8"
        );
        let segment = self.segment();
        assert!(
            first_len < segment.len(),
            "the segment must be longer than the first fragment"
        );
        let (head, tail) = segment.split_at(first_len);
        match (self.src, self.dst) {
            (IpAddr::V4(s), IpAddr::V4(d)) => {
                let first = V4Fields {
                    dont_fragment: false,
                    more_fragments: true,
                    ..self.v4_fields()
                };
                let second = V4Fields {
                    dont_fragment: false,
                    fragment_offset: (first_len / 8) as u16,
                    ..self.v4_fields()
                };
                [
                    ipv4(s, d, IpNumber::TCP, &first, head),
                    ipv4(s, d, IpNumber::TCP, &second, tail),
                ]
            }
            (IpAddr::V6(_), IpAddr::V6(_)) => self.ipv6_fragments(&[], IpNumber::TCP, first_len),
            _ => unreachable!("checked in new()"),
        }
    }

    /// An IPv6 segment split into two fragments whose fragmentable part (RFC 8200 4.5) is
    /// `headers` (extension headers, the first of type `first`) then the TCP segment: only
    /// the first fragment starts with those headers, every fragment header names `first`.
    pub fn ipv6_fragments(
        &self,
        headers: &[u8],
        first: IpNumber,
        first_len: usize,
    ) -> [Vec<u8>; 2] {
        let (IpAddr::V6(s), IpAddr::V6(d)) = (self.src, self.dst) else {
            panic!("IPv6 fragments of an IPv4 segment")
        };
        assert_eq!(
            first_len % 8,
            0,
            "fragment payloads other than the last are multiples of 8"
        );
        let fragmentable: Vec<u8> = headers.iter().copied().chain(self.segment()).collect();
        assert!(
            first_len < fragmentable.len(),
            "the datagram must be longer than the first fragment"
        );
        let (head, tail) = fragmentable.split_at(first_len);
        let fragment = |offset: usize, more: bool, data: &[u8]| {
            let mut payload = ipv6_fragment_header(first, offset, more, self.id).to_vec();
            payload.extend_from_slice(data);
            ipv6(
                s,
                d,
                IpNumber::IPV6_FRAGMENTATION_HEADER,
                self.v6_fields(),
                &payload,
            )
        };
        [fragment(0, true, head), fragment(first_len, false, tail)]
    }
}

/// An IPv6 fragment header (RFC 8200 section 4.5): next header, reserved, then one
/// big-endian word holding the offset in 8-byte units in its top 13 bits and the M flag in its
/// lowest bit, then the identification.
///
/// Written by hand: etherparse 0.16's `Ipv6FragmentHeader::to_bytes` puts the low offset bits
/// and the M flag in the wrong places (JulianSchmid/etherparse#150, fixed in 0.20), and its
/// parser makes the same mistake, so its own round trip does not show it.
pub fn ipv6_fragment_header(next: IpNumber, offset: usize, more: bool, id: u32) -> [u8; 8] {
    assert!(
        offset.is_multiple_of(8),
        "fragment offsets are multiples of 8 bytes"
    );
    let word = ((offset / 8) as u16) << 3 | u16::from(more);
    let [w0, w1] = word.to_be_bytes();
    let [i0, i1, i2, i3] = id.to_be_bytes();
    [next.0, 0, w0, w1, i0, i1, i2, i3]
}

/// An IPv6 Hop-by-Hop or Destination Options header of `len` bytes (a multiple of 8) whose
/// options are one PadN, followed by header `next`.
pub fn ipv6_options_header(next: IpNumber, len: usize) -> Vec<u8> {
    assert!(
        (8..=2048).contains(&len) && len.is_multiple_of(8),
        "options headers are 8..2048 bytes in 8-byte units"
    );
    let mut h = vec![next.0, (len / 8 - 1) as u8, 1, (len - 4) as u8];
    h.resize(len, 0);
    h
}

/// An IPv6 Authentication Header (RFC 4302) with a 12-byte ICV (24 bytes in all: its length
/// field counts 4-byte units minus 2), followed by header `next`.
pub fn ipv6_auth_header(next: IpNumber) -> Vec<u8> {
    let mut h = vec![next.0, 4, 0, 0];
    h.extend_from_slice(&0x0000_1001u32.to_be_bytes()); // SPI
    h.extend_from_slice(&1u32.to_be_bytes()); // sequence number
    h.extend_from_slice(&[0xa5; 12]); // ICV
    h
}

/// A UDP datagram in an IPv4 or IPv6 packet, with its checksum.
pub fn udp(src: IpAddr, sport: u16, dst: IpAddr, dport: u16, payload: &[u8]) -> Vec<u8> {
    match (src, dst) {
        (IpAddr::V4(s), IpAddr::V4(d)) => {
            let ip = Ipv4Header::new(0, INNER_TTL, IpNumber::UDP, s.octets(), d.octets())
                .expect("header");
            let udp = UdpHeader::with_ipv4_checksum(sport, dport, &ip, payload).expect("checksum");
            let mut l4 = udp.to_bytes().to_vec();
            l4.extend_from_slice(payload);
            ipv4(
                s,
                d,
                IpNumber::UDP,
                &V4Fields {
                    dont_fragment: true,
                    ..V4Fields::default()
                },
                &l4,
            )
        }
        (IpAddr::V6(s), IpAddr::V6(d)) => {
            let ip = Ipv6Header {
                payload_length: (8 + payload.len()) as u16,
                next_header: IpNumber::UDP,
                hop_limit: INNER_TTL,
                source: s.octets(),
                destination: d.octets(),
                ..Ipv6Header::default()
            };
            let udp = UdpHeader::with_ipv6_checksum(sport, dport, &ip, payload).expect("checksum");
            let mut l4 = udp.to_bytes().to_vec();
            l4.extend_from_slice(payload);
            ipv6(s, d, IpNumber::UDP, V6Fields::default(), &l4)
        }
        _ => panic!("one address family per packet"),
    }
}

/// An ICMPv4 echo request.
pub fn icmpv4_echo(src: Ipv4Addr, dst: Ipv4Addr) -> Vec<u8> {
    let payload = b"ping-payload";
    let icmp = Icmpv4Header::with_checksum(
        Icmpv4Type::EchoRequest(etherparse::IcmpEchoHeader { id: 7, seq: 1 }),
        payload,
    );
    let mut l4 = icmp.to_bytes().to_vec();
    l4.extend_from_slice(payload);
    ipv4(src, dst, IpNumber::ICMP, &V4Fields::default(), &l4)
}

/// ICMPv4 destination unreachable, fragmentation needed (type 3 code 4), from `router` to
/// `to`, quoting the IP header and first 8 transport bytes of `original` (RFC 792).
pub fn icmpv4_frag_needed(router: Ipv4Addr, to: Ipv4Addr, original: &[u8], mtu: u16) -> Vec<u8> {
    let kind =
        Icmpv4Type::DestinationUnreachable(icmpv4::DestUnreachableHeader::FragmentationNeeded {
            next_hop_mtu: mtu,
        });
    icmpv4_error(router, to, kind, original)
}

/// An ICMPv4 error of `kind` from `router` to `to`, quoting the IP header (options included)
/// and first 8 transport bytes of `original` (RFC 792).
pub fn icmpv4_error(router: Ipv4Addr, to: Ipv4Addr, kind: Icmpv4Type, original: &[u8]) -> Vec<u8> {
    let ihl = (original[0] & 0x0f) as usize * 4;
    let quoted = &original[..(ihl + 8).min(original.len())];
    let icmp = Icmpv4Header::with_checksum(kind, quoted);
    let mut l4 = icmp.to_bytes().to_vec();
    l4.extend_from_slice(quoted);
    ipv4(router, to, IpNumber::ICMP, &V4Fields::default(), &l4)
}

/// ICMPv6 packet too big (type 2) from `router` to `to`, quoting all of `original` (as much
/// of the invoking packet as fits in the minimum MTU, RFC 4443; the fixtures are small).
pub fn icmpv6_packet_too_big(router: Ipv6Addr, to: Ipv6Addr, original: &[u8], mtu: u32) -> Vec<u8> {
    icmpv6_error(router, to, Icmpv6Type::PacketTooBig { mtu }, original)
}

/// An ICMPv6 error of `kind` from `router` to `to`, quoting all of `original`.
pub fn icmpv6_error(router: Ipv6Addr, to: Ipv6Addr, kind: Icmpv6Type, original: &[u8]) -> Vec<u8> {
    let icmp = Icmpv6Header::with_checksum(kind, router.octets(), to.octets(), original)
        .expect("checksum");
    let mut l4 = icmp.to_bytes().to_vec();
    l4.extend_from_slice(original);
    ipv6(router, to, IpNumber::IPV6_ICMP, V6Fields::default(), &l4)
}

/// The IPv4-in-IPv4 packet the data plane sends from underlay `src` to underlay `dst`:
/// version 4, IHL 5, TOS copied from the inner packet (RFC 2983), total length, the given
/// identification (0, or the second-chance mark), DF set, TTL 64, protocol 4, valid checksum.
pub fn ipip(src: Ipv4Addr, dst: Ipv4Addr, id: u16, inner: &[u8]) -> Vec<u8> {
    let fields = V4Fields {
        tos: inner[1],
        id,
        dont_fragment: true,
        ..V4Fields::default()
    };
    let mut out = ipv4(src, dst, IpNumber::IPV4, &fields, inner);
    out[8] = balancer_common::encap::OUTER_TTL;
    set_ipv4_checksum(&mut out);
    out
}

/// The IPv6-in-IPv6 packet the data plane sends from underlay `src` to underlay `dst`:
/// traffic class copied, flow label = the inner label's low 19 bits (ECMP entropy) plus the
/// second-chance bit if `second_chance`, payload length = the inner packet, next header 41,
/// hop limit 64.
pub fn ip6ip6(src: Ipv6Addr, dst: Ipv6Addr, second_chance: bool, inner: &[u8]) -> Vec<u8> {
    use balancer_common::encap::{V6_FLOW_HASH_MASK, V6_FLOW_SECOND_CHANCE};
    let vcf = u32::from_be_bytes([inner[0], inner[1], inner[2], inner[3]]);
    let traffic_class = (vcf >> 20) as u8;
    let mut flow_label = vcf & V6_FLOW_HASH_MASK;
    if second_chance {
        flow_label |= V6_FLOW_SECOND_CHANCE;
    }
    let mut out = ipv6(
        src,
        dst,
        IpNumber::IPV6,
        V6Fields {
            traffic_class,
            flow_label,
        },
        inner,
    );
    out[7] = balancer_common::encap::OUTER_TTL;
    out
}

/// The Internet checksum (RFC 1071) of `bytes`, as stored in a header.
pub fn internet_checksum(bytes: &[u8]) -> u16 {
    let mut sum: u32 = bytes
        .chunks(2)
        .map(|c| u32::from(u16::from_be_bytes([c[0], *c.get(1).unwrap_or(&0)])))
        .sum();
    while sum >> 16 != 0 {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}

/// Whether the IPv4 header at the start of `ip` (IHL from its first byte) has a valid checksum.
pub fn ipv4_checksum_valid(ip: &[u8]) -> bool {
    let ihl = ((ip[0] & 0x0f) as usize * 4).clamp(20, ip.len());
    internet_checksum(&ip[..ihl]) == 0
}

/// Recomputes the header checksum of the IPv4 packet `ip`: over the header length its IHL
/// claims, clamped to what exists and to at least the fixed 20 bytes (a lying IHL stays a lie,
/// but nothing else about the header is wrong).
pub fn set_ipv4_checksum(ip: &mut [u8]) {
    let ihl = ((ip[0] & 0x0f) as usize * 4).clamp(20, ip.len());
    ip[10..12].copy_from_slice(&[0, 0]);
    let check = internet_checksum(&ip[..ihl]);
    ip[10..12].copy_from_slice(&check.to_be_bytes());
}

/// Overwrites header bytes of the IPv4 packet `ip` at `offset` and fixes its checksum.
pub fn set_ipv4_header_bytes(ip: &mut [u8], offset: usize, bytes: &[u8]) {
    ip[offset..offset + bytes.len()].copy_from_slice(bytes);
    set_ipv4_checksum(ip);
}

/// Overwrites one header byte of the IPv4 packet `ip` and fixes its checksum.
pub fn set_ipv4_header_byte(ip: &mut [u8], offset: usize, byte: u8) {
    set_ipv4_header_bytes(ip, offset, &[byte]);
}

/// Where the IP header of a frame starts (after the Ethernet header and up to two VLAN
/// tags), and its EtherType; `None` for frames too short to say.
pub fn l3_offset(frame: &[u8]) -> Option<(usize, u16)> {
    let mut off = 12;
    loop {
        let ether_type = u16::from_be_bytes([*frame.get(off)?, *frame.get(off + 1)?]);
        if (ether_type == 0x8100 || ether_type == 0x88a8) && off < 12 + 2 * VLAN_LEN {
            off += VLAN_LEN;
            continue;
        }
        return Some((off + 2, ether_type));
    }
}

/// The destination address of a frame's IP packet and the length of that packet's fixed
/// header (20 or 40 bytes), if the frame is IP and carries the address.
pub fn ip_destination(frame: &[u8]) -> Option<(IpAddr, usize)> {
    let (l3, ether_type) = l3_offset(frame)?;
    match ether_type {
        0x0800 => {
            let b: [u8; 4] = frame.get(l3 + 16..l3 + 20)?.try_into().ok()?;
            Some((IpAddr::V4(Ipv4Addr::from(b)), 20))
        }
        0x86dd => {
            let b: [u8; 16] = frame.get(l3 + 24..l3 + 40)?.try_into().ok()?;
            Some((IpAddr::V6(Ipv6Addr::from(b)), 40))
        }
        _ => None,
    }
}

/// Where a frame's IP packet ends according to the packet's own length field (IPv4 total
/// length, IPv6 40 + payload length): the frame may be longer (Ethernet padding) or, if the
/// field lies, shorter.
pub fn ip_packet_end(frame: &[u8]) -> Option<usize> {
    let (l3, ether_type) = l3_offset(frame)?;
    let field = |at: usize| {
        Some(u16::from_be_bytes([*frame.get(l3 + at)?, *frame.get(l3 + at + 1)?]) as usize)
    };
    match ether_type {
        0x0800 => Some(l3 + field(2)?),
        0x86dd => Some(l3 + 40 + field(4)?),
        _ => None,
    }
}

/// Hex dump, 16 bytes a line, for failure messages.
pub fn hex(bytes: &[u8]) -> String {
    bytes
        .chunks(16)
        .enumerate()
        .map(|(i, line)| {
            let hex: Vec<String> = line.iter().map(|b| format!("{b:02x}")).collect();
            format!("{:04x}: {}", i * 16, hex.join(" "))
        })
        .collect::<Vec<_>>()
        .join("\n")
}

#[cfg(test)]
mod tests {
    use super::*;
    use etherparse::SlicedPacket;

    fn v4(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn tcp_v4_frame_parses_with_valid_checksums() {
        let tcp = Tcp::new(v4("192.0.2.1"), 40000, v4("10.200.0.10"), 443).ipv4_options(vec![1; 8]);
        let frame = ethernet(
            [2; 6],
            [4; 6],
            &[Tag::Dot1Ad(100), Tag::Dot1Q(200)],
            &tcp.packet(),
        );
        let p = SlicedPacket::from_ethernet(&frame).expect("parses");
        let Some(etherparse::NetSlice::Ipv4(ip)) = p.net else {
            panic!("IPv4")
        };
        assert_eq!(ip.header().ihl(), 7);
        assert!(ipv4_checksum_valid(&tcp.packet()));
        assert_eq!(l3_offset(&frame), Some((22, 0x0800)));
        assert_eq!(ip_destination(&frame), Some((v4("10.200.0.10"), 20)));
    }

    #[test]
    fn ipip_header_is_what_encap_says() {
        let inner = Tcp::new(v4("192.0.2.1"), 40000, v4("10.200.0.10"), 443)
            .tos(0xb8)
            .packet();
        let outer = ipip(
            "10.0.0.1".parse().unwrap(),
            "10.0.0.2".parse().unwrap(),
            0x5c5c,
            &inner,
        );
        assert_eq!(outer[0], 0x45);
        assert_eq!(outer[1], 0xb8);
        assert_eq!(
            u16::from_be_bytes([outer[2], outer[3]]) as usize,
            inner.len() + 20
        );
        assert_eq!(&outer[4..8], &[0x5c, 0x5c, 0x40, 0]);
        assert_eq!((outer[8], outer[9]), (64, 4));
        assert!(ipv4_checksum_valid(&outer));
        assert_eq!(&outer[20..], &inner[..]);
    }

    #[test]
    fn ip6ip6_masks_the_flow_label() {
        let inner = Tcp::new(v4("2001:db8::1"), 40000, v4("fd00:200::10"), 443)
            .tos(0x28)
            .flow_label(0xabcde)
            .packet();
        let outer = ip6ip6(
            "fd00::1".parse().unwrap(),
            "fd00::2".parse().unwrap(),
            false,
            &inner,
        );
        let vcf = u32::from_be_bytes([outer[0], outer[1], outer[2], outer[3]]);
        assert_eq!(vcf, 0x6000_0000 | 0x28 << 20 | 0x2bcde);
        assert_eq!((outer[6], outer[7]), (41, 64));
    }

    #[test]
    fn fragments_split_one_segment() {
        let tcp = Tcp::new(v4("2001:db8::1"), 40000, v4("fd00:200::10"), 443).payload(vec![7; 64]);
        let [a, b] = tcp.fragments(32);
        assert_eq!(a.len(), 40 + 8 + 32);
        assert_eq!(b.len(), 40 + 8 + 20 + 64 - 32);
        assert_eq!(u16::from_be_bytes([b[42], b[43]]), (32 / 8) << 3);
        assert_eq!(
            u16::from_be_bytes([a[42], a[43]]),
            1,
            "first fragment: offset 0, M set"
        );
    }
}
