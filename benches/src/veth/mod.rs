//! L4 throughput on a veth pair, next to peers doing the same job on the same topology.
//!
//! A generator namespace and a node namespace are joined by one veth pair ([`topology`],
//! built afresh for each case, removed after it; no traffic leaves them). Each veth end's
//! receive processing runs in a kernel thread (threaded NAPI): node0's on core 1, so that
//! everything the node does runs there, the generator side's on core 0 ([`cpu`]). Both
//! cores' busy time is reported, to show which side was the limit.
//!
//! - Packets steered per second (`l4.veth.steer_pps.*`): our own generator ([`generator`]:
//!   BPF_PROG_TEST_RUN in live-frames mode, several Mpps from core 0, far more than the node
//!   takes) sends TCP segments from random clients of 172.16.0.0/16 to the VIP. `xdp`: the
//!   project's XDP program on node0, every ring slot owned by the two other nodes, so each
//!   packet takes the forward path (IPIP encapsulation, XDP_TX back out of node0). `nftables`:
//!   XDP_PASS on node0, then `dnat to jhash ip saddr mod 2` to the same two nodes (conntrack,
//!   routing, forwarding back out of node0). Steered packets are counted where they arrive,
//!   on gen0 (`ip -s link`), where an XDP program at real-time priority drops them. Two
//!   shapes: `syn` (SYNs, each of a new flow: per-flow state is made for every packet) and
//!   `ack` (ACKs of 65,536 flows the steerer already knows).
//! - New TCP connections per second (`l4.veth.new_connections_per_s`, and the node's CPU
//!   time per connection): one client thread on core 0 keeps 64 connections going, each
//!   connect to the VIP, read until the server closes, close ([`connections`]). `xdp`: the
//!   XDP program owns every slot and passes them to a listener on the VIP in the node's
//!   stack. `haproxy`: HAProxy (`mode tcp`, `balance source`, one thread) on the VIP relays
//!   each to one of two backends. Every server accepts and closes at once.

mod connections;
mod cpu;
mod dataplane;
mod generator;
mod steer;
mod topology;

use crate::report::Results;
use connections::Front;
use generator::Shape;
use std::time::Duration;
use steer::Steerer;

fn percent(x: f64) -> String {
    format!("{:.0}%", x * 100.0)
}

pub fn run(results: &mut Results, quick: bool) -> anyhow::Result<()> {
    let (warm_up, window) = if quick {
        (Duration::from_millis(200), Duration::from_secs(1))
    } else {
        (Duration::from_secs(1), Duration::from_secs(5))
    };
    for (shape, name, what) in [
        (
            Shape::NewFlows,
            "syn",
            "SYNs, each of a new flow (random client address and port)",
        ),
        (
            Shape::Established,
            "ack",
            "ACKs of 65,536 known flows (one per client address)",
        ),
    ] {
        let xdp = steer::measure(Steerer::Xdp, shape, warm_up, window)?;
        let nft = steer::measure(Steerer::Nftables, shape, warm_up, window)?;
        results.compare(
            &format!("l4.veth.steer_pps.{name}"),
            "pps",
            xdp.steered_pps,
            "nftables",
            nft.steered_pps,
            &format!(
                "{what} to the VIP, forwarded to 2 other nodes (XDP: IPIP + XDP_TX; nftables: \
                 jhash DNAT, conntrack, forwarding); counted back on the generator's veth; \
                 node's core busy {} / {}; higher is better",
                percent(xdp.node_core_busy),
                percent(nft.node_core_busy)
            ),
        );
        for (steerer, m, own) in [
            ("xdp", &xdp, "the program's forwarded counters"),
            (
                "nftables",
                &nft,
                "new flows DNATed (conntrack entries made)",
            ),
        ] {
            results.figure(
                &format!("l4.veth.steer_pps.{name}.{steerer}.offered"),
                "pps",
                m.offered_pps,
                &format!(
                    "what the generator sent (its core busy {}); the node took {:.0} pps; {own}: \
                     {:.0} per s{}",
                    percent(m.generator_core_busy),
                    m.received_pps,
                    m.own_count_pps,
                    m.conntrack_entries
                        .map(|n| format!("; conntrack entries at the end: {n}"))
                        .unwrap_or_default()
                ),
            );
        }
    }
    let xdp = connections::measure(Front::Xdp, warm_up, window)?;
    let haproxy = connections::measure(Front::Haproxy, warm_up, window)?;
    let how = "a client thread (core 0, 64 connections in progress) connects to the VIP, reads \
               until the server closes, closes; XDP passes them to a listener on the VIP, \
               HAProxy (mode tcp, balance source, 1 thread) relays to 2 backends; all servers \
               accept and close; the node's receive processing and servers on core 1";
    results.compare(
        "l4.veth.new_connections_per_s",
        "conn/s",
        xdp.per_second,
        "haproxy",
        haproxy.per_second,
        &format!(
            "{how}; busy: node's core {} / {}, clients' core {} / {}; failed {} / {}; higher \
             is better",
            percent(xdp.node_core_busy),
            percent(haproxy.node_core_busy),
            percent(xdp.client_core_busy),
            percent(haproxy.client_core_busy),
            xdp.failed,
            haproxy.failed
        ),
    );
    results.compare(
        "l4.veth.node_cpu_per_connection",
        "us",
        xdp.node_cpu_us,
        "haproxy",
        haproxy.node_cpu_us,
        "time of the node's core per completed connection over the same runs (its receive \
         processing, XDP, TCP, servers or HAProxy); lower is better",
    );
    Ok(())
}
