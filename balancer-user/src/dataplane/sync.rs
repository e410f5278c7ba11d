//! From the configuration and the array's health to map contents: VIP entries, node entries
//! and the Maglev table, computed here and written whole.

use super::maps::DataplaneMaps;
use crate::{
    config::{self, Config},
    maglev::{self, Member, MemberState},
};
use anyhow::{bail, Context as _};
use balancer_common::{
    maps::MAX_NODES,
    node::{
        NodeInfo, NODE_FLAG_CONFIGURED, NODE_FLAG_DRAINED, NODE_FLAG_HEALTHY, NODE_FLAG_JOINED,
    },
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
                key: VipKey {
                    addr: map_addr(vip.address),
                    port: *port,
                    proto: PROTO_TCP,
                    _pad: 0,
                },
                info: VipInfo {
                    vip_index: entries.len() as u32,
                    affinity: vip.affinity.to_map_value(),
                },
                label: format!("{}", std::net::SocketAddr::new(vip.address, *port)),
            });
        }
    }
    let mut addresses: Vec<IpAddr> = dataplane.vips.iter().map(|v| v.address).collect();
    addresses.sort();
    addresses.dedup();
    for address in addresses {
        let all_network = dataplane
            .vips
            .iter()
            .filter(|v| v.address == address)
            .all(|v| v.affinity == config::Affinity::Network);
        entries.push(VipEntry {
            key: VipKey {
                addr: map_addr(address),
                port: 0,
                proto: PROTO_TCP,
                _pad: 0,
            },
            info: VipInfo {
                vip_index: entries.len() as u32,
                affinity: if all_network {
                    AFFINITY_NETWORK
                } else {
                    AFFINITY_SINGLE
                },
            },
            label: format!("{address} (address)"),
        });
    }
    entries
}

/// How members that the NODES map has never recorded start.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NewMembers {
    /// Up: the array is being formed (first attach on a node, every member new).
    Up,
    /// Joining: they were added to a running array and take no part in the table until
    /// marked up (`balancer xdp health NODE up`), so adding them moves no client.
    Joining,
}

/// The array's members, with their state as the NODES map records it.
pub fn members(
    config: &Config,
    maps: &DataplaneMaps,
    new: NewMembers,
) -> anyhow::Result<Vec<Member>> {
    config
        .site()
        .nodes
        .iter()
        .map(|n| {
            let flags = maps.nodes.get(&n.id, 0)?.flags;
            let state = if flags & NODE_FLAG_CONFIGURED == 0 {
                match new {
                    NewMembers::Up => MemberState::Up,
                    NewMembers::Joining => MemberState::Joining,
                }
            } else if flags & NODE_FLAG_HEALTHY != 0 {
                MemberState::Up
            } else if flags & NODE_FLAG_JOINED != 0 {
                MemberState::Down
            } else {
                MemberState::Joining
            };
            Ok(Member {
                id: n.id,
                name: n.name.clone(),
                state,
            })
        })
        .collect()
}

fn node_info(node: &config::Node, state: MemberState) -> NodeInfo {
    let flags = NODE_FLAG_CONFIGURED
        | match state {
            MemberState::Up => NODE_FLAG_HEALTHY | NODE_FLAG_JOINED,
            MemberState::Down => NODE_FLAG_JOINED,
            MemberState::Joining => 0,
        };
    NodeInfo {
        underlay_v4: node.underlay_v4.map(|a| a.octets()).unwrap_or_default(),
        flags,
        underlay_v6: node.underlay_v6.map(|a| a.octets()).unwrap_or_default(),
    }
}

/// What [`apply`] changed.
#[derive(Debug, Default)]
pub struct SyncReport {
    pub vips: usize,
    pub vips_removed: usize,
    pub nodes: usize,
    pub up_nodes: usize,
    pub joining_nodes: usize,
    pub ring_changed: bool,
}

/// Brings the maps in line with `config`, keeping the recorded state of known members;
/// members never recorded start as `new` says.
pub fn apply(
    config: &Config,
    maps: &mut DataplaneMaps,
    new: NewMembers,
) -> anyhow::Result<SyncReport> {
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

    let members = members(config, maps, new)?;
    for (node, member) in config.site().nodes.iter().zip(&members) {
        let drained = maps.nodes.get(&node.id, 0)?.flags & NODE_FLAG_DRAINED;
        let mut info = node_info(node, member.state);
        info.flags |= drained;
        maps.nodes.set(node.id, info, 0)?;
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
        up_nodes: members
            .iter()
            .filter(|m| m.state == MemberState::Up)
            .count(),
        joining_nodes: members
            .iter()
            .filter(|m| m.state == MemberState::Joining)
            .count(),
        ring_changed,
    })
}

/// Who marks a node up or down.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum By {
    /// An operator (`balancer xdp health`): down drains the node, and only the operator's up
    /// brings it back.
    Operator,
    /// Health checks (`balancer run`'s peer checks): their up leaves a drained node out.
    Checks,
}

/// Marks a node of the array up or down and republishes the table. Down moves only that
/// node's slots; the first up of a joining node gives it its share. Returns whether the table
/// changed (a check's up on a drained node changes nothing).
pub fn set_health(
    config: &Config,
    maps: &mut DataplaneMaps,
    name: &str,
    up: bool,
    by: By,
) -> anyhow::Result<bool> {
    let Some(node) = config.site().nodes.iter().find(|n| n.name == name) else {
        bail!("{name:?} is not a node of site {:?}", config.site().name);
    };
    let drained = maps.nodes.get(&node.id, 0)?.flags & NODE_FLAG_DRAINED != 0;
    if up && drained && by == By::Checks {
        return Ok(false);
    }
    let drained = match by {
        By::Operator => !up,
        By::Checks => drained,
    };
    let current = members(config, maps, NewMembers::Joining)?
        .into_iter()
        .find(|m| m.id == node.id)
        .map(|m| m.state)
        .unwrap_or(MemberState::Joining);
    let state = match (up, current) {
        (true, _) => MemberState::Up,
        (false, MemberState::Joining) => MemberState::Joining,
        (false, _) => MemberState::Down,
    };
    let mut info = node_info(node, state);
    if drained {
        info.flags |= NODE_FLAG_DRAINED;
    }
    maps.nodes.set(node.id, info, 0)?;
    let members = members(config, maps, NewMembers::Joining)?;
    let table = maglev::build(&members, config.dataplane.ring_size)?;
    maps.publish_ring(&table)
}
