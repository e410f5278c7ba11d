//! Builds the XDP object (`balancer-ebpf`) for `bpfel-unknown-none` with the nightly
//! toolchain and bpf-linker, and leaves it in `OUT_DIR` for `include_bytes_aligned!`.
//! `cargo xtask build` installs what this needs on a fresh machine.
use anyhow::Context as _;

fn main() -> anyhow::Result<()> {
    let ebpf = aya_build::Package {
        name: "balancer-ebpf",
        root_dir: concat!(env!("CARGO_MANIFEST_DIR"), "/../balancer-ebpf"),
        ..Default::default()
    };
    aya_build::build_ebpf([ebpf], aya_build::Toolchain::default()).context(
        "building the XDP program (run `cargo xtask build` to install bpf-linker and rust-src)",
    )
}
