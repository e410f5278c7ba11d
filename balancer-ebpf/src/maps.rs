//! The maps, named as `balancer_common::maps` says (userspace checks the names at load).
//! Sizes here are the compile-time defaults; userspace sets `RING` and `CONN_TABLE` at load.

use crate::{next_hop::NextHop, parse::Parsed};
use aya_ebpf::bindings::{BPF_F_MMAPABLE, BPF_F_NO_PREALLOC};
use aya_ebpf::{
    btf_maps::{Array, HashMap, LruHashMap, PerCpuArray},
    macros::btf_map,
};
use balancer_common::{
    conn::{FlowEntry, FlowKey},
    directory::{MailboxEntry, MailboxName, DEFAULT_DIRECTORY_ENTRIES},
    maps::{DEFAULT_CONN_TABLE_ENTRIES, MAX_NODES, MAX_VIPS, VIP_STATS_ENTRIES},
    node::{DataplaneConfig, NodeInfo, DEFAULT_RING_SIZE, RING_SLOTS},
    router_stats::RouterCounters,
    stats::Counters,
    vip::{VipInfo, VipKey},
};

#[btf_map]
pub static VIPS: HashMap<VipKey, VipInfo, { MAX_VIPS as usize }> = HashMap::new();

#[btf_map]
pub static NODES: Array<NodeInfo, { MAX_NODES as usize }> = Array::new();

#[btf_map]
pub static RING: Array<u32, { (RING_SLOTS * DEFAULT_RING_SIZE) as usize }> = Array::new();

#[btf_map]
pub static CONFIG: Array<DataplaneConfig, 1> = Array::new();

#[btf_map]
pub static CONN_TABLE: LruHashMap<FlowKey, FlowEntry, { DEFAULT_CONN_TABLE_ENTRIES as usize }> =
    LruHashMap::new();

#[btf_map]
pub static VIP_STATS: PerCpuArray<Counters, { VIP_STATS_ENTRIES as usize }> = PerCpuArray::new();

/// Per-CPU scratch space for the parser's result (kernel-only, not pinned): keeps it off the
/// BPF stack, which is 512 bytes for the whole call chain.
#[btf_map]
pub static PARSED: PerCpuArray<Parsed, 1> = PerCpuArray::new();

/// Per-CPU cache of the next hop towards each peer, per family (kernel-only, not pinned):
/// see the `next_hop` module.
#[btf_map]
pub static NEXT_HOPS: PerCpuArray<NextHop, { 2 * MAX_NODES as usize }> = PerCpuArray::new();

#[btf_map]
pub static NODE_STATS: PerCpuArray<Counters, { MAX_NODES as usize }> = PerCpuArray::new();

/// The mailbox directory (R6): written by `balancer directory`, read by the router, never by
/// this program. Not preallocated: memory follows the number of names.
#[btf_map]
pub static DIRECTORY: HashMap<
    MailboxName,
    MailboxEntry,
    { DEFAULT_DIRECTORY_ENTRIES as usize },
    { BPF_F_NO_PREALLOC as usize },
> = HashMap::new();

/// The directory's generation (written by `balancer directory` and `balancer run`, read by the
/// router through a memory mapping; never by this program).
#[btf_map]
pub static DIRECTORY_GENERATION: Array<u64, 1, { BPF_F_MMAPABLE as usize }> = Array::new();

/// When each event kind was last reported, per CPU (kernel-only, not pinned): see `events`.
#[btf_map]
pub static EVENT_CLOCK: PerCpuArray<u64, { crate::events::KINDS as usize }> = PerCpuArray::new();

/// The L7 router's counters (written by `balancer run`, never by this program).
#[btf_map]
pub static ROUTER_STATS: Array<RouterCounters, 1> = Array::new();
