//! The XDP object, built by this crate's build script (aya-build) and embedded in the binary.

/// The eBPF ELF object holding `balancer_xdp` and `balancer_xdp_pass`.
pub static OBJECT: &[u8] = aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/balancer-ebpf"));
