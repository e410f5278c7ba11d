//! The decision (R7-R14): serve here, proxy to a site, redirect, or refuse. A pure function of
//! the request's facts and the topology; the router does the I/O around it.

use super::{
    protocol::Protocol,
    topology::{OwaRedirect, Site, Topology},
    version::Version,
};

#[cfg(test)]
mod tests;

/// A mailbox as the directory knows it (R6).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mailbox {
    /// Primary address, lowercase.
    pub address: String,
    pub site: String,
    /// The mailbox (or 2003 back-end) server that holds it.
    pub server: String,
    pub version: Version,
}

/// The facts about one request that the decision depends on.
#[derive(Debug, Clone, Copy)]
pub struct Facts<'a> {
    pub protocol: Protocol,
    pub method: &'a http::Method,
    /// The mailbox the request is for: `None` if no identity was found or the directory does
    /// not know it.
    pub mailbox: Option<&'a Mailbox>,
    /// EWS: the sites of the other mailboxes the request names (R10).
    pub other_mailbox_sites: &'a [&'a str],
    /// EWS: a request to the Availability service, which may name mailboxes of several sites.
    pub availability: bool,
}

/// How to choose a node within the target site (R14).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Pick {
    /// Always the same node for this mailbox, the next one only if it is unavailable (OWA, EWS).
    Sticky { mailbox: String },
    /// Spread over the site's nodes (ActiveSync).
    RoundRobin,
}

/// How a redirect is answered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RedirectKind {
    /// A page that shows the URL as a link, not followed automatically (R8 default).
    LinkPage,
    /// `302 Found`.
    Found,
    /// `307 Temporary Redirect`: a method other than GET/HEAD keeps its method and body.
    Temporary,
}

/// What to do with a request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// Serve in this site: its own Client Access / mailbox back end (R7), or nothing to route
    /// on (no identity, a protocol that is not proxied).
    Local { why: &'static str },
    /// Proxy over HTTPS to a node of `site`, via its InternalURL.
    ProxySite { site: String, pick: Pick },
    /// Proxy over HTTP to an Exchange 2003 back-end server (R13).
    ProxyLegacy { server: String },
    Redirect {
        kind: RedirectKind,
        location: String,
    },
    /// ActiveSync's redirect: `451` with `X-MS-Location` and an empty body (R9).
    ActiveSync451 { location: String },
    /// A clear error: the status and a short reason for the client.
    Refuse { status: u16, reason: String },
}

fn refuse(status: u16, reason: impl Into<String>) -> Decision {
    Decision::Refuse {
        status,
        reason: reason.into(),
    }
}

fn sticky(mailbox: &Mailbox) -> Pick {
    Pick::Sticky {
        mailbox: mailbox.address.clone(),
    }
}

/// Decides what to do with a request on this node.
pub fn decide(facts: &Facts, topology: &Topology) -> Decision {
    let this = topology.this();
    // R5: no identity (or none the directory knows): nothing to route on.
    let Some(mailbox) = facts.mailbox else {
        return Decision::Local {
            why: "no mailbox identity",
        };
    };
    match facts.protocol {
        // Outlook Anywhere talks RPC from here to any mailbox server (001); other paths are ours.
        Protocol::Rpc | Protocol::Other => return Decision::Local { why: "not proxied" },
        // R10: several mailboxes in different sites fail, except for the Availability service.
        Protocol::Ews if !facts.availability => {
            if let Some(other) = facts
                .other_mailbox_sites
                .iter()
                .find(|s| **s != mailbox.site)
            {
                return refuse(
                    400,
                    format!(
                        "EWS request names mailboxes in sites {} and {other}: one site per request",
                        mailbox.site
                    ),
                );
            }
        }
        _ => {}
    }
    if mailbox.version.is_legacy() {
        return legacy_mailbox(facts.protocol, mailbox);
    }
    // R13: the Exchange 2003 virtual directories, for a newer mailbox.
    match facts.protocol {
        Protocol::LegacyExchange => {
            return Decision::Redirect {
                kind: RedirectKind::Found,
                location: "/owa/".into(),
            };
        }
        Protocol::LegacyPublic | Protocol::LegacyExchweb => {
            return Decision::Local {
                why: "Exchange 2003 resources for a newer mailbox",
            };
        }
        _ => {}
    }
    // R7: the mailbox is in this site.
    if mailbox.site == this.name {
        return Decision::Local {
            why: "mailbox in this site",
        };
    }
    let Some(target) = topology.site(&mailbox.site) else {
        return refuse(
            502,
            format!("mailbox site {} is not in the topology", mailbox.site),
        );
    };
    // R12: proxying only to the same or an earlier version than this node.
    let can_proxy = target.version <= this.version;
    match facts.protocol {
        Protocol::Owa => owa(facts, topology, target, mailbox, can_proxy),
        Protocol::ActiveSync => activesync(target, can_proxy),
        Protocol::Ews => ews(target, mailbox, can_proxy, this.version),
        Protocol::Autodiscover => autodiscover(target, mailbox, can_proxy),
        Protocol::Oab if can_proxy => Decision::ProxySite {
            site: target.name.clone(),
            pick: sticky(mailbox),
        },
        Protocol::Oab => too_new(target, this.version),
        Protocol::Rpc
        | Protocol::Other
        | Protocol::LegacyExchange
        | Protocol::LegacyPublic
        | Protocol::LegacyExchweb => unreachable!("handled above"),
    }
}

