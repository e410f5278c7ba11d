//! Upstream test servers and a test CA, shared by the router's integration tests.
#![allow(dead_code, unused_imports)]

pub use balancer_tests::{
    pki::Ca,
    upstream::{upstream, upstream_at, upstream_on, Upstream},
};
use balancer_user::router::proxy::UpstreamNode;
pub use balancer_user::router::testing::CLIENT;
use std::{net::SocketAddr, sync::Arc};
use tokio::net::TcpListener;

/// A request as the front hands it to the router (from [`CLIENT`]).
pub fn request(
    method: &str,
    uri: &str,
    headers: &[(&str, &str)],
    body: bytes::Bytes,
) -> http::Request<balancer_user::router::responses::Body> {
    use http_body_util::BodyExt as _;
    let mut r = http::Request::builder().method(method).uri(uri);
    for (k, v) in headers {
        r = r.header(*k, *v);
    }
    r.body(
        http_body_util::Full::new(body)
            .map_err(|n| -> balancer_user::router::responses::BodyError { match n {} })
            .boxed(),
    )
    .unwrap()
}

pub fn node(name: &str, scheme: &str, host: &str, addr: SocketAddr) -> UpstreamNode {
    UpstreamNode {
        name: name.into(),
        base: format!("{scheme}://{host}:{}", addr.port())
            .parse()
            .unwrap(),
        addrs: vec![addr],
        vdir_bases: Vec::new(),
    }
}

/// Starts the HTTPS front on a loopback port for `router`; it stops when the returned sender
/// is dropped.
pub async fn spawn_front(
    router: balancer_user::router::service::Router,
    store: Arc<balancer_user::router::tls::CertStore>,
    limits: balancer_user::router::server::Limits,
) -> (SocketAddr, tokio::sync::oneshot::Sender<()>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let tls = balancer_user::router::tls::FrontTls::new(store);
    tokio::spawn(balancer_user::router::server::serve(
        listener,
        tls,
        Arc::new(arc_swap::ArcSwap::from_pointee(router)),
        limits,
        async move {
            let _ = stopped.await;
        },
    ));
    (addr, stop)
}
