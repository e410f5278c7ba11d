//! The eBPF objects, built by this crate's build script (aya-build, which builds every binary
//! of the `balancer-ebpf` package) and embedded in the binary.

/// The eBPF ELF object holding `balancer_xdp` and `balancer_xdp_pass`.
pub static OBJECT: &[u8] = aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/balancer-ebpf"));

/// Bench-only: the veth bench's traffic generator and sink (`bench_generator`, `bench_sink`;
/// see `balancer_common::bench_traffic`), the package's second binary. Built by the same step
/// because only this crate's build script builds eBPF objects; `balancer` never refers to it,
/// so the linker leaves it out of that binary.
pub static BENCH_TRAFFIC_OBJECT: &[u8] =
    aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/bench-traffic"));
