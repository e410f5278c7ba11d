//! The decision table on the Contoso topology of MISSION.md (`router::testing`): every case
//! names its rule.

use super::*;
use crate::router::testing::{contoso, mailbox};
use http::Method;

/// One row: the rule, this node's site, the protocol, the method, the mailbox's site, and what
/// must happen.
struct Case {
    rule: &'static str,
    here: &'static str,
    protocol: Protocol,
    method: Method,
    mailbox_site: Option<&'static str>,
    expect: Decision,
}

fn case(
    rule: &'static str,
    here: &'static str,
    protocol: Protocol,
    mailbox_site: Option<&'static str>,
    expect: Decision,
) -> Case {
    Case {
        rule,
        here,
        protocol,
        method: Method::GET,
        mailbox_site,
        expect,
    }
}

fn run(cases: Vec<Case>) {
    for c in cases {
        let mbx = c.mailbox_site.map(|s| mailbox("alice@contoso.com", s));
        let facts = facts(c.protocol, &c.method, mbx.as_ref());
        let got = decide(&facts, &contoso(c.here));
        assert_eq!(
            got, c.expect,
            "{}: {:?} {} on a {} node, mailbox in {:?}",
            c.rule, c.protocol, c.method, c.here, c.mailbox_site
        );
    }
}

/// The facts of a request naming one mailbox (no other mailboxes, not Availability).
fn facts<'a>(protocol: Protocol, method: &'a Method, mailbox: Option<&'a Mailbox>) -> Facts<'a> {
    Facts {
        protocol,
        method,
        mailbox,
        other_mailbox_sites: &[],
        availability: false,
    }
}

fn local(why: &'static str) -> Decision {
    Decision::Local { why }
}

fn proxy_sticky(site: &str) -> Decision {
    Decision::ProxySite {
        site: site.into(),
        pick: Pick::Sticky {
            mailbox: "alice@contoso.com".into(),
        },
    }
}

fn refused(d: &Decision) -> (u16, &str) {
    match d {
        Decision::Refuse { status, reason } => (*status, reason),
        other => panic!("expected a refusal, got {other:?}"),
    }
}

#[test]
fn r5_no_identity_serves_locally() {
    run(vec![
        case(
            "R5",
            "usa",
            Protocol::Owa,
            None,
            local("no mailbox identity"),
        ),
        case(
            "R5",
            "asia",
            Protocol::ActiveSync,
            None,
            local("no mailbox identity"),
        ),
    ]);
}

#[test]
fn r7_mailbox_in_this_site_is_served_here() {
    let here = local("mailbox in this site");
    run(vec![
        case("R7", "usa", Protocol::Owa, Some("usa"), here.clone()),
        case("R7", "usa", Protocol::ActiveSync, Some("usa"), here.clone()),
        case("R7", "europe", Protocol::Ews, Some("europe"), here.clone()),
        case(
            "R7",
            "asia",
            Protocol::Autodiscover,
            Some("asia"),
            here.clone(),
        ),
        case("R7", "asia", Protocol::Oab, Some("asia"), here),
    ]);
}

#[test]
fn r8_owa_redirects_to_internet_facing_sites_and_proxies_to_the_others() {
    let link = |url: &str| Decision::Redirect {
        kind: RedirectKind::LinkPage,
        location: url.into(),
    };
    run(vec![
        case(
            "R8 link page",
            "usa",
            Protocol::Owa,
            Some("europe"),
            link("https://www.europe.contoso.com/owa"),
        ),
        case(
            "R8 link page",
            "europe",
            Protocol::Owa,
            Some("usa"),
            link("https://www.usa.contoso.com/owa"),
        ),
        case(
            "R8 proxy, no ExternalURL",
            "usa",
            Protocol::Owa,
            Some("asia"),
            proxy_sticky("asia"),
        ),
        case(
            "R8 proxy, no ExternalURL",
            "europe",
            Protocol::Owa,
            Some("asia"),
            proxy_sticky("asia"),
        ),
    ]);
}

#[test]
fn r8_owa_redirect_styles() {
    let mbx = mailbox("alice@contoso.com", "europe");
    let mut topology = contoso("usa");
    topology.owa_redirect = OwaRedirect::Found;
    let facts = facts(Protocol::Owa, &Method::GET, Some(&mbx));
    assert_eq!(
        decide(&facts, &topology),
        Decision::Redirect {
            kind: RedirectKind::Found,
            location: "https://www.europe.contoso.com/owa".into()
        },
        "R8: silent 302 when configured"
    );
    let post = Facts {
        method: &Method::POST,
        ..facts
    };
    assert_eq!(
        decide(&post, &topology),
        Decision::Redirect {
            kind: RedirectKind::Temporary,
            location: "https://www.europe.contoso.com/owa".into()
        },
        "R8: a POST keeps its method (307)"
    );
}

