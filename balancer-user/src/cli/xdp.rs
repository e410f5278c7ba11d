//! `balancer xdp ...`: the L4 data plane from the command line.

use anyhow::{bail, Context as _};
use balancer_common::{
    hash::FlowTuple,
    node::{active_slot, NO_NODE},
    stats::Counters,
    vip::PROTO_TCP,
};
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
    /// The array at a glance: each node's state and share of the active table, the VIPs, the
    /// directory's size.
    Status {
        #[arg(long)]
        config: PathBuf,
    },
    /// Per-VIP and per-node counters, summed over CPUs.
    Stats {
        #[arg(long)]
        config: PathBuf,
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
            let changed = sync::set_health(&config, &mut maps, &node, state == "up")?;
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
        XdpCommand::Stats { config } => stats(&Config::load(&config)?),
        XdpCommand::Status { config } => status(&Config::load(&config)?),
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

fn status(config: &Config) -> anyhow::Result<()> {
    use balancer_common::node::{NODE_FLAG_HEALTHY, NODE_FLAG_JOINED};
    let maps = DataplaneMaps::open(&config.dataplane.pin_dir)?;
    let cfg = maps.config().context("reading CONFIG")?;
    let ring_size = config.dataplane.ring_size;
    let table = maps.ring_table(active_slot(cfg.ring_select), ring_size)?;
    println!(
        "node {} of site {}; table of {ring_size} slots",
        config.node.name, config.node.site
    );
    println!("{:<16} {:>4} {:<8} {:>8}", "node", "id", "state", "share");
    for n in &config.site().nodes {
        let flags = maps.nodes.get(&n.id, 0)?.flags;
        let state = match (
            flags & NODE_FLAG_HEALTHY != 0,
            flags & NODE_FLAG_JOINED != 0,
        ) {
            (true, _) => "up",
            (false, true) => "down",
            (false, false) => "joining",
        };
        let slots = table.iter().filter(|&&owner| owner == n.id).count();
        let share = 100.0 * slots as f64 / f64::from(ring_size);
        println!("{:<16} {:>4} {:<8} {:>7.2}%", n.name, n.id, state, share);
    }
    for e in sync::vip_entries(&config.dataplane) {
        println!("vip {}", e.label);
    }
    match balancer_user::router::directory::PinnedDirectory::open(&config.dataplane.pin_dir) {
        Ok(d) => println!(
            "directory: {} names (capacity {})",
            d.count()?,
            d.capacity()
        ),
        Err(e) => println!("directory: {e:#}"),
    }
    Ok(())
}

fn stats(config: &Config) -> anyhow::Result<()> {
    let maps = DataplaneMaps::open(&config.dataplane.pin_dir)?;
    let cfg = maps.config().context("reading CONFIG")?;
    println!(
        "node {} active ring slot {}",
        cfg.self_node,
        active_slot(cfg.ring_select)
    );
    println!("{:<28} {}", "vip", header());
    for e in sync::vip_entries(&config.dataplane) {
        println!(
            "{:<28} {}",
            e.label,
            row(&maps.vip_counters(e.info.vip_index)?)
        );
    }
    println!(
        "{:<28} {}",
        "unattributed",
        row(&maps.vip_counters(balancer_common::maps::UNATTRIBUTED_STATS_INDEX)?)
    );
    println!("{:<28} {}", "node", header());
    for n in &config.site().nodes {
        println!("{:<28} {}", n.name, row(&maps.node_counters(n.id)?));
    }
    Ok(())
}

fn header() -> String {
    format!(
        "{:>10} {:>12} {:>10} {:>10} {:>8} {:>9} {:>10} {:>8} {:>6}",
        "packets",
        "bytes",
        "local",
        "forwarded",
        "decap",
        "malformed",
        "continuity",
        "2nd-ch",
        "fib"
    )
}

fn row(c: &Counters) -> String {
    format!(
        "{:>10} {:>12} {:>10} {:>10} {:>8} {:>9} {:>10} {:>8} {:>6}",
        c.packets,
        c.bytes,
        c.passed_local,
        c.forwarded,
        c.decapsulated,
        c.dropped_malformed,
        c.continuity_hits,
        c.second_chance,
        c.fib_failures
    )
}
