//! TLS of the front side: one certificate per site name, chosen by SNI, from PEM files, and
//! reloaded without a restart. A reload is all or nothing: if any new certificate or key is
//! unreadable, malformed, or does not match, the reload is refused and the running set kept.

use ahash::AHashMap;
use arc_swap::ArcSwap;
use rustls::{
    crypto::ring::sign::any_supported_type,
    pki_types::{pem::PemObject, CertificateDer, PrivateKeyDer},
    server::{Acceptor, ClientHello, ResolvesServerCert},
    sign::CertifiedKey,
    ServerConfig,
};
use std::{
    path::{Path, PathBuf},
    sync::Arc,
};
use tokio::net::TcpStream;
use tokio_rustls::{server::TlsStream, LazyConfigAcceptor};

pub mod suites;
#[cfg(test)]
mod tests;

/// One certificate and the names it is served for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CertSpec {
    /// SNI names (`www.usa.contoso.com`, or `*.contoso.com`); the first spec is also the
    /// default for clients that send no SNI or an unknown name.
    pub names: Vec<String>,
    /// PEM: the certificate chain, leaf first.
    pub cert: PathBuf,
    /// PEM: the private key (PKCS#8, PKCS#1 or SEC1).
    pub key: PathBuf,
}

/// Why a certificate set was refused.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("no certificates configured")]
    Empty,
    #[error("{path}: {reason}")]
    File { path: PathBuf, reason: String },
    #[error("{cert}: the private key {key} does not belong to this certificate")]
    Mismatch { cert: PathBuf, key: PathBuf },
    #[error("certificate {0} has no names to serve")]
    NoNames(PathBuf),
}

/// The certificates in force.
#[derive(Debug)]
struct Certs {
    by_name: AHashMap<String, Arc<CertifiedKey>>,
    default: Arc<CertifiedKey>,
}

/// A certificate set read and checked, not yet in force.
#[derive(Debug)]
pub struct CertSet(Certs);

impl CertSet {
    pub fn read(specs: &[CertSpec]) -> Result<Self, TlsError> {
        Ok(Self(build(specs)?))
    }
}

/// Certificates by SNI name, swappable while connections are served.
#[derive(Debug)]
pub struct CertStore {
    current: ArcSwap<Certs>,
}

impl CertStore {
    pub fn load(specs: &[CertSpec]) -> Result<Arc<Self>, TlsError> {
        Ok(Arc::new(Self {
            current: ArcSwap::from_pointee(build(specs)?),
        }))
    }

    /// Replaces the whole set, or nothing (the error says which file and why). Handshakes in
    /// progress finish with the certificate they started with.
    pub fn reload(&self, specs: &[CertSpec]) -> Result<(), TlsError> {
        self.install(CertSet::read(specs)?);
        Ok(())
    }

    /// Puts a set read earlier in force (a reload that checks everything before changing
    /// anything).
    pub fn install(&self, set: CertSet) {
        self.current.store(Arc::new(set.0));
    }

    /// The certificate for an SNI name: exact, then `*.parent`, then the default.
    pub fn for_name(&self, name: Option<&str>) -> Arc<CertifiedKey> {
        let certs = self.current.load();
        let Some(name) = name.map(str::to_ascii_lowercase) else {
            return certs.default.clone();
        };
        if let Some(c) = certs.by_name.get(&name) {
            return c.clone();
        }
        if let Some((_, parent)) = name.split_once('.') {
            if let Some(c) = certs.by_name.get(&format!("*.{parent}")) {
                return c.clone();
            }
        }
        certs.default.clone()
    }
}

impl ResolvesServerCert for CertStore {
    fn resolve(&self, hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.for_name(hello.server_name()))
    }
}

fn build(specs: &[CertSpec]) -> Result<Certs, TlsError> {
    let mut by_name = AHashMap::new();
    let mut default = None;
    for spec in specs {
        if spec.names.is_empty() {
            return Err(TlsError::NoNames(spec.cert.clone()));
        }
        let key = Arc::new(certified_key(spec)?);
        for name in &spec.names {
            by_name.insert(name.to_ascii_lowercase(), key.clone());
        }
        default.get_or_insert(key);
    }
    Ok(Certs {
        by_name,
        default: default.ok_or(TlsError::Empty)?,
    })
}

