//! The proxy (R7-R15, R19, R20): the [`Forward`] that sends requests to this site's back end,
//! to a node of another site over HTTPS, or to an Exchange 2003 back end over HTTP.
//!
//! - Trust is configured (a CA or pinned self-signed certificates): never "accept anything"
//!   (R15). TLS checks the node's InternalURL host, which [`connect`] reaches at the
//!   node's configured address.
//! - Within a site, OWA and EWS stick to one node per mailbox (rendezvous hashing) and move
//!   on only when it is unavailable; ActiveSync goes round robin (R14, [`pick`]).
//! - Health (R17): every node is checked actively ([`HealthChecks`]: `GET` of its health-check
//!   page, with rise/fall thresholds), and a node that refuses connections is ejected for a
//!   while (passive). A request whose body can be replayed (none, or empty) fails over to the
//!   next node at once. A site with no node left answers 503 with Retry-After.
//! - Bodies stream both ways, never buffered (R19); each node has a cap on requests in flight.
//! - Connections ([`connect`]) are kept per origin and reused ([`pool`]): HTTP/1.1 ones one
//!   request at a time, an HTTP/2 one shared.
//! - Hop-by-hop headers are removed, forwarding headers and the chain of routers added, and
//!   the response names the back end (R20, [`headers`]).

mod connect;
pub mod headers;
pub mod pick;
mod pool;
mod timeouts;

pub use timeouts::ResponseTimeouts;

use super::{
    decision::Pick,
    protocol::Protocol,
    responses::{self, Body, BodyError},
    service::{Client, Forward, ResponseFuture, Target, VIA_HEADER},
};
use crate::health::{Thresholds, Verdict};
use ahash::AHashMap;
use connect::Connector;
use http::{header, HeaderName, HeaderValue, Request, Response, StatusCode, Uri};
use http_body_util::{BodyExt as _, Empty};
use pool::{OriginPool, PooledBody, UpstreamError};
use std::{
    net::SocketAddr,
    sync::{
        atomic::{AtomicU64, Ordering},
        Arc,
    },
    time::{Duration, Instant},
};
use tokio::sync::Semaphore;
use tracing::{info, warn};

/// Header naming the upstream node that served a response (R20; can be switched off).
pub const BACK_END_HEADER: HeaderName = HeaderName::from_static("x-balancer-back-end");

/// One upstream node.
#[derive(Debug, Clone)]
pub struct UpstreamNode {
    pub name: String,
    /// Scheme and authority of its InternalURL (`https://cas-asia-1.contoso.internal`).
    pub base: Uri,
    /// Where to connect for that host; empty: resolve it.
    pub addrs: Vec<SocketAddr>,
    /// Per-virtual-directory InternalURLs with another origin (scheme, host, port).
    pub vdir_bases: Vec<(Protocol, Uri)>,
}

impl UpstreamNode {
    /// The origin a request to `path` goes to: its virtual directory's, or the node's.
    pub fn base_for(&self, path: &str) -> &Uri {
        self.vdir_for(path)
            .map_or(&self.base, |i| &self.vdir_bases[i].1)
    }

    /// Which of `vdir_bases` a request to `path` goes to, if any.
    fn vdir_for(&self, path: &str) -> Option<usize> {
        if self.vdir_bases.is_empty() {
            return None;
        }
        let protocol = Protocol::of_path(path);
        self.vdir_bases.iter().position(|(p, _)| *p == protocol)
    }
}

/// What the proxy needs to know.
#[derive(Debug, Clone)]
pub struct ProxyConfig {
    /// This node's name, appended to the via header of forwarded requests (R20).
    pub node_name: HeaderValue,
    /// This site's own back ends (R7).
    pub local: Vec<UpstreamNode>,
    /// The nodes of every other site.
    pub sites: AHashMap<String, Vec<UpstreamNode>>,
    /// Exchange 2003 back ends by server name, reached over HTTP (R13).
    pub legacy: AHashMap<String, UpstreamNode>,
    /// Roots trusted for upstream TLS (R15).
    pub trust: rustls::RootCertStore,
    pub max_in_flight_per_node: usize,
    /// Idle connections kept per node and origin (the least recently used beyond it close).
    pub max_idle_per_node: usize,
    pub connect_timeout: Duration,
    /// How long a node that refused a connection is left out.
    pub ejection: Duration,
    pub back_end_header: bool,
    pub health: HealthChecks,
    pub timeouts: ResponseTimeouts,
}

