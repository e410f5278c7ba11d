//! Table-builder tests (R2, R3).

use super::*;
use balancer_common::node::DEFAULT_RING_SIZE;
use xxhash_rust::xxh3::xxh3_64;

fn members(n: u32) -> Vec<Member> {
    (1..=n)
        .map(|id| Member {
            id,
            name: format!("node-{id}"),
            state: MemberState::Up,
        })
        .collect()
}

fn shares(table: &[u32], ids: impl Iterator<Item = u32>) -> Vec<(u32, usize)> {
    ids.map(|id| (id, table.iter().filter(|s| **s == id).count()))
        .collect()
}

fn assert_fair(table: &[u32], ids: &[u32]) {
    let fair = table.len() as f64 / ids.len() as f64;
    for (id, count) in shares(table, ids.iter().copied()) {
        let off = (count as f64 - fair).abs() / fair;
        assert!(
            off <= 0.01,
            "node {id} has {count} slots, fair is {fair:.1} ({:.2}% off)",
            off * 100.0
        );
    }
}

/// R2: every node's share is within 1% of fair, for 2..=64 nodes.
#[test]
fn shares_are_within_one_percent_of_fair() {
    for n in 2..=64 {
        let m = members(n);
        let table = build(&m, DEFAULT_RING_SIZE).unwrap();
        assert!(table.iter().all(|s| *s != NO_NODE), "{n} nodes: empty slot");
        assert_fair(&table, &m.iter().map(|m| m.id).collect::<Vec<_>>());
    }
}

/// R3: a node that fails (or is drained) moves only its own slots, and the survivors stay
/// fair; when it recovers it gets exactly its slots back.
#[test]
fn failing_one_node_moves_only_its_slots() {
    for n in 2..=64 {
        let mut m = members(n);
        let before = build(&m, DEFAULT_RING_SIZE).unwrap();
        let failed = (n / 2).max(1);
        m[failed as usize - 1].state = MemberState::Down;
        let after = build(&m, DEFAULT_RING_SIZE).unwrap();
        for (slot, (b, a)) in before.iter().zip(&after).enumerate() {
            if *b != failed {
                assert_eq!(
                    b, a,
                    "{n} nodes: slot {slot} moved from {b} to {a}, only node {failed}'s may move"
                );
            } else {
                assert_ne!(
                    *a, failed,
                    "{n} nodes: slot {slot} still on the failed node"
                );
                assert_ne!(*a, NO_NODE);
            }
        }
        let survivors: Vec<u32> = m
            .iter()
            .filter(|m| m.state == MemberState::Up)
            .map(|m| m.id)
            .collect();
        if survivors.len() >= 2 {
            assert_fair(&after, &survivors);
        }
        m[failed as usize - 1].state = MemberState::Up;
        assert_eq!(
            build(&m, DEFAULT_RING_SIZE).unwrap(),
            before,
            "{n} nodes: recovery is not exact"
        );
    }
}

/// R3: configuring a new node changes nothing while it is joining; its first "up" gives it
/// its fair share, and Maglev's churn among the other nodes stays small (connections survive
/// it in the data plane; this bounds how many new flows move).
#[test]
fn a_joining_node_changes_nothing_until_it_is_up() {
    for n in [2u32, 3, 8, 16, 63] {
        let before = build(&members(n), DEFAULT_RING_SIZE).unwrap();
        let mut joining = members(n + 1);
        joining[n as usize].state = MemberState::Joining;
        assert_eq!(
            build(&joining, DEFAULT_RING_SIZE).unwrap(),
            before,
            "{n}+1 nodes: a joining node moved slots"
        );
        let after = build(&members(n + 1), DEFAULT_RING_SIZE).unwrap();
        let moved = before.iter().zip(&after).filter(|(b, a)| b != a).count();
        let to_new = after.iter().filter(|s| **s == n + 1).count();
        let churn = (moved - to_new) as f64 / before.len() as f64;
        assert!(
            churn < 0.03,
            "{n}+1 nodes: {:.2}% of slots moved between old nodes",
            churn * 100.0
        );
        assert_fair(&after, &(1..=n + 1).collect::<Vec<_>>());
    }
}

/// A member's slots do not depend on its position in the configuration.
#[test]
fn order_of_members_does_not_matter_for_health_moves() {
    let m = members(5);
    let mut reversed = m.clone();
    reversed.reverse();
    let a = build(&m, 65_521).unwrap();
    let b = build(&reversed, 65_521).unwrap();
    // Pass 1 turn order differs, so exact equality is not promised; fairness and coverage are.
    assert_fair(&a, &[1, 2, 3, 4, 5]);
    assert_fair(&b, &[1, 2, 3, 4, 5]);
}

fn digest(table: &[u32]) -> u64 {
    let bytes: Vec<u8> = table.iter().flat_map(|s| s.to_le_bytes()).collect();
    xxh3_64(&bytes)
}

fn reference_members() -> Vec<Member> {
    let mut m = members(7);
    m[2].state = MemberState::Down;
    m
}

/// The table for fixed inputs is fixed: the same digest in every process and every build, so
/// every node of an array computes identical tables.
const REFERENCE_DIGEST: u64 = 2_310_498_504_544_213_467;

#[test]
fn same_inputs_give_the_same_table_in_any_process() {
    let here = digest(&build(&reference_members(), DEFAULT_RING_SIZE).unwrap());
    if std::env::var_os("MAGLEV_PRINT_DIGEST").is_some() {
        println!("maglev-digest={here}");
        return;
    }
    // Another process: this test binary again, asked to print its digest.
    let exe = std::env::current_exe().unwrap();
    let out = std::process::Command::new(exe)
        .args([
            "--exact",
            "maglev::tests::same_inputs_give_the_same_table_in_any_process",
            "--nocapture",
        ])
        .env("MAGLEV_PRINT_DIGEST", "1")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let theirs: u64 = stdout
        .lines()
        .find_map(|l| l.strip_prefix("maglev-digest="))
        .unwrap_or_else(|| panic!("child printed no digest: {stdout}"))
        .parse()
        .unwrap();
    assert_eq!(here, theirs, "another process built a different table");
    assert_eq!(here, REFERENCE_DIGEST, "the table for the reference inputs changed: every node of an array must run a compatible build");
}

#[test]
fn bad_inputs_are_refused_with_the_reason() {
    assert_eq!(
        build(&members(2), 65_536),
        Err(TableError::NotPrime(65_536))
    );
    assert_eq!(
        build(&members(5), 3),
        Err(TableError::TooSmall {
            size: 3,
            members: 5
        })
    );
    let mut m = members(2);
    m[1].name = m[0].name.clone();
    assert_eq!(
        build(&m, 7),
        Err(TableError::DuplicateName("node-1".into()))
    );
    let mut m = members(2);
    m[1].id = 1;
    assert_eq!(build(&m, 7), Err(TableError::DuplicateId(1)));
}

#[test]
fn no_healthy_member_leaves_the_table_empty() {
    let mut m = members(3);
    m.iter_mut().for_each(|m| m.state = MemberState::Down);
    assert!(build(&m, 13).unwrap().iter().all(|s| *s == NO_NODE));
    assert!(build(&[], 13).unwrap().iter().all(|s| *s == NO_NODE));
}

#[test]
fn primes() {
    assert!(is_prime(65_537) && is_prime(2) && is_prime(13));
    assert!(!is_prime(1) && !is_prime(65_536) && !is_prime(9));
}
