//! From the configuration and the array's health to map contents: VIP entries, node entries
//! and the Maglev table, computed here and written whole.

use super::maps::DataplaneMaps;
use crate::{
    config::{self, Config},
    maglev::{self, Member},
};
use anyhow::{bail, Context as _};
use balancer_common::{
    maps::MAX_NODES,
    node::{NodeInfo, NODE_FLAG_CONFIGURED, NODE_FLAG_HEALTHY},
    vip::{v4_mapped, VipInfo, VipKey, AFFINITY_NETWORK, AFFINITY_SINGLE, PROTO_TCP},
};
use std::net::IpAddr;

/// One entry of the VIP map and what it stands for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VipEntry {
    pub key: VipKey,
    pub info: VipInfo,
    /// `10.200.0.10:443`, or `10.200.0.10 (address)` for the address entry.
    pub label: String,
}

/// The 16-byte map form of an address (IPv4-mapped for IPv4).
pub fn map_addr(addr: IpAddr) -> [u8; 16] {
    match addr {
        IpAddr::V4(v4) => v4_mapped(v4.octets()),
        IpAddr::V6(v6) => v6.octets(),
    }
}

/// The VIP map's entries, with stable indices: one per (address, port), then one *address
/// entry* (port 0) per address, used for fragments and malformed packets. An address entry
/// uses network affinity only if every port of the address does, else single affinity (the
/// only modes that fragments, which carry no ports, can follow).
pub fn vip_entries(dataplane: &config::Dataplane) -> Vec<VipEntry> {
    let mut entries = Vec::new();
    for vip in &dataplane.vips {
        for port in &vip.ports {
            entries.push(VipEntry {
                key: VipKey { addr: map_addr(vip.address), port: *port, proto: PROTO_TCP, _pad: 0 },
                info: VipInfo { vip_index: entries.len() as u32, affinity: vip.affinity.to_map_value() },
                label: format!("{}", std::net::SocketAddr::new(vip.address, *port)),
            });
        }
    }
    let mut addresses: Vec<IpAddr> = dataplane.vips.iter().map(|v| v.address).collect();
    addresses.dedup();
    addresses.sort();
    addresses.dedup();
    for address in addresses {
        let all_network = dataplane
            .vips
            .iter()
            .filter(|v| v.address == address)
            .all(|v| v.affinity == config::Affinity::Network);
        entries.push(VipEntry {
            key: VipKey { addr: map_addr(address), port: 0, proto: PROTO_TCP, _pad: 0 },
            info: VipInfo {
                vip_index: entries.len() as u32,
                affinity: if all_network { AFFINITY_NETWORK } else { AFFINITY_SINGLE },
            },
            label: format!("{address} (address)"),
        });
    }
    entries
}

/// The array's members with their health as the NODES map records it (new members start
/// healthy).
pub fn members(config: &Config, maps: &DataplaneMaps) -> anyhow::Result<Vec<Member>> {
    config
        .site()
        .nodes
        .iter()
        .map(|n| {
            let recorded = maps.nodes.get(&n.id, 0)?;
            let healthy = recorded.flags & NODE_FLAG_CONFIGURED == 0 || recorded.flags & NODE_FLAG_HEALTHY != 0;
            Ok(Member { id: n.id, name: n.name.clone(), healthy })
        })
        .collect()
}

fn node_info(node: &config::Node, healthy: bool) -> NodeInfo {
    NodeInfo {
        underlay_v4: node.underlay_v4.map(|a| a.octets()).unwrap_or_default(),
        flags: NODE_FLAG_CONFIGURED | if healthy { NODE_FLAG_HEALTHY } else { 0 },
        underlay_v6: node.underlay_v6.map(|a| a.octets()).unwrap_or_default(),
    }
}

/// What [`apply`] changed.
#[derive(Debug, Default)]
pub struct SyncReport {
    pub vips: usize,
    pub vips_removed: usize,
    pub nodes: usize,
    pub healthy_nodes: usize,
    pub ring_changed: bool,
}

/// Brings the maps in line with `config`, keeping recorded node health.
pub fn apply(config: &Config, maps: &mut DataplaneMaps) -> anyhow::Result<SyncReport> {
    let dp = &config.dataplane;
    if maps.ring_capacity() != dp.ring_size {
        bail!(
            "dataplane.ring_size is {} but the pinned ring holds {} entries per slot: detach \
             (`balancer xdp detach`) and attach again to change the ring size",
            dp.ring_size,
            maps.ring_capacity()
        );
    }
    let mut identity = maps.config()?;
    identity.ring_size = dp.ring_size;
    identity.hash_seed = dp.hash_seed;
    maps.set_config(identity)?;

    let members = members(config, maps)?;
    for (node, member) in config.site().nodes.iter().zip(&members) {
        maps.nodes.set(node.id, node_info(node, member.healthy), 0)?;
    }
    let configured: Vec<u32> = members.iter().map(|m| m.id).collect();
    for id in 1..MAX_NODES {
        if !configured.contains(&id) && maps.nodes.get(&id, 0)?.flags != 0 {
            maps.nodes.set(id, NodeInfo::default(), 0)?;
        }
    }
    let table = maglev::build(&members, dp.ring_size).context("building the Maglev table")?;
    let ring_changed = maps.publish_ring(&table)?;

    let entries = vip_entries(dp);
    for e in &entries {
        maps.vips.insert(e.key, e.info, 0)?;
    }
    let stale: Vec<VipKey> = maps
        .vips
        .keys()
        .filter_map(Result::ok)
        .filter(|k| !entries.iter().any(|e| e.key == *k))
        .collect();
    for key in &stale {
        maps.vips.remove(key)?;
    }

    // Last: naming this node turns steering on (until then the program passes everything).
    identity.self_node = config.this_node().id;
    identity.ring_select = maps.config()?.ring_select;
    maps.set_config(identity)?;
    Ok(SyncReport {
        vips: entries.len(),
        vips_removed: stale.len(),
        nodes: members.len(),
        healthy_nodes: members.iter().filter(|m| m.healthy).count(),
        ring_changed,
    })
}

/// Marks a node of the array healthy or not and republishes the table (only that node's
/// slots move). Returns whether the table changed.
pub fn set_health(config: &Config, maps: &mut DataplaneMaps, name: &str, healthy: bool) -> anyhow::Result<bool> {
    let Some(node) = config.site().nodes.iter().find(|n| n.name == name) else {
        bail!("{name:?} is not a node of site {:?}", config.site().name);
    };
    maps.nodes.set(node.id, node_info(node, healthy), 0)?;
    let members = members(config, maps)?;
    let table = maglev::build(&members, config.dataplane.ring_size)?;
    maps.publish_ring(&table)
}
