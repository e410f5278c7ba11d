//! The router of one config: topology, directory, proxy and its health checks.

use crate::{
    config::Config,
    router::{
        directory::Directory,
        identity::cookie,
        metrics::Metrics,
        proxy::Proxy,
        service::{Router, Settings},
    },
};
use anyhow::Context as _;
use std::sync::Arc;
use tokio::task::JoinHandle;

/// A router and the health checks of its upstreams; dropping it stops the checks (requests
/// in flight keep their router until they end).
pub struct L7 {
    pub router: Arc<Router>,
    health: JoinHandle<()>,
}

impl L7 {
    pub fn build(
        config: &Config,
        directory: Arc<dyn Directory>,
        metrics: Arc<Metrics>,
    ) -> anyhow::Result<Self> {
        let router_config = config.router()?;
        let proxy = Proxy::new(config.proxy_config()?);
        let health = proxy.spawn_health_checks();
        let router = Router {
            topology: config.topology(),
            directory,
            cookie_key: cookie::Key::new(router_config.cookie_secret.as_bytes()),
            forward: Arc::new(proxy),
            settings: Settings {
                node_name: config.node.name.clone(),
                front_end: router_config
                    .front_end_header
                    .then(|| http::HeaderValue::from_str(&config.node.name))
                    .transpose()
                    .context("node.name: not usable as a header value")?,
                autodiscover_body_limit: router_config.autodiscover_body_limit,
                ews_body_limit: router_config.ews_body_limit,
            },
            metrics,
        };
        Ok(Self {
            router: Arc::new(router),
            health,
        })
    }
}

impl Drop for L7 {
    fn drop(&mut self) {
        self.health.abort();
    }
}
