//! The HTTPS front with a real client (curl) over real TLS on loopback: ALPN h2 and
//! http/1.1, certificates by SNI, the router's own answers (R8 link page, R9 451, R17 health),
//! and limits (oversized headers). Upstreams are a stand-in that names the target; the proxy
//! has its own tests.

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
use std::{net::SocketAddr, path::PathBuf, process::Command, sync::Arc};

/// Answers with the target and the client the front says the request came from.
struct NameTarget;

impl Forward for NameTarget {
    fn forward(&self, target: Target, _request: Request<Body>, client: &Client) -> ResponseFuture {
        let from = client.forwarded_for.to_str().unwrap_or("(not text)");
        let body = Full::new(Bytes::from(format!("{target:?} from {from}")))
            .map_err(|n| -> BodyError { match n {} })
            .boxed();
        Box::pin(async move { Response::new(body) })
    }
}

/// Where the front listens, and the directory of its certificates (what curl needs).
#[derive(Clone)]
struct Endpoint {
    addr: SocketAddr,
    dir: PathBuf,
}

/// A running front; stopped and cleaned up on drop.
struct Front {
    endpoint: Endpoint,
    _shutdown: tokio::sync::oneshot::Sender<()>,
}

impl Drop for Front {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.endpoint.dir);
    }
}

fn cert(dir: &std::path::Path, name: &str) -> CertSpec {
    let g = rcgen::generate_simple_self_signed(vec![name.to_string()]).unwrap();
    let spec = CertSpec {
        names: vec![name.into()],
        cert: dir.join(format!("{name}.pem")),
        key: dir.join(format!("{name}.key")),
    };
    std::fs::write(&spec.cert, g.cert.pem()).unwrap();
    std::fs::write(&spec.key, g.key_pair.serialize_pem()).unwrap();
    spec
}

async fn start() -> Front {
    let dir = std::env::temp_dir().join(format!(
        "balancer-front-{}-{}",
        std::process::id(),
        rand_suffix()
    ));
    std::fs::create_dir_all(&dir).unwrap();
    let certs = [
        cert(&dir, "www.usa.contoso.com"),
        cert(&dir, "www.europe.contoso.com"),
    ];
    let store = CertStore::load(&certs).unwrap();
    let router = testing::router("usa", Arc::new(NameTarget));
    let limits = Limits {
        max_header_bytes: 16 * 1024,
        ..Limits::default()
    };
    let (addr, tx) = common::spawn_front(router, store, limits).await;
    Front {
        endpoint: Endpoint { addr, dir },
        _shutdown: tx,
    }
}

fn rand_suffix() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .subsec_nanos() as u64
}

/// Runs curl against `host` (resolved to the front) and returns (status, http version,
/// headers, body); panics if the exchange fails.
fn curl(
    front: &Endpoint,
    host: &str,
    path: &str,
    extra: &[&str],
) -> (String, String, String, String) {
    try_curl(front, host, path, extra).unwrap_or_else(|e| panic!("curl failed: {e}"))
}

/// As [`curl`], or curl's error when the exchange fails (refused, reset, timed out).
fn try_curl(
    front: &Endpoint,
    host: &str,
    path: &str,
    extra: &[&str],
) -> Result<(String, String, String, String), String> {
    let headers = front.dir.join(format!("{}.headers", rand_suffix()));
    let out = Command::new("curl")
        .args(["-sS", "--max-time", "10", "--cacert"])
        .arg(front.dir.join(format!("{host}.pem")))
        .arg("--resolve")
        .arg(format!("{host}:{}:127.0.0.1", front.addr.port()))
        .arg("-D")
        .arg(&headers)
        .args(["-w", "\n%{http_code} %{http_version}"])
        .args(extra)
        .arg(format!("https://{host}:{}{path}", front.addr.port()))
        .output()
        .expect("curl is installed (Debian package curl)");
    let stdout = String::from_utf8_lossy(&out.stdout).to_string();
    if !out.status.success() {
        return Err(format!("{stdout}{}", String::from_utf8_lossy(&out.stderr)));
    }
    let (body, last) = stdout.rsplit_once('\n').unwrap();
    let (status, version) = last.split_once(' ').unwrap();
    let head = std::fs::read_to_string(&headers).unwrap_or_default();
    Ok((
        status.into(),
        version.into(),
        head.to_lowercase(),
        body.into(),
    ))
}

