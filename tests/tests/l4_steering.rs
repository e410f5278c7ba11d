//! The L4 data plane with real TCP in network namespaces (see `balancer_tests::lab`): a client
//! namespace with many source addresses, a router spreading packets over the nodes by ECMP,
//! and nodes running the XDP program with a small TCP server standing in for the router.

use balancer_tests::{
    client,
    lab::{Lab, LabSpec},
};
use std::{
    collections::{BTreeMap, HashMap},
    net::IpAddr,
    sync::{
        atomic::{AtomicBool, Ordering},
        Arc,
    },
    time::Duration,
};

fn served(results: Vec<anyhow::Result<String>>) -> Vec<String> {
    results
        .into_iter()
        .map(|r| r.expect("connection failed"))
        .collect()
}

/// R2: every connection from one client address lands on one node (the table's owner),
/// whatever node the router hands it to and on both ports; R1: only this site's nodes serve.
#[test]
fn every_connection_of_a_client_lands_on_its_owner() {
    let lab = Lab::new(LabSpec {
        nodes: 3,
        spare_nodes: 0,
        clients: 200,
    })
    .unwrap();
    let maps = lab.maps("n1").unwrap();
    let clients = lab.clients.clone();
    let mut runs = Vec::new();
    for port in [443, 443, 80] {
        runs.push(served(lab.who_serves(&clients, port).unwrap()));
    }
    for (i, client) in clients.iter().enumerate() {
        let owner = lab.table_owner(&maps, *client, 443).unwrap();
        for run in &runs {
            assert_eq!(
                run[i], owner,
                "client {client}: served by {} but its owner is {owner}",
                run[i]
            );
        }
    }
}

/// R2: clients are spread fairly. The table is fair to 0.1%; clients are a sample of it, so
/// the bound is statistical: 2048 clients over 3 nodes give a standard deviation of 3.1% of
/// the fair share, and the test allows 4 of them.
#[test]
fn shares_of_clients_are_fair() {
    let lab = Lab::new(LabSpec {
        nodes: 3,
        spare_nodes: 0,
        clients: 2048,
    })
    .unwrap();
    let by_node = served(lab.who_serves(&lab.clients, 443).unwrap());
    let mut shares: BTreeMap<String, usize> = BTreeMap::new();
    for node in by_node {
        *shares.entry(node).or_default() += 1;
    }
    let fair = lab.clients.len() as f64 / 3.0;
    eprintln!("shares of 2048 clients: {shares:?} (fair {fair:.0})");
    assert_eq!(shares.len(), 3, "{shares:?}");
    for (node, count) in &shares {
        let off = (*count as f64 - fair).abs() / fair;
        assert!(
            off < 0.125,
            "{node} serves {count} clients, {:.1}% off fair",
            off * 100.0
        );
    }
}

/// R3: when a node fails, only its clients move; everyone else stays on the same node.
#[test]
fn a_failed_node_moves_only_its_clients() {
    let mut lab = Lab::new(LabSpec {
        nodes: 3,
        spare_nodes: 0,
        clients: 200,
    })
    .unwrap();
    let clients = lab.clients.clone();
    let before = served(lab.who_serves(&clients, 443).unwrap());
    lab.fail_node("n3").unwrap();
    let after = served(lab.who_serves(&clients, 443).unwrap());
    let maps = lab.maps("n1").unwrap();
    let mut moved = 0;
    for ((client, was), now) in clients.iter().zip(&before).zip(&after) {
        assert_ne!(now, "n3", "client {client} still served by the failed node");
        assert_eq!(*now, lab.table_owner(&maps, *client, 443).unwrap());
        if was == "n3" {
            moved += 1;
        } else {
            assert_eq!(
                was, now,
                "client {client} moved from {was} to {now} though {was} is up"
            );
        }
    }
    assert!(moved > 0, "n3 had no clients to move");
}