/// Active health checks of the upstream nodes (R17; the config's `[router.health]`).
#[derive(Debug, Clone, serde::Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct HealthChecks {
    /// Path checked on every node (`GET`, 2xx = pass).
    pub path: String,
    #[serde(with = "humantime_serde")]
    pub interval: Duration,
    #[serde(with = "humantime_serde")]
    pub timeout: Duration,
    /// Consecutive passes that bring a node back.
    pub rise: u32,
    /// Consecutive failures that take a node out.
    pub fall: u32,
}

impl HealthChecks {
    pub fn thresholds(&self) -> Thresholds {
        Thresholds {
            rise: self.rise,
            fall: self.fall,
        }
    }
}

impl Default for HealthChecks {
    fn default() -> Self {
        Self {
            path: "/owa/healthcheck.htm".into(),
            interval: Duration::from_secs(5),
            timeout: Duration::from_secs(2),
            rise: 2,
            fall: 3,
        }
    }
}

/// A node with its connections, limits and passive health.
struct Node {
    spec: UpstreamNode,
    /// The connections to its InternalURL's origin.
    base: Arc<OriginPool>,
    /// The connections to the origins of `spec.vdir_bases`, in the same order.
    vdirs: Vec<Arc<OriginPool>>,
    /// The back-end header's value: the node's name (R20); `None` if switched off.
    back_end: Option<HeaderValue>,
    in_flight: Arc<Semaphore>,
    /// Milliseconds since `epoch` until which the node is ejected; 0: in.
    ejected_until: AtomicU64,
    /// The active checks' verdict (nodes start up).
    verdict: Verdict,
}

impl Node {
    /// The connections a request to `path` goes to: its virtual directory's, or the node's.
    fn origin_for(&self, path: &str) -> &Arc<OriginPool> {
        self.spec
            .vdir_for(path)
            .map_or(&self.base, |i| &self.vdirs[i])
    }

    fn origins(&self) -> impl Iterator<Item = &Arc<OriginPool>> {
        std::iter::once(&self.base).chain(&self.vdirs)
    }
}

/// The proxy.
pub struct Proxy {
    config: ProxyConfig,
    connector: Connector,
    local: Vec<Arc<Node>>,
    sites: AHashMap<String, (Vec<Arc<Node>>, pick::RoundRobin)>,
    legacy: AHashMap<String, Arc<Node>>,
    epoch: Instant,
}

impl Proxy {
    pub fn new(config: ProxyConfig) -> Arc<Self> {
        let mut hosts: AHashMap<String, Vec<SocketAddr>> = AHashMap::new();
        let all = config
            .local
            .iter()
            .chain(config.sites.values().flatten())
            .chain(config.legacy.values());
        for node in all {
            if let (Some(host), false) = (node.base.host(), node.addrs.is_empty()) {
                hosts
                    .entry(host.to_ascii_lowercase())
                    .or_default()
                    .extend(node.addrs.iter().copied());
            }
        }
        // A node is reached at its configured addresses while TLS checks its InternalURL's
        // name; a host without configured addresses is resolved when connecting.
        let origin = |base: &Uri| {
            let addrs = base
                .host()
                .and_then(|h| hosts.get(&h.to_ascii_lowercase()))
                .cloned()
                .unwrap_or_default();
            Arc::new(OriginPool::new(base, addrs, config.max_idle_per_node))
        };
        let node = |spec: &UpstreamNode| {
            Arc::new(Node {
                spec: spec.clone(),
                base: origin(&spec.base),
                vdirs: spec
                    .vdir_bases
                    .iter()
                    .map(|(_, base)| origin(base))
                    .collect(),
                back_end: config
                    .back_end_header
                    .then(|| HeaderValue::from_str(&spec.name).ok())
                    .flatten(),
                in_flight: Arc::new(Semaphore::new(config.max_in_flight_per_node)),
                ejected_until: AtomicU64::new(0),
                verdict: Verdict::new(true),
            })
        };
        let local = config.local.iter().map(node).collect();
        let sites = config
            .sites
            .iter()
            .map(|(s, nodes)| {
                (
                    s.clone(),
                    (
                        nodes.iter().map(node).collect(),
                        pick::RoundRobin::default(),
                    ),
                )
            })
            .collect();
        let legacy = config
            .legacy
            .iter()
            .map(|(s, n)| (s.clone(), node(n)))
            .collect();
        Arc::new(Self {
            connector: Connector::new(config.trust.clone(), config.connect_timeout),
            config,
            local,
            sites,
            legacy,
            epoch: Instant::now(),
        })
    }

