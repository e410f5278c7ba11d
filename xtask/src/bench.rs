//! `cargo xtask bench`: runs the benchmark harness (`balancer-benches`) in release mode.

use crate::setup;
use std::process::Command;

pub fn run(quick: bool) -> anyhow::Result<()> {
    let tools = setup::toolchain()?;
    setup::debian_packages(setup::TEST_PACKAGES)?;
    setup::debian_packages(setup::BENCH_PACKAGES)?;
    setup::privileged()?;
    // One build for both packages: the L7 section runs the real `balancer run`, found beside
    // the bench binary. Built apart, each selection unified features its own way and
    // balancer-user (and its eBPF object) was built twice.
    setup::run(setup::cargo(&tools)?.args([
        "build",
        "--release",
        "-q",
        "-p",
        "balancer-user",
        "-p",
        "balancer-benches",
        "--bins",
    ]))?;
    let mut cmd = Command::new(setup::target_dir()?.join("release/bench"));
    cmd.env("PATH", setup::path_with(&tools)?);
    if quick {
        cmd.arg("--quick");
    }
    setup::run(&mut cmd)
}