/// A long-lived connection that streams data and checks the echo until told to stop.
struct Stream {
    client: IpAddr,
    node: String,
    worker: std::thread::JoinHandle<anyhow::Result<u64>>,
}

/// R3: a node joins while 100 long-lived connections stream data: none of them breaks
/// (no client error, no reset sent by any node), new connections of the clients that moved
/// reach the new node, and the others keep their node.
#[test]
fn a_joining_node_breaks_no_established_connection() {
    let mut lab = Lab::new(LabSpec {
        nodes: 3,
        spare_nodes: 1,
        clients: 200,
    })
    .unwrap();
    let clients = lab.clients.clone();
    let before = served(lab.who_serves(&clients, 443).unwrap());
    let stop = Arc::new(AtomicBool::new(false));
    let target = lab.vip(443);
    let opened = lab
        .client
        .run_in(|| {
            clients[..100]
                .iter()
                .map(|c| {
                    let mut s = client::connect_from(*c, target)?;
                    let node = client::served_by(&mut s)?;
                    Ok((*c, node, s))
                })
                .collect::<anyhow::Result<Vec<_>>>()
        })
        .unwrap()
        .unwrap();
    let streams: Vec<Stream> = opened
        .into_iter()
        .map(|(client, node, mut s)| {
            let stop = stop.clone();
            let worker = std::thread::spawn(move || {
                let mut rounds = 0u64;
                while !stop.load(Ordering::Relaxed) {
                    let payload: Vec<u8> = (0..512u32).map(|i| (i as u64 + rounds) as u8).collect();
                    client::echo(&mut s, &payload)?;
                    rounds += 1;
                    std::thread::sleep(Duration::from_millis(10));
                }
                Ok(rounds)
            });
            Stream {
                client,
                node,
                worker,
            }
        })
        .collect();
    std::thread::sleep(Duration::from_millis(500));
    let resets: HashMap<String, u64> = ["n1", "n2", "n3"]
        .iter()
        .map(|n| (n.to_string(), lab.resets_sent(n).unwrap()))
        .collect();

    lab.join_node("n4").unwrap();
    std::thread::sleep(Duration::from_secs(3));

    // The streams of clients whose slot moved to n4 survived through the receiving nodes'
    // connection tables and n4's second chance: both must have been at work.
    let (mut continuity, mut second_chance) = (0, 0);
    for n in ["n1", "n2", "n3", "n4"] {
        let maps = lab.maps(n).unwrap();
        for vip in 0..3 {
            let c = maps.vip_counters(vip).unwrap();
            eprintln!("{n} vip {vip}: {c:?}");
            continuity += c.continuity_hits;
            second_chance += c.second_chance;
        }
    }
    assert!(
        continuity + second_chance > 0,
        "no packet needed continuity: the test did not move any flow"
    );
    for (node, count) in &resets {
        let now = lab.resets_sent(node).unwrap();
        assert_eq!(
            now,
            *count,
            "{node} sent {} TCP resets while n4 joined",
            now - count
        );
    }
    stop.store(true, Ordering::Relaxed);
    for s in streams {
        let rounds = s
            .worker
            .join()
            .expect("stream thread")
            .unwrap_or_else(|e| panic!("stream of {} (on {}) broke: {e:#}", s.client, s.node));
        assert!(
            rounds > 50,
            "stream of {} made only {rounds} round trips",
            s.client
        );
    }
    let after = served(lab.who_serves(&clients, 443).unwrap());
    let maps = lab.maps("n4").unwrap();
    let mut to_n4 = 0;
    for ((client, was), now) in clients.iter().zip(&before).zip(&after) {
        assert_eq!(
            *now,
            lab.table_owner(&maps, *client, 443).unwrap(),
            "client {client}"
        );
        if now == "n4" {
            to_n4 += 1;
        }
        let _ = was;
    }
    assert!(to_n4 > 20, "only {to_n4} of 200 clients reach the new node");
}
