//! R5: each identity source, their order, and bad input that must yield no identity.

use super::*;
use http::{header, HeaderMap, HeaderValue};

fn key() -> cookie::Key {
    cookie::Key::new(*b"an array-wide test key, 32 bytes")
}

fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
    let mut h = HeaderMap::new();
    for (k, v) in pairs {
        h.append(
            header::HeaderName::from_bytes(k.as_bytes()).unwrap(),
            HeaderValue::from_str(v).unwrap(),
        );
    }
    h
}

fn basic(user: &str) -> String {
    format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(format!("{user}:secret"))
    )
}

fn id(path: &str, query: Option<&str>, h: &HeaderMap, body: Option<&[u8]>) -> Found {
    identify(
        &Head {
            path,
            query,
            headers: h,
        },
        body,
        &key(),
    )
}

fn named(found: &Found) -> Option<(&str, Source)> {
    found.identity.as_ref().map(|i| (i.name.as_str(), i.source))
}

const AUTODISCOVER: &[u8] = br#"<?xml version="1.0" encoding="utf-8"?>
<Autodiscover xmlns="http://schemas.microsoft.com/exchange/autodiscover/outlook/requestschema/2006">
  <Request>
    <EMailAddress>Dave@Contoso.com</EMailAddress>
    <AcceptableResponseSchema>http://schemas.microsoft.com/exchange/autodiscover/outlook/responseschema/2006a</AcceptableResponseSchema>
  </Request>
</Autodiscover>"#;

#[test]
fn r5_each_source_alone() {
    let none = HeaderMap::new();
    let f = id(
        "/owa/",
        None,
        &headers(&[("X-AnchorMailbox", "SMTP:Alice@Contoso.com")]),
        None,
    );
    assert_eq!(
        named(&f),
        Some(("alice@contoso.com", Source::AnchorMailbox)),
        "R5 X-AnchorMailbox"
    );

    let f = id("/owa/bob%40contoso.com/inbox/", None, &none, None);
    assert_eq!(
        named(&f),
        Some(("bob@contoso.com", Source::LogonPath)),
        "R5 logon path"
    );
    assert_eq!(
        f.upstream_path.as_deref(),
        Some("/owa/inbox/"),
        "R5: the logon segment is stripped"
    );

    let f = id(
        "/Microsoft-Server-ActiveSync",
        Some("Cmd=Sync&User=CONTOSO%5Ccarol&DeviceId=1"),
        &none,
        None,
    );
    assert_eq!(
        named(&f),
        Some(("contoso\\carol", Source::ActiveSyncUser)),
        "R5 ActiveSync User="
    );

    let f = id(
        "/EWS/Exchange.asmx",
        None,
        &headers(&[("Authorization", &basic("erin@contoso.com"))]),
        None,
    );
    assert_eq!(
        named(&f),
        Some(("erin@contoso.com", Source::BasicAuth)),
        "R5 Basic user@domain"
    );
    let f = id(
        "/EWS/Exchange.asmx",
        None,
        &headers(&[("Authorization", &basic("CONTOSO\\Erin"))]),
        None,
    );
    assert_eq!(
        named(&f),
        Some(("contoso\\erin", Source::BasicAuth)),
        "R5 Basic DOMAIN\\user"
    );

    let f = id(
        "/autodiscover/autodiscover.xml",
        None,
        &none,
        Some(AUTODISCOVER),
    );
    assert_eq!(
        named(&f),
        Some(("dave@contoso.com", Source::AutodiscoverBody)),
        "R5 Autodiscover body"
    );

    let cookie = format!(
        "other=1; {}={}",
        cookie::NAME,
        cookie::value(&key(), "frank@contoso.com")
    );
    let f = id("/owa/", None, &headers(&[("Cookie", &cookie)]), None);
    assert_eq!(
        named(&f),
        Some(("frank@contoso.com", Source::AffinityCookie)),
        "R5 affinity cookie"
    );

    assert_eq!(
        id("/owa/", None, &none, None),
        Found::default(),
        "R5: no identity"
    );
}

