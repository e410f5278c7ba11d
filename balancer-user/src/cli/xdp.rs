//! `balancer xdp ...`: the L4 data plane from the command line.

use anyhow::bail;
use balancer_common::{hash::FlowTuple, node::NO_NODE, vip::PROTO_TCP};
use balancer_user::{
    config::Config,
    dataplane::{self, sync, DataplaneMaps},
};
use clap::Subcommand;
use std::{net::IpAddr, path::PathBuf};

#[derive(Debug, Subcommand)]
pub enum XdpCommand {
    /// Load the XDP program, fill its maps from the config, attach it to the configured
    /// interfaces and pin everything; steering continues after this command exits. On a node
    /// attached before, the maps are adopted and the program replaced in place.
    Attach {
        #[arg(long)]
        config: PathBuf,
        /// This node joins a running array: it takes no clients (and the table stays what the
        /// other nodes have) until `balancer xdp health <this node> up` on every node.
        #[arg(long)]
        join: bool,
    },
    /// Re-apply the config to the pinned maps (VIPs, nodes, table) without reattaching; nodes
    /// new to the config start joining (no clients until marked up).
    Sync {
        #[arg(long)]
        config: PathBuf,
    },
    /// Detach from every interface and remove the pinned maps and links.
    Detach {
        #[arg(long)]
        config: PathBuf,
    },
    /// Mark a node of the array up or down; only that node's clients move (R3).
    Health {
        #[arg(long)]
        config: PathBuf,
        /// Node name, as in the config.
        node: String,
        #[arg(value_parser = ["up", "down"])]
        state: String,
    },
    /// Which node the active table gives a client (before the connection table).
    Owner {
        #[arg(long)]
        config: PathBuf,
        client: IpAddr,
        /// VIP port (and client port, for affinity "none").
        #[arg(long, default_value_t = 443)]
        port: u16,
        #[arg(long, default_value_t = 0)]
        client_port: u16,
    },
}

pub fn run(cmd: XdpCommand) -> anyhow::Result<()> {
    match cmd {
        XdpCommand::Attach { config, join } => attach(&Config::load(&config)?, join),
        XdpCommand::Sync { config } => {
            let config = Config::load(&config)?;
            let mut maps = DataplaneMaps::open_for_write(&config.dataplane.pin_dir)?;
            let report = sync::apply(&config, &mut maps, sync::NewMembers::Joining)?;
            dataplane::neighbours::prime(&config);
            println!("{report:?}");
            Ok(())
        }
        XdpCommand::Detach { config } => {
            let config = Config::load(&config)?;
            let detached = dataplane::detach(&config.dataplane.pin_dir)?;
            println!(
                "detached from: {}",
                if detached.is_empty() {
                    "nothing".into()
                } else {
                    detached.join(", ")
                }
            );
            Ok(())
        }
        XdpCommand::Health {
            config,
            node,
            state,
        } => {
            let config = Config::load(&config)?;
            let mut maps = DataplaneMaps::open_for_write(&config.dataplane.pin_dir)?;
            let changed =
                sync::set_health(&config, &mut maps, &node, state == "up", sync::By::Operator)?;
            println!(
                "{node} {state}; table {}",
                if changed { "republished" } else { "unchanged" }
            );
            Ok(())
        }
        XdpCommand::Owner {
            config,
            client,
            port,
            client_port,
        } => owner(&Config::load(&config)?, client, port, client_port),
    }
}

fn attach(config: &Config, join: bool) -> anyhow::Result<()> {
    let (_loaded, report) = dataplane::bring_up(config, join)?;
    for (interface, mode) in &report.interfaces {
        println!("{interface}: {mode:?}");
    }
    if let Some(count) = report.verified_instructions {
        println!("verified instructions: {count}");
    }
    println!("{:?}", report.sync);
    Ok(())
}

fn owner(config: &Config, client: IpAddr, port: u16, client_port: u16) -> anyhow::Result<()> {
    let maps = DataplaneMaps::open(&config.dataplane.pin_dir)?;
    let Some(vip) = config
        .dataplane
        .vips
        .iter()
        .find(|v| v.address.is_ipv4() == client.is_ipv4() && v.ports.contains(&port))
    else {
        bail!("no VIP of this family has port {port}");
    };
    let tuple = FlowTuple {
        src: sync::map_addr(client),
        dst: sync::map_addr(vip.address),
        sport_be: client_port.to_be(),
        dport_be: port.to_be(),
        proto: PROTO_TCP,
        is_v4: client.is_ipv4(),
    };
    let id = maps.ring_owner(vip.affinity.to_map_value(), &tuple)?;
    let name = config
        .site()
        .nodes
        .iter()
        .find(|n| n.id == id)
        .map(|n| n.name.as_str());
    match (id, name) {
        (NO_NODE, _) => println!("no node (table empty: no healthy node)"),
        (_, Some(name)) => println!("{name}"),
        (id, None) => println!("node id {id} (not in this config)"),
    }
    Ok(())
}
