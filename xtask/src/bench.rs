//! `cargo xtask bench`: runs the benchmark harness (`balancer-benches`) in release mode, with
//! the router as `cargo xtask build --release --pgo` builds it (see [`pgo`]).

use crate::{pgo, setup};
use std::process::Command;

pub fn run(quick: bool) -> anyhow::Result<()> {
    let tools = setup::toolchain()?;
    setup::debian_packages(setup::TEST_PACKAGES)?;
    setup::debian_packages(setup::BENCH_PACKAGES)?;
    setup::privileged()?;
    // The bench binary comes with it; the L7 section runs the real `balancer run`.
    let balancer = pgo::build(&tools)?;
    let mut cmd = Command::new(setup::target_dir()?.join("release/bench"));
    cmd.env("PATH", setup::path_with(&tools)?)
        .arg("--balancer")
        .arg(balancer);
    if quick {
        cmd.arg("--quick");
    }
    setup::run(&mut cmd)
}
