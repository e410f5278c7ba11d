//! `cargo xtask build --release --pgo`: the `balancer` binary built with profile-guided
//! optimisation, as rustc and CPython ship theirs. An instrumented build (`-Cprofile-generate`)
//! carries the L7 bench's loads for a few seconds each (`bench --train`, in a namespace of its
//! own, loopback only: it needs root), `llvm-profdata` (rustup's `llvm-tools`, the same LLVM as
//! rustc) merges what it counted, and the release build is made again with the profile
//! (`-Cprofile-use`), which tells LLVM which branches are taken and which calls are hot.
//!
//! Each build has a target directory of its own under `<target>/pgo/`, so that the plain
//! release build in `<target>/release` is left as it is.

use crate::setup;
use anyhow::Context as _;
use std::{
    path::{Path, PathBuf},
    process::Command,
};

/// Builds the profile-guided `balancer`; returns its path.
pub fn build(tools: &Path) -> anyhow::Result<PathBuf> {
    setup::privileged()?;
    setup::debian_packages(setup::TEST_PACKAGES)?;
    setup::debian_packages(setup::BENCH_PACKAGES)?;
    let sysroot =
        PathBuf::from(setup::output(Command::new("rustc").args(["--print", "sysroot"]))?.trim());
    let toolchain = sysroot
        .file_name()
        .context("rustc's sysroot has no name")?
        .to_string_lossy()
        .into_owned();
    setup::rustup_components(&toolchain, &["llvm-tools"])?;
    let pgo = setup::target_dir()?.join("pgo");
    let profiles = pgo.join("profiles");

    setup::say("profile-guided build: the instrumented router");
    let instrumented = pgo.join("instrumented");
    setup::run(release_build(tools, &instrumented)?.env(
        "RUSTFLAGS",
        format!("-Cprofile-generate={}", profiles.display()),
    ))?;
    // The build scripts were instrumented too (and an earlier run's profile may be there):
    // only this router's profile is wanted.
    let _ = std::fs::remove_dir_all(&profiles);
    std::fs::create_dir_all(&profiles)?;
    setup::say("profile-guided build: the training run (the L7 bench's loads, a few seconds each)");
    setup::run(setup::cargo(tools)?.args([
        "build",
        "--release",
        "-q",
        "-p",
        "balancer-benches",
        "--bin",
        "bench",
    ]))?;
    setup::run(
        Command::new(setup::target_dir()?.join("release/bench"))
            .env("PATH", setup::path_with(tools)?)
            .env("LLVM_PROFILE_FILE", profiles.join("balancer-%p.profraw"))
            .arg("--train")
            .arg(instrumented.join("release/balancer")),
    )?;
    let profile = pgo.join("balancer.profdata");
    let profdata = sysroot.join(format!("lib/rustlib/{}/bin/llvm-profdata", host(&sysroot)?));
    let raw: Vec<PathBuf> = std::fs::read_dir(&profiles)?
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|e| e == "profraw"))
        .collect();
    anyhow::ensure!(
        !raw.is_empty(),
        "the training run left no profile in {}",
        profiles.display()
    );
    setup::run(
        Command::new(&profdata)
            .arg("merge")
            .arg("-o")
            .arg(&profile)
            .args(&raw),
    )?;

    setup::say("profile-guided build: the optimised router");
    let optimised = pgo.join("optimised");
    setup::run(
        release_build(tools, &optimised)?
            .env("RUSTFLAGS", format!("-Cprofile-use={}", profile.display())),
    )?;
    let binary = optimised.join("release/balancer");
    setup::say(&format!("profile-guided build: {}", binary.display()));
    Ok(binary)
}

/// `cargo build --release` of the `balancer` binary into `target_dir`.
fn release_build(tools: &Path, target_dir: &Path) -> anyhow::Result<Command> {
    let mut cmd = setup::cargo(tools)?;
    cmd.args([
        "build",
        "--release",
        "-q",
        "-p",
        "balancer-user",
        "--bin",
        "balancer",
    ])
    .arg("--target-dir")
    .arg(target_dir);
    Ok(cmd)
}

/// The host triple of the toolchain at `sysroot` (the directory of its LLVM tools).
fn host(sysroot: &Path) -> anyhow::Result<String> {
    let version = setup::output(Command::new(sysroot.join("bin/rustc")).arg("-vV"))?;
    version
        .lines()
        .find_map(|l| l.strip_prefix("host:"))
        .map(|h| h.trim().to_string())
        .context("no host in `rustc -vV`")
}
