//! Certificates by SNI, and reloads that are all or nothing.

use super::*;
use rcgen::{generate_simple_self_signed, CertifiedKey as Generated};
use rustls::pki_types::ServerName;

struct Dir(PathBuf);

impl Drop for Dir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn dir(name: &str) -> Dir {
    let d = std::env::temp_dir().join(format!("balancer-tls-{name}-{}", std::process::id()));
    std::fs::create_dir_all(&d).unwrap();
    Dir(d)
}

fn write_cert(dir: &Path, name: &str) -> CertSpec {
    let Generated { cert, key_pair } = generate_simple_self_signed(vec![name.to_string()]).unwrap();
    let spec = CertSpec {
        names: vec![name.into()],
        cert: dir.join(format!("{name}.crt")),
        key: dir.join(format!("{name}.key")),
    };
    std::fs::write(&spec.cert, cert.pem()).unwrap();
    std::fs::write(&spec.key, key_pair.serialize_pem()).unwrap();
    spec
}

fn leaf(c: &CertifiedKey) -> Vec<u8> {
    c.cert[0].to_vec()
}

#[test]
fn certificates_are_chosen_by_sni() {
    let d = dir("sni");
    let usa = write_cert(&d.0, "www.usa.contoso.com");
    let europe = write_cert(&d.0, "www.europe.contoso.com");
    let mut wildcard = write_cert(&d.0, "wild.contoso.net");
    wildcard.names = vec!["*.contoso.net".into()];
    let store = CertStore::load(&[usa.clone(), europe.clone(), wildcard]).unwrap();
    let usa_leaf = leaf(&store.for_name(Some("www.usa.contoso.com")));
    let europe_leaf = leaf(&store.for_name(Some("WWW.Europe.Contoso.com")));
    assert_ne!(usa_leaf, europe_leaf);
    assert_eq!(
        leaf(&store.for_name(None)),
        usa_leaf,
        "no SNI: the first certificate"
    );
    assert_eq!(
        leaf(&store.for_name(Some("unknown.example"))),
        usa_leaf,
        "unknown name: the default"
    );
    assert_ne!(
        leaf(&store.for_name(Some("mail.contoso.net"))),
        usa_leaf,
        "wildcard"
    );
}

#[test]
fn a_bad_reload_is_refused_and_the_old_certificates_kept() {
    let d = dir("reload");
    let usa = write_cert(&d.0, "www.usa.contoso.com");
    let store = CertStore::load(std::slice::from_ref(&usa)).unwrap();
    let before = leaf(&store.for_name(Some("www.usa.contoso.com")));

    let other = write_cert(&d.0, "other.contoso.com");
    let mismatched = CertSpec {
        names: usa.names.clone(),
        cert: usa.cert.clone(),
        key: other.key.clone(),
    };
    let garbage = d.0.join("garbage.crt");
    std::fs::write(
        &garbage,
        "-----BEGIN CERTIFICATE-----\nnot base64\n-----END CERTIFICATE-----\n",
    )
    .unwrap();
    let cases = [
        (vec![mismatched], "does not belong"),
        (
            vec![CertSpec {
                cert: garbage,
                ..usa.clone()
            }],
            "garbage.crt",
        ),
        (
            vec![CertSpec {
                cert: d.0.join("missing.crt"),
                ..usa.clone()
            }],
            "missing.crt",
        ),
        (
            vec![CertSpec {
                names: vec![],
                ..usa.clone()
            }],
            "no names",
        ),
        (vec![], "no certificates"),
    ];
    for (specs, why) in cases {
        let err = store
            .reload(&specs)
            .expect_err("a bad set was accepted")
            .to_string();
        assert!(err.contains(why), "expected {why:?} in {err:?}");
        assert_eq!(
            leaf(&store.for_name(Some("www.usa.contoso.com"))),
            before,
            "the old certificate stays"
        );
    }

    // A good reload takes effect.
    let renewed = write_cert(&d.0, "www.usa.contoso.com");
    store.reload(&[renewed]).unwrap();
    assert_ne!(leaf(&store.for_name(Some("www.usa.contoso.com"))), before);
}

