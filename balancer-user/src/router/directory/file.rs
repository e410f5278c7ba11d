//! A directory file (CSV or JSON lines) planned against the pinned directory: what
//! `balancer directory import` writes, and what `balancer run` imports at start and at every
//! reload when the config names the file (`[directory] file`), so that a node is rebuilt from
//! its config and the directory alone (R18).

use super::{
    plan::{self, Mode, Plan},
    records::{self, Format},
    PinnedDirectory,
};
use anyhow::Context as _;
use std::path::Path;

/// A planned import: nothing is written until [`PinnedDirectory::apply`].
#[derive(Debug)]
pub struct PlannedImport {
    /// Mailboxes in the file.
    pub mailboxes: usize,
    pub plan: Plan,
}

/// Reads and validates every record of the file (`format` guessed if `None`).
pub fn read(path: &Path, format: Option<Format>) -> anyhow::Result<Vec<records::MailboxRecord>> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    let format = format.unwrap_or_else(|| Format::detect(&text));
    records::parse(&text, format)
        .with_context(|| format!("{}: nothing was imported", path.display()))
}

/// Reads and validates the whole file (`format` guessed if `None`) and works out what importing
/// it into `directory` writes and deletes; any error names the file, the line and the field.
pub fn plan_import(
    path: &Path,
    format: Option<Format>,
    directory: &PinnedDirectory,
    mode: Mode,
) -> anyhow::Result<PlannedImport> {
    let records = read(path, format)?;
    let plan = plan::import(&directory.entries()?, &records, mode, directory.capacity())
        .with_context(|| format!("{}: nothing was imported", path.display()))?;
    Ok(PlannedImport {
        mailboxes: records.len(),
        plan,
    })
}