    fn now_ms(&self) -> u64 {
        self.epoch.elapsed().as_millis() as u64
    }

    /// Out of rotation: failing its active checks, or ejected after a refused connection.
    fn is_out(&self, node: &Node) -> bool {
        !node.verdict.healthy() || node.ejected_until.load(Ordering::Relaxed) > self.now_ms()
    }

    /// The active checks' verdict on a node, by name (for `balancer status` and tests).
    pub fn is_healthy(&self, name: &str) -> Option<bool> {
        self.all_nodes()
            .find(|n| n.spec.name == name)
            .map(|n| n.verdict.healthy())
    }

    fn all_nodes(&self) -> impl Iterator<Item = &Arc<Node>> {
        self.local
            .iter()
            .chain(self.sites.values().flat_map(|(nodes, _)| nodes))
            .chain(self.legacy.values())
    }

    /// Checks every node every `interval`, until the returned task is aborted.
    pub fn spawn_health_checks(self: &Arc<Self>) -> tokio::task::JoinHandle<()> {
        let proxy = self.clone();
        tokio::spawn(async move {
            let mut ticks = tokio::time::interval(proxy.config.health.interval);
            ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                ticks.tick().await;
                proxy
                    .all_nodes()
                    .flat_map(|n| n.origins())
                    .for_each(|o| o.sweep());
                let checks: Vec<_> = proxy.all_nodes().map(|n| proxy.check(n.clone())).collect();
                futures_util::future::join_all(checks).await;
            }
        })
    }

    async fn check(&self, node: Arc<Node>) {
        let health = &self.config.health;
        let request = Request::get(health.path.as_str()).body(empty_body());
        let passed = match request {
            Ok(request) => matches!(
                tokio::time::timeout(
                    health.timeout,
                    node.base.send(&self.connector, request, None)
                ).await,
                Ok(Ok(response)) if response.status().is_success()
            ),
            Err(_) => false,
        };
        match node.verdict.record(passed, health.thresholds()) {
            Some((true, streak)) => {
                info!(node = %node.spec.name, "upstream node up: passed {streak} health checks");
            }
            Some((false, streak)) => {
                warn!(node = %node.spec.name, path = %health.path, "upstream node down: failed {streak} health checks");
            }
            None => {}
        }
    }

    fn eject(&self, node: &Node, why: &str) {
        let until = self.now_ms() + self.config.ejection.as_millis() as u64;
        if node.ejected_until.swap(until, Ordering::Relaxed) <= self.now_ms() {
            warn!(node = %node.spec.name, why, "upstream node ejected");
        }
    }

    /// The nodes to try, in order, ejected nodes last (tried only if nothing else is left);
    /// or why there are none (answered 502 with the reason).
    fn candidates(&self, target: &Target) -> Result<Vec<Arc<Node>>, String> {
        let mut ordered: Vec<Arc<Node>> = match target {
            Target::Local => self.local.clone(),
            Target::Legacy { server } => match self.legacy.get(server) {
                Some(n) => vec![n.clone()],
                None => return Err(format!("no route to the Exchange 2003 server {server}")),
            },
            Target::Site { site, pick } => {
                let Some((nodes, round_robin)) = self.sites.get(site) else {
                    return Err(format!("no nodes configured for site {site}"));
                };
                let order = match pick {
                    Pick::Sticky { mailbox } => pick::sticky_order(
                        &nodes
                            .iter()
                            .map(|n| n.spec.name.as_str())
                            .collect::<Vec<_>>(),
                        mailbox,
                    ),
                    Pick::RoundRobin => round_robin.order(nodes.len()),
                };
                order.into_iter().map(|i| nodes[i].clone()).collect()
            }
        };
        if ordered.is_empty() {
            return Err("no upstream configured for this request".into());
        }
        // A stable sort: the order within the nodes in rotation, and within those out, holds.
        ordered.sort_by_key(|n| self.is_out(n));
        Ok(ordered)
    }

    async fn forward_to(
        self: Arc<Self>,
        target: Target,
        request: Request<Body>,
        forwarded_for: HeaderValue,
    ) -> Response<Body> {
        let nodes = match self.candidates(&target) {
            Ok(n) => n,
            Err(reason) => return responses::refuse(StatusCode::BAD_GATEWAY, &reason),
        };
        let (mut parts, body) = request.into_parts();
        headers::remove_hop_by_hop(&mut parts.headers);
        headers::add_forwarding(
            &mut parts.headers,
            &forwarded_for,
            &VIA_HEADER,
            &self.config.node_name,
        );
        parts.headers.remove(header::HOST);
        // The client's HTTP version says nothing of the upstream's: the connection to it picks
        // h2 or HTTP/1.1 by ALPN (plain http is HTTP/1.1), and hyper refuses to send an
        // HTTP/2 request on an HTTP/1 connection.
        parts.version = http::Version::HTTP_11;
        // Upstream requests name the path and query only (the connection adds the origin).
        if parts.uri.scheme().is_some() {
            parts.uri = parts
                .uri
                .path_and_query()
                .map_or_else(|| Uri::from_static("/"), |p| Uri::from(p.clone()));
        }
        // A body that is known to be empty can be sent again to the next node.
        let replayable = hyper::body::Body::size_hint(&body).exact() == Some(0);
        let mut body = Some(body);
        let limit = self.config.timeouts.for_path(parts.uri.path());
        let uri = parts.uri.clone();
        let path = uri.path();
        let mut parts = Some(parts);
        let mut last_error = None;
        for (i, node) in nodes.iter().enumerate() {
            let Ok(permit) = node.in_flight.clone().try_acquire_owned() else {
                continue;
            };
            let Some(this_body) = body.take() else { break };
            // The head is copied only when another node may be tried after this one.
            let another_may_follow = replayable && i + 1 < nodes.len();
            let this_parts = match another_may_follow {
                true => parts.clone(),
                false => parts.take(),
            };
            let Some(this_parts) = this_parts else { break };
            let attempt = Request::from_parts(this_parts, this_body);
            let origin = node.origin_for(path);
            let sent = origin.send(&self.connector, attempt, Some(permit));
            let Ok(answer) = tokio::time::timeout(limit, sent).await else {
                warn!(node = %node.spec.name, path, ?limit, "upstream did not answer in time");
                return responses::refuse(
                    StatusCode::GATEWAY_TIMEOUT,
                    &format!(
                        "upstream {} did not answer within {} s",
                        node.spec.name,
                        limit.as_secs()
                    ),
                );
            };
            match answer {
                Ok(response) => return relay(response, node),
                Err(UpstreamError::Connect(e)) => {
                    let error = format!("{}: {}", node.spec.name, error_chain(&e));
                    self.eject(node, &error);
                    last_error = Some(error);
                    if !replayable {
                        return responses::refuse(
                            StatusCode::BAD_GATEWAY,
                            &format!("upstream {} is unavailable", node.spec.name),
                        );
                    }
                    body = Some(empty_body());
                }
                Err(e) => {
                    warn!(node = %node.spec.name, error = %e, "upstream request failed");
                    return responses::refuse(
                        StatusCode::BAD_GATEWAY,
                        &format!("upstream {} failed", node.spec.name),
                    );
                }
            }
        }
        let mut r = responses::refuse(
            StatusCode::SERVICE_UNAVAILABLE,
            &format!(
                "no node of the target site is available (last: {})",
                last_error
                    .as_deref()
                    .unwrap_or("every node is at its limit of requests in flight")
            ),
        );
        r.headers_mut()
            .insert(header::RETRY_AFTER, HeaderValue::from_static("10"));
        info!(?target, "no upstream node available");
        r
    }
}

/// The upstream response, streamed, with hop-by-hop headers removed and the back end named.
/// Its body gives the connection back to the pool and the node's permit back when done.
fn relay(response: Response<PooledBody>, node: &Node) -> Response<Body> {
    let (mut parts, body) = response.into_parts();
    headers::remove_hop_by_hop(&mut parts.headers);
    if let Some(v) = &node.back_end {
        parts.headers.insert(BACK_END_HEADER, v.clone());
    }
    Response::from_parts(parts, body.boxed())
}

fn empty_body() -> Body {
    Empty::new()
        .map_err(|never| -> BodyError { match never {} })
        .boxed()
}

/// An error and its sources, `: `-separated (the TLS reason is deep in the chain).
fn error_chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        text.push_str(": ");
        text.push_str(&s.to_string());
        source = s.source();
    }
    text
}

impl Forward for Arc<Proxy> {
    fn forward(&self, target: Target, request: Request<Body>, client: &Client) -> ResponseFuture {
        Box::pin(
            self.clone()
                .forward_to(target, request, client.forwarded_for.clone()),
        )
    }
}