#[tokio::test(flavor = "multi_thread")]
async fn http1_and_http2_with_the_certificate_of_the_name_asked_for() {
    let front = start().await;
    let endpoint = front.endpoint.clone();
    let (a, b) = tokio::task::spawn_blocking(move || {
        let h1 = curl(
            &endpoint,
            "www.usa.contoso.com",
            "/owa/healthcheck.htm",
            &["--http1.1"],
        );
        let h2 = curl(
            &endpoint,
            "www.europe.contoso.com",
            "/owa/healthcheck.htm",
            &["--http2"],
        );
        (h1, h2)
    })
    .await
    .unwrap();
    assert_eq!(
        (a.0.as_str(), a.1.as_str()),
        ("200", "1.1"),
        "R17 over HTTP/1.1, usa certificate"
    );
    assert_eq!(
        (b.0.as_str(), b.1.as_str()),
        ("200", "2"),
        "R17 over HTTP/2 (ALPN h2), europe certificate by SNI"
    );
    assert!(
        a.2.contains("x-balancer-front-end: usa-1"),
        "R20 front-end header: {}",
        a.2
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn the_routers_own_answers_over_tls() {
    let front = start().await;
    let f = front.endpoint.clone();
    tokio::task::spawn_blocking(move || {
        let (status, _, _, body) = curl(
            &f,
            "www.usa.contoso.com",
            "/owa/",
            &["-H", "X-AnchorMailbox: europe-user@contoso.com"],
        );
        assert_eq!(status, "200", "R8 link page");
        assert!(
            body.contains("href=\"https://www.europe.contoso.com/owa\""),
            "{body}"
        );

        let (status, _, head, body) = curl(
            &f,
            "www.usa.contoso.com",
            "/Microsoft-Server-ActiveSync?Cmd=Sync&User=europe-user@contoso.com",
            &["-X", "POST"],
        );
        assert_eq!(status, "451", "R9");
        assert!(
            head.contains(
                "x-ms-location: https://www.europe.contoso.com/microsoft-server-activesync"
            ),
            "{head}"
        );
        assert!(body.is_empty());

        let (status, _, _, body) = curl(
            &f,
            "www.usa.contoso.com",
            "/owa/",
            &["-H", "X-AnchorMailbox: asia-user@contoso.com"],
        );
        assert_eq!(status, "200");
        assert!(
            body.contains("Site { site: \"asia\""),
            "R8 proxy to a site without ExternalURL: {body}"
        );
        assert!(
            body.ends_with("from 127.0.0.1"),
            "the proxy is told the client's address (X-Forwarded-For): {body}"
        );

        let huge = format!("X-Filler: {}", "a".repeat(32 * 1024));
        // The server answers 431 and closes; curl may still be sending the header and see the
        // close first. Either way the request is refused and never reaches an upstream.
        match try_curl(
            &f,
            "www.usa.contoso.com",
            "/owa/",
            &["--http1.1", "-H", &huge],
        ) {
            Ok((status, ..)) => assert_eq!(status, "431", "oversized headers are refused"),
            Err(e) => assert!(
                e.contains("(55)") || e.contains("(56)"),
                "refused by closing: {e}"
            ),
        }
        let (status, ..) = curl(
            &f,
            "www.usa.contoso.com",
            "/owa/healthcheck.htm",
            &["--http1.1"],
        );
        assert_eq!(status, "200", "and the next request is served");
    })
    .await
    .unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn plain_http_redirects_owa_to_https_and_answers_health_checks() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let (_stop, stopped) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(balancer_user::router::plain::serve(
        listener,
        Limits::default(),
        Some(http::HeaderValue::from_static("usa-1")),
        async move {
            let _ = stopped.await;
        },
    ));
    let answers = tokio::task::spawn_blocking(move || {
        let curl = |path: &str| {
            let out = Command::new("curl")
                .args([
                    "-sS",
                    "--max-time",
                    "10",
                    "-o",
                    "/dev/null",
                    "-w",
                    "%{http_code} %{redirect_url} %header{x-balancer-front-end}",
                    "-H",
                    "Host: www.usa.contoso.com",
                ])
                .arg(format!("http://127.0.0.1:{port}{path}"))
                .output()
                .unwrap();
            String::from_utf8_lossy(&out.stdout).into_owned()
        };
        (
            curl("/owa/?ae=Folder"),
            curl("/owa/healthcheck.htm"),
            curl("/EWS/Exchange.asmx"),
        )
    })
    .await
    .unwrap();
    assert_eq!(
        answers.0,
        "301 https://www.usa.contoso.com/owa/?ae=Folder usa-1"
    );
    assert_eq!(
        answers.1, "200  usa-1",
        "R17 on port 80; R20 names the node"
    );
    assert_eq!(answers.2, "403  usa-1", "the other protocols need TLS");
}
