//! The contract between the XDP program (`balancer-ebpf`) and userspace (`balancer-user`).
//!
//! Everything that crosses the kernel/user boundary is defined here exactly once: map names,
//! map sizes, the `#[repr(C)]` layouts of keys and values, flag bits and the affinity hash.
//! Both sides compile this crate; the `user` feature adds `aya::Pod` impls for userspace.
//!
//! Layout rules (they keep BPF hash lookups exact and `bpftool map dump` readable):
//! plain integers and byte arrays only, explicit padding fields, byte order in the field name
//! (`_be` = network byte order), and a compile-time size assertion for every struct.
//!
//! ## Layout
//! - [`maps`]: names and sizes of the pinned maps.
//! - [`vip`]: the (virtual IP, port, protocol) classifier.
//! - [`node`]: the array's nodes and the consistent-hash ring selector.
//! - [`conn`]: the connection table that keeps established flows on their node.
//! - [`stats`]: per-CPU counters.
//! - [`hash`]: the affinity hash, identical in the kernel and in userspace tools.
//! - [`encap`]: what the outer header of a forwarded packet carries.
//! - [`directory`]: the mailbox-to-site directory the router reads (R6).
//! - [`router_stats`]: the L7 router's counters.
//! - [`bench_traffic`]: the plan of the veth bench's traffic generator (bench-only programs,
//!   in a second eBPF object).
#![no_std]
#![deny(unsafe_code)]

pub mod bench_traffic;
pub mod conn;
pub mod directory;
pub mod encap;
pub mod hash;
pub mod maps;
pub mod node;
pub mod router_stats;
pub mod stats;
pub mod vip;

/// Implements `aya::Pod` for the shared plain-old-data types on the userspace side.
///
/// `aya::Pod` is an `unsafe` trait; the types it is implemented for are `#[repr(C)]`, made only
/// of integers and byte arrays, with explicit padding, so every bit pattern is valid.
#[cfg(feature = "user")]
#[allow(unsafe_code)]
mod pod {
    macro_rules! pod {
        ($($t:ty),+ $(,)?) => { $( unsafe impl aya::Pod for $t {} )+ };
    }
    pod!(
        crate::vip::VipKey,
        crate::vip::VipInfo,
        crate::node::NodeInfo,
        crate::node::DataplaneConfig,
        crate::conn::FlowKey,
        crate::conn::FlowEntry,
        crate::stats::Counters,
        crate::router_stats::RouterCounters,
        crate::directory::MailboxName,
        crate::directory::MailboxEntry,
        crate::bench_traffic::TrafficPlan,
    );
}
