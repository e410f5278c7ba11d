//! Which node of a site gets a request (R14): the same node for a mailbox while it is up
//! (rendezvous hashing: removing a node moves only its mailboxes), or round robin.

use std::sync::atomic::{AtomicUsize, Ordering};
use xxhash_rust::xxh3::Xxh3;

/// The site's node indices in the order to try them: rendezvous order for `mailbox`.
pub fn sticky_order(nodes: &[&str], mailbox: &str) -> Vec<usize> {
    let mut scored: Vec<(u64, usize)> = nodes
        .iter()
        .enumerate()
        .map(|(i, node)| {
            // Streaming hash of mailbox, NUL, node: no allocation per node and request.
            let mut h = Xxh3::new();
            h.update(mailbox.as_bytes());
            h.update(&[0]);
            h.update(node.as_bytes());
            (h.digest(), i)
        })
        .collect();
    scored.sort_unstable_by(|a, b| b.cmp(a));
    scored.into_iter().map(|(_, i)| i).collect()
}

/// Round robin over `n` nodes: each call starts one further.
#[derive(Debug, Default)]
pub struct RoundRobin(AtomicUsize);

impl RoundRobin {
    pub fn order(&self, n: usize) -> Vec<usize> {
        if n == 0 {
            return Vec::new();
        }
        let start = self.0.fetch_add(1, Ordering::Relaxed) % n;
        (0..n).map(|i| (start + i) % n).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn r14_sticky_order_is_stable_and_minimal() {
        let nodes = ["cas-1", "cas-2", "cas-3"];
        let first: Vec<usize> = (0..300)
            .map(|i| sticky_order(&nodes, &format!("user{i}@contoso.com"))[0])
            .collect();
        assert_eq!(
            first,
            (0..300)
                .map(|i| sticky_order(&nodes, &format!("user{i}@contoso.com"))[0])
                .collect::<Vec<_>>(),
            "R14: the same node every time"
        );
        for n in 0..3 {
            let share = first.iter().filter(|f| **f == n).count();
            assert!(
                (60..=140).contains(&share),
                "node {n} sticks {share} of 300 mailboxes"
            );
        }
        // Without cas-2, mailboxes of cas-1 and cas-3 stay where they were.
        let without = ["cas-1", "cas-3"];
        for i in 0..300 {
            let mailbox = format!("user{i}@contoso.com");
            let before = nodes[sticky_order(&nodes, &mailbox)[0]];
            let after = without[sticky_order(&without, &mailbox)[0]];
            if before != "cas-2" {
                assert_eq!(before, after, "{mailbox} moved though its node stayed");
            }
        }
    }

    #[test]
    fn r14_round_robin_spreads() {
        let rr = RoundRobin::default();
        let firsts: Vec<usize> = (0..6).map(|_| rr.order(3)[0]).collect();
        assert_eq!(firsts, vec![0, 1, 2, 0, 1, 2]);
        assert!(rr.order(0).is_empty());
    }
}
