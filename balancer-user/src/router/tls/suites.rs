//! Which cipher suite a connection gets, on both sides of the router.
//!
//! The router prefers AES-128-GCM (with SHA-256) to AES-256-GCM (with SHA-384), as Go's
//! `crypto/tls` and BoringSSL do, and follows the client's own order when the client puts
//! ChaCha20-Poly1305 first, which is how a client without AES instructions says so (OpenSSL's
//! `PrioritizeChaCha`). Every suite here is strong; they differ in cost. A TLS 1.3 handshake's
//! key schedule is a few dozen HMACs with the suite's hash. ring runs SHA-512 (and so SHA-384)
//! with vector instructions on Intel processors only, and SHA-256 with the SHA extensions
//! wherever they exist: on this box's AMD EPYC, in a load of resumed handshakes, SHA-512 took
//! 14% of the router's CPU under AES-256-GCM-SHA384 and SHA-256 2% under AES-128-GCM-SHA256.
//! AES-128 also takes 10 rounds a block to AES-256's 14.

use rustls::{
    crypto::{ring, CryptoProvider},
    server::ClientHello,
    CipherSuite, SupportedCipherSuite,
};
use std::sync::Arc;

/// ring's suites (all of them, as its default provider has) in the router's order of
/// preference: AES-128-GCM, then AES-256-GCM, then ChaCha20-Poly1305; TLS 1.3's first.
pub fn preference() -> Vec<SupportedCipherSuite> {
    use ring::cipher_suite::*;
    vec![
        TLS13_AES_128_GCM_SHA256,
        TLS13_AES_256_GCM_SHA384,
        TLS13_CHACHA20_POLY1305_SHA256,
        TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256,
        TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256,
        TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384,
        TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384,
        TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256,
        TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256,
    ]
}

/// ring with the suites in [`preference`] order: the front side's, and the upstream
/// connections' (a client offers its suites in this order).
pub fn provider() -> Arc<CryptoProvider> {
    Arc::new(CryptoProvider {
        cipher_suites: preference(),
        ..ring::default_provider()
    })
}

/// Whether the first of the client's suites that is also in `ours` is a ChaCha20-Poly1305
/// one (GREASE values and suites the router does not have are passed over).
pub fn client_puts_chacha_first(hello: &ClientHello<'_>, ours: &[SupportedCipherSuite]) -> bool {
    hello
        .cipher_suites()
        .iter()
        .find(|offered| ours.iter().any(|s| s.suite() == **offered))
        .is_some_and(|first| is_chacha(*first))
}

fn is_chacha(suite: CipherSuite) -> bool {
    matches!(
        suite,
        CipherSuite::TLS13_CHACHA20_POLY1305_SHA256
            | CipherSuite::TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256
            | CipherSuite::TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256
    )
}
