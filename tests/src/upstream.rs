//! A stand-in upstream (a mailbox back end, or a 2003 back-end server): it answers every
//! request with `<name> <path> fwd=<x-forwarded-for> via=<x-balancer-via> bytes=<body length>`,
//! over TLS or plain HTTP. A query parameter `delay_ms=N` makes it wait N ms before answering
//! (a long poll). Used by the router's tests and, as the `lab-upstream` binary, by the
//! Contoso lab.

use bytes::Bytes;
use http::{Request, Response};
use http_body_util::{BodyExt as _, Full};
use hyper::{body::Incoming, service::service_fn};
use hyper_util::rt::{TokioExecutor, TokioIo};
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use std::{
    convert::Infallible,
    net::SocketAddr,
    sync::{
        atomic::{AtomicUsize, Ordering},
        Arc,
    },
};
use tokio::{net::TcpListener, task::JoinHandle};

/// An upstream test server: answers "<name> <path> fwd=<x-forwarded-for> via=<via> bytes=<n>".
/// Dropping it kills it: the listener and every open connection close, as when a node dies.
pub struct Upstream {
    pub addr: SocketAddr,
    accepted: Arc<AtomicUsize>,
    task: JoinHandle<()>,
    _alive: tokio::sync::watch::Sender<()>,
}

impl Upstream {
    /// How many connections it has accepted.
    pub fn connections(&self) -> usize {
        self.accepted.load(Ordering::Relaxed)
    }
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
    let accepted = Arc::new(AtomicUsize::new(0));
    let counter = accepted.clone();
    let task = tokio::spawn(async move {
        loop {
            let Ok((tcp, _)) = listener.accept().await else {
                return;
            };
            counter.fetch_add(1, Ordering::Relaxed);
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
                        if let Some(ms) = delay_ms(&path) {
                            tokio::time::sleep(std::time::Duration::from_millis(ms)).await;
                        }
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
        accepted,
        task,
        _alive: alive,
    }
}

/// The `delay_ms` query parameter of a path and query.
fn delay_ms(path_and_query: &str) -> Option<u64> {
    let (_, query) = path_and_query.split_once('?')?;
    query
        .split('&')
        .find_map(|p| p.strip_prefix("delay_ms="))
        .and_then(|v| v.parse().ok())
}