/// Roots that trust `spec`'s (self-signed) certificate.
fn trusting(spec: &CertSpec) -> rustls::RootCertStore {
    let mut roots = rustls::RootCertStore::empty();
    roots
        .add(CertificateDer::from_pem_file(&spec.cert).unwrap())
        .unwrap();
    roots
}

/// Moves TLS records between the two ends until neither has anything left to send.
fn exchange(client: &mut rustls::ClientConnection, server: &mut rustls::ServerConnection) {
    loop {
        let mut records = Vec::new();
        client.write_tls(&mut records).unwrap();
        let from_client = records.len();
        server.read_tls(&mut records.as_slice()).unwrap();
        server.process_new_packets().unwrap();
        records.clear();
        server.write_tls(&mut records).unwrap();
        client.read_tls(&mut records.as_slice()).unwrap();
        client.process_new_packets().unwrap();
        if from_client == 0 && records.is_empty() {
            return;
        }
    }
}

/// A client's session store that counts the TLS 1.3 tickets it is given.
#[derive(Debug)]
struct CountingStore {
    inner: rustls::client::ClientSessionMemoryCache,
    tickets: std::sync::atomic::AtomicUsize,
}

impl CountingStore {
    fn take_count(&self) -> usize {
        self.tickets.swap(0, std::sync::atomic::Ordering::SeqCst)
    }
}

impl rustls::client::ClientSessionStore for CountingStore {
    fn set_kx_hint(&self, name: ServerName<'static>, group: rustls::NamedGroup) {
        self.inner.set_kx_hint(name, group)
    }
    fn kx_hint(&self, name: &ServerName<'_>) -> Option<rustls::NamedGroup> {
        self.inner.kx_hint(name)
    }
    fn set_tls12_session(
        &self,
        name: ServerName<'static>,
        v: rustls::client::Tls12ClientSessionValue,
    ) {
        self.inner.set_tls12_session(name, v)
    }
    fn tls12_session(
        &self,
        name: &ServerName<'_>,
    ) -> Option<rustls::client::Tls12ClientSessionValue> {
        self.inner.tls12_session(name)
    }
    fn remove_tls12_session(&self, name: &ServerName<'static>) {
        self.inner.remove_tls12_session(name)
    }
    fn insert_tls13_ticket(
        &self,
        name: ServerName<'static>,
        v: rustls::client::Tls13ClientSessionValue,
    ) {
        self.tickets
            .fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        self.inner.insert_tls13_ticket(name, v)
    }
    fn take_tls13_ticket(
        &self,
        name: &ServerName<'static>,
    ) -> Option<rustls::client::Tls13ClientSessionValue> {
        self.inner.take_tls13_ticket(name)
    }
}

#[test]
fn sessions_resume_from_stateless_tickets_one_per_connection() {
    let d = dir("tickets");
    let spec = write_cert(&d.0, "www.usa.contoso.com");
    let server = server_config(CertStore::load(std::slice::from_ref(&spec)).unwrap());
    assert!(
        server.ticketer.enabled(),
        "tickets, not only the session cache"
    );
    let store = Arc::new(CountingStore {
        inner: rustls::client::ClientSessionMemoryCache::new(16),
        tickets: Default::default(),
    });
    let mut client = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_root_certificates(trusting(&spec))
    .with_no_client_auth();
    client.resumption = rustls::client::Resumption::store(store.clone());
    let client = Arc::new(client);
    let mut seen = Vec::new();
    for _ in 0..3 {
        let name = "www.usa.contoso.com".try_into().unwrap();
        let mut c = rustls::ClientConnection::new(client.clone(), name).unwrap();
        let mut s = rustls::ServerConnection::new(server.clone()).unwrap();
        exchange(&mut c, &mut s);
        seen.push((c.handshake_kind(), store.take_count()));
    }
    use rustls::HandshakeKind::{Full, Resumed};
    assert_eq!(
        seen,
        [(Some(Full), 1), (Some(Resumed), 1), (Some(Resumed), 1)],
        "each connection resumes from the one ticket the one before was given"
    );
}

