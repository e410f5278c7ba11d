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
    let mut roots = rustls::RootCertStore::empty();
    roots
        .add(CertificateDer::from_pem_file(&spec.cert).unwrap())
        .unwrap();
    let store = Arc::new(CountingStore {
        inner: rustls::client::ClientSessionMemoryCache::new(16),
        tickets: Default::default(),
    });
    let mut client = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_root_certificates(roots)
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
