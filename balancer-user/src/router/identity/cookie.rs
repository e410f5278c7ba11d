//! The router's affinity cookie (R5, last source): once a request's mailbox is known, the
//! router sets a cookie naming it, signed with HMAC-SHA256 under a key of the array, so that
//! later requests without another identity still reach the mailbox's site. A cookie that does
//! not verify is ignored.

use crate::router::responses::header_value;
use base64::{engine::general_purpose::URL_SAFE_NO_PAD as B64, Engine as _};
use http::{HeaderMap, HeaderValue};
use ring::hmac;

/// Name of the cookie.
pub const NAME: &str = "balancer_mailbox";

/// The signing key (the same on every node of the organisation), kept as HMAC-SHA256's keyed
/// state: each signature or check starts from it instead of hashing the key again.
#[derive(Clone)]
pub struct Key(hmac::Key);

impl Key {
    pub fn new(bytes: impl AsRef<[u8]>) -> Self {
        Self(hmac::Key::new(hmac::HMAC_SHA256, bytes.as_ref()))
    }
}

impl std::fmt::Debug for Key {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Key(..)")
    }
}

/// The attributes of the cookie: sent over HTTPS only, hidden from scripts, for every path.
const ATTRIBUTES: &str = "; Path=/; Secure; HttpOnly; SameSite=Lax";

/// The cookie value for `mailbox`: `base64url(mailbox).base64url(hmac)`.
pub fn value(key: &Key, mailbox: &str) -> String {
    let mut text = String::new();
    push_value(key, mailbox, &mut text);
    text
}

/// The `Set-Cookie` header value that sets the cookie for `mailbox`, built in one buffer
/// (every request whose mailbox another source names gets one).
pub fn set_cookie(key: &Key, mailbox: &str) -> HeaderValue {
    let value_len = 4 * mailbox.len().div_ceil(3) + 1 + 43;
    let mut text = String::with_capacity(NAME.len() + 1 + value_len + ATTRIBUTES.len());
    text.push_str(NAME);
    text.push('=');
    push_value(key, mailbox, &mut text);
    text.push_str(ATTRIBUTES);
    header_value(text).expect("base64url and ASCII attributes")
}

fn push_value(key: &Key, mailbox: &str, text: &mut String) {
    let tag = hmac::sign(&key.0, mailbox.as_bytes());
    B64.encode_string(mailbox, text);
    text.push('.');
    B64.encode_string(tag, text);
}

/// The mailbox a cookie value names, if its signature verifies.
pub fn verify(key: &Key, value: &str) -> Option<String> {
    let (name, tag) = value.split_once('.')?;
    let name = B64.decode(name).ok()?;
    let tag = B64.decode(tag).ok()?;
    hmac::verify(&key.0, &name, &tag).ok()?;
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