#[test]
fn r5_sources_are_taken_in_order() {
    let cookie = format!(
        "{}={}",
        cookie::NAME,
        cookie::value(&key(), "frank@contoso.com")
    );
    let all = headers(&[
        ("X-AnchorMailbox", "alice@contoso.com"),
        ("Authorization", &basic("erin@contoso.com")),
        ("Cookie", &cookie),
    ]);
    let f = id("/owa/bob@contoso.com/", None, &all, None);
    assert_eq!(
        named(&f).unwrap().1,
        Source::AnchorMailbox,
        "R5: the anchor header comes first"
    );

    let no_anchor = headers(&[
        ("Authorization", &basic("erin@contoso.com")),
        ("Cookie", &cookie),
    ]);
    assert_eq!(
        named(&id("/owa/bob@contoso.com/", None, &no_anchor, None))
            .unwrap()
            .1,
        Source::LogonPath,
        "R5: then the logon path"
    );
    let eas = id(
        "/Microsoft-Server-ActiveSync",
        Some("User=carol"),
        &no_anchor,
        None,
    );
    assert_eq!(
        named(&eas).unwrap().1,
        Source::ActiveSyncUser,
        "R5: then ActiveSync User="
    );
    let auth = id(
        "/autodiscover/autodiscover.xml",
        None,
        &no_anchor,
        Some(AUTODISCOVER),
    );
    assert_eq!(
        named(&auth).unwrap().1,
        Source::BasicAuth,
        "R5: Basic before the Autodiscover body"
    );
    let cookie_only = headers(&[("Cookie", &cookie)]);
    let body = id(
        "/autodiscover/autodiscover.xml",
        None,
        &cookie_only,
        Some(AUTODISCOVER),
    );
    assert_eq!(
        named(&body).unwrap().1,
        Source::AutodiscoverBody,
        "R5: the body before the cookie"
    );
}

#[test]
fn r5_sources_apply_only_where_they_belong() {
    let none = HeaderMap::new();
    // A logon-like segment is only an identity on /owa; User= only on ActiveSync.
    assert_eq!(
        id("/ews/bob@contoso.com/", None, &none, None),
        Found::default()
    );
    assert_eq!(
        id("/owa/", Some("User=carol"), &none, None),
        Found::default()
    );
    assert_eq!(
        id("/owa/inbox/", None, &none, None),
        Found::default(),
        "a segment without @ is a folder"
    );
}

#[test]
fn bad_input_yields_no_identity() {
    let long = format!("{}@contoso.com", "a".repeat(300));
    let forged = format!(
        "{}={}",
        cookie::NAME,
        cookie::value(&cookie::Key::new(*b"another key"), "mallory@contoso.com")
    );
    let garbled = format!("{}=%%%.!!!", cookie::NAME);
    for h in [
        headers(&[("Authorization", "Basic !!!not-base64!!!")]),
        headers(&[("Authorization", "Basic Zm9v")]), // "foo": no colon
        headers(&[("Authorization", "Bearer abc")]),
        headers(&[("X-AnchorMailbox", "   ")]),
        headers(&[("X-AnchorMailbox", &long)]),
        headers(&[("Cookie", &forged)]),
        headers(&[("Cookie", &garbled)]),
    ] {
        assert_eq!(
            id("/ews/exchange.asmx", None, &h, None).identity,
            None,
            "{h:?}"
        );
    }
    assert_eq!(
        id("/owa/a%FFb@c/", None, &HeaderMap::new(), None).identity,
        None,
        "not UTF-8 once decoded"
    );
    assert_eq!(
        autodiscover_email(b"<Autodiscover><Request><EMailAddress>"),
        None,
        "truncated body"
    );
    assert_eq!(autodiscover_email(b"not xml at all <<<"), None);
    assert_eq!(
        autodiscover_email(b"<a><EMailAddress>x\x01y</EMailAddress></a>"),
        None,
        "control characters"
    );
}

#[test]
fn cookie_signatures_are_standard_hmac_sha256() {
    // RFC 4231, test case 2: every node (of any release) signs and checks alike.
    let v = cookie::value(&cookie::Key::new(b"Jefe"), "what do ya want for nothing?");
    let tag = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(v.split_once('.').unwrap().1)
        .unwrap();
    let expected = "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843";
    let hex: String = tag.iter().map(|b| format!("{b:02x}")).collect();
    assert_eq!(hex, expected);
}

#[test]
fn cookie_round_trips_and_rejects_tampering() {
    let v = cookie::value(&key(), "grace@contoso.com");
    assert_eq!(
        cookie::verify(&key(), &v).as_deref(),
        Some("grace@contoso.com")
    );
    let (name, tag) = v.split_once('.').unwrap();
    let other = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode("heidi@contoso.com");
    assert_eq!(
        cookie::verify(&key(), &format!("{other}.{tag}")),
        None,
        "a name with another's tag"
    );
    assert_eq!(cookie::verify(&key(), name), None, "no tag");
    assert_eq!(
        cookie::set_cookie(&key(), "grace@contoso.com"),
        format!("balancer_mailbox={v}; Path=/; Secure; HttpOnly; SameSite=Lax").as_str(),
        "the Set-Cookie header carries the same value"
    );
}
