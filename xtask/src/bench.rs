//! `cargo xtask bench`: runs the benchmark harness (`balancer-benches`) in release mode, with
//! the router as `cargo xtask build --release --pgo` builds it (see [`pgo`]).

use crate::{pgo, setup};
use std::process::Command;

/// `busy_poll`: the router's `--busy-poll` window in the L7 section (`200us`), passed on.
pub fn run(quick: bool, busy_poll: Option<String>) -> anyhow::Result<()> {
    let tools = setup::toolchain()?;
    // The profile-guided build checks for root and installs the bench's packages (its training
    // run needs them too); the bench binary comes with it, and the L7 section runs the real
    // `balancer run`.
    let balancer = pgo::build(&tools)?;
    let mut cmd = Command::new(setup::target_dir()?.join("release/bench"));
    cmd.env("PATH", setup::path_with(&tools)?)
        .arg("--balancer")
        .arg(balancer);
    if quick {
        cmd.arg("--quick");
    }
    if let Some(window) = busy_poll {
        cmd.arg("--busy-poll").arg(window);
    }
    setup::run(&mut cmd)
}
