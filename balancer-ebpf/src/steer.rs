//! Steering: classify, choose the owner node, keep established flows where they are, act.
//!
//! ## Choosing the owner
//! The affinity hash of the client (source address, its /24 or /64, or the 5-tuple, per VIP)
//! indexes the active Maglev ring, which userspace built from the site's healthy nodes. Every
//! node of the array holds the same ring, so whichever node the network hands a packet to, it
//! names the same owner. The owner passes the packet to its own stack; any other node
//! encapsulates it to the owner, which answers the client directly.
//!
//! ## Keeping established connections (R3)
//! A ring change (node joins, leaves, fails) remaps a few slots. Two mechanisms keep the
//! connections of remapped clients on the node that holds their socket:
//! 1. *Connection table* (Katran's LRU): the receiving node records the owner of each new flow
//!    at its SYN and sends later packets of the flow there while that node is usable. This
//!    covers flows that keep arriving at the same receiving node.
//! 2. *Second chance* (Beamer's daisy chaining, GLB's second hop): the upstream routers may
//!    also reshuffle which node receives a flow (ECMP changes with the set of nodes), and the
//!    new receiving node has no record. The ring's new owner then gets a non-SYN packet for
//!    which it has no socket (`bpf_skc_lookup_tcp`: no established, request or time-wait
//!    socket, only the listener). It sends the packet on, marked so it is not bounced again,
//!    to the owner in the *previous* ring, which userspace keeps beside the active one.
//!
//! SYNs always follow the active ring, so new connections go to the new owner at once. The
//! socket lookup is done only for slots whose owner changed in the last ring change.
//! Known limit: a flow whose receiving node changes *and* whose slot moved in two successive
//! ring changes has lost its previous owner.
//!
//! ## Stack
//! BPF allows 512 bytes of stack for the whole call chain. The steps with large locals are
//! BPF-to-BPF calls (`steer`, `forward`, and the parser and tunnel functions) so that their
//! frames are not all live at once; node entries are used in place in map memory.

use crate::{
    counters, events,
    maps::{CONFIG, CONN_TABLE, NODES, PARSED, RING, VIPS},
    packet::{address_words, len},
    parse::{self, Flow, Kind, Parsed, Verdict, L2},
    tunnel::{self, Hop},
};
use aya_ebpf::{
    bindings::{
        bpf_sock_tuple, bpf_sock_tuple__bindgen_ty_1__bindgen_ty_1 as SockTupleV4,
        bpf_sock_tuple__bindgen_ty_1__bindgen_ty_2 as SockTupleV6, xdp_action, BPF_F_CURRENT_NETNS,
    },
    helpers::{bpf_sk_release, bpf_skc_lookup_tcp},
    programs::XdpContext,
    EbpfContext,
};
use balancer_common::{
    conn::{FlowEntry, FlowKey},
    hash::affinity_hash,
    node::{active_slot, previous_slot, DataplaneConfig, NodeInfo, NO_NODE},
    vip::{VipInfo, VipKey, AFFINITY_NONE, AFFINITY_SINGLE, PROTO_TCP},
};
use core::mem::{size_of, MaybeUninit};

const TCP_LISTEN: u32 = 10;

/// How a packet reached this node (fieldless: see `parse::Kind` on BTF).
#[repr(u8)]
#[derive(Clone, Copy, PartialEq, Eq)]
enum Arrival {
    /// From the network, for a VIP.
    Direct,
    /// Encapsulated by a peer that chose this node as the owner.
    FromPeer,
    /// Encapsulated by a peer that had no socket for it: this node is the previous owner.
    FromPeerSecondChance,
}

/// Entry point of the steering program.
#[inline(always)]
pub fn balance(ctx: &XdpContext) -> u32 {
    let Some(cfg) = CONFIG.get(0).copied() else {
        return xdp_action::XDP_PASS;
    };
    if cfg.self_node == NO_NODE || cfg.ring_size == 0 {
        return xdp_action::XDP_PASS;
    }
    let Some(l2) = parse::l2(ctx) else {
        return xdp_action::XDP_PASS;
    };
    let Some(parsed) = parse_ip(ctx, l2) else {
        return xdp_action::XDP_PASS;
    };
    match parsed.verdict {
        Verdict::NotOurs => xdp_action::XDP_PASS,
        Verdict::Malformed => malformed(parsed.flow.tuple.dst),
        Verdict::Tunnel => {
            let (dst, header_len, second_chance) = (
                parsed.flow.tuple.dst,
                parsed.header_len,
                parsed.second_chance,
            );
            from_peer(ctx, &cfg, l2, dst, header_len, second_chance)
        }
        Verdict::Flow => match vip_of(&parsed.flow) {
            Some(vip) => act(ctx, &cfg, &parsed.flow, &vip, Arrival::Direct),
            None => xdp_action::XDP_PASS,
        },
    }
}