fn too_new(target: &Site, this: Version) -> Decision {
    refuse(
        502,
        format!(
            "mailbox site {} runs {}, newer than this node ({this}): it cannot be proxied to",
            target.name, target.version
        ),
    )
}

/// R13: an Exchange 2003 mailbox. Its virtual directories (and ActiveSync) go straight to its
/// back-end server over HTTP, from any site (000, 001).
fn legacy_mailbox(protocol: Protocol, mailbox: &Mailbox) -> Decision {
    match protocol {
        Protocol::LegacyExchange
        | Protocol::LegacyPublic
        | Protocol::LegacyExchweb
        | Protocol::ActiveSync => Decision::ProxyLegacy {
            server: mailbox.server.clone(),
        },
        Protocol::Owa => refuse(
            400,
            "this mailbox is on an Exchange 2003 server: use /exchange instead of /owa",
        ),
        Protocol::Ews | Protocol::Autodiscover | Protocol::Oab => refuse(
            501,
            format!(
                "{} is not available for a mailbox on Exchange 2003",
                protocol.vdir()
            ),
        ),
        Protocol::Rpc | Protocol::Other => unreachable!("handled before"),
    }
}

/// R8: OWA for another site redirects to it if it is Internet-facing and redirection to it is
/// enabled; otherwise it is proxied, invisibly, if R12 allows.
fn owa(
    facts: &Facts,
    topology: &Topology,
    target: &Site,
    mailbox: &Mailbox,
    can_proxy: bool,
) -> Decision {
    if let (Some(url), true) = (&target.external.owa, target.redirect_enabled) {
        let kind = if !matches!(*facts.method, http::Method::GET | http::Method::HEAD) {
            RedirectKind::Temporary
        } else {
            match topology.owa_redirect {
                OwaRedirect::LinkPage => RedirectKind::LinkPage,
                OwaRedirect::Found => RedirectKind::Found,
            }
        };
        return Decision::Redirect {
            kind,
            location: url.clone(),
        };
    }
    if can_proxy {
        return Decision::ProxySite {
            site: target.name.clone(),
            pick: sticky(mailbox),
        };
    }
    too_new(target, topology.this().version)
}

/// R9: ActiveSync for another site answers 451 towards its ExternalURL if it has one;
/// otherwise it is proxied (round robin, R14) if R12 allows.
fn activesync(target: &Site, can_proxy: bool) -> Decision {
    if let Some(url) = &target.external.activesync {
        return Decision::ActiveSync451 {
            location: url.clone(),
        };
    }
    if can_proxy {
        return Decision::ProxySite {
            site: target.name.clone(),
            pick: Pick::RoundRobin,
        };
    }
    refuse(
        502,
        format!(
            "mailbox site {} runs {} and has no ActiveSync ExternalURL",
            target.name, target.version
        ),
    )
}

/// R10: EWS is proxied, never redirected, to a site that supports EWS proxying (2007 SP1+)
/// and that R12 allows.
fn ews(target: &Site, mailbox: &Mailbox, can_proxy: bool, this: Version) -> Decision {
    if !target.version.supports_ews_proxy() {
        return refuse(
            501,
            format!(
                "mailbox site {} runs {}: EWS can be proxied only to Exchange 2007 SP1 or later",
                target.name, target.version
            ),
        );
    }
    if !can_proxy {
        return too_new(target, this);
    }
    Decision::ProxySite {
        site: target.name.clone(),
        pick: sticky(mailbox),
    }
}

/// R11: Autodiscover is proxied to the mailbox's site; a mailbox on a newer version than this
/// node gets a 302 to that site's Autodiscover URL.
fn autodiscover(target: &Site, mailbox: &Mailbox, can_proxy: bool) -> Decision {
    if can_proxy {
        return Decision::ProxySite {
            site: target.name.clone(),
            pick: sticky(mailbox),
        };
    }
    match &target.external.autodiscover {
        Some(url) => Decision::Redirect {
            kind: RedirectKind::Found,
            location: url.clone(),
        },
        None => refuse(
            502,
            format!(
                "mailbox site {} runs {} and has no Autodiscover ExternalURL",
                target.name, target.version
            ),
        ),
    }
}
