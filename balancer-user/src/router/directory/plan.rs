//! What a change to the directory writes and deletes, worked out before anything is written,
//! from the current names and the records. Writes come before deletes, so a reader never
//! misses a name that stays.

use super::records::MailboxRecord;
use super::NameEntry;
use std::collections::{BTreeMap, BTreeSet};

/// How an import treats the names already in the directory.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// The records' mailboxes are added or replaced; other mailboxes stay.
    Merge,
    /// The directory becomes exactly the records.
    Replace,
}

/// Counts of names (addresses and aliases) by what happens to them.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Summary {
    pub added: usize,
    pub changed: usize,
    pub unchanged: usize,
    pub removed: usize,
}

impl std::fmt::Display for Summary {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} added, {} changed, {} unchanged, {} removed (names: addresses and aliases)",
            self.added, self.changed, self.unchanged, self.removed
        )
    }
}

/// The names to write and to delete.
#[derive(Debug, Default)]
pub struct Plan {
    pub writes: Vec<(String, NameEntry)>,
    pub deletes: Vec<String>,
    pub summary: Summary,
}

/// Why records cannot be applied.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum PlanError {
    #[error("{name} is given to both {first} and {second}")]
    Claimed {
        name: String,
        first: String,
        second: String,
    },
    #[error("{name} is the address of another mailbox; remove that mailbox first")]
    TakesAddress { name: String },
    #[error("the directory would hold {needed} names, its capacity is {capacity}")]
    Full { needed: usize, capacity: usize },
}

/// Plans writing `records` over `current` (name -> entry).
pub fn import(
    current: &BTreeMap<String, NameEntry>,
    records: &[MailboxRecord],
    mode: Mode,
    capacity: usize,
) -> Result<Plan, PlanError> {
    let mut desired: BTreeMap<String, NameEntry> = BTreeMap::new();
    for record in records {
        for (name, entry) in NameEntry::all_of(record) {
            if let Some(other) = desired
                .get(&name)
                .filter(|o| o.mailbox.address != record.address)
            {
                return Err(PlanError::Claimed {
                    name,
                    first: other.mailbox.address.clone(),
                    second: record.address.clone(),
                });
            }
            desired.insert(name, entry);
        }
    }
    let touched: BTreeSet<&str> = records.iter().map(|r| r.address.as_str()).collect();
    let mut plan = Plan::default();
    for (name, entry) in &desired {
        match current.get(name) {
            Some(old) if old == entry => plan.summary.unchanged += 1,
            Some(old) => {
                let taken = !old.alias && !touched.contains(old.mailbox.address.as_str());
                if taken && old.mailbox.address != entry.mailbox.address {
                    return Err(PlanError::TakesAddress { name: name.clone() });
                }
                plan.summary.changed += 1;
                plan.writes.push((name.clone(), entry.clone()));
            }
            None => {
                plan.summary.added += 1;
                plan.writes.push((name.clone(), entry.clone()));
            }
        }
    }
    for (name, old) in current {
        let stale = match mode {
            Mode::Replace => true,
            // Old aliases of a mailbox the records replace.
            Mode::Merge => touched.contains(old.mailbox.address.as_str()),
        };
        if stale && !desired.contains_key(name) {
            plan.deletes.push(name.clone());
        }
    }
    plan.summary.removed = plan.deletes.len();
    let needed = current.len() + plan.summary.added;
    if needed > capacity {
        return Err(PlanError::Full { needed, capacity });
    }
    Ok(plan)
}

/// Plans removing the mailbox that `name` (its address or an alias) belongs to, with all its
/// names. `None` if no mailbox has that name.
pub fn remove(current: &BTreeMap<String, NameEntry>, name: &str) -> Option<Plan> {
    let address = &current.get(name)?.mailbox.address;
    let deletes: Vec<String> = current
        .iter()
        .filter(|(_, e)| &e.mailbox.address == address)
        .map(|(n, _)| n.clone())
        .collect();
    Some(Plan {
        summary: Summary {
            removed: deletes.len(),
            ..Summary::default()
        },
        writes: Vec::new(),
        deletes,
    })
}

#[cfg(test)]
mod tests;
