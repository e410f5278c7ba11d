//! Bringing the data plane up on this node from its configuration: load (or adopt), fill the
//! maps, attach to every configured interface, prime next hops. `balancer xdp attach` and the
//! lab both run exactly this.

use super::{attach, load, neighbours, sync, AttachedMode, LoadOptions, Loaded};
use crate::config::Config;
use anyhow::Context as _;
use balancer_common::node::{NodeInfo, NODE_FLAG_CONFIGURED};
use tracing::info;

/// What [`bring_up`] did.
#[derive(Debug)]
pub struct BringUpReport {
    pub interfaces: Vec<(String, AttachedMode)>,
    pub sync: sync::SyncReport,
    /// The verifier's count of processed instructions for the steering program.
    pub verified_instructions: Option<u32>,
}

/// Loads or adopts the data plane and attaches it. A new array forms with every member up;
/// with `join`, this node joins a running array instead: it takes the others as up and
/// itself as joining, so its table is the one the running nodes have, and it takes clients
/// only once marked up on every node. On a node attached before, the maps are adopted (and
/// members new to the config start joining) and the program is replaced in place.
pub fn bring_up(config: &Config, join: bool) -> anyhow::Result<(Loaded, BringUpReport)> {
    let dp = &config.dataplane;
    let mut loaded = load(&LoadOptions {
        pin_dir: Some(dp.pin_dir.clone()),
        ring_size: dp.ring_size,
        conn_table_entries: dp.conn_table_entries,
        directory_entries: dp.directory_entries,
    })?;
    let _writer = super::maps::writer_lock(&dp.pin_dir)?;
    let new = if loaded.adopted {
        sync::NewMembers::Joining
    } else {
        sync::NewMembers::Up
    };
    if join && !loaded.adopted {
        let me = config.this_node();
        let joining = NodeInfo {
            flags: NODE_FLAG_CONFIGURED,
            ..Default::default()
        };
        loaded.maps.nodes.set(me.id, joining, 0)?;
    }
    let sync = sync::apply(config, &mut loaded.maps, new)?;
    let mut interfaces = Vec::new();
    for interface in &dp.interfaces {
        enable_forwarding(interface, config)?;
        let mode = attach(&mut loaded, interface, dp.xdp_mode, &dp.pin_dir)?;
        interfaces.push((interface.clone(), mode));
    }
    neighbours::prime(config);
    let verified_instructions = loaded
        .program()
        .info()
        .ok()
        .and_then(|i| i.verified_instruction_count());
    Ok((
        loaded,
        BringUpReport {
            interfaces,
            sync,
            verified_instructions,
        },
    ))
}

/// `bpf_fib_lookup` answers "forwarding disabled" (and the program drops what it should
/// forward) unless IP forwarding is on for the interface, whatever the lookup flags (seen on
/// Linux 6.18). So it is switched on for the attached interfaces, per family in use.
fn enable_forwarding(interface: &str, config: &Config) -> anyhow::Result<()> {
    let me = config.this_node();
    let families = [
        ("ipv4", me.underlay_v4.is_some()),
        ("ipv6", me.underlay_v6.is_some()),
    ];
    for (family, used) in families {
        if !used {
            continue;
        }
        let path = format!("/proc/sys/net/{family}/conf/{interface}/forwarding");
        let current = std::fs::read_to_string(&path)
            .with_context(|| format!("reading {path}: does {interface} exist?"))?;
        if current.trim() != "1" {
            std::fs::write(&path, "1")
                .with_context(|| format!("enabling {family} forwarding on {interface} ({path})"))?;
            info!(
                interface,
                family, "enabled IP forwarding: the XDP program's next-hop lookup needs it"
            );
        }
    }
    Ok(())
}
