//! Certificates by SNI, and reloads that are all or nothing.

use super::*;
use rcgen::{generate_simple_self_signed, CertifiedKey as Generated};

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

#[test]
fn sessions_resume_from_stateless_tickets() {
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
    let client = Arc::new(
        rustls::ClientConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth(),
    );
    let mut kinds = Vec::new();
    for _ in 0..2 {
        let name = "www.usa.contoso.com".try_into().unwrap();
        let mut c = rustls::ClientConnection::new(client.clone(), name).unwrap();
        let mut s = rustls::ServerConnection::new(server.clone()).unwrap();
        exchange(&mut c, &mut s);
        kinds.push(c.handshake_kind());
    }
    use rustls::HandshakeKind::{Full, Resumed};
    assert_eq!(kinds, [Some(Full), Some(Resumed)]);
}
