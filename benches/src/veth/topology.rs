//! The topology of every case: a generator namespace and a node namespace joined by one veth
//! pair, built fresh per case and removed when dropped (namespaces and their interfaces).
//!
//! ```text
//!  generator ns                          node ns
//!  gen0 10.0.0.254/24  <--- veth --->  node0 10.0.0.1/24 (node 1 of the fixture's array)
//!  02:00:00:00:00:fe                    02:00:00:00:00:01
//!  clients 10.1.0.1-16                  VIP 10.200.0.10 (on lo, for the connection cases)
//!                                       peers 10.0.0.2, 10.0.0.3: permanent neighbours
//! ```
//!
//! The peers exist only as neighbour entries: what the node sends them leaves on node0 and
//! arrives back on gen0, where the generator side counts (and drops) it. No traffic leaves
//! the two namespaces.

use super::cpu;
use anyhow::{bail, Context as _};
use balancer_tests::{
    fixture,
    netns::{self, veth, Netns},
};
use std::{collections::HashSet, net::Ipv4Addr, process::Command};

pub const GEN_IF: &str = "gen0";
pub const NODE_IF: &str = "node0";
pub const GEN_ADDR: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 254);
/// The peers of the node (ids 2 and 3 of the fixture's configuration).
pub const PEERS: [u32; 2] = [2, 3];
/// Client addresses of the connection cases, on gen0.
pub const CONNECTION_CLIENTS: u8 = 16;

pub fn connection_client(i: u8) -> Ipv4Addr {
    Ipv4Addr::new(10, 1, 0, 1 + i % CONNECTION_CLIENTS)
}

pub struct Topology {
    pub generator: Netns,
    pub node: Netns,
}

fn mac(bytes: [u8; 6]) -> String {
    bytes.map(|b| format!("{b:02x}")).join(":")
}

impl Topology {
    pub fn new() -> anyhow::Result<Self> {
        balancer_tests::privileges::require_root_and_bpffs()?;
        let generator = Netns::new("bv-gen")?;
        let node = Netns::new("bv-node")?;
        veth(&generator, GEN_IF, &node, NODE_IF)?;
        generator.ip(&format!(
            "link set {GEN_IF} address {}",
            mac(fixture::PEER_MAC)
        ))?;
        node.ip(&format!(
            "link set {NODE_IF} address {}",
            mac(fixture::SELF_MAC)
        ))?;
        generator.ip(&format!("addr add {GEN_ADDR}/24 dev {GEN_IF}"))?;
        node.ip(&format!(
            "addr add {}/24 dev {NODE_IF}",
            fixture::underlay_v4(fixture::SELF)
        ))?;
        for peer in PEERS {
            node.ip(&format!(
                "neigh replace {} lladdr {} dev {NODE_IF} nud permanent",
                fixture::underlay_v4(peer),
                mac(fixture::node_mac(peer))
            ))?;
        }
        // Forwarding: the XDP program's route lookup needs it on node0, nftables everywhere.
        // Forwarded packets leave by the interface they came in on: no ICMP redirects. Client
        // addresses have no route back: no reverse-path filter.
        for (key, value) in [
            ("net.ipv4.ip_forward", "1"),
            ("net.ipv4.conf.all.send_redirects", "0"),
            ("net.ipv4.conf.all.rp_filter", "0"),
        ] {
            node.sysctl(key, value)?;
        }
        for (key, value) in [
            ("forwarding", "1"),
            ("send_redirects", "0"),
            ("rp_filter", "0"),
        ] {
            node.sysctl(&format!("net.ipv4.conf.{NODE_IF}.{key}"), value)?;
        }
        // The connection cases: the VIP on the node, clients on the generator side.
        node.ip(&format!("addr add {}/32 dev lo", fixture::VIP_V4))?;
        node.ip(&format!("route add 10.1.0.0/24 via {GEN_ADDR}"))?;
        for i in 0..CONNECTION_CLIENTS {
            generator.ip(&format!(
                "addr add {}/32 dev {GEN_IF}",
                connection_client(i)
            ))?;
        }
        generator.ip(&format!(
            "route add {}/32 via {}",
            fixture::VIP_V4,
            fixture::underlay_v4(fixture::SELF)
        ))?;
        Ok(Self { generator, node })
    }
}

/// Counters of an interface (`ip -s link`). On a veth end, `tx_dropped` also counts the
/// frames its peer refused (receive ring full).
#[derive(Debug, Clone, Copy, Default)]
pub struct LinkStats {
    pub rx_packets: u64,
    pub tx_packets: u64,
    pub tx_dropped: u64,
}

impl LinkStats {
    pub fn read(ns: &Netns, interface: &str) -> anyhow::Result<Self> {
        let out = ns.ip(&format!("-j -s link show dev {interface}"))?;
        let links: serde_json::Value = serde_json::from_str(&out)?;
        let stats = &links[0]["stats64"];
        let get = |dir: &str, field: &str| {
            stats[dir][field]
                .as_u64()
                .with_context(|| format!("no stats64.{dir}.{field} in `ip -j -s link`"))
        };
        Ok(Self {
            rx_packets: get("rx", "packets")?,
            tx_packets: get("tx", "packets")?,
            tx_dropped: get("tx", "dropped")?,
        })
    }

    pub fn since(&self, earlier: &Self) -> Self {
        Self {
            rx_packets: self.rx_packets - earlier.rx_packets,
            tx_packets: self.tx_packets - earlier.tx_packets,
            tx_dropped: self.tx_dropped - earlier.tx_dropped,
        }
    }
}

/// Threads of the kernel named `napi/...` (one per NAPI instance in threaded mode).
fn napi_threads() -> HashSet<(u32, String)> {
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return HashSet::new();
    };
    dir.filter_map(|e| {
        let pid: u32 = e.ok()?.file_name().to_str()?.parse().ok()?;
        let comm = std::fs::read_to_string(format!("/proc/{pid}/comm")).ok()?;
        comm.starts_with("napi/")
            .then(|| (pid, comm.trim().to_string()))
    })
    .collect()
}

/// Puts the receive processing of `interface` (its NAPI instance, which exists once an XDP
/// program is attached) in a kernel thread of its own and pins that thread to `cpu`: the
/// receiving side then runs on that core, whoever sends. Without this, a veth end's receive
/// processing runs on the sender's core. With `real_time`, the thread also gets real-time
/// priority (SCHED_FIFO 1), if the system allows it: it takes the core whenever it has
/// frames, ahead of a busy sender there.
pub fn pin_receive(ns: &Netns, interface: &str, cpu: usize, real_time: bool) -> anyhow::Result<()> {
    let before = napi_threads();
    netns::run(Command::new("ip").args([
        "netns",
        "exec",
        ns.name(),
        "sh",
        "-c",
        &format!("echo 1 > /sys/class/net/{interface}/threaded"),
    ]))
    .with_context(|| format!("threaded NAPI on {interface}"))?;
    let prefix = format!("napi/{interface}-");
    let new: Vec<u32> = napi_threads()
        .difference(&before)
        .filter(|(_, comm)| comm.starts_with(&prefix))
        .map(|(pid, _)| *pid)
        .collect();
    if new.is_empty() {
        bail!("no NAPI thread appeared for {interface}");
    }
    for pid in new {
        crate::threads::pin(pid, cpu)?;
        if real_time {
            if let Err(e) = cpu::real_time(pid) {
                eprintln!("bench: veth: {e:#} (what the thread cannot keep up with is lost)");
            }
        }
    }
    Ok(())
}
