//! The proxy's upstream connections (R19): kept open and reused, never reused once the
//! upstream closed them or an answer was left half read, HTTP/2 connections shared.
//!
//! The HTTP/1.1 back end here is a few lines over TCP so that the test sees every connection
//! and controls when it closes.

mod common;

use ahash::AHashMap;
use balancer_user::router::{
    proxy::{HealthChecks, Proxy, ProxyConfig, ResponseTimeouts},
    responses::Body,
    service::Router,
    testing,
};
use bytes::Bytes;
use common::{node, request, upstream, Ca, CLIENT};
use http::{Request, StatusCode};
use http_body_util::BodyExt as _;
use std::{
    net::SocketAddr,
    sync::{
        atomic::{AtomicUsize, Ordering},
        Arc,
    },
    time::Duration,
};
use tokio::{
    io::{AsyncReadExt as _, AsyncWriteExt as _},
    net::TcpListener,
};

/// How the raw HTTP/1.1 back end behaves on each connection.
#[derive(Clone, Copy)]
enum Backend {
    /// Keep-alive; every answer is `body_len` bytes starting with `conn=<n>;`.
    KeepAlive { body_len: usize },
    /// One answer, then the connection is closed (no `Connection: close` said).
    CloseAfterOne,
}

/// The back end's count of connections: accepted so far, and open now.
#[derive(Default)]
struct Counts {
    accepted: AtomicUsize,
    open: AtomicUsize,
}

/// Starts the back end; returns its address and its counts of connections. A request whose
/// path holds `slow` is answered after 200 ms.
async fn backend(behaviour: Backend) -> (SocketAddr, Arc<Counts>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let counts = Arc::new(Counts::default());
    let shared = counts.clone();
    tokio::spawn(async move {
        while let Ok((mut tcp, _)) = listener.accept().await {
            let n = shared.accepted.fetch_add(1, Ordering::Relaxed) + 1;
            shared.open.fetch_add(1, Ordering::Relaxed);
            let counts = shared.clone();
            tokio::spawn(async move {
                serve(&mut tcp, n, behaviour).await;
                counts.open.fetch_sub(1, Ordering::Relaxed);
            });
        }
    });
    (addr, counts)
}

async fn serve(tcp: &mut tokio::net::TcpStream, n: usize, behaviour: Backend) {
    let mut head = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        let Ok(read) = tcp.read(&mut buf).await else {
            return;
        };
        if read == 0 {
            return;
        }
        head.extend_from_slice(&buf[..read]);
        // GETs only: a request ends with its head.
        while let Some(end) = head.windows(4).position(|w| w == b"\r\n\r\n") {
            let slow = head[..end].windows(4).any(|w| w == b"slow");
            head.drain(..end + 4);
            if slow {
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
            let body_len = match behaviour {
                Backend::KeepAlive { body_len } => body_len,
                Backend::CloseAfterOne => 16,
            };
            let mut body = format!("conn={n};").into_bytes();
            body.resize(body_len.max(body.len()), b'.');
            let answer = format!("HTTP/1.1 200 OK\r\nContent-Length: {}\r\n\r\n", body.len());
            if tcp.write_all(answer.as_bytes()).await.is_err()
                || tcp.write_all(&body).await.is_err()
            {
                return;
            }
            if let Backend::CloseAfterOne = behaviour {
                return;
            }
        }
    }
}

/// A router whose legacy (HTTP, R13) back end is at `legacy`, and whose local (HTTPS) back end
/// is at `local`.
fn router(legacy: SocketAddr, local: Option<(SocketAddr, &Ca)>) -> Router {
    router_keeping(legacy, local, 16)
}

/// As [`router`], keeping at most `max_idle` idle connections per node.
fn router_keeping(legacy: SocketAddr, local: Option<(SocketAddr, &Ca)>, max_idle: usize) -> Router {
    let mut legacy_nodes = AHashMap::new();
    legacy_nodes.insert(
        "mbx-legacy.contoso.com".to_string(),
        node("legacy-backend", "http", "mbx-legacy.contoso.com", legacy),
    );
    let (local_nodes, trust) = match local {
        Some((addr, ca)) => (
            vec![node(
                "usa-backend",
                "https",
                "usa-backend.contoso.internal",
                addr,
            )],
            ca.roots(),
        ),
        None => (Vec::new(), rustls::RootCertStore::empty()),
    };
    let proxy = Proxy::new(ProxyConfig {
        node_name: http::HeaderValue::from_static("usa-1"),
        local: local_nodes,
        sites: AHashMap::new(),
        legacy: legacy_nodes,
        trust,
        max_in_flight_per_node: 100,
        max_idle_per_node: max_idle,
        connect_timeout: Duration::from_secs(2),
        ejection: Duration::from_secs(30),
        back_end_header: true,
        health: HealthChecks::default(),
        timeouts: ResponseTimeouts {
            default: Duration::from_secs(5),
            activesync: Duration::from_secs(5),
            rpc: Duration::from_secs(5),
        },
    });
    testing::router("usa", Arc::new(proxy))
}