/// Decides ([`steer`]) and acts: pass here, or forward ([`forward`]). The two are separate
/// calls so that their stack frames are never live at the same time.
#[inline(always)]
fn act(
    ctx: &XdpContext,
    cfg: &DataplaneConfig,
    flow: &Flow,
    vip: &VipInfo,
    arrival: Arrival,
) -> u32 {
    let decision = steer(ctx, cfg, flow, vip, arrival);
    if decision == DELIVER_LOCALLY {
        return xdp_action::XDP_PASS;
    }
    let hop = Hop {
        to: decision as u32,
        second_chance: decision & SECOND_CHANCE != 0,
    };
    forward(ctx, cfg, flow, vip, &hop)
}

/// [`steer`]'s answer when the packet goes up this node's stack.
const DELIVER_LOCALLY: u64 = 0;
/// Bit of [`steer`]'s answer marking a second-chance forward; the low 32 bits are the node.
const SECOND_CHANCE: u64 = 1 << 32;

/// Parses the IP packet into this CPU's scratch slot (`None` only if the slot is missing).
#[inline(always)]
fn parse_ip(ctx: &XdpContext, l2: L2) -> Option<&'static Parsed> {
    let out = PARSED.get_ptr_mut(0)?;
    // SAFETY: this CPU's own slot, used by this program run only, until it returns.
    let out = unsafe { &mut *out };
    if l2.is_v4 {
        parse::ipv4(ctx, l2.l3_off, out);
    } else {
        parse::ipv6(ctx, l2.l3_off, out);
    }
    Some(out)
}

/// The VIP a flow is for: by (address, port) for TCP and ICMP errors, by the address entry
/// for fragments (which carry no port).
#[inline(always)]
fn vip_of(flow: &Flow) -> Option<VipInfo> {
    let port = if flow.kind == Kind::Fragment {
        0
    } else {
        u16::from_be(flow.tuple.dport_be)
    };
    let key = VipKey {
        addr: flow.tuple.dst,
        port,
        proto: PROTO_TCP,
        _pad: 0,
    };
    // SAFETY: the value is copied out at once; no reference outlives the lookup.
    unsafe { VIPS.get(key).copied() }
}

/// A broken packet: dropped if it is addressed to one of our VIP addresses, else passed.
#[inline(always)]
fn malformed(dst: [u8; 16]) -> u32 {
    let key = VipKey {
        addr: dst,
        port: 0,
        proto: PROTO_TCP,
        _pad: 0,
    };
    // SAFETY: copied out at once.
    match unsafe { VIPS.get(key).copied() } {
        Some(vip) => {
            counters::vip(vip.vip_index, |c| c.dropped_malformed += 1);
            xdp_action::XDP_DROP
        }
        None => xdp_action::XDP_PASS,
    }
}

/// A node's entry, in place in the map (array slots are stable for the program's run).
#[inline(always)]
fn node(id: u32) -> Option<&'static NodeInfo> {
    NODES.get(id)
}

#[inline(always)]
fn usable(id: u32) -> bool {
    id != NO_NODE && node(id).is_some_and(|n| n.is_usable())
}

/// The node in slot `hash % ring_size` of ring `slot`.
#[inline(always)]
fn ring_owner(cfg: &DataplaneConfig, slot: u32, hash: u32) -> u32 {
    // `checked_rem`: a remainder by a possibly-zero size would pull in a panic path, which the
    // verifier refuses; `balance` passes everything while the ring size is still zero.
    let Some(index) = hash.checked_rem(cfg.ring_size) else {
        return NO_NODE;
    };
    RING.get(slot * cfg.ring_size + index)
        .copied()
        .unwrap_or(NO_NODE)
}

