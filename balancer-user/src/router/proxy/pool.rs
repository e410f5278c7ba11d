//! The connections kept open to one upstream origin (a node's scheme, host and port).
//!
//! HTTP/1.1 connections carry one request at a time: a connection goes back to the pool when
//! the answer's body has been read to its end ([`PooledBody`]), and the most recently used
//! idle one is taken first (its buffers are warm; the others age out after [`IDLE_TIMEOUT`]).
//! A connection given back may not have taken up the end of its answer yet (its task runs
//! next): the request that takes it waits for that, so that a request that follows another
//! always finds its connection. One whose request body is still being sent (the upstream
//! answered early) comes back only once it is sent.
//! An HTTP/2 connection is shared by every request. A request a pooled connection could not
//! take (the upstream closed it meanwhile) goes to the next one, or to a new connection.
//!
//! This is the whole client: no task per request, no shared map of hosts, no connector cloned
//! per request; the request's head is rewritten in place for the connection's protocol.

use super::{
    super::responses::{Body, BodyError},
    connect::{ConnectError, Connector, Origin, Sender},
};
use bytes::Bytes;
use http::{header, uri::Authority, HeaderValue, Request, Response, Uri};
use hyper::{
    body::{Frame, Incoming, SizeHint},
    client::conn::{http1, http2},
};
use std::{
    collections::VecDeque,
    pin::Pin,
    sync::{Arc, Mutex},
    task::{Context, Poll},
    time::{Duration, Instant},
};
use tokio::sync::OwnedSemaphorePermit;

/// How long an idle HTTP/1.1 connection is kept.
pub const IDLE_TIMEOUT: Duration = Duration::from_secs(90);

