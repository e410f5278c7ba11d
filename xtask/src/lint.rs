//! The lint gate of `cargo xtask test`: formatting, clippy on the workspace with warnings as
//! errors, and clippy on the eBPF crate for its own target (it is not a default member, and
//! its `no_std` code only builds for `bpfel-unknown-none`).

use crate::setup;
use std::{path::Path, process::Command};

pub fn run(tools: &Path) -> anyhow::Result<()> {
    for toolchain in ["stable", "nightly"] {
        setup::rustup_components(toolchain, &["clippy", "rustfmt"])?;
    }
    setup::run(setup::cargo(tools)?.args(["fmt", "--all", "--check"]))?;
    setup::run(setup::cargo(tools)?.args([
        "clippy",
        "--workspace",
        "--exclude",
        "balancer-ebpf",
        "--all-targets",
        "--",
        "-D",
        "warnings",
    ]))?;
    setup::run(
        Command::new("rustup")
            .args([
                "run",
                "nightly",
                "cargo",
                "clippy",
                "-p",
                "balancer-ebpf",
                "--bins",
            ])
            .args([
                "--release",
                "--target",
                "bpfel-unknown-none",
                "-Z",
                "build-std=core",
            ])
            // A directory of its own: checking must not disturb the object the build embeds.
            .args(["--target-dir", "target/lint-ebpf", "--", "-D", "warnings"])
            .env("PATH", setup::path_with(tools)?),
    )
}
