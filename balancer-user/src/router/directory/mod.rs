//! The mailbox directory (R6): a name (primary address or alias, as [`identity`] found it)
//! resolves to a mailbox: its site, its server and its version. The router only sees the
//! [`Directory`] trait, so the decision logic is tested without root. In production it is
//! [`PinnedDirectory`], the pinned BPF map that `balancer directory` writes and bpftool dumps
//! (layout in `balancer_common::directory`).
//!
//! - [`records`]: the import formats (CSV, JSON lines) and their validation.
//! - [`plan`]: what an import or a removal writes and deletes, worked out before writing.
//! - [`pinned`]: the BPF map, and the router's cache of it.
//! - [`generation`]: the counter every write bumps, which keeps that cache right.
//! - [`file`]: a directory file planned against the map (the CLI's import, `balancer run`'s
//!   `[directory] file`).
//!
//! [`identity`]: super::identity

pub mod file;
mod generation;
mod pinned;
pub mod plan;
pub mod records;

pub use pinned::PinnedDirectory;

use super::decision::Mailbox;
use ahash::AHashMap;
use records::MailboxRecord;
use std::sync::Arc;

/// Why a lookup could not be answered (not "unknown name", which is `Ok(None)`).
#[derive(Debug, thiserror::Error)]
pub enum DirectoryError {
    #[error("directory unavailable: {0}")]
    Unavailable(String),
}

/// Resolves names to mailboxes.
pub trait Directory: Send + Sync {
    /// The mailbox `name` (normalized: lowercase, trimmed) is the address or an alias of.
    fn resolve(&self, name: &str) -> Result<Option<Arc<Mailbox>>, DirectoryError>;
}

/// What one name of the directory maps to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NameEntry {
    pub mailbox: Mailbox,
    /// The name is an alias, not the mailbox's primary address.
    pub alias: bool,
}

impl NameEntry {
    /// Every name of `record` (its address, then its aliases) with its entry.
    pub fn all_of(record: &MailboxRecord) -> impl Iterator<Item = (String, NameEntry)> + '_ {
        let mailbox = Mailbox {
            address: record.address.clone(),
            site: record.site.clone(),
            server: record.server.clone(),
            version: record.version,
        };
        let primary = (
            record.address.clone(),
            NameEntry {
                mailbox: mailbox.clone(),
                alias: false,
            },
        );
        let aliases = record
            .aliases
            .iter()
            .filter(|a| **a != record.address)
            .map(move |a| {
                let entry = NameEntry {
                    mailbox: mailbox.clone(),
                    alias: true,
                };
                (a.clone(), entry)
            });
        std::iter::once(primary).chain(aliases)
    }
}

/// A directory in memory: for tests, and for a router run without the data plane.
#[derive(Debug, Default)]
pub struct MemoryDirectory {
    by_name: AHashMap<String, Arc<Mailbox>>,
}

impl MemoryDirectory {
    /// Adds a mailbox under its address and its aliases (`CONTOSO\user`, UPN, ...).
    pub fn insert(&mut self, mailbox: Mailbox, aliases: &[&str]) {
        let mailbox = Arc::new(mailbox);
        self.by_name
            .insert(mailbox.address.to_lowercase(), mailbox.clone());
        for alias in aliases {
            self.by_name.insert(alias.to_lowercase(), mailbox.clone());
        }
    }

    pub fn len(&self) -> usize {
        self.by_name.len()
    }

    pub fn is_empty(&self) -> bool {
        self.by_name.is_empty()
    }
}

impl Directory for MemoryDirectory {
    fn resolve(&self, name: &str) -> Result<Option<Arc<Mailbox>>, DirectoryError> {
        Ok(self.by_name.get(name).cloned())
    }
}

#[cfg(test)]
mod tests;
