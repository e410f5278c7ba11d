//! What privileged tests need, checked up front so a failure says what is missing.

use anyhow::{bail, Context as _};
use std::process::Command;

/// Root, and a bpffs mounted at /sys/fs/bpf (mounted here if missing). `cargo xtask test`
/// runs as root in CI; a test that cannot get these fails with the reason instead of
/// skipping silently.
pub fn require_root_and_bpffs() -> anyhow::Result<()> {
    if !nix::unistd::geteuid().is_root() {
        bail!("privileged test: needs root (CAP_BPF, CAP_NET_ADMIN, CAP_SYS_ADMIN); run `cargo xtask test` as root");
    }
    let mounted = std::fs::read_to_string("/proc/self/mounts")?
        .lines()
        .any(|l| {
            l.split_whitespace().nth(1) == Some("/sys/fs/bpf")
                && l.split_whitespace().nth(2) == Some("bpf")
        });
    if !mounted {
        let status = Command::new("mount")
            .args(["-t", "bpf", "bpf", "/sys/fs/bpf"])
            .status()
            .context("running mount")?;
        if !status.success() {
            bail!("/sys/fs/bpf is not a bpf filesystem and `mount -t bpf bpf /sys/fs/bpf` failed");
        }
    }
    Ok(())
}
