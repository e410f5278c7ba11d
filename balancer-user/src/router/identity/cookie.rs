//! The router's affinity cookie (R5, last source): once a request's mailbox is known, the
//! router sets a cookie naming it, signed with HMAC-SHA256 under a key of the array, so that
//! later requests without another identity still reach the mailbox's site. A cookie that does
//! not verify is ignored.

use base64::{engine::general_purpose::URL_SAFE_NO_PAD as B64, Engine as _};
use hmac::{Hmac, Mac};
use http::HeaderMap;
use sha2::Sha256;

/// Name of the cookie.
pub const NAME: &str = "balancer_mailbox";

/// The signing key (the same on every node of the organisation), kept as HMAC's keyed state:
/// each signature or check starts from a copy of it instead of hashing the key again.
#[derive(Clone)]
pub struct Key(Hmac<Sha256>);

impl Key {
    pub fn new(bytes: impl AsRef<[u8]>) -> Self {
        Self(Hmac::new_from_slice(bytes.as_ref()).expect("HMAC takes keys of any length"))
    }

    fn mac(&self) -> Hmac<Sha256> {
        self.0.clone()
    }
}

impl std::fmt::Debug for Key {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Key(..)")
    }
}

/// The cookie value for `mailbox`: `base64url(mailbox).base64url(hmac)`.
pub fn value(key: &Key, mailbox: &str) -> String {
    let mut mac = key.mac();
    mac.update(mailbox.as_bytes());
    format!(
        "{}.{}",
        B64.encode(mailbox),
        B64.encode(mac.finalize().into_bytes())
    )
}

/// The mailbox a cookie value names, if its signature verifies.
pub fn verify(key: &Key, value: &str) -> Option<String> {
    let (name, tag) = value.split_once('.')?;
    let name = B64.decode(name).ok()?;
    let tag = B64.decode(tag).ok()?;
    let mut mac = key.mac();
    mac.update(&name);
    mac.verify_slice(&tag).ok()?;
    super::normalize(std::str::from_utf8(&name).ok()?)
}

/// The verified mailbox of the request's affinity cookie, if any.
pub fn from_headers(headers: &HeaderMap, key: &Key) -> Option<String> {
    headers
        .get_all(http::header::COOKIE)
        .iter()
        .filter_map(|h| h.to_str().ok())
        .flat_map(|h| h.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .filter(|(name, _)| *name == NAME)
        .find_map(|(_, value)| verify(key, value))
}