/// An encapsulated packet: ours if the outer destination is our underlay address.
#[inline(always)]
fn from_peer(
    ctx: &XdpContext,
    cfg: &DataplaneConfig,
    l2: L2,
    dst: [u8; 16],
    header_len: u16,
    second_chance: bool,
) -> u32 {
    let Some(me) = node(cfg.self_node) else {
        return xdp_action::XDP_PASS;
    };
    // The parser stored an IPv4 destination in the mapped form: its last four bytes.
    let mine = if l2.is_v4 {
        dst[12..] == me.underlay_v4
    } else {
        dst == me.underlay_v6
    };
    if !mine {
        return xdp_action::XDP_PASS;
    }
    let arrival = if second_chance {
        Arrival::FromPeerSecondChance
    } else {
        Arrival::FromPeer
    };
    if !tunnel::decapsulate(ctx, l2.l3_off, header_len as usize) {
        counters::unattributed_malformed();
        return xdp_action::XDP_DROP;
    }
    // Only a VIP flow may come out of our tunnel; anything else is dropped, not delivered.
    let Some(inner) = parse_ip(ctx, l2) else {
        return xdp_action::XDP_DROP;
    };
    if inner.verdict != Verdict::Flow {
        counters::unattributed_malformed();
        return xdp_action::XDP_DROP;
    }
    match vip_of(&inner.flow) {
        Some(vip) => act(ctx, cfg, &inner.flow, &vip, arrival),
        None => {
            counters::unattributed_malformed();
            xdp_action::XDP_DROP
        }
    }
}

/// Chooses where the packet goes: [`DELIVER_LOCALLY`] (counted here), or a node id, with
/// [`SECOND_CHANCE`] set if it goes to the previous owner. A plain integer, returned in a
/// register. Not inlined: one copy serves direct and decapsulated packets, and its frame is
/// gone before [`forward`]'s.
#[inline(never)]
fn steer(
    ctx: &XdpContext,
    cfg: &DataplaneConfig,
    flow: &Flow,
    vip: &VipInfo,
    arrival: Arrival,
) -> u64 {
    let bytes = len(ctx) as u64;
    counters::vip(vip.vip_index, |c| {
        c.packets += 1;
        c.bytes += bytes;
    });
    // Fragments carry no ports: whatever the VIP's mode, they follow the source address.
    let affinity = if flow.kind == Kind::Fragment && vip.affinity == AFFINITY_NONE {
        AFFINITY_SINGLE
    } else {
        vip.affinity
    };
    let hash = affinity_hash(cfg.hash_seed, affinity, &flow.tuple);
    let select = cfg.ring_select;
    let owner = match arrival {
        Arrival::FromPeerSecondChance => {
            counters::vip(vip.vip_index, |c| c.decapsulated += 1);
            deliver_local(cfg, vip, bytes);
            return DELIVER_LOCALLY;
        }
        Arrival::FromPeer => {
            counters::vip(vip.vip_index, |c| c.decapsulated += 1);
            cfg.self_node
        }
        Arrival::Direct => {
            let ring = ring_owner(cfg, active_slot(select), hash);
            continuity_owner(flow, ring, vip)
        }
    };
    if owner != NO_NODE && owner != cfg.self_node {
        return owner as u64;
    }
    let previous = previous_owner(ctx, cfg, select, flow, hash);
    if previous != NO_NODE {
        return previous as u64 | SECOND_CHANCE;
    }
    deliver_local(cfg, vip, bytes);
    DELIVER_LOCALLY
}

#[inline(always)]
fn deliver_local(cfg: &DataplaneConfig, vip: &VipInfo, bytes: u64) {
    counters::vip(vip.vip_index, |c| c.passed_local += 1);
    counters::node(cfg.self_node, |c| {
        c.packets += 1;
        c.bytes += bytes;
        c.passed_local += 1;
    });
}

/// The node this flow should go to given the connection table (SYNs always take the ring's
/// choice and record it).
#[inline(always)]
fn continuity_owner(flow: &Flow, ring: u32, vip: &VipInfo) -> u32 {
    let syn = match flow.kind {
        Kind::Fragment => return ring,
        Kind::TcpSyn => true,
        Kind::Tcp | Kind::IcmpError => false,
    };
    let t = &flow.tuple;
    let key = FlowKey {
        src: t.src,
        dst: t.dst,
        sport: u16::from_be(t.sport_be),
        dport: u16::from_be(t.dport_be),
        proto: t.proto,
        _pad0: 0,
        _pad1: 0,
    };
    if !syn {
        // SAFETY: copied out at once (an LRU slot may be reused by another CPU later).
        if let Some(entry) = unsafe { CONN_TABLE.get(key).copied() } {
            if entry.node == ring {
                return ring;
            }
            if usable(entry.node) {
                counters::vip(vip.vip_index, |c| c.continuity_hits += 1);
                return entry.node;
            }
        }
    }
    if ring != NO_NODE && flow.kind != Kind::IcmpError {
        // A full table evicts its least recently used entry; nothing to handle on error.
        let _ = CONN_TABLE.insert(key, FlowEntry { node: ring }, 0);
    }
    ring
}

