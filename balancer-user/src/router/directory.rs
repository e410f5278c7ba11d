//! The mailbox directory (R6): a name (primary address or alias, as [`identity`] found it)
//! resolves to a mailbox: its site, its server and its version. The router only sees this
//! trait, so the decision logic is tested without root; the pinned-BPF-map implementation
//! shared with the command-line tool and bpftool is the production one.
//!
//! [`identity`]: super::identity

use super::decision::Mailbox;
use ahash::AHashMap;
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

/// A directory in memory: for tests, and for a node without a pinned directory.
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
mod tests {
    use super::*;
    use crate::router::version::Version;

    #[test]
    fn r6_addresses_and_aliases_resolve_to_one_mailbox() {
        let mut dir = MemoryDirectory::default();
        let alice = Mailbox {
            address: "alice@contoso.com".into(),
            site: "asia".into(),
            server: "mbx-asia-1".into(),
            version: Version::Exchange2007Sp1,
        };
        dir.insert(alice.clone(), &["CONTOSO\\alice", "alice@corp.contoso.com"]);
        for name in [
            "alice@contoso.com",
            "contoso\\alice",
            "alice@corp.contoso.com",
        ] {
            assert_eq!(
                dir.resolve(name).unwrap().as_deref(),
                Some(&alice),
                "R6: {name}"
            );
        }
        assert_eq!(
            dir.resolve("mallory@contoso.com").unwrap(),
            None,
            "R6: unknown names resolve to nothing"
        );
    }
}
