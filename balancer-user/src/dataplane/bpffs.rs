//! Checks that the pin directory is on a BPF filesystem, and creates it.

use anyhow::{bail, Context as _};
use std::path::Path;

/// `BPF_FS_MAGIC` from linux/magic.h.
const BPF_FS_MAGIC: i64 = 0xcafe_4a11;

/// Creates `dir` (and parents) after checking that its nearest existing ancestor is on bpffs.
pub fn ensure_pin_dir(dir: &Path) -> anyhow::Result<()> {
    let existing = dir
        .ancestors()
        .find(|p| p.exists())
        .unwrap_or(Path::new("/"));
    let fs = nix::sys::statfs::statfs(existing)
        .with_context(|| format!("statfs {}", existing.display()))?;
    if fs.filesystem_type().0 as i64 != BPF_FS_MAGIC {
        bail!(
            "{} is not on a BPF filesystem, so maps cannot be pinned there; mount one with \
             `mount -t bpf bpf /sys/fs/bpf` (or set dataplane.pin_dir to a directory on bpffs)",
            existing.display()
        );
    }
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))
}
