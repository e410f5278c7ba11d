//! Opening connections to upstream nodes: TCP to the addresses the configuration gives for the
//! node (the system resolver otherwise), TLS checked against the configured trust with the
//! InternalURL host as the name (R15), ALPN `h2` or `http/1.1`, then hyper's handshake. Each
//! connection is driven by a task of its own; the [`Sender`] is what the pool keeps.

use super::super::{responses::Body, tls::suites};
use http::uri::Scheme;
use hyper::client::conn::{http1, http2};
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use rustls::pki_types::ServerName;
use std::{io, net::SocketAddr, sync::Arc, time::Duration};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;
use tracing::debug;

/// Where one origin (scheme, host, port) of a node is reached.
#[derive(Debug, Clone)]
pub struct Origin {
    pub scheme: Scheme,
    /// The InternalURL host: the TLS name, and the name resolved when `addrs` is empty.
    pub host: String,
    pub port: u16,
    pub addrs: Vec<SocketAddr>,
}

impl Origin {
    pub fn is_https(&self) -> bool {
        self.scheme == Scheme::HTTPS
    }
}

/// Why no connection could be opened: the node is unavailable (ejected, and a request that
/// can be replayed moves on to the next node). The cause is in the source chain.
#[derive(Debug, thiserror::Error)]
pub enum ConnectError {
    #[error("resolving {host}")]
    Resolve { host: String, source: io::Error },
    #[error("{host} resolves to no address")]
    NoAddress { host: String },
    #[error("connecting to {addr}")]
    Tcp { addr: SocketAddr, source: io::Error },
    #[error("no connection within {0:?}")]
    Timeout(Duration),
    #[error("{host} is not a valid TLS server name")]
    ServerName { host: String },
    #[error("TLS handshake with {host}")]
    Tls { host: String, source: io::Error },
    #[error("HTTP handshake")]
    Handshake(#[source] hyper::Error),
}

/// A ready-to-use side of an upstream connection.
pub enum Sender {
    Http1(http1::SendRequest<Body>),
    Http2(http2::SendRequest<Body>),
}

/// Opens upstream connections.
pub struct Connector {
    tls: TlsConnector,
    connect_timeout: Duration,
}

impl Connector {
    pub fn new(trust: rustls::RootCertStore, connect_timeout: Duration) -> Self {
        // The suites offered in the router's order: an upstream that follows its clients'
        // order (nginx's default) takes AES-128-GCM, as the front side does.
        let mut tls = rustls::ClientConfig::builder_with_provider(suites::provider())
            .with_safe_default_protocol_versions()
            .expect("ring supports the default versions")
            .with_root_certificates(trust)
            .with_no_client_auth();
        tls.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
        Self {
            tls: TlsConnector::from(Arc::new(tls)),
            connect_timeout,
        }
    }

    /// A new connection to `origin`, its driving task spawned.
    pub async fn connect(&self, origin: &Origin) -> Result<Sender, ConnectError> {
        let tcp = tokio::time::timeout(self.connect_timeout, tcp(origin))
            .await
            .map_err(|_| ConnectError::Timeout(self.connect_timeout))??;
        if !origin.is_https() {
            return http1_handshake(tcp).await;
        }
        let name = ServerName::try_from(origin.host.trim_matches(['[', ']']).to_string()).map_err(
            |_| ConnectError::ServerName {
                host: origin.host.clone(),
            },
        )?;
        let tls = tokio::time::timeout(self.connect_timeout, self.tls.connect(name, tcp))
            .await
            .map_err(|_| ConnectError::Timeout(self.connect_timeout))?
            .map_err(|source| ConnectError::Tls {
                host: origin.host.clone(),
                source,
            })?;
        if tls.get_ref().1.alpn_protocol() == Some(b"h2") {
            let (sender, connection) = http2::Builder::new(TokioExecutor::new())
                .timer(TokioTimer::new())
                .handshake(TokioIo::new(tls))
                .await
                .map_err(ConnectError::Handshake)?;
            drive(connection, "HTTP/2");
            return Ok(Sender::Http2(sender));
        }
        http1_handshake(tls).await
    }
}

async fn http1_handshake<T>(io: T) -> Result<Sender, ConnectError>
where
    T: tokio::io::AsyncRead + tokio::io::AsyncWrite + Send + Unpin + 'static,
{
    let (sender, connection) = http1::Builder::new()
        .handshake(TokioIo::new(io))
        .await
        .map_err(ConnectError::Handshake)?;
    drive(connection, "HTTP/1.1");
    Ok(Sender::Http1(sender))
}

/// Runs a connection's I/O in a task of its own until it closes.
fn drive<C>(connection: C, protocol: &'static str)
where
    C: std::future::Future<Output = hyper::Result<()>> + Send + 'static,
{
    tokio::spawn(async move {
        if let Err(e) = connection.await {
            debug!(error = %e, protocol, "upstream connection ended");
        }
    });
}

/// A TCP connection to the first of the origin's addresses that answers.
async fn tcp(origin: &Origin) -> Result<TcpStream, ConnectError> {
    let resolved;
    let addrs = match origin.addrs.is_empty() {
        false => &origin.addrs,
        true => {
            resolved = tokio::net::lookup_host((origin.host.as_str(), origin.port))
                .await
                .map_err(|source| ConnectError::Resolve {
                    host: origin.host.clone(),
                    source,
                })?
                .collect::<Vec<_>>();
            &resolved
        }
    };
    let mut last = ConnectError::NoAddress {
        host: origin.host.clone(),
    };
    for addr in addrs {
        match TcpStream::connect(addr).await {
            Ok(stream) => {
                // Requests and answers are small writes that must not wait for an ACK.
                if let Err(e) = stream.set_nodelay(true) {
                    debug!(%addr, error = %e, "TCP_NODELAY not set on an upstream connection");
                }
                return Ok(stream);
            }
            Err(source) => {
                last = ConnectError::Tcp {
                    addr: *addr,
                    source,
                }
            }
        }
    }
    Err(last)
}
