//! `cargo xtask build [--release [--pgo]]`.

use crate::{pgo, setup};

pub fn run(release: bool, profile_guided: bool) -> anyhow::Result<()> {
    let tools = setup::toolchain()?;
    if profile_guided {
        pgo::build(&tools)?;
        // The rest of the workspace, as a plain release build would.
    }
    let mut cmd = setup::cargo(&tools)?;
    cmd.arg("build");
    if release {
        cmd.arg("--release");
    }
    setup::run(&mut cmd)
}
