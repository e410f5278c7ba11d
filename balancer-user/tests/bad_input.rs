//! Bad input at the HTTPS front, with a raw TLS client: request smuggling attempts (both
//! Content-Length and Transfer-Encoding: framed by Transfer-Encoding and the connection closed,
//! as RFC 9112 6.3 allows), invalid chunking, too many headers, headers sent too slowly, and
//! a flood of idle connections up to the cap. Each gets the right status or a close; nothing
//! malformed reaches an upstream; legitimate requests in the same test still succeed.

mod common;

use balancer_user::router::{
    responses::{Body, BodyError},
    server::Limits,
    service::{Client, Forward, ResponseFuture, Target},
    testing,
    tls::{CertSpec, CertStore},
};
use bytes::Bytes;
use http::{Request, Response};
use http_body_util::{BodyExt as _, Full};
use rustls::pki_types::ServerName;
use std::{
    net::SocketAddr,
    sync::{
        atomic::{AtomicUsize, Ordering},
        Arc,
    },
    time::{Duration, Instant},
};
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::TcpStream,
};
use tokio_rustls::{client::TlsStream, TlsConnector};

/// Counts the requests that reach "the upstream" whole (bodies read to the end), and records
/// every path that reaches it at all.
struct Counting(Arc<AtomicUsize>, Arc<std::sync::Mutex<Vec<String>>>);

impl Forward for Counting {
    fn forward(&self, _target: Target, request: Request<Body>, _client: &Client) -> ResponseFuture {
        let (seen, paths) = (self.0.clone(), self.1.clone());
        paths.lock().unwrap().push(request.uri().path().to_string());
        Box::pin(async move {
            let complete = request.into_body().collect().await.is_ok();
            if complete {
                seen.fetch_add(1, Ordering::SeqCst);
            }
            Response::new(
                Full::new(Bytes::from_static(b"upstream"))
                    .map_err(|n| -> BodyError { match n {} })
                    .boxed(),
            )
        })
    }
}

struct Front {
    addr: SocketAddr,
    connector: TlsConnector,
    /// Offers ALPN h2.
    h2_connector: TlsConnector,
    reached: Arc<AtomicUsize>,
    paths: Arc<std::sync::Mutex<Vec<String>>>,
    _shutdown: tokio::sync::oneshot::Sender<()>,
    dir: std::path::PathBuf,
}

impl Drop for Front {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

async fn start(limits: Limits) -> Front {
    let dir = std::env::temp_dir().join(format!(
        "balancer-bad-{}-{:?}",
        std::process::id(),
        Instant::now()
    ));
    std::fs::create_dir_all(&dir).unwrap();
    let g = rcgen::generate_simple_self_signed(vec!["www.usa.contoso.com".into()]).unwrap();
    let spec = CertSpec {
        names: vec!["www.usa.contoso.com".into()],
        cert: dir.join("c.pem"),
        key: dir.join("k.pem"),
    };
    std::fs::write(&spec.cert, g.cert.pem()).unwrap();
    std::fs::write(&spec.key, g.key_pair.serialize_pem()).unwrap();
    let reached = Arc::new(AtomicUsize::new(0));
    let paths = Arc::new(std::sync::Mutex::new(Vec::new()));
    let router = testing::router("usa", Arc::new(Counting(reached.clone(), paths.clone())));
    let store = CertStore::load(&[spec]).unwrap();
    let (addr, tx) = common::spawn_front(router, store, limits).await;
    let mut roots = rustls::RootCertStore::empty();
    roots.add(g.cert.der().clone()).unwrap();
    let config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_root_certificates(roots)
    .with_no_client_auth();
    let mut h2_config = config.clone();
    h2_config.alpn_protocols = vec![b"h2".to_vec()];
    Front {
        addr,
        connector: TlsConnector::from(Arc::new(config)),
        h2_connector: TlsConnector::from(Arc::new(h2_config)),
        reached,
        paths,
        _shutdown: tx,
        dir,
    }
}

impl Front {
    async fn connect(&self) -> TlsStream<TcpStream> {
        let connecting = async {
            let tcp = TcpStream::connect(self.addr).await.unwrap();
            self.connector
                .connect(ServerName::try_from("www.usa.contoso.com").unwrap(), tcp)
                .await
                .unwrap()
        };
        tokio::time::timeout(Duration::from_secs(20), connecting)
            .await
            .expect("connected within 20 s")
    }

