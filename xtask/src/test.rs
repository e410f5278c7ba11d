//! `cargo xtask test`: the lint gate ([`crate::lint`]), then every test of the workspace. The
//! privileged ones (XDP attach, network namespaces, BPF_PROG_TEST_RUN) need root; they fail
//! with the reason rather than skip.

use crate::setup;

pub fn run() -> anyhow::Result<()> {
    let tools = setup::toolchain()?;
    setup::debian_packages(setup::TEST_PACKAGES)?;
    setup::privileged()?;
    crate::lint::run(&tools)?;
    setup::run(setup::cargo(&tools)?.args(["test", "--no-fail-fast"]))?;
    crate::demo::run_with(&tools)
}
