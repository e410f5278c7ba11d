//! The request pipeline: loop check (R20), health check (R17), identity (R5), directory (R6),
//! decision (R7-R14), then the router's own answer or a forward to an upstream ([`Forward`]).

use super::{
    decision::{decide, Decision, Facts, Pick, RedirectKind},
    directory::Directory,
    identity::{self, cookie, Head, Source},
    protocol::Protocol,
    responses::{self, Body, BodyError, FRONT_END_HEADER},
    topology::Topology,
};
use bytes::Bytes;
use http::{header, HeaderName, HeaderValue, Method, Request, Response, StatusCode};
use http_body_util::{BodyExt as _, Full, Limited};
use std::{future::Future, net::IpAddr, pin::Pin, sync::Arc};
use tracing::{debug, warn};

#[cfg(test)]
mod tests;

/// Header listing the routers a request has passed through (R20 loop detection).
pub const VIA_HEADER: HeaderName = HeaderName::from_static("x-balancer-via");

/// Where a request goes when the router does not answer it itself.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    /// This site's own Client Access / mailbox back end (R7).
    Local,
    /// A node of another site, over HTTPS (R8-R12, R14).
    Site { site: String, pick: Pick },
    /// An Exchange 2003 back-end server, over HTTP (R13).
    Legacy { server: String },
}

/// A boxed future of a response.
pub type ResponseFuture = Pin<Box<dyn Future<Output = Response<Body>> + Send>>;

/// Sends requests to upstreams: the proxy. A trait, so that the pipeline is tested alone.
pub trait Forward: Send + Sync + 'static {
    /// Sends `request`, from `client`, to `target`.
    fn forward(&self, target: Target, request: Request<Body>, client: &Client) -> ResponseFuture;
}

/// The client a request comes from, as the proxy names it upstream (X-Forwarded-For).
#[derive(Debug, Clone)]
pub struct Client {
    /// The client's IP address as a header value: made once per connection rather than
    /// formatted per request.
    pub forwarded_for: HeaderValue,
}

impl Client {
    pub fn new(ip: IpAddr) -> Self {
        Self {
            forwarded_for: responses::header_value(ip.to_string())
                .expect("an IP address is a header value"),
        }
    }
}

/// What [`Router::decide`] made of a request.
struct Decided {
    routed: Routed,
    /// The affinity cookie to set (R5), when the mailbox is known by another source.
    set_cookie: Option<HeaderValue>,
}

impl Decided {
    /// The router's own answer, with no cookie.
    fn answer(response: Response<Body>) -> Self {
        Self {
            routed: Routed::Answer(response),
            set_cookie: None,
        }
    }
}

/// The router's own answer, or where to forward the request.
enum Routed {
    Answer(Response<Body>),
    Forward(Target, Request<Body>),
}

/// A request whose body must be read before the decision.
enum NeedsBody {
    /// An Autodiscover request whose head names no one (R5).
    Identity(Request<Body>),
    /// An EWS request with a small body: the mailboxes it opens (R10); its identity is found.
    Mailboxes(Request<Body>, identity::Found),
}

/// How the pipeline behaves.
#[derive(Debug, Clone)]
pub struct Settings {
    /// This node's name, in loop detection and in the front-end header.
    pub node_name: String,
    /// The front-end header's value (this node's name), added to every response (R20);
    /// `None`: switched off.
    pub front_end: Option<HeaderValue>,
    /// Largest Autodiscover body read to find the identity (R5).
    pub autodiscover_body_limit: usize,
    /// Largest EWS body read to find the mailboxes it opens (R10); larger ones, and bodies of
    /// unknown length, stream through unread.
    pub ews_body_limit: usize,
}

/// The router of one node.
pub struct Router {
    pub topology: Topology,
    pub directory: Arc<dyn Directory>,
    pub cookie_key: cookie::Key,
    pub forward: Arc<dyn Forward>,
    pub settings: Settings,
    /// Counters, kept across reloads (published by `balancer run`).
    pub metrics: Arc<super::metrics::Metrics>,
}

impl Router {
    /// Answers one request from `client`.
    pub async fn handle(&self, request: Request<Body>, client: &Client) -> Response<Body> {
        let mut response = self.route(request, client).await;
        self.metrics.response(response.status());
        if let Some(v) = &self.settings.front_end {
            response.headers_mut().insert(FRONT_END_HEADER, v.clone());
        }
        response
    }

