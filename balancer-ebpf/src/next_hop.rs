//! The next hop towards a peer node: egress interface, Ethernet addresses and path MTU.
//!
//! `bpf_fib_lookup` walks the routing table and the neighbour table: most of the cost of a
//! forwarded packet. Each CPU therefore keeps the answer per (peer, family) for
//! [`TTL_NS`] in [`NEXT_HOPS`](crate::maps::NEXT_HOPS) and checks every packet's length
//! against the cached path MTU itself. A change of route or neighbour (a new gateway MAC)
//! reaches the data plane within the TTL. Failures are not cached: an unresolved neighbour
//! is looked up again by the next packet.

use crate::{maps::NEXT_HOPS, packet::address_words};
use aya_ebpf::{
    bindings::{
        bpf_fib_lookup as FibParams, BPF_FIB_LKUP_RET_FRAG_NEEDED, BPF_FIB_LKUP_RET_SUCCESS,
        BPF_FIB_LOOKUP_OUTPUT,
    },
    helpers::{bpf_fib_lookup, bpf_ktime_get_coarse_ns},
    programs::XdpContext,
    EbpfContext,
};
use balancer_common::{encap, node::NodeInfo};
use core::mem::{size_of, MaybeUninit};

const AF_INET: u8 = 2;
const AF_INET6: u8 = 10;
/// How long a CPU trusts a lookup.
pub const TTL_NS: u64 = 1_000_000_000;

/// This CPU's last answer for one (peer, family).
#[repr(C)]
#[derive(Clone, Copy)]
pub struct NextHop {
    /// Monotonic (coarse) time after which the entry must be looked up again; 0: empty.
    pub expires_ns: u64,
    /// Interface to send on.
    pub ifindex: u32,
    /// Ingress interface the lookup was made for.
    pub ingress: u32,
    /// Largest outer packet the path takes.
    pub mtu: u32,
    pub smac: [u8; 6],
    pub dmac: [u8; 6],
    pub _pad: [u8; 4],
}

/// Why there is no next hop (the packet is dropped and counted as a fib failure).
pub struct Unreachable;

/// The next hop from `from` to `to` (node id `to_id`) for packets arriving on `ingress`,
/// from this CPU's cache or a fresh lookup.
#[inline(always)]
pub fn towards(
    ctx: &XdpContext,
    ingress: u32,
    to_id: u32,
    from: &NodeInfo,
    to: &NodeInfo,
    is_v4: bool,
) -> Result<&'static NextHop, Unreachable> {
    let slot = to_id * 2 + u32::from(!is_v4);
    let entry = NEXT_HOPS.get_ptr_mut(slot).ok_or(Unreachable)?;
    // SAFETY: this CPU's own slot of a per-CPU array, valid for the program's run.
    let entry = unsafe { &mut *entry };
    // SAFETY: plain helper call.
    let now = unsafe { bpf_ktime_get_coarse_ns() };
    if entry.expires_ns <= now || entry.ingress != ingress {
        refresh(ctx, entry, ingress, from, to, is_v4)?;
        entry.expires_ns = now + TTL_NS;
    }
    Ok(entry)
}

/// Fills `entry` from the kernel: one lookup asking for a 64 KiB packet, whose "fragmentation
/// needed" answer carries the path MTU, then one without the MTU check for the addresses.
#[inline(always)]
fn refresh(
    ctx: &XdpContext,
    entry: &mut NextHop,
    ingress: u32,
    from: &NodeInfo,
    to: &NodeInfo,
    is_v4: bool,
) -> Result<(), Unreachable> {
    let mut raw = MaybeUninit::uninit();
    let params = zeroed(&mut raw);
    params.ifindex = ingress;
    params.__bindgen_anon_1.tot_len = u16::MAX;
    let mtu = match fib_lookup(ctx, params, from, to, is_v4) {
        BPF_FIB_LKUP_RET_SUCCESS => u32::from(u16::MAX),
        BPF_FIB_LKUP_RET_FRAG_NEEDED => {
            // SAFETY: on this answer the kernel wrote `mtu_result` in the union.
            let mtu = u32::from(unsafe { params.__bindgen_anon_1.mtu_result });
            let params = zeroed(&mut raw);
            params.ifindex = ingress;
            if fib_lookup(ctx, params, from, to, is_v4) != BPF_FIB_LKUP_RET_SUCCESS {
                return Err(Unreachable);
            }
            mtu
        }
        _ => return Err(Unreachable),
    };
    // SAFETY: the last lookup succeeded, so `raw` holds its answer.
    let params = unsafe { raw.assume_init_ref() };
    entry.ifindex = params.ifindex;
    entry.ingress = ingress;
    entry.mtu = mtu;
    entry.smac = params.smac;
    entry.dmac = params.dmac;
    Ok(())
}

