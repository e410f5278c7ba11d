//! Maglev consistent-hash tables (Eisenbud et al., NSDI 2016), built in userspace and
//! written whole into the `RING` map.
//!
//! The table is a pure function of the site's *configured* members and their health, so every
//! node of an array computes the same table from the same configuration, in any process and
//! any build (permutations come from XXH3 of the member's name, a fixed, specified hash).
//!
//! A member is [`MemberState::Up`], [`MemberState::Down`] (failed or drained) or
//! [`MemberState::Joining`] (configured, never up yet). Building goes in two passes:
//! 1. Plain Maglev over the members that have joined (up or down): each walks its own
//!    permutation of the slots and, in turn, claims the next free one. Every member ends with
//!    `size / n` or one more slot.
//! 2. The slots of down members are refilled by the up members, which take turns in the same
//!    way over the vacated slots only.
//!
//! So a member that fails or is drained moves exactly its own slots (R3), spread evenly over
//! the others, and gets exactly those slots back when it recovers. A joining member changes
//! nothing: adding a node to the configuration leaves the table as it is, and its first
//! "up" is one change (its fair share, plus Maglev's small churn among the others, measured
//! in the tests) that every node of the array, the newcomer included, makes from the same
//! previous table. Established connections survive that change through the data plane's
//! connection table and second chance, which needs exactly that shared previous table.

use balancer_common::node::NO_NODE;
use xxhash_rust::xxh3::xxh3_64_with_seed;

#[cfg(test)]
mod tests;

const OFFSET_SEED: u64 = 0x6d61_676c_6576_3031; // "maglev01"
const SKIP_SEED: u64 = 0x6d61_676c_6576_3032; // "maglev02"

/// Where a member stands in the array.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MemberState {
    /// Receives traffic.
    Up,
    /// Has been up, now failed or drained: its slots are lent to the up members.
    Down,
    /// Configured but never up: not part of the table yet.
    Joining,
}

/// One configured member of the array.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Member {
    /// Node id written into the table (1..MAX_NODES).
    pub id: u32,
    /// Stable name: the member's permutation derives from it, not from its position.
    pub name: String,
    pub state: MemberState,
}

/// Errors in the inputs of [`build`].
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum TableError {
    #[error("table size {0} is not a prime: Maglev needs a prime size (65537 is the default)")]
    NotPrime(u32),
    #[error("table size {size} is smaller than the number of members ({members})")]
    TooSmall { size: u32, members: usize },
    #[error("two members are named {0:?}: names must be unique")]
    DuplicateName(String),
    #[error("two members have id {0}: ids must be unique")]
    DuplicateId(u32),
}

/// A member's walk through the slots: `offset, offset + skip, offset + 2 * skip, ...`.
struct Permutation {
    offset: u64,
    skip: u64,
    next: u64,
}

impl Permutation {
    fn new(name: &str, size: u64) -> Self {
        let offset = xxh3_64_with_seed(name.as_bytes(), OFFSET_SEED) % size;
        let skip = xxh3_64_with_seed(name.as_bytes(), SKIP_SEED) % (size - 1) + 1;
        Self {
            offset,
            skip,
            next: 0,
        }
    }

    /// The next slot in this member's preference order.
    fn next_slot(&mut self, size: u64) -> usize {
        let slot = (self.offset + self.next * self.skip) % size;
        self.next += 1;
        slot as usize
    }
}

/// Builds the table: `size` entries, each a member id, or [`NO_NODE`] if no member is healthy.
pub fn build(members: &[Member], size: u32) -> Result<Vec<u32>, TableError> {
    validate(members, size)?;
    let size64 = u64::from(size);
    let mut table = vec![NO_NODE; size as usize];
    if members.is_empty() {
        return Ok(table);
    }
    let joined: Vec<bool> = members
        .iter()
        .map(|m| m.state != MemberState::Joining)
        .collect();
    let up: Vec<bool> = members.iter().map(|m| m.state == MemberState::Up).collect();
    if !up.iter().any(|u| *u) {
        return Ok(table);
    }
    // Pass 1: Maglev over every member that has joined.
    let mut perms: Vec<Permutation> = members
        .iter()
        .map(|m| Permutation::new(&m.name, size64))
        .collect();
    fill(&mut table, members, &mut perms, size64, |i| joined[i]);
    // Pass 2: vacate the down members' slots, refill them from the up members.
    let down_ids: Vec<u32> = members
        .iter()
        .filter(|m| m.state == MemberState::Down)
        .map(|m| m.id)
        .collect();
    if down_ids.is_empty() {
        return Ok(table);
    }
    for slot in table.iter_mut() {
        if down_ids.contains(slot) {
            *slot = NO_NODE;
        }
    }
    let mut perms: Vec<Permutation> = members
        .iter()
        .map(|m| Permutation::new(&m.name, size64))
        .collect();
    fill(&mut table, members, &mut perms, size64, |i| up[i]);
    Ok(table)
}

/// Maglev population: eligible members take turns claiming their next preferred free slot
/// until no slot is free.
fn fill(
    table: &mut [u32],
    members: &[Member],
    perms: &mut [Permutation],
    size: u64,
    eligible: impl Fn(usize) -> bool,
) {
    let mut free = table.iter().filter(|s| **s == NO_NODE).count();
    while free > 0 {
        for (i, member) in members.iter().enumerate() {
            if !eligible(i) {
                continue;
            }
            let mut slot = perms[i].next_slot(size);
            while table[slot] != NO_NODE {
                slot = perms[i].next_slot(size);
            }
            table[slot] = member.id;
            free -= 1;
            if free == 0 {
                return;
            }
        }
    }
}

fn validate(members: &[Member], size: u32) -> Result<(), TableError> {
    if !is_prime(size) {
        return Err(TableError::NotPrime(size));
    }
    if (size as usize) < members.len() {
        return Err(TableError::TooSmall {
            size,
            members: members.len(),
        });
    }
    for (i, a) in members.iter().enumerate() {
        for b in &members[i + 1..] {
            if a.name == b.name {
                return Err(TableError::DuplicateName(a.name.clone()));
            }
            if a.id == b.id {
                return Err(TableError::DuplicateId(a.id));
            }
        }
    }
    Ok(())
}

/// Whether `n` is prime (trial division: table sizes are small).
pub fn is_prime(n: u32) -> bool {
    if n < 2 {
        return false;
    }
    let n = u64::from(n);
    (2..).take_while(|d| d * d <= n).all(|d| n % d != 0)
}