fn get(path: &str, mailbox: &str) -> Request<Body> {
    request("GET", path, &[("X-AnchorMailbox", mailbox)], Bytes::new())
}

const LEGACY: (&str, &str) = ("/exchange/legacy-user/", "legacy-user@contoso.com");

async fn legacy_body(router: &Router) -> Bytes {
    let answer = router.handle(get(LEGACY.0, LEGACY.1), &CLIENT).await;
    assert_eq!(answer.status(), StatusCode::OK);
    answer.into_body().collect().await.unwrap().to_bytes()
}

#[tokio::test(flavor = "multi_thread")]
async fn r19_sequential_requests_reuse_one_upstream_connection() {
    let (addr, counts) = backend(Backend::KeepAlive { body_len: 64 }).await;
    let router = router(addr, None);
    for _ in 0..5 {
        let body = legacy_body(&router).await;
        assert!(body.starts_with(b"conn=1;"), "{body:?}");
    }
    assert_eq!(
        counts.accepted.load(Ordering::Relaxed),
        1,
        "one kept-alive connection"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn r19_a_connection_the_upstream_closed_is_not_used_again() {
    let (addr, counts) = backend(Backend::CloseAfterOne).await;
    let router = router(addr, None);
    for n in 1..=3 {
        let body = legacy_body(&router).await;
        assert!(
            body.starts_with(format!("conn={n};").as_bytes()),
            "request {n}: {body:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(counts.accepted.load(Ordering::Relaxed), 3);
}

#[tokio::test(flavor = "multi_thread")]
async fn r19_an_answer_left_half_read_closes_its_connection() {
    let body_len = 4 << 20;
    let (addr, counts) = backend(Backend::KeepAlive { body_len }).await;
    let router = router(addr, None);
    // The client reads one frame of a 4 MiB answer, then goes away.
    let answer = router.handle(get(LEGACY.0, LEGACY.1), &CLIENT).await;
    let mut body = answer.into_body();
    let first = body.frame().await.unwrap().unwrap();
    assert!(first.data_ref().unwrap().starts_with(b"conn=1;"));
    drop(body);
    // The rest of that answer must not be read as the next one.
    let next = legacy_body(&router).await;
    assert_eq!(next.len(), body_len);
    assert!(next.starts_with(b"conn=2;"), "{:?}", &next[..16]);
    assert_eq!(counts.accepted.load(Ordering::Relaxed), 2);
}

#[tokio::test(flavor = "multi_thread")]
async fn r19_http2_upstreams_carry_concurrent_requests_on_one_connection() {
    let ca = Ca::new();
    let local = upstream(
        "usa-backend",
        Some(ca.issue("usa-backend.contoso.internal")),
    )
    .await;
    let (legacy, _) = backend(Backend::KeepAlive { body_len: 16 }).await;
    let router = Arc::new(router(legacy, Some((local.addr, &ca))));
    // One request opens the connection; then ten at once share it.
    let first = router
        .handle(get("/owa/", "usa-user@contoso.com"), &CLIENT)
        .await;
    assert_eq!(first.status(), StatusCode::OK);
    let requests = (0..10)
        .map(|_| {
            let router = router.clone();
            tokio::spawn(async move {
                let answer = router
                    .handle(get("/owa/", "usa-user@contoso.com"), &CLIENT)
                    .await;
                let status = answer.status();
                let body = answer.into_body().collect().await.unwrap().to_bytes();
                (status, body)
            })
        })
        .collect::<Vec<_>>();
    for request in requests {
        let (status, body) = request.await.unwrap();
        assert_eq!(status, StatusCode::OK, "{body:?}");
        assert!(body.starts_with(b"usa-backend /owa/"), "{body:?}");
    }
    assert_eq!(local.connections(), 1, "one HTTP/2 connection");
}

#[tokio::test(flavor = "multi_thread")]
async fn r19_idle_connections_beyond_the_cap_are_closed() {
    let (addr, counts) = backend(Backend::KeepAlive { body_len: 16 }).await;
    let router = Arc::new(router_keeping(addr, None, 1));
    // Three slow requests at once: three connections.
    let slow = (0..3)
        .map(|_| {
            let router = router.clone();
            tokio::spawn(async move {
                let answer = router
                    .handle(get("/exchange/legacy-user/slow", LEGACY.1), &CLIENT)
                    .await;
                assert_eq!(answer.status(), StatusCode::OK);
                answer.into_body().collect().await.unwrap();
            })
        })
        .collect::<Vec<_>>();
    for request in slow {
        request.await.unwrap();
    }
    assert_eq!(counts.accepted.load(Ordering::Relaxed), 3);
    // One stays for the next request; the two beyond the cap are closed.
    for _ in 0..100 {
        if counts.open.load(Ordering::Relaxed) == 1 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(
        counts.open.load(Ordering::Relaxed),
        1,
        "idle beyond the cap closed"
    );
    legacy_body(&router).await;
    assert_eq!(
        counts.accepted.load(Ordering::Relaxed),
        3,
        "the kept one reused"
    );
}
