//! Test fixtures of the router: the Contoso topology of MISSION.md (plus an Exchange 2007 RTM
//! site for R10) and mailboxes in each site.
//!
//! | site   | Internet-facing | version  | ExternalURL host       |
//! |--------|-----------------|----------|------------------------|
//! | usa    | yes             | 2010     | www.usa.contoso.com    |
//! | europe | yes             | 2007 SP1 | www.europe.contoso.com |
//! | asia   | no              | 2007 SP1 | (none)                 |
//! | legacy | no              | 2003     | (none; HTTP back end)  |
//! | rtm    | no              | 2007 RTM | (none; extra, for R10) |

use std::sync::Arc;

use bytes::Bytes;
use http::{HeaderValue, Request, Response};
use http_body_util::BodyExt as _;

use super::{
    decision::Mailbox,
    directory::{Directory, MemoryDirectory},
    identity::cookie,
    responses::{full, Body},
    service::{Client, Forward, Router, Settings},
    service::{ResponseFuture, Target},
    topology::{ExternalUrls, OwaRedirect, Site, Topology},
    version::Version,
};

/// The client the tests' requests come from (TEST-NET-1).
pub const CLIENT: Client = Client {
    forwarded_for: HeaderValue::from_static("192.0.2.7"),
};

pub fn external(host: &str) -> ExternalUrls {
    ExternalUrls::from_base(&format!("https://{host}"))
}

fn site(name: &str, version: Version, external: ExternalUrls) -> Site {
    Site {
        name: name.into(),
        version,
        external,
        redirect_enabled: true,
    }
}

/// Contoso, seen from a node of `this_site`.
pub fn contoso(this_site: &str) -> Topology {
    Topology {
        sites: vec![
            site(
                "usa",
                Version::Exchange2010,
                external("www.usa.contoso.com"),
            ),
            site(
                "europe",
                Version::Exchange2007Sp1,
                external("www.europe.contoso.com"),
            ),
            site("asia", Version::Exchange2007Sp1, ExternalUrls::default()),
            site("legacy", Version::Exchange2003, ExternalUrls::default()),
            site("rtm", Version::Exchange2007, ExternalUrls::default()),
        ],
        this_site: this_site.into(),
        owa_redirect: OwaRedirect::LinkPage,
    }
}

/// A mailbox of `site`, on that site's version.
pub fn mailbox(address: &str, site: &str) -> Mailbox {
    let version = contoso("usa").site(site).expect("a Contoso site").version;
    Mailbox {
        address: address.into(),
        site: site.into(),
        server: format!("mbx-{site}.contoso.com"),
        version,
    }
}

/// One mailbox per site, named `<site>-user@contoso.com`, aliased `CONTOSO\<site>-user`.
pub fn directory() -> MemoryDirectory {
    let mut dir = MemoryDirectory::default();
    for site in ["usa", "europe", "asia", "legacy", "rtm"] {
        let address = format!("{site}-user@contoso.com");
        dir.insert(mailbox(&address, site), &[&format!("CONTOSO\\{site}-user")]);
    }
    dir
}

/// A router of node `<site>-1` in Contoso with [`directory`], forwarding to `forward`.
pub fn router(this_site: &str, forward: Arc<dyn Forward>) -> Router {
    Router {
        topology: contoso(this_site),
        directory: Arc::new(directory()) as Arc<dyn Directory>,
        cookie_key: cookie::Key::new(*b"router tests key"),
        forward,
        settings: Settings {
            node_name: format!("{this_site}-1"),
            front_end: Some(http::HeaderValue::from_str(&format!("{this_site}-1")).unwrap()),
            autodiscover_body_limit: 4096,
            ews_body_limit: 65536,
        },
        metrics: Default::default(),
    }
}

/// Answers 200 with "<target> <path> <body>" in the body and the target in a header.
pub struct Recorder;

impl Forward for Recorder {
    fn forward(&self, target: Target, request: Request<Body>, _client: &Client) -> ResponseFuture {
        Box::pin(async move {
            let path = request
                .uri()
                .path_and_query()
                .map(|p| p.to_string())
                .unwrap_or_default();
            let body = request
                .into_body()
                .collect()
                .await
                .map(|c| c.to_bytes())
                .unwrap_or_default();
            let text = format!("{target:?} {path} {}", String::from_utf8_lossy(&body));
            let mut r = Response::new(full(Bytes::from(text)));
            r.headers_mut().insert(
                "x-target",
                HeaderValue::from_str(&format!("{target:?}")).unwrap(),
            );
            r
        })
    }
}

/// The target a [`Recorder`] saw, or "(answered by the router)".
pub fn target(r: &Response<Body>) -> &str {
    r.headers()
        .get("x-target")
        .map(|v| v.to_str().unwrap())
        .unwrap_or("(answered by the router)")
}