/// Second chance: for a packet of an existing flow that is about to be delivered here, the
/// previous ring's owner if that differs, is usable, and this node holds no socket for the
/// flow; [`NO_NODE`] otherwise.
#[inline(always)]
fn previous_owner(
    ctx: &XdpContext,
    cfg: &DataplaneConfig,
    select: u32,
    flow: &Flow,
    hash: u32,
) -> u32 {
    if matches!(flow.kind, Kind::Fragment | Kind::TcpSyn) {
        return NO_NODE;
    }
    let previous_slot = previous_slot(select);
    if previous_slot == active_slot(select) {
        return NO_NODE;
    }
    let previous = ring_owner(cfg, previous_slot, hash);
    if previous == cfg.self_node || !usable(previous) || has_local_socket(ctx, flow) {
        return NO_NODE;
    }
    previous
}

/// Whether this node's stack has a non-listening TCP socket (established, handshake in
/// progress, or time-wait) for the flow.
#[inline(never)]
fn has_local_socket(ctx: &XdpContext, flow: &Flow) -> bool {
    // Only the family's part is written, and the helper reads only `size` bytes: zeroing the
    // whole union first would cost a byte-loop `memset` call.
    let mut tuple = MaybeUninit::<bpf_sock_tuple>::uninit();
    let t = &flow.tuple;
    let union = tuple.as_mut_ptr().cast::<u8>();
    let size = if t.is_v4 {
        let v4 = SockTupleV4 {
            saddr: u32::from_ne_bytes([t.src[12], t.src[13], t.src[14], t.src[15]]),
            daddr: u32::from_ne_bytes([t.dst[12], t.dst[13], t.dst[14], t.dst[15]]),
            sport: t.sport_be,
            dport: t.dport_be,
        };
        // SAFETY: the IPv4 member starts the union, which is larger.
        unsafe { union.cast::<SockTupleV4>().write(v4) };
        size_of::<SockTupleV4>()
    } else {
        let v6 = SockTupleV6 {
            saddr: address_words(&t.src),
            daddr: address_words(&t.dst),
            sport: t.sport_be,
            dport: t.dport_be,
        };
        // SAFETY: the IPv6 member starts the union and fills it.
        unsafe { union.cast::<SockTupleV6>().write(v6) };
        size_of::<SockTupleV6>()
    } as u32;
    // SAFETY: the first `size` bytes of `tuple` are written; a returned socket is released
    // below.
    let sk = unsafe {
        bpf_skc_lookup_tcp(
            ctx.as_ptr(),
            tuple.as_mut_ptr(),
            size,
            BPF_F_CURRENT_NETNS as u64,
            0,
        )
    };
    if sk.is_null() {
        return false;
    }
    // SAFETY: `sk` is a valid socket reference from the lookup, released right after the read.
    let state = unsafe { (*sk).state };
    unsafe { bpf_sk_release(sk.cast()) };
    state != TCP_LISTEN
}

/// Encapsulates the packet to `hop.to` and sends it; counts it.
#[inline(never)]
fn forward(ctx: &XdpContext, cfg: &DataplaneConfig, flow: &Flow, vip: &VipInfo, hop: &Hop) -> u32 {
    let bytes = len(ctx) as u64;
    let (Some(me), Some(peer)) = (node(cfg.self_node), node(hop.to)) else {
        counters::vip(vip.vip_index, |c| c.fib_failures += 1);
        events::forward_failed(ctx, hop.to);
        return xdp_action::XDP_DROP;
    };
    let action = tunnel::encapsulate(ctx, flow, me, peer, hop);
    if action == tunnel::NO_ROUTE {
        counters::vip(vip.vip_index, |c| c.fib_failures += 1);
        events::forward_failed(ctx, hop.to);
        return xdp_action::XDP_DROP;
    }
    counters::vip(vip.vip_index, |c| {
        c.forwarded += 1;
        if hop.second_chance {
            c.second_chance += 1;
        }
    });
    counters::node(hop.to, |c| {
        c.packets += 1;
        c.bytes += bytes;
        c.forwarded += 1;
    });
    action
}
