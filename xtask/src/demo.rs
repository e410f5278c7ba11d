//! `cargo xtask demo`: the L4 lab (client, router, array nodes in network namespaces) with
//! real connections, checked row by row, then torn down. The lab itself is in the tests
//! crate (`balancer-tests`), shared with the network-namespace tests.

use crate::setup;
use std::path::Path;

pub fn run() -> anyhow::Result<()> {
    let tools = setup::toolchain()?;
    setup::debian_packages(setup::TEST_PACKAGES)?;
    run_with(&tools)
}

pub fn run_with(tools: &Path) -> anyhow::Result<()> {
    setup::privileged()?;
    setup::run(setup::cargo(tools)?.args(["build", "-p", "balancer-user"]))?;
    setup::run(setup::cargo(tools)?.args(["run", "-q", "-p", "balancer-tests", "--bin", "demo"]))
}
