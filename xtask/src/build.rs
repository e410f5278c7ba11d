//! `cargo xtask build`.

use crate::setup;

pub fn run(release: bool) -> anyhow::Result<()> {
    let tools = setup::toolchain()?;
    let mut cmd = setup::cargo(&tools)?;
    cmd.arg("build");
    if release {
        cmd.arg("--release");
    }
    setup::run(&mut cmd)
}