/// Why a request got no answer from the upstream.
#[derive(Debug, thiserror::Error)]
pub enum UpstreamError {
    /// No connection could be opened: the node is unavailable.
    #[error(transparent)]
    Connect(#[from] ConnectError),
    /// The connection failed while the request or its answer was on it.
    #[error(transparent)]
    Request(#[from] hyper::Error),
    /// A new connection closed before it took the request.
    #[error("the upstream closed a new connection before it took the request")]
    Closed,
}

/// The pool of one origin.
pub struct OriginPool {
    origin: Origin,
    /// `Host` of HTTP/1.1 requests.
    host_header: HeaderValue,
    /// Scheme and authority of HTTP/2 requests.
    authority: Authority,
    connections: Mutex<Connections>,
    /// The most idle HTTP/1.1 connections kept.
    max_idle: usize,
}

/// The open connections of an origin, behind one lock (one acquisition per request).
#[derive(Default)]
struct Connections {
    /// Idle HTTP/1.1 connections, the most recently used last.
    idle: VecDeque<Idle>,
    /// The HTTP/2 connection all requests share.
    http2: Option<http2::SendRequest<Body>>,
}

struct Idle {
    sender: http1::SendRequest<Body>,
    since: Instant,
}

impl Idle {
    fn aged_out(&self, now: Instant) -> bool {
        now.duration_since(self.since) > IDLE_TIMEOUT
    }
}

impl OriginPool {
    /// The pool of `base`'s origin (scheme and authority), reached at `addrs`, keeping up to
    /// `max_idle` idle connections.
    pub fn new(base: &Uri, addrs: Vec<std::net::SocketAddr>, max_idle: usize) -> Self {
        let scheme = base.scheme().cloned().unwrap_or(http::uri::Scheme::HTTPS);
        let authority = base
            .authority()
            .cloned()
            .unwrap_or_else(|| Authority::from_static("localhost"));
        let default_port = if scheme == http::uri::Scheme::HTTP {
            80
        } else {
            443
        };
        let port = authority.port_u16();
        // A port in the URL wins over the configured address's (as a browser would do).
        let addrs = addrs
            .into_iter()
            .map(|mut a| {
                if let Some(p) = port {
                    a.set_port(p);
                } else if a.port() == 0 {
                    a.set_port(default_port);
                }
                a
            })
            .collect();
        Self {
            host_header: HeaderValue::from_str(authority.as_str())
                .expect("an authority is a valid header value"),
            origin: Origin {
                scheme,
                host: authority.host().to_ascii_lowercase(),
                port: port.unwrap_or(default_port),
                addrs,
            },
            authority,
            connections: Mutex::default(),
            max_idle,
        }
    }

    /// Sends `request` (its URI: the path and query) on a pooled connection or a new one.
    /// The answer's body gives the connection back when read to its end, and releases
    /// `permit` (the node's in-flight cap) then.
    pub async fn send(
        self: &Arc<Self>,
        connector: &Connector,
        mut request: Request<Body>,
        permit: Option<OwnedSemaphorePermit>,
    ) -> Result<Response<PooledBody>, UpstreamError> {
        while let Some(sender) = self.checkout() {
            match self.try_send(sender, request).await {
                Ok(answer) => return Ok(self.wrap(answer, permit)),
                // The connection closed before it took the request: the next one may.
                Err(Failed::NotSent(r)) => request = *r,
                Err(Failed::Sent(e)) => return Err(e.into()),
            }
        }
        // Boxed: opening a connection (TCP, TLS, hyper's handshake) is the rare path, and its
        // state is several KiB; inline, every request's future would carry (and move) it.
        let sender = Box::pin(connector.connect(&self.origin)).await?;
        if let Sender::Http2(shared) = &sender {
            self.lock().http2 = Some(shared.clone());
        }
        match self.try_send(sender, request).await {
            Ok(answer) => Ok(self.wrap(answer, permit)),
            Err(Failed::NotSent(_)) => Err(UpstreamError::Closed),
            Err(Failed::Sent(e)) => Err(e.into()),
        }
    }

    async fn try_send(&self, sender: Sender, mut request: Request<Body>) -> Result<Answer, Failed> {
        match sender {
            Sender::Http1(mut sender) => {
                if sender.ready().await.is_err() {
                    return Err(Failed::NotSent(Box::new(request)));
                }
                request
                    .headers_mut()
                    .insert(header::HOST, self.host_header.clone());
                let ready_soon = hyper::body::Body::is_end_stream(request.body());
                match sender.try_send_request(request).await {
                    Ok(answer) => Ok(Answer {
                        response: answer,
                        http1: Some(Returning { sender, ready_soon }),
                    }),
                    Err(mut e) => match e.take_message() {
                        Some(request) => Err(Failed::NotSent(Box::new(request))),
                        None => Err(Failed::Sent(e.into_error())),
                    },
                }
            }
            Sender::Http2(mut sender) => {
                let path = request.uri().path_and_query().cloned();
                let mut parts = http::uri::Parts::default();
                parts.scheme = Some(self.origin.scheme.clone());
                parts.authority = Some(self.authority.clone());
                parts.path_and_query = path;
                if let Ok(uri) = Uri::from_parts(parts) {
                    *request.uri_mut() = uri;
                }
                *request.version_mut() = http::Version::HTTP_2;
                match sender.try_send_request(request).await {
                    Ok(answer) => Ok(Answer {
                        response: answer,
                        http1: None,
                    }),
                    Err(mut e) => match e.take_message() {
                        Some(request) => {
                            self.lock().http2 = None;
                            Err(Failed::NotSent(Box::new(request)))
                        }
                        None => Err(Failed::Sent(e.into_error())),
                    },
                }
            }
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Connections> {
        self.connections.lock().expect("pool lock")
    }

    /// The shared HTTP/2 connection, or the most recently used idle one that is still open
    /// (it may still be taking up the end of its last answer: see [`Self::try_send`]).
    fn checkout(&self) -> Option<Sender> {
        let mut connections = self.lock();
        if let Some(shared) = connections.http2.as_ref().filter(|s| !s.is_closed()) {
            return Some(Sender::Http2(shared.clone()));
        }
        let idle = &mut connections.idle;
        let now = Instant::now();
        while idle.front().is_some_and(|i| i.aged_out(now)) {
            idle.pop_front();
        }
        // One the upstream closed meanwhile is left behind.
        while let Some(i) = idle.pop_back() {
            if !i.sender.is_closed() {
                return Some(Sender::Http1(i.sender));
            }
        }
        None
    }

    fn checkin(self: Arc<Self>, returning: Returning) {
        let Returning {
            mut sender,
            ready_soon,
        } = returning;
        if sender.is_closed() {
            return;
        }
        if !ready_soon && !sender.is_ready() {
            // The upstream answered before the request's body was all sent: the connection
            // comes back once it is, or never if it closes.
            tokio::spawn(async move {
                if sender.ready().await.is_ok() {
                    let ready_soon = true; // ready now
                    self.checkin(Returning { sender, ready_soon });
                }
            });
            return;
        }
        if self.max_idle == 0 {
            return;
        }
        let idle = &mut self.lock().idle;
        // Beyond the cap, the least recently used closes (dropping its sender ends it).
        while idle.len() >= self.max_idle {
            idle.pop_front();
        }
        idle.push_back(Idle {
            sender,
            since: Instant::now(),
        });
    }

    /// Idle connections that closed or aged out are dropped (the health checks call this).
    pub fn sweep(&self) {
        let now = Instant::now();
        self.lock()
            .idle
            .retain(|i| !i.sender.is_closed() && !i.aged_out(now));
    }

    fn wrap(
        self: &Arc<Self>,
        answer: Answer,
        permit: Option<OwnedSemaphorePermit>,
    ) -> Response<PooledBody> {
        let (parts, body) = answer.response.into_parts();
        let mut pooled = PooledBody {
            body,
            give_back: answer.http1.map(|sender| (self.clone(), sender)),
            _permit: permit,
        };
        pooled.give_back_at_end();
        Response::from_parts(parts, pooled)
    }
}

struct Answer {
    response: Response<Incoming>,
    http1: Option<Returning>,
}

/// An HTTP/1.1 connection whose answer is being read, to give back at its end.
struct Returning {
    sender: http1::SendRequest<Body>,
    /// Once the answer is read, only the connection's task taking up its end stands between
    /// it and the next request (the request had no body to send).
    ready_soon: bool,
}

enum Failed {
    /// Boxed: the rare case, and the common one stays small.
    NotSent(Box<Request<Body>>),
    Sent(hyper::Error),
}

/// An answer's body: gives its HTTP/1.1 connection back to the pool once read to the end,
/// and releases the node's in-flight permit when done or dropped. A body dropped before its
/// end closes the connection (what is left of the answer would be read as the next one).
pub struct PooledBody {
    body: Incoming,
    give_back: Option<(Arc<OriginPool>, Returning)>,
    _permit: Option<OwnedSemaphorePermit>,
}

impl PooledBody {
    fn give_back(&mut self) {
        if let Some((pool, returning)) = self.give_back.take() {
            pool.checkin(returning);
        }
    }

    fn give_back_at_end(&mut self) {
        if hyper::body::Body::is_end_stream(&self.body) {
            self.give_back();
        }
    }
}

impl hyper::body::Body for PooledBody {
    type Data = Bytes;
    type Error = BodyError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BodyError>>> {
        let polled = Pin::new(&mut self.body).poll_frame(cx);
        match &polled {
            Poll::Ready(Some(Ok(_))) => self.give_back_at_end(),
            Poll::Ready(None) => self.give_back(),
            Poll::Ready(Some(Err(_))) => drop(self.give_back.take()),
            Poll::Pending => {}
        }
        polled.map_err(|e| BodyError(e.into()))
    }

    fn is_end_stream(&self) -> bool {
        hyper::body::Body::is_end_stream(&self.body)
    }

    fn size_hint(&self) -> SizeHint {
        hyper::body::Body::size_hint(&self.body)
    }
}