    /// Only the forward to an upstream and the rare reads of a request body are awaited here:
    /// every step between is synchronous, so that this future, which every request carries
    /// (and moves: hyper makes each HTTP/2 stream a future of its own), stays small.
    async fn route(&self, request: Request<Body>, client: &Client) -> Response<Body> {
        let Decided { routed, set_cookie } = match self.decide_from_head(request) {
            Ok(decided) => decided,
            Err(needs_body) => Box::pin(self.decide_after_body(needs_body)).await,
        };
        let mut response = match routed {
            Routed::Answer(response) => response,
            Routed::Forward(target, request) => self.forward.forward(target, request, client).await,
        };
        if let Some(cookie) = set_cookie {
            response.headers_mut().append(header::SET_COOKIE, cookie);
        }
        response
    }

    /// Loop check (R20), health check (R17), identity from the head (R5) and the decision; or
    /// the request, when its body must be read first ([`Self::decide_after_body`]).
    #[allow(clippy::result_large_err)]
    fn decide_from_head(&self, request: Request<Body>) -> Result<Decided, NeedsBody> {
        if self.seen_before(&request) {
            return Ok(Decided::answer(responses::refuse(
                StatusCode::LOOP_DETECTED,
                "this request has already passed through this router",
            )));
        }
        let path = request.uri().path();
        if is_health_check(request.method(), path) {
            return Ok(Decided::answer(responses::health()));
        }
        let protocol = Protocol::of_path(path);
        let (request, found) = match self.identify(request, protocol) {
            Ok(found) => found,
            Err(request) => return Err(NeedsBody::Identity(request)),
        };
        if self.wants_ews_body(&request, protocol) {
            return Err(NeedsBody::Mailboxes(request, found));
        }
        Ok(self.decide(request, protocol, found, Default::default()))
    }

    /// [`Self::decide_from_head`] once the body that names the identity (Autodiscover) or
    /// the mailboxes the request opens (EWS, R10) is read.
    async fn decide_after_body(&self, needs_body: NeedsBody) -> Decided {
        match needs_body {
            NeedsBody::Identity(request) => match self.identify_from_body(request).await {
                Ok((request, found)) => {
                    self.decide(request, Protocol::Autodiscover, found, Default::default())
                }
                Err(refusal) => Decided::answer(refusal),
            },
            NeedsBody::Mailboxes(request, found) => {
                let (request, ews) = self.read_ews_body(request).await;
                self.decide(request, Protocol::Ews, found, ews)
            }
        }
    }

    /// The directory lookup (R6) and the decision (R7-R14): the router's own answer, or where
    /// to forward the request.
    fn decide(
        &self,
        request: Request<Body>,
        protocol: Protocol,
        found: identity::Found,
        ews: identity::ews::EwsRequest,
    ) -> Decided {
        let mailbox = match &found.identity {
            Some(id) => match self.directory.resolve(&id.name) {
                Ok(m) => m,
                Err(e) => {
                    warn!(error = %e, "directory lookup failed: serving locally");
                    None
                }
            },
            None => None,
        };
        let other_sites = self.sites_of(&ews.mailboxes);
        let other_sites: Vec<&str> = other_sites.iter().map(String::as_str).collect();
        let facts = Facts {
            protocol,
            method: request.method(),
            mailbox: mailbox.as_deref(),
            other_mailbox_sites: &other_sites,
            availability: ews.availability,
        };
        let decision = decide(&facts, &self.topology);
        self.metrics.decision(&decision);
        debug!(?protocol, identity = ?found.identity, ?decision, "decided");
        let set_cookie = match (&found.identity, &mailbox) {
            (Some(id), Some(m)) if id.source != Source::AffinityCookie => {
                Some(cookie::set_cookie(&self.cookie_key, &m.address))
            }
            _ => None,
        };
        let routed = match decision {
            Decision::Local { .. } => {
                Routed::Forward(Target::Local, rewrite(request, found.upstream_path))
            }
            Decision::ProxySite { site, pick } => Routed::Forward(
                Target::Site { site, pick },
                rewrite(request, found.upstream_path),
            ),
            Decision::ProxyLegacy { server } => Routed::Forward(Target::Legacy { server }, request),
            Decision::Redirect {
                kind: RedirectKind::LinkPage,
                location,
            } => Routed::Answer(responses::link_page(&location)),
            Decision::Redirect {
                kind: RedirectKind::Found,
                location,
            } => Routed::Answer(responses::redirect(StatusCode::FOUND, location)),
            Decision::Redirect {
                kind: RedirectKind::Temporary,
                location,
            } => Routed::Answer(responses::redirect(
                StatusCode::TEMPORARY_REDIRECT,
                location,
            )),
            Decision::ActiveSync451 { location } => {
                Routed::Answer(responses::activesync_451(location))
            }
            Decision::Refuse { status, reason } => Routed::Answer(responses::refuse(
                StatusCode::from_u16(status).unwrap_or(StatusCode::BAD_GATEWAY),
                &reason,
            )),
        };
        Decided { routed, set_cookie }
    }

