//! Headers on the way through: hop-by-hop headers are removed (RFC 9110 7.6.1), the
//! forwarding headers added, and the chain of routers recorded for loop detection (R20).

use http::{header, HeaderMap, HeaderName, HeaderValue};
use std::net::IpAddr;

const HOP_BY_HOP: [HeaderName; 8] = [
    header::CONNECTION,
    HeaderName::from_static("keep-alive"),
    header::PROXY_AUTHENTICATE,
    header::PROXY_AUTHORIZATION,
    HeaderName::from_static("proxy-connection"),
    header::TE,
    header::TRAILER,
    header::UPGRADE,
];
const X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");
const X_FORWARDED_PROTO: HeaderName = HeaderName::from_static("x-forwarded-proto");

/// Removes hop-by-hop headers, including those the Connection header names.
/// `Transfer-Encoding` is left to hyper, which frames the forwarded body itself.
pub fn remove_hop_by_hop(headers: &mut HeaderMap) {
    let named: Vec<HeaderName> = headers
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .filter_map(|name| HeaderName::from_bytes(name.trim().as_bytes()).ok())
        .collect();
    for name in named {
        headers.remove(name);
    }
    for name in &HOP_BY_HOP {
        headers.remove(name);
    }
}

/// Appends the client to `X-Forwarded-For`, sets `X-Forwarded-Proto: https`, and appends this
/// router to the via header.
pub fn add_forwarding(
    headers: &mut HeaderMap,
    client: Option<IpAddr>,
    via_header: &HeaderName,
    node: &str,
) {
    if let Some(ip) = client {
        let value = match headers.get(&X_FORWARDED_FOR).and_then(|v| v.to_str().ok()) {
            Some(prior) => format!("{prior}, {ip}"),
            None => ip.to_string(),
        };
        if let Ok(v) = HeaderValue::from_str(&value) {
            headers.insert(X_FORWARDED_FOR, v);
        }
    }
    headers.insert(X_FORWARDED_PROTO, HeaderValue::from_static("https"));
    let via = match headers.get(via_header).and_then(|v| v.to_str().ok()) {
        Some(prior) => format!("{prior}, {node}"),
        None => node.to_string(),
    };
    if let Ok(v) = HeaderValue::from_str(&via) {
        headers.insert(via_header.clone(), v);
    }
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
    }

    #[test]
    fn forwarding_headers_append() {
        let mut h = HeaderMap::new();
        h.insert("x-forwarded-for", HeaderValue::from_static("198.51.100.1"));
        add_forwarding(&mut h, Some("192.0.2.7".parse().unwrap()), &VIA, "usa-1");
        add_forwarding(&mut h, None, &VIA, "asia-2");
        assert_eq!(h["x-forwarded-for"], "198.51.100.1, 192.0.2.7");
        assert_eq!(h["x-forwarded-proto"], "https");
        assert_eq!(h["x-balancer-via"], "usa-1, asia-2");
    }
}