    /// Sends `raw` and reads until the server closes or `wait` passes: what came back.
    async fn exchange(&self, raw: &[u8], wait: Duration) -> String {
        let mut s = self.connect().await;
        s.write_all(raw).await.unwrap();
        read_until_close(&mut s, wait).await
    }
}

async fn read_until_close(s: &mut TlsStream<TcpStream>, wait: Duration) -> String {
    let mut out = Vec::new();
    let _ = tokio::time::timeout(wait, s.read_to_end(&mut out)).await;
    String::from_utf8_lossy(&out).into_owned()
}

fn status(response: &str) -> &str {
    response
        .split(' ')
        .nth(1)
        .unwrap_or("(closed without a response)")
}

const GOOD: &[u8] = b"GET /owa/ HTTP/1.1\r\nHost: www.usa.contoso.com\r\nConnection: close\r\n\r\n";

#[tokio::test(flavor = "multi_thread")]
async fn smuggling_and_broken_framing_never_reach_an_upstream() {
    let front = start(Limits::default()).await;
    let both = b"POST /owa/ HTTP/1.1\r\nHost: x\r\nContent-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\nGET /owa/smuggled HTTP/1.1\r\nHost: x\r\n\r\n";
    let r = front.exchange(both, Duration::from_secs(5)).await;
    eprintln!("CL+TE: {r:?}");
    // RFC 9112 6.3: Transfer-Encoding wins, and the connection closes after the response, so
    // nothing after the first chunked body is read as a request.
    assert_eq!(r.matches("HTTP/1.1 ").count(), 1, "one response only: {r}");
    assert!(
        r.to_lowercase().contains("connection: close"),
        "the connection closes: {r}"
    );
    let paths = front.paths.lock().unwrap().clone();
    assert!(
        !paths.iter().any(|p| p.contains("smuggled")),
        "no smuggled request reached the upstream: {paths:?}"
    );

    let bad_chunk = b"POST /owa/ HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\nhello\r\n0\r\n\r\n";
    let before = front.reached.load(Ordering::SeqCst);
    let r = front.exchange(bad_chunk, Duration::from_secs(5)).await;
    eprintln!("bad chunk: {r:?}");
    assert_eq!(
        front.reached.load(Ordering::SeqCst),
        before,
        "a broken body never completes upstream"
    );

    let r = front.exchange(GOOD, Duration::from_secs(5)).await;
    assert_eq!(
        status(&r),
        "200",
        "a legitimate request still succeeds: {r}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn slow_headers_are_closed_after_the_timeout() {
    let limits = Limits {
        header_read_timeout: Duration::from_millis(500),
        ..Limits::default()
    };
    let front = start(limits).await;
    let mut s = front.connect().await;
    s.write_all(b"GET /owa/ HTTP/1.1\r\nHost: www.usa")
        .await
        .unwrap();
    let started = Instant::now();
    let r = read_until_close(&mut s, Duration::from_secs(10)).await;
    eprintln!("slow headers: {r:?} after {:?}", started.elapsed());
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "the server closed the connection"
    );
    assert!(r.is_empty() || status(&r) == "408", "closed, or 408: {r}");
    let r = front.exchange(GOOD, Duration::from_secs(5)).await;
    assert_eq!(status(&r), "200", "{r}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_flood_of_idle_connections_up_to_the_cap_is_shed() {
    let limits = Limits {
        max_connections: 16,
        header_read_timeout: Duration::from_millis(500),
        ..Limits::default()
    };
    let front = start(limits).await;
    let mut idle = Vec::new();
    for _ in 0..16 {
        idle.push(front.connect().await);
    }
    // At the cap: a new client waits in the backlog until idle connections time out.
    let started = Instant::now();
    let r = front.exchange(GOOD, Duration::from_secs(10)).await;
    assert_eq!(
        status(&r),
        "200",
        "a legitimate request succeeds once idle ones are shed: {r}"
    );
    eprintln!("served after {:?} at the cap", started.elapsed());
    for mut s in idle {
        let r = read_until_close(&mut s, Duration::from_secs(5)).await;
        assert!(
            r.is_empty() || status(&r) == "408",
            "idle connection closed: {r}"
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn idle_http2_connections_are_closed_after_the_idle_timeout() {
    let limits = Limits {
        h2_idle_timeout: Duration::from_millis(500),
        ..Limits::default()
    };
    let front = start(limits).await;
    let tcp = TcpStream::connect(front.addr).await.unwrap();
    let tls = front
        .h2_connector
        .connect(ServerName::try_from("www.usa.contoso.com").unwrap(), tcp)
        .await
        .unwrap();
    assert_eq!(tls.get_ref().1.alpn_protocol(), Some(&b"h2"[..]));
    let (mut sender, conn) = hyper::client::conn::http2::handshake(
        hyper_util::rt::TokioExecutor::new(),
        hyper_util::rt::TokioIo::new(tls),
    )
    .await
    .unwrap();
    let connection = tokio::spawn(conn);
    let request = Request::get("https://www.usa.contoso.com/owa/healthcheck.htm")
        .body(http_body_util::Empty::<Bytes>::new())
        .unwrap();
    let response = sender.send_request(request).await.unwrap();
    assert_eq!(response.status(), 200, "served while in use");
    // Then idle: the server says GOAWAY and the connection ends (the client would otherwise
    // keep it open for as long as it answers pings).
    let ended = tokio::time::timeout(Duration::from_secs(20), connection).await;
    assert!(
        ended.is_ok(),
        "the idle HTTP/2 connection was closed by the server"
    );
    let r = front.exchange(GOOD, Duration::from_secs(5)).await;
    assert_eq!(status(&r), "200", "{r}");
}

/// A request of `count` header lines in all (Host and Connection included).
fn with_headers(count: usize) -> Vec<u8> {
    let mut raw = String::from("GET /owa/ HTTP/1.1\r\nHost: www.usa.contoso.com\r\n");
    for i in 0..count - 2 {
        raw.push_str(&format!("X-Filler-{i}: {i}\r\n"));
    }
    raw.push_str("Connection: close\r\n\r\n");
    raw.into_bytes()
}

#[tokio::test(flavor = "multi_thread")]
async fn too_many_headers_are_refused_at_the_default_limit_and_a_configured_one() {
    for max_headers in [Limits::default().max_headers, 20] {
        let front = start(Limits {
            max_headers,
            ..Limits::default()
        })
        .await;
        let r = front
            .exchange(&with_headers(max_headers + 1), Duration::from_secs(5))
            .await;
        assert_eq!(
            status(&r),
            "431",
            "{} headers of {max_headers}: {r}",
            max_headers + 1
        );
        assert_eq!(
            front.reached.load(Ordering::SeqCst),
            0,
            "refused before any upstream"
        );
        let r = front
            .exchange(&with_headers(max_headers), Duration::from_secs(5))
            .await;
        assert_eq!(
            status(&r),
            "200",
            "{max_headers} headers of {max_headers}: {r}"
        );
    }
}
