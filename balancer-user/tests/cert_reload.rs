//! Certificates reloaded under load: clients keep requesting over new and kept-alive TLS
//! connections while the certificate set is replaced again and again; no request fails, and
//! new connections get the new certificate.

mod common;

use balancer_user::router::{
    responses::{Body, BodyError},
    server::Limits,
    service::{self, Forward, ResponseFuture, Target},
    testing,
    tls::{CertSpec, CertStore},
};
use bytes::Bytes;
use common::Ca;
use http::{Request, Response};
use http_body_util::{BodyExt as _, Empty, Full};
use hyper_util::{
    client::legacy::{connect::HttpConnector, Client},
    rt::TokioExecutor,
};
use std::{
    path::Path,
    sync::{
        atomic::{AtomicBool, AtomicUsize, Ordering},
        Arc,
    },
    time::Duration,
};

struct Ok200;

impl Forward for Ok200 {
    fn forward(&self, _: Target, _: Request<Body>, _: &service::Client) -> ResponseFuture {
        Box::pin(async {
            Response::new(
                Full::new(Bytes::from_static(b"ok"))
                    .map_err(|n| -> BodyError { match n {} })
                    .boxed(),
            )
        })
    }
}

fn write_spec(ca: &Ca, dir: &Path, generation: usize) -> CertSpec {
    let (chain, key) = ca.issue("www.usa.contoso.com");
    let spec = CertSpec {
        names: vec!["www.usa.contoso.com".into()],
        cert: dir.join(format!("cert-{generation}.pem")),
        key: dir.join(format!("key-{generation}.pem")),
    };
    let pem = |label: &str, der: &[u8]| {
        use base64::Engine as _;
        let b64 = base64::engine::general_purpose::STANDARD.encode(der);
        let lines: Vec<&str> = b64
            .as_bytes()
            .chunks(64)
            .map(|c| std::str::from_utf8(c).unwrap())
            .collect();
        format!(
            "-----BEGIN {label}-----\n{}\n-----END {label}-----\n",
            lines.join("\n")
        )
    };
    std::fs::write(&spec.cert, pem("CERTIFICATE", &chain[0])).unwrap();
    std::fs::write(&spec.key, pem("PRIVATE KEY", key.secret_der())).unwrap();
    spec
}

/// Resolves every name to the front's address (TLS checks the name the URL gives).
#[derive(Clone)]
struct ToFront(std::net::SocketAddr);

impl tower_service::Service<hyper_util::client::legacy::connect::dns::Name> for ToFront {
    type Response = std::iter::Once<std::net::SocketAddr>;
    type Error = std::io::Error;
    type Future = std::future::Ready<std::io::Result<Self::Response>>;

    fn poll_ready(
        &mut self,
        _: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::task::Poll::Ready(Ok(()))
    }

    fn call(&mut self, _: hyper_util::client::legacy::connect::dns::Name) -> Self::Future {
        std::future::ready(Ok(std::iter::once(self.0)))
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn certificates_reload_under_load_with_no_failed_request() {
    let dir = std::env::temp_dir().join(format!("balancer-reload-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let ca = Ca::new();
    let store = CertStore::load(&[write_spec(&ca, &dir, 0)]).unwrap();
    let router = testing::router("usa", Arc::new(Ok200));
    let (addr, stop_server) = common::spawn_front(router, store.clone(), Limits::default()).await;

    let mut http = HttpConnector::new_with_resolver(ToFront(addr));
    http.enforce_http(false);
    let tls_config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_root_certificates(ca.roots())
    .with_no_client_auth();
    let https = hyper_rustls::HttpsConnectorBuilder::new()
        .with_tls_config(tls_config)
        .https_only()
        .enable_http1()
        .enable_http2()
        .wrap_connector(http);
    // Half the clients keep connections alive, half open a new one per request.
    let pooled: Client<_, Empty<Bytes>> =
        Client::builder(TokioExecutor::new()).build(https.clone());
    let fresh: Client<_, Empty<Bytes>> = Client::builder(TokioExecutor::new())
        .pool_max_idle_per_host(0)
        .build(https);
    let uri: http::Uri = format!(
        "https://www.usa.contoso.com:{}/owa/healthcheck.htm",
        addr.port()
    )
    .parse()
    .unwrap();

    let done = Arc::new(AtomicBool::new(false));
    let (ok, failed) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
    let mut clients = Vec::new();
    for i in 0..4 {
        let client = if i % 2 == 0 {
            pooled.clone()
        } else {
            fresh.clone()
        };
        let (uri, done, ok, failed) = (uri.clone(), done.clone(), ok.clone(), failed.clone());
        clients.push(tokio::spawn(async move {
            while !done.load(Ordering::Relaxed) {
                let fine = match client.get(uri.clone()).await {
                    Ok(r) => r.status() == 200 && r.into_body().collect().await.is_ok(),
                    Err(e) => {
                        eprintln!("failed: {e:?}");
                        false
                    }
                };
                if fine {
                    ok.fetch_add(1, Ordering::Relaxed);
                } else {
                    failed.fetch_add(1, Ordering::Relaxed);
                }
            }
        }));
    }
    let mut last = write_spec(&ca, &dir, 0);
    for generation in 1..=20 {
        tokio::time::sleep(Duration::from_millis(50)).await;
        last = write_spec(&ca, &dir, generation);
        store.reload(std::slice::from_ref(&last)).unwrap();
    }
    tokio::time::sleep(Duration::from_millis(100)).await;
    done.store(true, Ordering::Relaxed);
    for c in clients {
        c.await.unwrap();
    }
    // A new connection gets the last certificate.
    use rustls::pki_types::pem::PemObject as _;
    let expected = rustls::pki_types::CertificateDer::from_pem_file(&last.cert).unwrap();
    let connector = tokio_rustls::TlsConnector::from(Arc::new(
        rustls::ClientConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(ca.roots())
        .with_no_client_auth(),
    ));
    let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    let name = rustls::pki_types::ServerName::try_from("www.usa.contoso.com").unwrap();
    let tls = connector.connect(name, tcp).await.unwrap();
    let presented = tls.get_ref().1.peer_certificates().unwrap()[0].clone();
    assert_eq!(
        presented, expected,
        "new connections get the last certificate"
    );

    let _ = stop_server.send(());
    let _ = std::fs::remove_dir_all(&dir);
    let (ok, failed) = (ok.load(Ordering::Relaxed), failed.load(Ordering::Relaxed));
    eprintln!("{ok} requests during 20 reloads, {failed} failed");
    assert_eq!(failed, 0, "no request fails during reloads");
    assert!(ok > 50, "the clients kept requesting: {ok}");
}