#[test]
fn r8_disabled_redirection_proxies_instead() {
    let mbx = mailbox("alice@contoso.com", "europe");
    let mut topology = contoso("usa");
    topology
        .sites
        .iter_mut()
        .find(|s| s.name == "europe")
        .unwrap()
        .redirect_enabled = false;
    let facts = facts(Protocol::Owa, &Method::GET, Some(&mbx));
    assert_eq!(
        decide(&facts, &topology),
        proxy_sticky("europe"),
        "R8: RedirectToOptimalOWAServer off: proxy"
    );
}

#[test]
fn r9_activesync_answers_451_or_proxies_round_robin() {
    run(vec![
        case(
            "R9 451",
            "usa",
            Protocol::ActiveSync,
            Some("europe"),
            Decision::ActiveSync451 {
                location: "https://www.europe.contoso.com/Microsoft-Server-ActiveSync".into(),
            },
        ),
        case(
            "R9 proxy",
            "usa",
            Protocol::ActiveSync,
            Some("asia"),
            Decision::ProxySite {
                site: "asia".into(),
                pick: Pick::RoundRobin,
            },
        ),
        case(
            "R9 proxy",
            "europe",
            Protocol::ActiveSync,
            Some("asia"),
            Decision::ProxySite {
                site: "asia".into(),
                pick: Pick::RoundRobin,
            },
        ),
    ]);
}

#[test]
fn r10_ews_is_proxied_never_redirected() {
    run(vec![
        // europe is Internet-facing, and EWS is still proxied.
        case(
            "R10 proxy",
            "usa",
            Protocol::Ews,
            Some("europe"),
            proxy_sticky("europe"),
        ),
        case(
            "R10 proxy",
            "usa",
            Protocol::Ews,
            Some("asia"),
            proxy_sticky("asia"),
        ),
    ]);
}

#[test]
fn r10_ews_to_a_site_without_ews_proxying_fails_clearly() {
    let mbx = mailbox("alice@contoso.com", "rtm");
    let facts = facts(Protocol::Ews, &Method::POST, Some(&mbx));
    let d = decide(&facts, &contoso("usa"));
    let (status, reason) = refused(&d);
    assert_eq!(status, 501, "R10");
    assert!(
        reason.contains("2007 SP1"),
        "R10: the reason names the needed version: {reason}"
    );
}

#[test]
fn r10_ews_naming_mailboxes_in_several_sites_fails_except_availability() {
    let mbx = mailbox("alice@contoso.com", "asia");
    let others = ["asia", "europe"];
    let facts = Facts {
        protocol: Protocol::Ews,
        method: &Method::POST,
        mailbox: Some(&mbx),
        other_mailbox_sites: &others,
        availability: false,
    };
    assert_eq!(
        refused(&decide(&facts, &contoso("usa"))).0,
        400,
        "R10: several sites"
    );
    let availability = Facts {
        availability: true,
        ..facts
    };
    assert_eq!(
        decide(&availability, &contoso("usa")),
        proxy_sticky("asia"),
        "R10: the Availability service may"
    );
    let same_site = Facts {
        other_mailbox_sites: &["asia"],
        ..facts
    };
    assert_eq!(
        decide(&same_site, &contoso("usa")),
        proxy_sticky("asia"),
        "R10: one site is fine"
    );
}

#[test]
fn r11_autodiscover_proxies_or_sends_newer_mailboxes_to_their_site() {
    run(vec![
        case(
            "R11 proxy",
            "usa",
            Protocol::Autodiscover,
            Some("asia"),
            proxy_sticky("asia"),
        ),
        case(
            "R11 proxy",
            "usa",
            Protocol::Autodiscover,
            Some("europe"),
            proxy_sticky("europe"),
        ),
        case(
            "R11 302 to a newer site",
            "europe",
            Protocol::Autodiscover,
            Some("usa"),
            Decision::Redirect {
                kind: RedirectKind::Found,
                location: "https://www.usa.contoso.com/Autodiscover/Autodiscover.xml".into(),
            },
        ),
    ]);
}

