//! Upstream test servers and a test CA, shared by the router's integration tests.
#![allow(dead_code)]

use balancer_user::router::proxy::UpstreamNode;
use bytes::Bytes;
use http::{Request, Response};
use http_body_util::{BodyExt as _, Full};
use hyper::{body::Incoming, service::service_fn};
use hyper_util::rt::{TokioExecutor, TokioIo};
use rcgen::{BasicConstraints, CertificateParams, IsCa, KeyPair};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use std::{convert::Infallible, net::SocketAddr, sync::Arc};
use tokio::{net::TcpListener, task::JoinHandle};

/// A test CA that signs the upstreams' certificates.
pub struct Ca {
    cert: rcgen::Certificate,
    key: KeyPair,
}

impl Ca {
    pub fn new() -> Self {
        let key = KeyPair::generate().unwrap();
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        // Distinct subject names: OpenSSL (curl) takes a leaf whose issuer equals its subject
        // for a self-signed certificate.
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, "balancer test CA");
        Self {
            cert: params.self_signed(&key).unwrap(),
            key,
        }
    }

    pub fn issue(&self, name: &str) -> (Vec<CertificateDer<'static>>, PrivateKeyDer<'static>) {
        let key = KeyPair::generate().unwrap();
        let cert = CertificateParams::new(vec![name.to_string()])
            .unwrap()
            .signed_by(&key, &self.cert, &self.key)
            .unwrap();
        (
            vec![cert.der().clone()],
            PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der())),
        )
    }

    /// The CA certificate, PEM.
    pub fn pem(&self) -> String {
        self.cert.pem()
    }

    /// A certificate for `name` and its key, PEM (for config files).
    pub fn issue_pem(&self, name: &str) -> (String, String) {
        let key = KeyPair::generate().unwrap();
        let mut params = CertificateParams::new(vec![name.to_string()]).unwrap();
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, name);
        let cert = params.signed_by(&key, &self.cert, &self.key).unwrap();
        (cert.pem(), key.serialize_pem())
    }

    pub fn roots(&self) -> rustls::RootCertStore {
        let mut roots = rustls::RootCertStore::empty();
        roots.add(self.cert.der().clone()).unwrap();
        roots
    }
}

/// An upstream test server: answers "<name> <path> fwd=<x-forwarded-for> via=<via> bytes=<n>".
/// Dropping it kills it: the listener and every open connection close, as when a node dies.
pub struct Upstream {
    pub addr: SocketAddr,
    task: JoinHandle<()>,
    _alive: tokio::sync::watch::Sender<()>,
}

impl Drop for Upstream {
    fn drop(&mut self) {
        self.task.abort();
    }
}

pub async fn upstream(
    name: &str,
    tls: Option<(Vec<CertificateDer<'static>>, PrivateKeyDer<'static>)>,
) -> Upstream {
    upstream_at(name, tls, "127.0.0.1:0".parse().unwrap()).await
}

/// As [`upstream`], on a given address (to bring a killed node back where it was).
pub async fn upstream_at(
    name: &str,
    tls: Option<(Vec<CertificateDer<'static>>, PrivateKeyDer<'static>)>,
    at: SocketAddr,
) -> Upstream {
    upstream_on(name, tls, TcpListener::bind(at).await.unwrap())
}

/// As [`upstream`], on a listener of the caller's (bound in a test namespace, say).
pub fn upstream_on(
    name: &str,
    tls: Option<(Vec<CertificateDer<'static>>, PrivateKeyDer<'static>)>,
    listener: TcpListener,
) -> Upstream {
    let addr = listener.local_addr().unwrap();
    let acceptor = tls.map(|(chain, key)| {
        let mut config = rustls::ServerConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(chain, key)
        .unwrap();
        config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
        tokio_rustls::TlsAcceptor::from(Arc::new(config))
    });
    let name = name.to_string();
    let (alive, alive_rx) = tokio::sync::watch::channel(());
    let task = tokio::spawn(async move {
        loop {
            let Ok((tcp, _)) = listener.accept().await else {
                return;
            };
            let (name, acceptor) = (name.clone(), acceptor.clone());
            let mut killed = alive_rx.clone();
            tokio::spawn(async move {
                let service = service_fn(move |req: Request<Incoming>| {
                    let name = name.clone();
                    async move {
                        let h = |k: &str| {
                            req.headers()
                                .get(k)
                                .and_then(|v| v.to_str().ok())
                                .unwrap_or("-")
                                .to_string()
                        };
                        let (fwd, via) = (h("x-forwarded-for"), h("x-balancer-via"));
                        let path = req
                            .uri()
                            .path_and_query()
                            .map(|p| p.to_string())
                            .unwrap_or_default();
                        let mut body = req.into_body();
                        let mut n = 0usize;
                        // Count until the end, or the first error (a body that failed is over).
                        while let Some(Ok(frame)) = body.frame().await {
                            n += frame.data_ref().map_or(0, |d| d.len());
                        }
                        Ok::<_, Infallible>(Response::new(Full::new(Bytes::from(format!(
                            "{name} {path} fwd={fwd} via={via} bytes={n}"
                        )))))
                    }
                });
                let builder = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
                let serve = async {
                    match acceptor {
                        Some(a) => {
                            if let Ok(tls) = a.accept(tcp).await {
                                let _ = builder.serve_connection(TokioIo::new(tls), service).await;
                            }
                        }
                        None => {
                            let _ = builder.serve_connection(TokioIo::new(tcp), service).await;
                        }
                    }
                };
                // The sender is dropped with the Upstream: the connection ends with it.
                tokio::select! {
                    () = serve => {}
                    _ = killed.changed() => {}
                }
            });
        }
    });
    Upstream {
        addr,
        task,
        _alive: alive,
    }
}

pub fn node(name: &str, scheme: &str, host: &str, addr: SocketAddr) -> UpstreamNode {
    UpstreamNode {
        name: name.into(),
        base: format!("{scheme}://{host}:{}", addr.port())
            .parse()
            .unwrap(),
        addrs: vec![addr],
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
    let tls = balancer_user::router::tls::server_config(store);
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
