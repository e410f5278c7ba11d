//! Packets per second steered on the node: the XDP program (encapsulate to the owner, XDP_TX
//! back out of node0) or nftables (`dnat to jhash ip saddr mod 2` to the same two peers,
//! conntrack, forwarding out of node0), fed by the generator, counted where they come back.

use super::{
    cpu,
    dataplane::{NodeDataplane, OnNode},
    generator::{Generator, Shape, Sink},
    topology::{pin_receive, LinkStats, Topology, GEN_IF, NODE_IF, PEERS},
};
use anyhow::{bail, ensure, Context as _};
use balancer_tests::{fixture, netns::Netns};
use std::{
    io::Write as _,
    process::Stdio,
    time::{Duration, Instant},
};

/// What steers on the node.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Steerer {
    Xdp,
    Nftables,
}

impl Steerer {
    /// Sets the steerer up on the node; it runs while the returned object lives.
    fn set_up(self, topology: &Topology) -> anyhow::Result<NodeDataplane> {
        match self {
            Steerer::Xdp => {
                NodeDataplane::attach(topology, OnNode::Steering { owners: &PEERS }, false)
            }
            Steerer::Nftables => {
                nft(&topology.node, &nftables_rules())?;
                NodeDataplane::attach(topology, OnNode::Pass, false)
            }
        }
    }
}

/// One case's figures over the measured window.
#[derive(Debug)]
pub struct Steering {
    /// Frames the generator offered per second: gen0's transmitted frames and those node0's
    /// full receive ring refused.
    pub offered_pps: f64,
    /// Frames node0 received (ran through its XDP program) per second.
    pub received_pps: f64,
    /// Steered frames per second: sent back out of node0 to a peer, counted on gen0.
    pub steered_pps: f64,
    /// How busy the node's core and the generator's core were (0 to 1).
    pub node_core_busy: f64,
    pub generator_core_busy: f64,
    /// The steerer's own count over the window, per second. XDP: packets forwarded (the
    /// NODE_STATS counters); nftables: the DNAT rule's counter, which sees only the first
    /// packet of each flow (new connections tracked).
    pub own_count_pps: f64,
    /// nftables: conntrack entries at the end of the window.
    pub conntrack_entries: Option<u64>,
}

/// The nftables peer: DNAT by a hash of the client address to the two peers, as the XDP
/// program's ring does with its single-address affinity.
fn nftables_rules() -> String {
    let [a, b] = PEERS.map(fixture::underlay_v4);
    format!(
        "table ip bench {{\n  chain prerouting {{\n    type nat hook prerouting priority dstnat; policy accept;\n    \
         ip daddr {vip} tcp dport 443 counter dnat to jhash ip saddr mod 2 map {{ 0 : {a}, 1 : {b} }}\n  }}\n}}\n",
        vip = fixture::VIP_V4
    )
}

