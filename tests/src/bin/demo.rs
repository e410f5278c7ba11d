//! `cargo xtask demo`, the L4 part: an array of three nodes in network namespaces, real TCP
//! connections from 24 client addresses, a table of who served whom checked against the
//! rules of MISSION.md (R2 affinity, R3 only a failed node's clients move), then teardown.
//! Exits non-zero if any row is wrong.

use balancer_tests::lab::{Lab, LabSpec};
use std::{collections::BTreeMap, net::IpAddr, process::ExitCode};

fn main() -> ExitCode {
    match run() {
        Ok(true) => {
            println!("\nall rows as MISSION.md says");
            ExitCode::SUCCESS
        }
        Ok(false) => {
            println!("\nsome rows are wrong (marked X)");
            ExitCode::FAILURE
        }
        Err(e) => {
            eprintln!("demo: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn run() -> anyhow::Result<bool> {
    println!("building the lab: client, router (ECMP), nodes n1 n2 n3 with the XDP data plane ...");
    let mut lab = Lab::new(LabSpec {
        nodes: 3,
        spare_nodes: 0,
        clients: 24,
    })?;
    let clients = lab.clients.clone();
    let maps = lab.maps("n1")?;
    let mut ok = true;

    println!("\nR2: client IP affinity on ports 443 and 80");
    println!(
        "{:<14} {:<10} {:<10} {:<10} check",
        "client", "443 by", "80 by", "owner"
    );
    let https = lab.who_serves(&clients, 443)?;
    let http = lab.who_serves(&clients, 80)?;
    let mut before = BTreeMap::new();
    for ((client, a), b) in clients.iter().zip(https).zip(http) {
        let (a, b) = (
            a.unwrap_or_else(|e| format!("error: {e}")),
            b.unwrap_or_else(|e| format!("error: {e}")),
        );
        let owner = lab.table_owner(&maps, *client, 443)?;
        let right = a == b && a == owner;
        ok &= right;
        println!(
            "{:<14} {:<10} {:<10} {:<10} {}",
            client,
            a,
            b,
            owner,
            if right { "ok" } else { "X" }
        );
        before.insert(*client, a);
    }

    println!("\nR3: n3 fails (link down, withdrawn from ECMP, marked down on n1 and n2)");
    lab.fail_node("n3")?;
    let maps = lab.maps("n1")?;
    println!(
        "{:<14} {:<10} {:<10} {:<10} check",
        "client", "before", "now", "owner"
    );
    let after = lab.who_serves(&clients, 443)?;
    for (client, now) in clients.iter().zip(after) {
        let now = now.unwrap_or_else(|e| format!("error: {e}"));
        let was = &before[client];
        let owner = lab.table_owner(&maps, *client, 443)?;
        let right = now == owner && (was == "n3" || &now == was) && now != "n3";
        ok &= right;
        println!(
            "{:<14} {:<10} {:<10} {:<10} {}",
            client,
            was,
            now,
            owner,
            if right { "ok" } else { "X" }
        );
    }
    let moved = before.values().filter(|n| *n == "n3").count();
    println!(
        "\n{moved} clients of n3 moved; {} others stayed where they were",
        clients.len() - moved
    );
    let _: Vec<IpAddr> = clients;
    Ok(ok)
}
