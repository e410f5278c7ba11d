//! Builds the XDP object (`balancer-ebpf`) for `bpfel-unknown-none` with the nightly
//! toolchain and bpf-linker, marks its text fields for bpftool (see `build/btf_text.rs`), and
//! leaves it in `OUT_DIR` for `include_bytes_aligned!`. aya-build builds every binary of the
//! package: the bench's traffic programs (`bench-traffic`) land in `OUT_DIR` beside it.
//! `cargo xtask build` installs what this needs on a fresh machine.
use anyhow::Context as _;
use std::path::PathBuf;

#[path = "build/btf_text.rs"]
mod btf_text;

fn main() -> anyhow::Result<()> {
    let ebpf = aya_build::Package {
        name: "balancer-ebpf",
        root_dir: concat!(env!("CARGO_MANIFEST_DIR"), "/../balancer-ebpf"),
        ..Default::default()
    };
    aya_build::build_ebpf([ebpf], aya_build::Toolchain::default()).context(
        "building the XDP program (run `cargo xtask build` to install bpf-linker and rust-src)",
    )?;
    let object = PathBuf::from(std::env::var("OUT_DIR")?).join("balancer-ebpf");
    let elf = std::fs::read(&object).with_context(|| format!("reading {}", object.display()))?;
    let marked = btf_text::mark_text_fields(&elf, balancer_common::directory::TEXT_FIELDS)?;
    std::fs::write(&object, marked).with_context(|| format!("writing {}", object.display()))?;
    println!("cargo::rerun-if-changed=build/btf_text.rs");
    Ok(())
}