fn nft(ns: &Netns, rules: &str) -> anyhow::Result<()> {
    let mut cmd = ns.command("nft");
    cmd.args(["-f", "-"]);
    crate::provenance::command(&cmd);
    crate::provenance::record_config("nft-f-stdin.rules", rules);
    let mut child = cmd
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .context("running nft (Debian package nftables)")?;
    child
        .stdin
        .take()
        .context("nft's stdin")?
        .write_all(rules.as_bytes())?;
    let out = child.wait_with_output()?;
    if !out.status.success() {
        bail!(
            "nft -f failed: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(())
}

/// Packets the DNAT rule matched so far.
fn nft_counter(ns: &Netns) -> anyhow::Result<u64> {
    let out = balancer_tests::netns::run(ns.command("nft").args(["-j", "list", "ruleset"]))?;
    let v: serde_json::Value = serde_json::from_slice(&out.stdout)?;
    v["nftables"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|item| item["rule"]["expr"].as_array())
        .flatten()
        .find_map(|e| e["counter"]["packets"].as_u64())
        .context("no counter in the nftables ruleset")
}

/// Connections conntrack holds in `ns`.
fn conntrack_entries(ns: &Netns) -> anyhow::Result<u64> {
    let out = balancer_tests::netns::run(
        ns.command("cat")
            .arg("/proc/sys/net/netfilter/nf_conntrack_count"),
    )?;
    Ok(String::from_utf8_lossy(&out.stdout).trim().parse()?)
}

/// What the steerer says it steered so far.
fn own_count(dp: &NodeDataplane, ns: &Netns) -> anyhow::Result<u64> {
    if dp.steers() {
        PEERS
            .iter()
            .try_fold(0, |sum, peer| Ok(sum + dp.forwarded_to(*peer)?.forwarded))
    } else {
        nft_counter(ns)
    }
}

/// The counters a measurement reads at both ends of its window.
struct Snapshot {
    at: Instant,
    node0: LinkStats,
    gen0: LinkStats,
    own: u64,
    cpu: cpu::Times,
}

impl Snapshot {
    fn read(topology: &Topology, dp: &NodeDataplane) -> anyhow::Result<Self> {
        let at = Instant::now();
        let gen0 = LinkStats::read(&topology.generator, GEN_IF)?;
        let cpu = cpu::Times::now();
        Ok(Self {
            at,
            gen0,
            cpu,
            node0: LinkStats::read(&topology.node, NODE_IF)?,
            own: own_count(dp, &topology.node)?,
        })
    }
}

pub fn measure(
    steerer: Steerer,
    shape: Shape,
    warm_up: Duration,
    window: Duration,
) -> anyhow::Result<Steering> {
    let topology = Topology::new()?;
    let dp = steerer.set_up(&topology)?;
    let _sink = Sink::attach(&topology.generator, GEN_IF)?;
    let (node_core, generator_core) = if cpu::split() {
        pin_receive(&topology.node, NODE_IF, cpu::NODE_CORE, false)?;
        // The sink must not drop: it goes ahead of the generator on their core.
        pin_receive(&topology.generator, GEN_IF, cpu::GENERATOR_CORE, true)?;
        (cpu::NODE_CORE, cpu::GENERATOR_CORE)
    } else {
        (0, 0)
    };
    let frame = shape.frame(fixture::PEER_MAC, fixture::SELF_MAC, fixture::VIP_V4, 443);
    let generator = Generator::start(
        &topology.generator,
        GEN_IF,
        cpu::split().then_some(generator_core),
        shape,
        frame,
    )?;
    std::thread::sleep(warm_up);
    let start = Snapshot::read(&topology, &dp)?;
    std::thread::sleep(window);
    let end = Snapshot::read(&topology, &dp)?;
    ensure!(generator.sent() > 0, "the generator sent nothing");
    generator.stop()?;
    let secs = (end.at - start.at).as_secs_f64();
    let (node0, gen0) = (end.node0.since(&start.node0), end.gen0.since(&start.gen0));
    let steering = Steering {
        offered_pps: (gen0.tx_packets + gen0.tx_dropped) as f64 / secs,
        received_pps: node0.rx_packets as f64 / secs,
        steered_pps: gen0.rx_packets as f64 / secs,
        node_core_busy: end.cpu.busy_since(&start.cpu, node_core),
        generator_core_busy: end.cpu.busy_since(&start.cpu, generator_core),
        own_count_pps: (end.own - start.own) as f64 / secs,
        conntrack_entries: match steerer {
            Steerer::Nftables => Some(conntrack_entries(&topology.node)?),
            Steerer::Xdp => None,
        },
    };
    eprintln!(
        "bench: veth {steerer:?} {shape:?}: {:.0} pps steered ({:.0} offered, {:.0} taken), node's core {:.0}% busy",
        steering.steered_pps,
        steering.offered_pps,
        steering.received_pps,
        steering.node_core_busy * 100.0
    );
    ensure!(
        steering.steered_pps > 0.0,
        "veth {steerer:?} {shape:?}: nothing came back steered from the node ({steering:?}): the harness is broken"
    );
    Ok(steering)
}