fn file_error(path: &Path, reason: impl std::fmt::Display) -> TlsError {
    TlsError::File {
        path: path.to_path_buf(),
        reason: reason.to_string(),
    }
}

fn certified_key(spec: &CertSpec) -> Result<CertifiedKey, TlsError> {
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(&spec.cert)
        .map_err(|e| file_error(&spec.cert, e))?
        .collect::<Result<_, _>>()
        .map_err(|e| file_error(&spec.cert, e))?;
    if chain.is_empty() {
        return Err(file_error(&spec.cert, "no certificate in the file"));
    }
    let key = PrivateKeyDer::from_pem_file(&spec.key).map_err(|e| file_error(&spec.key, e))?;
    let signing = any_supported_type(&key).map_err(|e| file_error(&spec.key, e))?;
    let certified = CertifiedKey::new(chain, signing);
    certified.keys_match().map_err(|_| TlsError::Mismatch {
        cert: spec.cert.clone(),
        key: spec.key.clone(),
    })?;
    Ok(certified)
}

/// The front side's TLS: a configuration for each way of choosing the cipher suite
/// ([`suites`]), sharing the certificates, the ticket key and the session cache, so that a
/// session made under one resumes under the other.
#[derive(Clone)]
pub struct FrontTls {
    router_order: Arc<ServerConfig>,
    client_order: Arc<ServerConfig>,
}

impl FrontTls {
    pub fn new(store: Arc<CertStore>) -> Self {
        let router_order = server_config(store);
        let mut client_order = (*router_order).clone();
        client_order.ignore_client_order = false;
        Self {
            router_order,
            client_order: Arc::new(client_order),
        }
    }

    /// Takes a new connection's TLS handshake: reads its ClientHello, then answers with the
    /// configuration [`Self::for_hello`] picks.
    pub async fn accept(&self, tcp: TcpStream) -> std::io::Result<TlsStream<TcpStream>> {
        let start = LazyConfigAcceptor::new(Acceptor::default(), tcp).await?;
        let config = self.for_hello(&start.client_hello());
        start.into_stream(config).await
    }

    /// The configuration for the client that sent `hello`: the router's order of suites,
    /// or the client's own if it puts ChaCha20-Poly1305 first.
    pub fn for_hello(&self, hello: &ClientHello<'_>) -> Arc<ServerConfig> {
        let ours = &self.router_order.crypto_provider().cipher_suites;
        match suites::client_puts_chacha_first(hello, ours) {
            true => self.client_order.clone(),
            false => self.router_order.clone(),
        }
    }
}

/// The front side's TLS configuration: TLS 1.2 and 1.3, ALPN h2 and http/1.1, certificates
/// from `store`, cipher suites in the router's order ([`suites`]).
fn server_config(store: Arc<CertStore>) -> Arc<ServerConfig> {
    let mut config = ServerConfig::builder_with_provider(suites::provider())
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
        .expect("ring supports TLS 1.2 and 1.3")
        .with_no_client_auth()
        .with_cert_resolver(store);
    config.ignore_client_order = true;
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    // Sessions resume from tickets the client keeps (encrypted with a key rotated every six
    // hours), not from a server-side cache of 256 sessions that thousands of mail clients
    // would churn through: a resumed handshake costs no certificate signature.
    // One ticket per connection, as Go's crypto/tls sends and OpenSSL after a resumed
    // handshake: the next connection resumes from it and gets the next one, and a client
    // that resumes one connection after another (a mail client's reconnects) decrypts and
    // stores one ticket each time, not two (rustls' default) of which it uses one.
    config.send_tls13_tickets = 1;
    match rustls::crypto::ring::Ticketer::new() {
        Ok(ticketer) => config.ticketer = ticketer,
        Err(e) => {
            tracing::warn!(error = %e, "no TLS session tickets: resumption from the session cache only")
        }
    }
    Arc::new(config)
}
