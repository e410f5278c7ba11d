//! Idle TLS connections: opened (handshake done, no request) from inside the bench namespace
//! and held while the server's resident memory is read.

use anyhow::Context as _;
use rustls::pki_types::ServerName;
use std::{net::SocketAddr, sync::Arc};
use tokio::net::TcpStream;
use tokio_rustls::{client::TlsStream, TlsConnector};

/// Handshakes in flight at once while opening.
const CONCURRENT_HANDSHAKES: usize = 64;

/// Opens `count` TLS connections to `addr` (ALPN http/1.1), on a single-threaded runtime so
/// that every socket is created on the calling thread (which is inside the namespace), then
/// runs `measure` while they are all open, and closes them.
pub fn with_idle_connections<T>(
    addr: SocketAddr,
    count: usize,
    roots: rustls::RootCertStore,
    measure: impl FnOnce() -> T,
) -> anyhow::Result<T> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let mut config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()?
    .with_root_certificates(roots)
    .with_no_client_auth();
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    let connector = TlsConnector::from(Arc::new(config));
    let connections = runtime.block_on(async {
        use futures_util::StreamExt as _;
        futures_util::stream::iter(0..count)
            .map(|_| connect(&connector, addr))
            .buffer_unordered(CONCURRENT_HANDSHAKES)
            .collect::<Vec<anyhow::Result<TlsStream<TcpStream>>>>()
            .await
            .into_iter()
            .collect::<anyhow::Result<Vec<_>>>()
    })?;
    let value = measure();
    drop(connections);
    Ok(value)
}

async fn connect(
    connector: &TlsConnector,
    addr: SocketAddr,
) -> anyhow::Result<TlsStream<TcpStream>> {
    let tcp = TcpStream::connect(addr).await.context("connect")?;
    let name = ServerName::try_from(super::servers::FRONT_NAME)?;
    connector.connect(name, tcp).await.context("TLS handshake")
}
