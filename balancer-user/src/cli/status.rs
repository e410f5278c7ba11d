//! `balancer status` and `balancer stats [--watch]`: the node at a glance, read from the pinned
//! maps (the data plane's counters, the table, the directory, and the router's counters that
//! `balancer run` publishes).

use anyhow::Context as _;
use balancer_common::{
    node::{active_slot, NODE_FLAG_DRAINED, NODE_FLAG_HEALTHY, NODE_FLAG_JOINED},
    router_stats::RouterCounters,
    stats::Counters,
};
use balancer_user::{
    config::Config,
    dataplane::{sync, DataplaneMaps},
    router::{directory::PinnedDirectory, metrics::PinnedRouterStats},
};
use std::time::{Duration, Instant, SystemTime};

/// The array (each node's state and share of the active table), the VIPs, the directory's
/// size, and the router.
pub fn status(config: &Config) -> anyhow::Result<()> {
    let pin_dir = &config.dataplane.pin_dir;
    let maps = DataplaneMaps::open(pin_dir)?;
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
            (false, _) if flags & NODE_FLAG_DRAINED != 0 => "drained",
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
    match PinnedDirectory::open(pin_dir) {
        Ok(d) => println!(
            "directory: {} names (capacity {})",
            d.count()?,
            d.capacity()
        ),
        Err(e) => println!("directory: {e:#}"),
    }
    let router = PinnedRouterStats::open(pin_dir).and_then(|m| m.read());
    match router {
        Ok(r) if r.updated_unix == 0 => println!("router: has never run on this node"),
        Ok(r) => {
            let age = unix_now().saturating_sub(r.updated_unix);
            let running = r.pid != 0 && age <= 3 && process_exists(r.pid);
            if running {
                println!(
                    "router: running (pid {}), {} connections open",
                    r.pid, r.connections_open
                );
            } else {
                println!("router: not running (last seen {age} s ago)");
            }
            println!(
                "router totals: {} connections, {} requests ({} 2xx, {} 3xx, {} 4xx, {} 5xx), \
                 {} local, {} proxied, {} legacy, {} redirected, {} refused, {} TLS failures",
                r.connections,
                r.requests,
                r.responses_2xx,
                r.responses_3xx,
                r.responses_4xx,
                r.responses_5xx,
                r.local,
                r.proxied,
                r.legacy,
                r.redirected,
                r.refused,
                r.tls_failures
            );
        }
        Err(e) => println!("router: {e:#}"),
    }
    Ok(())
}

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

fn process_exists(pid: u32) -> bool {
    std::path::Path::new(&format!("/proc/{pid}")).exists()
}

/// Every counter of the node at one moment.
struct Snapshot {
    at: Instant,
    vips: Vec<(String, Counters)>,
    nodes: Vec<(String, Counters)>,
    router: Option<RouterCounters>,
}

fn snapshot(config: &Config, maps: &DataplaneMaps) -> anyhow::Result<Snapshot> {
    let mut vips = Vec::new();
    for e in sync::vip_entries(&config.dataplane) {
        vips.push((e.label, maps.vip_counters(e.info.vip_index)?));
    }
    vips.push((
        "unattributed".into(),
        maps.vip_counters(balancer_common::maps::UNATTRIBUTED_STATS_INDEX)?,
    ));
    let mut nodes = Vec::new();
    for n in &config.site().nodes {
        nodes.push((n.name.clone(), maps.node_counters(n.id)?));
    }
    let router = PinnedRouterStats::open(&config.dataplane.pin_dir)
        .and_then(|m| m.read())
        .ok();
    Ok(Snapshot {
        at: Instant::now(),
        vips,
        nodes,
        router,
    })
}

/// Counters per VIP and per node (summed over CPUs) and the router's; with `watch`, rates per
/// second over each interval until interrupted.
pub fn stats(config: &Config, watch: Option<Duration>) -> anyhow::Result<()> {
    let maps = DataplaneMaps::open(&config.dataplane.pin_dir)?;
    let mut last = snapshot(config, &maps)?;
    let Some(every) = watch else {
        print_totals(&last);
        return Ok(());
    };
    loop {
        std::thread::sleep(every);
        let now = snapshot(config, &maps)?;
        print_rates(&last, &now);
        last = now;
    }
}

fn print_totals(s: &Snapshot) {
    let header = format!(
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
    );
    for (title, rows) in [("vip", &s.vips), ("node", &s.nodes)] {
        println!("{title:<28} {header}");
        for (label, c) in rows.iter() {
            println!(
                "{label:<28} {:>10} {:>12} {:>10} {:>10} {:>8} {:>9} {:>10} {:>8} {:>6}",
                c.packets,
                c.bytes,
                c.passed_local,
                c.forwarded,
                c.decapsulated,
                c.dropped_malformed,
                c.continuity_hits,
                c.second_chance,
                c.fib_failures
            );
        }
    }
    if let Some(r) = &s.router {
        println!(
            "router: {} connections ({} open), {} requests: {} 2xx {} 3xx {} 4xx {} 5xx",
            r.connections,
            r.connections_open,
            r.requests,
            r.responses_2xx,
            r.responses_3xx,
            r.responses_4xx,
            r.responses_5xx
        );
    }
}

/// Per second between two snapshots (counters only grow; a restart of the data plane that
/// reset them shows as 0).
fn per_second(before: u64, after: u64, seconds: f64) -> f64 {
    after.saturating_sub(before) as f64 / seconds
}

fn print_rates(before: &Snapshot, after: &Snapshot) {
    let secs = after.at.duration_since(before.at).as_secs_f64().max(1e-3);
    println!(
        "\n{:<28} {:>10} {:>10} {:>10} {:>10} {:>8} {:>9}",
        "per second", "packets", "Mbit", "local", "forwarded", "decap", "malformed"
    );
    let pairs = before
        .vips
        .iter()
        .zip(&after.vips)
        .chain(before.nodes.iter().zip(&after.nodes));
    for ((label, b), (_, a)) in pairs {
        let rate = |f: fn(&Counters) -> u64| per_second(f(b), f(a), secs);
        println!(
            "{label:<28} {:>10.0} {:>10.2} {:>10.0} {:>10.0} {:>8.0} {:>9.0}",
            rate(|c| c.packets),
            rate(|c| c.bytes) * 8.0 / 1e6,
            rate(|c| c.passed_local),
            rate(|c| c.forwarded),
            rate(|c| c.decapsulated),
            rate(|c| c.dropped_malformed)
        );
    }
    if let (Some(b), Some(a)) = (&before.router, &after.router) {
        let rate = |f: fn(&RouterCounters) -> u64| per_second(f(b), f(a), secs);
        println!(
            "router: {:.0} connections/s, {:.0} requests/s ({:.0} 5xx/s), {} open",
            rate(|r| r.connections),
            rate(|r| r.requests),
            rate(|r| r.responses_5xx),
            a.connections_open
        );
    }
}

#[cfg(test)]
mod tests {
    use super::per_second;

    #[test]
    fn rates_are_per_second_and_never_negative() {
        assert_eq!(per_second(100, 300, 2.0), 100.0);
        assert_eq!(
            per_second(300, 100, 1.0),
            0.0,
            "counters reset by a re-attach"
        );
    }
}
