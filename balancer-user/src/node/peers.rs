//! Health of the array's other nodes, as `balancer run` sees it (`dataplane.peer_checks`): each
//! peer is checked over plain HTTP on its underlay address, and a verdict that changes (after
//! `fall` failures or `rise` passes) marks it down or up in the pinned table. Down moves only
//! that node's clients; up gives a returning (or joining) node its share back (R3, R17).
//!
//! Every node of the array checks every other, and each writes its own maps: the tables agree
//! once the checks do, and the connection table and second chance keep established flows
//! where they are while they disagree.

use crate::{
    config::{self, Config},
    dataplane::{sync, DataplaneMaps},
    health::{Thresholds, Verdict},
};
use balancer_common::node::NODE_FLAG_HEALTHY;
use bytes::Bytes;
use http_body_util::Empty;
use hyper_util::{
    client::legacy::{connect::HttpConnector, Client},
    rt::TokioExecutor,
};
use std::{net::SocketAddr, sync::Arc};
use tokio::task::JoinHandle;
use tracing::{info, warn};

/// A peer and where it is checked.
struct Peer {
    name: String,
    addr: SocketAddr,
    verdict: Verdict,
}

/// The running checks of one config's peers; dropping it stops them.
pub struct PeerChecks(Option<JoinHandle<()>>);

impl PeerChecks {
    pub fn none() -> Self {
        Self(None)
    }
}

impl Drop for PeerChecks {
    fn drop(&mut self) {
        if let Some(task) = &self.0 {
            task.abort();
        }
    }
}

/// Starts the checks of `config`'s peers (none if they are switched off or there are none).
pub fn spawn(config: &Config) -> anyhow::Result<PeerChecks> {
    Ok(PeerChecks(start(config)?))
}

fn start(config: &Config) -> anyhow::Result<Option<JoinHandle<()>>> {
    let checks = config.dataplane.peer_checks.clone();
    if !checks.enabled {
        return Ok(None);
    }
    let maps = DataplaneMaps::open(&config.dataplane.pin_dir)?;
    let me = config.this_node().id;
    let mut peers = Vec::new();
    for node in config.site().nodes.iter().filter(|n| n.id != me) {
        let Some(ip) = node
            .underlay_v4
            .map(Into::into)
            .or(node.underlay_v6.map(Into::into))
        else {
            warn!(node = %node.name, "peer has no underlay address: not checked");
            continue;
        };
        // Start from what the table says, so that a restart changes nothing by itself.
        let healthy = maps.nodes.get(&node.id, 0)?.flags & NODE_FLAG_HEALTHY != 0;
        peers.push(Peer {
            name: node.name.clone(),
            addr: SocketAddr::new(ip, checks.port),
            verdict: Verdict::new(healthy),
        });
    }
    if peers.is_empty() {
        return Ok(None);
    }
    let config = Arc::new(config.clone());
    Ok(Some(tokio::spawn(check_forever(config, checks, peers))))
}

async fn check_forever(config: Arc<Config>, checks: config::PeerChecks, peers: Vec<Peer>) {
    let client: Client<HttpConnector, Empty<Bytes>> =
        Client::builder(TokioExecutor::new()).build_http();
    let thresholds = Thresholds {
        rise: checks.rise,
        fall: checks.fall,
    };
    let mut ticks = tokio::time::interval(checks.interval);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        ticks.tick().await;
        let results =
            futures_util::future::join_all(peers.iter().map(|p| check(&client, &checks, p.addr)))
                .await;
        for (peer, passed) in peers.iter().zip(results) {
            let Some((up, streak)) = peer.verdict.record(passed, thresholds) else {
                continue;
            };
            if up {
                info!(node = %peer.name, "array peer up: passed {streak} checks; it takes its clients back");
            } else {
                warn!(node = %peer.name, addr = %peer.addr, "array peer down: failed {streak} checks; its clients move");
            }
            let (config, name) = (config.clone(), peer.name.clone());
            let written = tokio::task::spawn_blocking(move || {
                let mut maps = DataplaneMaps::open_for_write(&config.dataplane.pin_dir)?;
                sync::set_health(&config, &mut maps, &name, up, sync::By::Checks)
            })
            .await;
            match written {
                Ok(Ok(false)) if up => info!(
                    node = %peer.name,
                    "passes its checks, but an operator drained it: left out until `balancer xdp health {} up`",
                    peer.name
                ),
                Ok(Ok(changed)) => {
                    info!(node = %peer.name, up, table_changed = changed, "table updated")
                }
                Ok(Err(e)) => warn!(node = %peer.name, "could not update the table: {e:#}"),
                Err(e) => warn!(node = %peer.name, "table update task failed: {e}"),
            }
        }
    }
}

/// One check: `GET http://<addr><path>`, 2xx within the timeout.
async fn check(
    client: &Client<HttpConnector, Empty<Bytes>>,
    checks: &config::PeerChecks,
    addr: SocketAddr,
) -> bool {
    let Ok(uri) = format!("http://{addr}{}", checks.path).parse::<http::Uri>() else {
        return false;
    };
    let Ok(request) = http::Request::get(uri).body(Empty::new()) else {
        return false;
    };
    matches!(
        tokio::time::timeout(checks.timeout, client.request(request)).await,
        Ok(Ok(response)) if response.status().is_success()
    )
}
