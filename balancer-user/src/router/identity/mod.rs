//! Finding which mailbox a request is for (R5), in the documented order:
//! 1. the `X-AnchorMailbox` header;
//! 2. an explicit logon path, `/owa/user@domain/...` (the segment is stripped before proxying);
//! 3. ActiveSync's `User=` query parameter;
//! 4. the user name of Basic authorization (`user@domain`, or `DOMAIN\user` resolved through
//!    the directory's aliases);
//! 5. the `EMailAddress` of an Autodiscover request body (read by the caller with a bound);
//! 6. the router's own signed affinity cookie ([`cookie`]).
//!
//! No identity: the request is served locally. What is found is a name for the directory to
//! resolve (lowercased, trimmed, bounded), not yet a mailbox.

pub mod cookie;
pub mod ews;

use super::protocol::Protocol;
use base64::Engine as _;
use http::HeaderMap;

#[cfg(test)]
mod tests;

/// Longest identity accepted (an e-mail address is at most 254 characters, RFC 5321).
pub const MAX_IDENTITY_LEN: usize = 254;
/// Header that names the mailbox a request is for (Exchange's convention).
pub const ANCHOR_MAILBOX: &str = "x-anchormailbox";

/// Where an identity came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    AnchorMailbox,
    LogonPath,
    ActiveSyncUser,
    BasicAuth,
    AutodiscoverBody,
    AffinityCookie,
}

/// A name for the directory to resolve, and where it came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    pub name: String,
    pub source: Source,
}

/// The request head as identification reads it.
#[derive(Debug, Clone, Copy)]
pub struct Head<'a> {
    pub path: &'a str,
    pub query: Option<&'a str>,
    pub headers: &'a HeaderMap,
}

/// What identification found.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Found {
    pub identity: Option<Identity>,
    /// The path to send upstream when an explicit logon segment was stripped (R5).
    pub upstream_path: Option<String>,
}

/// Finds the identity of a request. `autodiscover_body` is the (bounded) body of an
/// Autodiscover request, if the caller read it; `cookie_key` checks the affinity cookie.
pub fn identify(head: &Head, autodiscover_body: Option<&[u8]>, cookie_key: &cookie::Key) -> Found {
    let protocol = Protocol::of_path(head.path);
    let found = |name: Option<String>, source| name.map(|name| Identity { name, source });
    if let Some(id) = found(anchor_mailbox(head.headers), Source::AnchorMailbox) {
        return Found {
            identity: Some(id),
            upstream_path: None,
        };
    }
    if protocol == Protocol::Owa {
        if let Some((name, upstream)) = logon_path(head.path) {
            return Found {
                identity: found(Some(name), Source::LogonPath),
                upstream_path: Some(upstream),
            };
        }
    }
    let candidates = [
        (protocol == Protocol::ActiveSync)
            .then(|| activesync_user(head.query))
            .flatten()
            .map(|n| (n, Source::ActiveSyncUser)),
        basic_auth_user(head.headers).map(|n| (n, Source::BasicAuth)),
        autodiscover_body
            .and_then(autodiscover_email)
            .map(|n| (n, Source::AutodiscoverBody)),
        cookie::from_headers(head.headers, cookie_key).map(|n| (n, Source::AffinityCookie)),
    ];
    let identity = candidates
        .into_iter()
        .flatten()
        .next()
        .map(|(name, source)| Identity { name, source });
    Found {
        identity,
        upstream_path: None,
    }
}

/// Lowercased and trimmed; `None` if empty, too long, or with control characters.
pub fn normalize(raw: &str) -> Option<String> {
    let name = raw.trim();
    if name.is_empty() || name.len() > MAX_IDENTITY_LEN || name.chars().any(char::is_control) {
        return None;
    }
    Some(name.to_lowercase())
}

fn anchor_mailbox(headers: &HeaderMap) -> Option<String> {
    let value = headers.get(ANCHOR_MAILBOX)?.to_str().ok()?;
    // Exchange clients sometimes send "SMTP:user@domain".
    let value = value
        .strip_prefix("SMTP:")
        .or_else(|| value.strip_prefix("smtp:"))
        .unwrap_or(value);
    normalize(value)
}

/// `/owa/alice@contoso.com/rest` -> (`alice@contoso.com`, `/owa/rest`).
fn logon_path(path: &str) -> Option<(String, String)> {
    let rest = path.trim_start_matches('/');
    let (vdir, rest) = rest.split_once('/')?;
    let (segment, tail) = rest.split_once('/').unwrap_or((rest, ""));
    let segment = percent_encoding::percent_decode_str(segment)
        .decode_utf8()
        .ok()?;
    if !segment.contains('@') {
        return None;
    }
    let name = normalize(&segment)?;
    Some((name, format!("/{vdir}/{tail}")))
}

fn activesync_user(query: Option<&str>) -> Option<String> {
    form_urlencoded::parse(query?.as_bytes())
        .find(|(k, _)| k.eq_ignore_ascii_case("user"))
        .and_then(|(_, v)| normalize(&v))
}

fn basic_auth_user(headers: &HeaderMap) -> Option<String> {
    let value = headers.get(http::header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, credentials) = value.split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("basic") {
        return None;
    }
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(credentials.trim())
        .ok()?;
    let decoded = String::from_utf8(decoded).ok()?;
    let (user, _password) = decoded.split_once(':')?;
    normalize(user)
}

/// The `EMailAddress` element of an Autodiscover (POX) request.
pub fn autodiscover_email(body: &[u8]) -> Option<String> {
    use quick_xml::events::Event;
    let mut reader = quick_xml::Reader::from_reader(body);
    let mut in_email = false;
    let mut buf = Vec::new();
    loop {
        match reader.read_event_into(&mut buf).ok()? {
            Event::Start(e)
                if e.local_name()
                    .as_ref()
                    .eq_ignore_ascii_case(b"EMailAddress") =>
            {
                in_email = true
            }
            Event::Text(t) if in_email => return normalize(&t.unescape().ok()?),
            Event::End(_) => in_email = false,
            Event::Eof => return None,
            _ => {}
        }
        buf.clear();
    }
}