#[test]
fn r12_never_proxies_to_a_newer_version() {
    // europe (2007 SP1) and a usa (2010) mailbox: OWA redirects, ActiveSync answers 451 (where
    // they can), EWS and OAB cannot be proxied.
    run(vec![
        case(
            "R12 OWA redirects",
            "europe",
            Protocol::Owa,
            Some("usa"),
            Decision::Redirect {
                kind: RedirectKind::LinkPage,
                location: "https://www.usa.contoso.com/owa".into(),
            },
        ),
        case(
            "R12 ActiveSync 451",
            "europe",
            Protocol::ActiveSync,
            Some("usa"),
            Decision::ActiveSync451 {
                location: "https://www.usa.contoso.com/Microsoft-Server-ActiveSync".into(),
            },
        ),
    ]);
    let mbx = mailbox("alice@contoso.com", "usa");
    for protocol in [Protocol::Ews, Protocol::Oab] {
        let facts = facts(protocol, &Method::GET, Some(&mbx));
        let d = decide(&facts, &contoso("europe"));
        let (status, reason) = refused(&d);
        assert_eq!(status, 502, "R12 {protocol:?}");
        assert!(reason.contains("newer"), "R12: {reason}");
    }
    // Redirection to usa disabled: OWA can neither redirect nor proxy: a clear error.
    let mut topology = contoso("europe");
    topology
        .sites
        .iter_mut()
        .find(|s| s.name == "usa")
        .unwrap()
        .redirect_enabled = false;
    let facts = facts(Protocol::Owa, &Method::GET, Some(&mbx));
    assert_eq!(
        refused(&decide(&facts, &topology)).0,
        502,
        "R12: OWA, no redirect possible"
    );
}

#[test]
fn r13_legacy_mailboxes_and_virtual_directories() {
    let legacy = Decision::ProxyLegacy {
        server: "mbx-legacy.contoso.com".into(),
    };
    run(vec![
        case(
            "R13 /exchange to the back end over HTTP",
            "usa",
            Protocol::LegacyExchange,
            Some("legacy"),
            legacy.clone(),
        ),
        case(
            "R13 /public to the back end",
            "europe",
            Protocol::LegacyPublic,
            Some("legacy"),
            legacy.clone(),
        ),
        case(
            "R13 /exchweb to the back end",
            "asia",
            Protocol::LegacyExchweb,
            Some("legacy"),
            legacy.clone(),
        ),
        case(
            "R13 ActiveSync to the back end",
            "usa",
            Protocol::ActiveSync,
            Some("legacy"),
            legacy,
        ),
        case(
            "R13 /exchange for a newer mailbox redirects to /owa",
            "usa",
            Protocol::LegacyExchange,
            Some("europe"),
            Decision::Redirect {
                kind: RedirectKind::Found,
                location: "/owa/".into(),
            },
        ),
    ]);
    let mbx = mailbox("bob@contoso.com", "legacy");
    let facts = facts(Protocol::Owa, &Method::GET, Some(&mbx));
    let d = decide(&facts, &contoso("usa"));
    let (status, reason) = refused(&d);
    assert_eq!(status, 400, "R13: /owa for a 2003 mailbox");
    assert!(
        reason.contains("/exchange"),
        "R13: the error names /exchange: {reason}"
    );
    let ews = Facts {
        protocol: Protocol::Ews,
        ..facts
    };
    assert_eq!(
        refused(&decide(&ews, &contoso("usa"))).0,
        501,
        "R10/R13: no EWS for 2003"
    );
}

#[test]
fn r14_owa_and_ews_stick_to_the_mailbox_activesync_spreads() {
    let mbx = mailbox("carol@contoso.com", "asia");
    let pick = |protocol| {
        let facts = facts(protocol, &Method::GET, Some(&mbx));
        match decide(&facts, &contoso("usa")) {
            Decision::ProxySite { pick, .. } => pick,
            other => panic!("R14: expected a proxy for {protocol:?}, got {other:?}"),
        }
    };
    let sticky = Pick::Sticky {
        mailbox: "carol@contoso.com".into(),
    };
    assert_eq!(pick(Protocol::Owa), sticky, "R14 OWA");
    assert_eq!(pick(Protocol::Ews), sticky, "R14 EWS");
    assert_eq!(
        pick(Protocol::ActiveSync),
        Pick::RoundRobin,
        "R14 ActiveSync"
    );
}

#[test]
fn outlook_anywhere_and_unknown_paths_are_served_here() {
    run(vec![
        case(
            "001 RPC over HTTP",
            "usa",
            Protocol::Rpc,
            Some("asia"),
            local("not proxied"),
        ),
        case(
            "other paths",
            "usa",
            Protocol::Other,
            Some("asia"),
            local("not proxied"),
        ),
    ]);
}
