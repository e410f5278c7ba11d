//! The project's XDP object on the node: the steering program with the fixture's
//! configuration (node 1 of an array of three), or only its XDP_PASS program (the peers'
//! cases: a veth end needs an XDP program to take frames sent as XDP frames).

use super::topology::{Topology, GEN_IF, NODE_IF};
use aya::programs::XdpMode;
use balancer_common::{
    maps as names,
    node::{active_slot, ring_select},
    stats::Counters,
};
use balancer_tests::fixture;
use balancer_user::{
    config::Config,
    dataplane::{self, sync, LoadOptions, Loaded},
};

/// Which XDP program runs on node0.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum OnNode {
    /// `balancer_xdp`, every ring slot owned by these nodes.
    Steering { owners: &'static [u32] },
    /// `balancer_xdp_pass`.
    Pass,
}

/// The loaded object; its programs stay attached while it lives.
pub struct NodeDataplane {
    node: Loaded,
    _generator: Loaded,
    steers: bool,
}

impl NodeDataplane {
    /// Loads the object in the node namespace and attaches `on_node` to node0 (native mode);
    /// with `pass_on_generator`, also attaches XDP_PASS to gen0 (so that the generator side's
    /// stack receives what node0 sends, through the same kind of receive path as node0).
    pub fn attach(
        topology: &Topology,
        on_node: OnNode,
        pass_on_generator: bool,
    ) -> anyhow::Result<Self> {
        let node = topology.node.run_in(|| -> anyhow::Result<Loaded> {
            let mut loaded = load()?;
            if let OnNode::Steering { owners } = on_node {
                sync::apply(
                    &Config::parse(fixture::CONFIG)?,
                    &mut loaded.maps,
                    sync::NewMembers::Up,
                )?;
                let ring: Vec<u32> = (0..fixture::RING_SIZE as usize)
                    .map(|i| owners[i % owners.len()])
                    .collect();
                loaded.maps.publish_ring(&ring)?;
                // Steady state: the previous ring is the active one (no second-chance lookups).
                let mut cfg = loaded.maps.config()?;
                let active = active_slot(cfg.ring_select);
                cfg.ring_select = ring_select(active, active);
                loaded.maps.set_config(cfg)?;
                loaded.program().attach(NODE_IF, XdpMode::Driver)?;
            } else {
                loaded.pass_program().attach(NODE_IF, XdpMode::Driver)?;
            }
            Ok(loaded)
        })??;
        let generator = topology.generator.run_in(|| -> anyhow::Result<Loaded> {
            let mut loaded = load()?;
            if pass_on_generator {
                loaded.pass_program().attach(GEN_IF, XdpMode::Driver)?;
            }
            Ok(loaded)
        })??;
        Ok(Self {
            node,
            _generator: generator,
            steers: on_node != OnNode::Pass,
        })
    }

    /// Whether the steering program (not XDP_PASS) runs on node0.
    pub fn steers(&self) -> bool {
        self.steers
    }

    /// What the steering program counted for each peer node, summed over CPUs.
    pub fn forwarded_to(&self, node: u32) -> anyhow::Result<Counters> {
        self.node.maps.node_counters(node)
    }

    /// What the steering program passed to this node's stack.
    pub fn passed_locally(&self) -> anyhow::Result<u64> {
        Ok(self.node.maps.node_counters(fixture::SELF)?.passed_local)
    }
}

fn load() -> anyhow::Result<Loaded> {
    dataplane::load(&LoadOptions {
        pin_dir: None,
        ring_size: fixture::RING_SIZE,
        conn_table_entries: names::DEFAULT_CONN_TABLE_ENTRIES,
        directory_entries: 1024,
    })
}