/// The suite a client offering `offered` (in its order of preference) over `version` gets from
/// the front side, the handshake taken as the server takes it: the ClientHello read first.
fn negotiated(
    front: &FrontTls,
    spec: &CertSpec,
    offered: Vec<rustls::SupportedCipherSuite>,
    version: &'static rustls::SupportedProtocolVersion,
) -> rustls::CipherSuite {
    let provider = rustls::crypto::CryptoProvider {
        cipher_suites: offered,
        ..rustls::crypto::ring::default_provider()
    };
    let client = rustls::ClientConfig::builder_with_provider(Arc::new(provider))
        .with_protocol_versions(&[version])
        .unwrap()
        .with_root_certificates(trusting(spec))
        .with_no_client_auth();
    let name = ServerName::try_from(spec.names[0].clone()).unwrap();
    let mut c = rustls::ClientConnection::new(Arc::new(client), name).unwrap();
    let mut hello = Vec::new();
    c.write_tls(&mut hello).unwrap();
    let mut acceptor = Acceptor::default();
    acceptor.read_tls(&mut hello.as_slice()).unwrap();
    let Ok(Some(accepted)) = acceptor.accept() else {
        panic!("no ClientHello read")
    };
    let config = front.for_hello(&accepted.client_hello());
    let Ok(mut s) = accepted.into_connection(config) else {
        panic!("the handshake did not start")
    };
    exchange(&mut c, &mut s);
    c.negotiated_cipher_suite().expect("a suite").suite()
}

#[test]
fn aes_128_gcm_is_preferred_unless_the_client_puts_chacha20_first() {
    use rustls::crypto::ring::cipher_suite::*;
    use rustls::version::{TLS12, TLS13};
    let d = dir("suites");
    let spec = write_cert(&d.0, "www.usa.contoso.com");
    let front = FrontTls::new(CertStore::load(std::slice::from_ref(&spec)).unwrap());
    let cases = [
        // OpenSSL's own order (wrk, h2load, curl): AES-256 first.
        (
            vec![
                TLS13_AES_256_GCM_SHA384,
                TLS13_CHACHA20_POLY1305_SHA256,
                TLS13_AES_128_GCM_SHA256,
            ],
            &TLS13,
            TLS13_AES_128_GCM_SHA256,
        ),
        // A client without AES instructions.
        (
            vec![
                TLS13_CHACHA20_POLY1305_SHA256,
                TLS13_AES_256_GCM_SHA384,
                TLS13_AES_128_GCM_SHA256,
            ],
            &TLS13,
            TLS13_CHACHA20_POLY1305_SHA256,
        ),
        // Only AES-256: taken, not refused.
        (
            vec![TLS13_AES_256_GCM_SHA384],
            &TLS13,
            TLS13_AES_256_GCM_SHA384,
        ),
        (
            vec![
                TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384,
                TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256,
                TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256,
            ],
            &TLS12,
            TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256,
        ),
        (
            vec![
                TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256,
                TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256,
            ],
            &TLS12,
            TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256,
        ),
    ];
    for (offered, version, expected) in cases {
        let names: Vec<_> = offered.iter().map(|s| s.suite()).collect();
        assert_eq!(
            negotiated(&front, &spec, offered, version),
            expected.suite(),
            "offered {names:?}"
        );
    }
}

#[test]
fn the_preference_orders_all_of_rings_suites() {
    let sorted = |suites: &[rustls::SupportedCipherSuite]| {
        let mut codes: Vec<u16> = suites.iter().map(|s| s.suite().into()).collect();
        codes.sort_unstable();
        codes
    };
    assert_eq!(
        sorted(&suites::preference()),
        sorted(&rustls::crypto::ring::default_provider().cipher_suites),
        "none added, none dropped: only the order is the router's"
    );
}