/// Route lookup from our underlay address to the peer's, for a packet received on the
/// ingress interface (`params.ifindex`): the egress interface (the ingress one: XDP_TX, or
/// another: redirect) and the Ethernet addresses, as the routing table says.
///
/// IPv6 asks for an output route (BPF_FIB_LOOKUP_OUTPUT: this node's own traffic; the
/// ingress interface is only a preference). IPv4 cannot: the kernel's IPv4 output lookup
/// considers only next hops through `params.ifindex` itself, so a peer routed through another
/// interface was unreachable (dropped as a fib failure, while IPv6 was redirected; seen on
/// Linux 6.18 by the XDP fixtures). IPv4 asks instead for the route of a packet arriving on
/// the ingress interface: for our own underlay source, the same route without that limit.
///
/// The kernel answers BPF_FIB_LKUP_RET_FWD_DISABLED, whatever the flags, unless IP
/// forwarding is enabled on the ingress interface (`net.ipv4.conf.<if>.forwarding`, and
/// `net.ipv6.conf.<if>.forwarding` for IPv6; userspace enables them at attach).
#[inline(always)]
fn fib_lookup(
    ctx: &XdpContext,
    params: &mut FibParams,
    from: &NodeInfo,
    to: &NodeInfo,
    is_v4: bool,
) -> u32 {
    if is_v4 {
        params.family = AF_INET;
        params.l4_protocol = encap::PROTO_IPIP;
        params.__bindgen_anon_3.ipv4_src = u32::from_ne_bytes(from.underlay_v4);
        params.__bindgen_anon_4.ipv4_dst = u32::from_ne_bytes(to.underlay_v4);
    } else {
        params.family = AF_INET6;
        params.l4_protocol = encap::PROTO_IPV6;
        params.__bindgen_anon_3.ipv6_src = address_words(&from.underlay_v6);
        params.__bindgen_anon_4.ipv6_dst = address_words(&to.underlay_v6);
    }
    let flags = if is_v4 { 0 } else { BPF_FIB_LOOKUP_OUTPUT };
    // SAFETY: `params` is a valid, fully sized `bpf_fib_lookup` on our stack.
    let ret = unsafe { bpf_fib_lookup(ctx.as_ptr(), params, size_of::<FibParams>() as i32, flags) };
    ret as u32
}

const _: () = assert!(size_of::<FibParams>() == 64);

/// Zeroes `raw` (a valid "no fields set" `bpf_fib_lookup`) as eight volatile words and hands
/// it back for use in place: `mem::zeroed()`, plain stores, or moving the zeroed value out
/// all compile to a call of a byte-loop `memset` in BPF.
#[inline(always)]
fn zeroed(raw: &mut MaybeUninit<FibParams>) -> &mut FibParams {
    let words = raw.as_mut_ptr().cast::<u64>();
    for i in 0..size_of::<FibParams>() / 8 {
        // SAFETY: eight u64 words cover the 64-byte struct.
        unsafe { core::ptr::write_volatile(words.add(i), 0) };
    }
    // SAFETY: every byte was written; all-zero is a valid value.
    unsafe { raw.assume_init_mut() }
}
