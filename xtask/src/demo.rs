//! `cargo xtask demo` and `cargo xtask lab`: the Contoso lab of the tests crate
//! (`balancer-tests`, binary `contoso`), with `balancer run` on every node.
//! - `demo`: up, every case of MISSION.md checked with curl, node failures, down.
//! - `lab up | down | status`: the same lab, left running to explore.

use crate::setup;
use std::path::Path;

pub fn run() -> anyhow::Result<()> {
    let tools = prepare()?;
    run_with(&tools)
}

pub fn run_with(tools: &Path) -> anyhow::Result<()> {
    contoso(tools, "demo")
}

pub fn lab(action: &str) -> anyhow::Result<()> {
    let tools = prepare()?;
    contoso(&tools, action)
}

fn prepare() -> anyhow::Result<std::path::PathBuf> {
    let tools = setup::toolchain()?;
    setup::debian_packages(setup::TEST_PACKAGES)?;
    Ok(tools)
}

fn contoso(tools: &Path, action: &str) -> anyhow::Result<()> {
    setup::privileged()?;
    // `balancer` and `lab-upstream` are found beside the `contoso` binary.
    setup::run(setup::cargo(tools)?.args([
        "build",
        "-p",
        "balancer-user",
        "-p",
        "balancer-tests",
        "--bins",
    ]))?;
    setup::run(setup::cargo(tools)?.args([
        "run",
        "-q",
        "-p",
        "balancer-tests",
        "--bin",
        "contoso",
        "--",
        action,
    ]))
}
