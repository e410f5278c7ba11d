//! Headers on the way through: hop-by-hop headers are removed (RFC 9110 7.6.1), the
//! forwarding headers added, and the chain of routers recorded for loop detection (R20).

use crate::router::responses::header_value;
use http::{header, HeaderMap, HeaderName, HeaderValue};

/// Removed from every request and response; [`CONNECTION`] (first) also names others.
static HOP_BY_HOP: [HeaderName; 8] = [
    header::CONNECTION,
    HeaderName::from_static("keep-alive"),
    header::PROXY_AUTHENTICATE,
    header::PROXY_AUTHORIZATION,
    HeaderName::from_static("proxy-connection"),
    header::TE,
    header::TRAILER,
    header::UPGRADE,
];
const CONNECTION: usize = 0;
const X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");
const X_FORWARDED_PROTO: HeaderName = HeaderName::from_static("x-forwarded-proto");

/// Removes hop-by-hop headers, including those the Connection header names.
/// `Transfer-Encoding` is left to hyper, which frames the forwarded body itself.
pub fn remove_hop_by_hop(headers: &mut HeaderMap) {
    // Which of them the head has (most have none, or only Connection): one pass over its
    // names costs less than a lookup of each.
    let mut present = [false; HOP_BY_HOP.len()];
    for name in headers.keys() {
        if let Some(i) = HOP_BY_HOP.iter().position(|h| h == name) {
            present[i] = true;
        }
    }
    if present[CONNECTION] {
        // The usual tokens ("keep-alive", "close", "upgrade") name nothing beyond the fixed
        // list: only other names are made into header names (an allocation each).
        let named: Vec<HeaderName> = headers
            .get_all(header::CONNECTION)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .map(str::trim)
            .filter(|token| !is_fixed(token))
            .filter_map(|name| HeaderName::from_bytes(name.as_bytes()).ok())
            .collect();
        for name in named {
            headers.remove(name);
        }
    }
    for (name, present) in HOP_BY_HOP.iter().zip(present) {
        if present {
            headers.remove(name);
        }
    }
}

/// A Connection token that needs no header of its own removed: a connection option, or a
/// header that [`HOP_BY_HOP`] removes anyway.
fn is_fixed(token: &str) -> bool {
    token.is_empty()
        || token.eq_ignore_ascii_case("close")
        || HOP_BY_HOP
            .iter()
            .any(|name| token.eq_ignore_ascii_case(name.as_str()))
}

/// Appends `client` (the client's address) to `X-Forwarded-For`, sets
/// `X-Forwarded-Proto: https`, and appends `node` (this router) to the via header.
pub fn add_forwarding(
    headers: &mut HeaderMap,
    client: &HeaderValue,
    via_header: &HeaderName,
    node: &HeaderValue,
) {
    append(headers, X_FORWARDED_FOR, client);
    headers.insert(X_FORWARDED_PROTO, HeaderValue::from_static("https"));
    append(headers, via_header.clone(), node);
}

/// Appends `next` to the comma-separated list in header `name`, or sets it. A prior value
/// that is not text is replaced.
fn append(headers: &mut HeaderMap, name: HeaderName, next: &HeaderValue) {
    let joined = match (headers.get(&name).map(HeaderValue::to_str), next.to_str()) {
        (Some(Ok(prior)), Ok(next)) => header_value(format!("{prior}, {next}")).ok(),
        _ => None,
    };
    headers.insert(name, joined.unwrap_or_else(|| next.clone()));
}

#[cfg(test)]
mod tests {
    use super::*;

    const VIA: HeaderName = HeaderName::from_static("x-balancer-via");

    #[test]
    fn hop_by_hop_headers_do_not_pass() {
        let mut h = HeaderMap::new();
        h.insert(
            header::CONNECTION,
            HeaderValue::from_static("keep-alive, X-Secret"),
        );
        h.insert("x-secret", HeaderValue::from_static("1"));
        h.insert("keep-alive", HeaderValue::from_static("timeout=5"));
        h.insert("upgrade", HeaderValue::from_static("h2c"));
        h.insert("x-anchormailbox", HeaderValue::from_static("a@b"));
        remove_hop_by_hop(&mut h);
        assert_eq!(h.len(), 1, "{h:?}");
        assert!(h.contains_key("x-anchormailbox"));

        let mut h = HeaderMap::new();
        h.insert(header::CONNECTION, HeaderValue::from_static("Close, TE"));
        h.insert(header::TE, HeaderValue::from_static("trailers"));
        h.insert(header::TRAILER, HeaderValue::from_static("x-sum"));
        h.insert("close", HeaderValue::from_static("not named: an option"));
        remove_hop_by_hop(&mut h);
        assert_eq!(h.len(), 1, "{h:?}");

        let mut h = HeaderMap::new();
        h.insert("x-anchormailbox", HeaderValue::from_static("a@b"));
        let before = h.clone();
        remove_hop_by_hop(&mut h);
        assert_eq!(h, before, "a head with none of them is left as it was");
    }

    #[test]
    fn forwarding_headers_append() {
        let mut h = HeaderMap::new();
        h.insert("x-forwarded-for", HeaderValue::from_static("198.51.100.1"));
        let value = |text| HeaderValue::from_static(text);
        add_forwarding(&mut h, &value("192.0.2.7"), &VIA, &value("usa-1"));
        add_forwarding(&mut h, &value("192.0.2.8"), &VIA, &value("asia-2"));
        assert_eq!(h["x-forwarded-for"], "198.51.100.1, 192.0.2.7, 192.0.2.8");
        assert_eq!(h["x-forwarded-proto"], "https");
        assert_eq!(h["x-balancer-via"], "usa-1, asia-2");
    }
}
