//! `cargo xtask bench`: runs the benchmark harness (`balancer-benches`) in release mode.

use crate::setup;

pub fn run(quick: bool) -> anyhow::Result<()> {
    let tools = setup::toolchain()?;
    setup::debian_packages(setup::TEST_PACKAGES)?;
    setup::debian_packages(setup::BENCH_PACKAGES)?;
    setup::privileged()?;
    // The L7 section runs the real `balancer run`, found beside the bench binary.
    setup::run(setup::cargo(&tools)?.args(["build", "--release", "-q", "-p", "balancer-user"]))?;
    let mut cmd = setup::cargo(&tools)?;
    cmd.args([
        "run",
        "--release",
        "-q",
        "-p",
        "balancer-benches",
        "--bin",
        "bench",
        "--",
    ]);
    if quick {
        cmd.arg("--quick");
    }
    setup::run(&mut cmd)
}