    fn seen_before(&self, request: &Request<Body>) -> bool {
        request
            .headers()
            .get_all(VIA_HEADER)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .any(|hop| hop.trim() == self.settings.node_name)
    }

    /// Whether the request is EWS with a small body to read (R10: the mailboxes it opens);
    /// anything else, or a body too large or of unknown length, goes on unread.
    fn wants_ews_body(&self, request: &Request<Body>, protocol: Protocol) -> bool {
        protocol == Protocol::Ews
            && request.method() == Method::POST
            && request
                .headers()
                .get(header::CONTENT_LENGTH)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.parse::<usize>().ok())
                .is_some_and(|n| n > 0 && n <= self.settings.ews_body_limit)
    }

    /// Reads the EWS body [`Self::wants_ews_body`] asked for.
    async fn read_ews_body(
        &self,
        request: Request<Body>,
    ) -> (Request<Body>, identity::ews::EwsRequest) {
        let (parts, body) = request.into_parts();
        let limit = self.settings.ews_body_limit;
        match Limited::new(body, limit).collect().await {
            Ok(collected) => {
                let bytes = collected.to_bytes();
                let ews = identity::ews::parse(&bytes).unwrap_or_default();
                (Request::from_parts(parts, full(bytes)), ews)
            }
            // The body failed (or lied about its length): pass on an empty one, which the
            // upstream refuses; the client's connection is in error anyway.
            Err(_) => (
                Request::from_parts(parts, full(Bytes::new())),
                Default::default(),
            ),
        }
    }

    /// The directory's sites of `names` (names it does not know are left out).
    fn sites_of(&self, names: &[String]) -> Vec<String> {
        names
            .iter()
            .filter_map(|n| self.directory.resolve(n).ok().flatten())
            .map(|m| m.site.clone())
            .collect()
    }

    /// Finds the identity in the head; gives the request back when it is an Autodiscover
    /// request whose head names no one (its body is read next, [`Self::identify_from_body`]).
    #[allow(clippy::result_large_err)]
    fn identify(
        &self,
        request: Request<Body>,
        protocol: Protocol,
    ) -> Result<(Request<Body>, identity::Found), Request<Body>> {
        let found = {
            let head = Head {
                path: request.uri().path(),
                query: request.uri().query(),
                headers: request.headers(),
            };
            identity::identify(&head, None, &self.cookie_key)
        };
        let wants_body = found.identity.is_none()
            && protocol == Protocol::Autodiscover
            && request.method() == Method::POST;
        match wants_body {
            false => Ok((request, found)),
            true => Err(request),
        }
    }

    /// The identity in an Autodiscover body (R5), read up to its limit.
    async fn identify_from_body(
        &self,
        request: Request<Body>,
    ) -> Result<(Request<Body>, identity::Found), Response<Body>> {
        let (parts, body) = request.into_parts();
        let limit = self.settings.autodiscover_body_limit;
        let bytes = match Limited::new(body, limit).collect().await {
            Ok(collected) => collected.to_bytes(),
            Err(e) if e.is::<http_body_util::LengthLimitError>() => {
                return Err(responses::refuse(
                    StatusCode::PAYLOAD_TOO_LARGE,
                    &format!("Autodiscover request larger than {limit} bytes"),
                ));
            }
            Err(_) => {
                return Err(responses::refuse(
                    StatusCode::BAD_REQUEST,
                    "the request body could not be read",
                ))
            }
        };
        let found = {
            let head = Head {
                path: parts.uri.path(),
                query: parts.uri.query(),
                headers: &parts.headers,
            };
            identity::identify(&head, Some(&bytes), &self.cookie_key)
        };
        Ok((Request::from_parts(parts, full(bytes)), found))
    }
}

fn full(bytes: Bytes) -> Body {
    Full::new(bytes)
        .map_err(|never| -> BodyError { match never {} })
        .boxed()
}

/// `GET` or `HEAD` of `/<vdir>/healthcheck.htm` (R17).
fn is_health_check(method: &Method, path: &str) -> bool {
    (method == Method::GET || method == Method::HEAD)
        && path.rsplit_once('/').is_some_and(|(dir, file)| {
            !dir.is_empty() && file.eq_ignore_ascii_case("healthcheck.htm")
        })
}

/// The request with its path replaced by `upstream_path` (an explicit logon segment stripped).
fn rewrite(request: Request<Body>, upstream_path: Option<String>) -> Request<Body> {
    let Some(path) = upstream_path else {
        return request;
    };
    let (mut parts, body) = request.into_parts();
    let path_and_query = match parts.uri.query() {
        Some(q) => format!("{path}?{q}"),
        None => path,
    };
    if let Ok(uri) = http::Uri::builder().path_and_query(path_and_query).build() {
        parts.uri = uri;
    }
    Request::from_parts(parts, body)
}
