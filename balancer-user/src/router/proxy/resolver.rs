//! Name resolution for upstreams: the addresses the configuration gives for a node's
//! InternalURL host first (so that a node is reached at a known address while TLS checks the
//! InternalURL's name), the system resolver otherwise.

use ahash::AHashMap;
use hyper_util::client::legacy::connect::dns::Name;
use std::{
    future::Future,
    io,
    net::SocketAddr,
    pin::Pin,
    sync::Arc,
    task::{Context, Poll},
};

/// Host name to addresses, then DNS.
#[derive(Debug, Clone, Default)]
pub struct Resolver {
    static_hosts: Arc<AHashMap<String, Vec<SocketAddr>>>,
}

impl Resolver {
    pub fn new(static_hosts: AHashMap<String, Vec<SocketAddr>>) -> Self {
        Self {
            static_hosts: Arc::new(static_hosts),
        }
    }
}

type Addrs = std::vec::IntoIter<SocketAddr>;

impl tower_service::Service<Name> for Resolver {
    type Response = Addrs;
    type Error = io::Error;
    type Future = Pin<Box<dyn Future<Output = io::Result<Addrs>> + Send>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, name: Name) -> Self::Future {
        let host = name.as_str().to_ascii_lowercase();
        if let Some(addrs) = self.static_hosts.get(&host) {
            let addrs = addrs.clone();
            return Box::pin(async move { Ok(addrs.into_iter()) });
        }
        Box::pin(async move {
            let addrs: Vec<SocketAddr> =
                tokio::net::lookup_host((host.as_str(), 0)).await?.collect();
            Ok(addrs.into_iter())
        })
    }
}
