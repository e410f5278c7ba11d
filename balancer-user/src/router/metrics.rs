//! The router's counters: atomics updated on the request path, published by `balancer run`
//! into the pinned map `ROUTER_STATS` ([`publish`]) for `balancer status`, `balancer stats`
//! and bpftool.

use super::decision::Decision;
use aya::maps::{Array, Map, MapData};
use balancer_common::{maps, router_stats::RouterCounters};
use std::{
    path::Path,
    sync::atomic::{AtomicU64, Ordering::Relaxed},
    time::{Duration, SystemTime},
};

/// Counters of one process; totals start from a base (the pinned values at start).
#[derive(Debug, Default)]
pub struct Metrics {
    connections_open: AtomicU64,
    connections: AtomicU64,
    tls_failures: AtomicU64,
    requests: AtomicU64,
    responses: [AtomicU64; 4],
    local: AtomicU64,
    proxied: AtomicU64,
    legacy: AtomicU64,
    redirected: AtomicU64,
    refused: AtomicU64,
    base: RouterCounters,
}

/// An open connection: counted open until dropped.
pub struct OpenConnection<'a>(&'a Metrics);

impl Drop for OpenConnection<'_> {
    fn drop(&mut self) {
        self.0.connections_open.fetch_sub(1, Relaxed);
    }
}

impl Metrics {
    /// Counters that carry on from `base` (`connections_open` excepted).
    pub fn starting_from(base: RouterCounters) -> Self {
        Self {
            base,
            ..Default::default()
        }
    }

    pub fn connection(&self) -> OpenConnection<'_> {
        self.connections.fetch_add(1, Relaxed);
        self.connections_open.fetch_add(1, Relaxed);
        OpenConnection(self)
    }

    pub fn tls_failure(&self) {
        self.tls_failures.fetch_add(1, Relaxed);
    }

    pub fn response(&self, status: http::StatusCode) {
        self.requests.fetch_add(1, Relaxed);
        let class = (status.as_u16() / 100).clamp(2, 5) - 2;
        self.responses[class as usize].fetch_add(1, Relaxed);
    }

    pub fn decision(&self, decision: &Decision) {
        let counter = match decision {
            Decision::Local { .. } => &self.local,
            Decision::ProxySite { .. } => &self.proxied,
            Decision::ProxyLegacy { .. } => &self.legacy,
            Decision::Redirect { .. } | Decision::ActiveSync451 { .. } => &self.redirected,
            Decision::Refuse { .. } => &self.refused,
        };
        counter.fetch_add(1, Relaxed);
    }

    /// The totals now (base included).
    pub fn snapshot(&self) -> RouterCounters {
        let b = &self.base;
        let total = |base: u64, c: &AtomicU64| base + c.load(Relaxed);
        RouterCounters {
            connections_open: self.connections_open.load(Relaxed),
            connections: total(b.connections, &self.connections),
            tls_failures: total(b.tls_failures, &self.tls_failures),
            requests: total(b.requests, &self.requests),
            responses_2xx: total(b.responses_2xx, &self.responses[0]),
            responses_3xx: total(b.responses_3xx, &self.responses[1]),
            responses_4xx: total(b.responses_4xx, &self.responses[2]),
            responses_5xx: total(b.responses_5xx, &self.responses[3]),
            local: total(b.local, &self.local),
            proxied: total(b.proxied, &self.proxied),
            legacy: total(b.legacy, &self.legacy),
            redirected: total(b.redirected, &self.redirected),
            refused: total(b.refused, &self.refused),
            updated_unix: SystemTime::now()
                .duration_since(SystemTime::UNIX_EPOCH)
                .map_or(0, |d| d.as_secs()),
            pid: std::process::id(),
            _pad: 0,
        }
    }
}

/// The pinned `ROUTER_STATS` map of a data plane.
pub struct PinnedRouterStats(Array<MapData, RouterCounters>);

impl PinnedRouterStats {
    pub fn open(pin_dir: &Path) -> anyhow::Result<Self> {
        let data = MapData::from_pin(pin_dir.join(maps::ROUTER_STATS))?;
        Ok(Self(Array::try_from(Map::Array(data))?))
    }

    pub fn read(&self) -> anyhow::Result<RouterCounters> {
        Ok(self.0.get(&0, 0)?)
    }

    pub fn write(&mut self, counters: RouterCounters) -> anyhow::Result<()> {
        Ok(self.0.set(0, counters, 0)?)
    }
}

/// Writes `metrics` into the pinned map every `every`, until the task is dropped.
pub async fn publish(
    metrics: std::sync::Arc<Metrics>,
    mut map: PinnedRouterStats,
    every: Duration,
) {
    let mut ticks = tokio::time::interval(every);
    loop {
        ticks.tick().await;
        if let Err(e) = map.write(metrics.snapshot()) {
            tracing::warn!("publishing the router's counters: {e:#}");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn totals_carry_on_from_the_base_and_open_connections_are_counted_down() {
        let base = RouterCounters {
            connections: 10,
            requests: 7,
            responses_4xx: 2,
            connections_open: 99,
            ..Default::default()
        };
        let m = Metrics::starting_from(base);
        {
            let _c = m.connection();
            m.response(http::StatusCode::NOT_FOUND);
            m.response(http::StatusCode::OK);
            m.response(http::StatusCode::from_u16(101).unwrap());
            assert_eq!(m.snapshot().connections_open, 1);
        }
        let s = m.snapshot();
        assert_eq!((s.connections_open, s.connections, s.requests), (0, 11, 10));
        assert_eq!(
            (s.responses_2xx, s.responses_4xx),
            (2, 3),
            "1xx counts as 2xx"
        );
    }
}
