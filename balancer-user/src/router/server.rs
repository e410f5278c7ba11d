//! The HTTPS front: accept, TLS handshake (with a deadline), then HTTP/1.1 or HTTP/2 as ALPN
//! chose, into the [`Router`]. Limits on every phase: a cap on connections (while at the cap
//! the listener stops accepting, so new connections wait in the kernel's backlog), a
//! handshake timeout, a header-read timeout (which also closes idle HTTP/1.1 connections
//! between requests), an idle timeout for HTTP/2 connections, a maximum header size and count,
//! and a cap on HTTP/2 streams.

use super::{
    accept::{Accepted, CappedListener},
    h2_streams::{StreamExecutor, Streams},
    responses::BodyError,
    service::{Client, Router},
    tls::FrontTls,
};
use arc_swap::ArcSwap;
use http_body_util::BodyExt as _;
use hyper::{
    body::Incoming,
    server::conn::{http1, http2},
    service::service_fn,
    Request,
};
use hyper_util::{
    rt::{TokioIo, TokioTimer},
    server::graceful::GracefulShutdown,
};
use std::{convert::Infallible, future::Future, sync::Arc, time::Duration};
use tokio::net::TcpListener;
use tracing::{debug, info, warn};

/// Limits of the front side (the config's `[router.limits]`; durations like `"30s"`). Idle
/// HTTP/1.1 connections are closed by the header-read timeout, idle HTTP/2 connections by
/// `h2_idle_timeout`.
#[derive(Debug, Clone, serde::Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Limits {
    pub max_connections: usize,
    #[serde(with = "humantime_serde")]
    pub handshake_timeout: Duration,
    /// Deadline for a request's headers, and idle time allowed between HTTP/1.1 requests.
    #[serde(with = "humantime_serde")]
    pub header_read_timeout: Duration,
    /// Largest request head (HTTP/1.1 buffer, HTTP/2 header list).
    pub max_header_bytes: usize,
    pub max_headers: usize,
    pub max_h2_streams: u32,
    /// An HTTP/2 connection on which no request has been running for this long is closed
    /// gracefully (GOAWAY: streams still running would finish).
    #[serde(with = "humantime_serde")]
    pub h2_idle_timeout: Duration,
    /// How long in-flight requests may run after shutdown begins.
    #[serde(with = "humantime_serde")]
    pub drain_timeout: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_connections: 10_000,
            handshake_timeout: Duration::from_secs(10),
            header_read_timeout: Duration::from_secs(30),
            max_header_bytes: 64 * 1024,
            max_headers: 100,
            max_h2_streams: 256,
            h2_idle_timeout: Duration::from_secs(180),
            drain_timeout: Duration::from_secs(30),
        }
    }
}

/// hyper's own limit on the number of headers, which it applies when given none.
const HYPER_DEFAULT_MAX_HEADERS: usize = 100;

impl Limits {
    /// The HTTP/1.1 server of both fronts (HTTPS and plain HTTP), with these limits.
    pub(super) fn http1(&self) -> http1::Builder {
        let mut h1 = http1::Builder::new();
        h1.timer(TokioTimer::new())
            .header_read_timeout(self.header_read_timeout)
            .max_buf_size(self.max_header_bytes.max(8192));
        // Given a limit, hyper fills a table of that many entries for every request head it
        // parses (1.7k instructions, 3% of a proxied request); with none, it applies its own
        // limit of 100 to a table it leaves uninitialised. The same limit, so it is left unsaid.
        if self.max_headers != HYPER_DEFAULT_MAX_HEADERS {
            h1.max_headers(self.max_headers);
        }
        h1
    }

    /// The HTTP/2 server of one connection, its streams run by `streams` (see [`Streams`]).
    fn http2(&self, streams: StreamExecutor) -> http2::Builder<StreamExecutor> {
        let mut h2 = http2::Builder::new(streams);
        h2.timer(TokioTimer::new())
            .max_concurrent_streams(self.max_h2_streams)
            .max_header_list_size(self.max_header_bytes as u32)
            .keep_alive_interval(self.header_read_timeout);
        h2
    }
}

/// Serves HTTPS on `listener` until `shutdown` completes, then drains. Each request is
/// handled by the router `router` holds when it arrives, so a reload is a swap.
pub async fn serve(
    listener: TcpListener,
    tls: FrontTls,
    router: Arc<ArcSwap<Router>>,
    limits: Limits,
    shutdown: impl Future<Output = ()>,
) {
    let listener = CappedListener::new(listener, limits.max_connections);
    let graceful = GracefulShutdown::new();
    // The protocol comes from ALPN, not from sniffing the first bytes (hyper-util's `auto`
    // does that with no deadline: an idle connection would be held forever).
    let h1 = Arc::new(limits.http1());
    let limits = Arc::new(limits);
    // Tells HTTP/2 connections (which close themselves when idle) that the server stops.
    let (stopping_tx, stopping) = tokio::sync::watch::channel(false);
    tokio::pin!(shutdown);
    while let Some(Accepted { tcp, peer, permit }) = listener.next(&mut shutdown).await {
        let (front_tls, router, h1, limits) =
            (tls.clone(), router.clone(), h1.clone(), limits.clone());
        let metrics = router.load().metrics.clone();
        let watcher = graceful.watcher();
        let (handshake_timeout, idle_timeout) = (limits.handshake_timeout, limits.h2_idle_timeout);
        let first_request_timeout = limits.header_read_timeout;
        let stopping = stopping.clone();
        tokio::spawn(async move {
            let _permit = permit;
            let _open = metrics.connection();
            let mut tls = match tokio::time::timeout(handshake_timeout, front_tls.accept(tcp)).await
            {
                Ok(Ok(tls)) => tls,
                Ok(Err(e)) => {
                    metrics.tls_failure();
                    return debug!(%peer, error = %e, "TLS handshake failed");
                }
                Err(_) => {
                    metrics.tls_failure();
                    return debug!(%peer, "TLS handshake timed out");
                }
            };
            if !first_bytes(&mut tls, first_request_timeout).await {
                return debug!(%peer, "no request after the TLS handshake");
            }
            let is_h2 = tls.get_ref().1.alpn_protocol() == Some(b"h2");
            // Requests are tracked for HTTP/2's idle timeout only.
            let activity = is_h2.then(Activity::default);
            let service_activity = activity.clone();
            let client = Client::new(peer.ip());
            let handle = move |request: Request<Incoming>| {
                // The router in force when the request arrives (a reload swaps it).
                let router = router.load_full();
                let running = service_activity.as_ref().map(Activity::start);
                let client = client.clone();
                async move {
                    let _running = running;
                    let request = request.map(|body| body.map_err(|e| BodyError(e.into())).boxed());
                    Ok::<_, Infallible>(router.handle(request, &client).await)
                }
            };
            let ended = if let Some(activity) = activity {
                // Counted by the graceful shutdown while held; closes itself when idle.
                let _watcher = watcher;
                // hyper makes each stream a future holding the request's, moved several times
                // on its way to the executor: boxed, what moves is a pointer (callgrind: 2% of
                // an h2 request). HTTP/1.1 keeps its one future in place.
                let service = service_fn(move |request| Box::pin(handle(request)));
                let streams = Streams::default();
                let conn = limits
                    .http2(streams.executor())
                    .serve_connection(TokioIo::new(tls), service);
                serve_h2(conn, streams, activity, idle_timeout, stopping).await
            } else {
                watcher
                    .watch(h1.serve_connection(TokioIo::new(tls), service_fn(handle)))
                    .await
            };
            if let Err(e) = ended {
                debug!(%peer, error = %e, "connection ended with an error");
            }
        });
    }
    info!("stopped accepting; draining connections");
    let _ = stopping_tx.send(true);
    tokio::select! {
        () = graceful.shutdown() => info!("all connections drained"),
        () = tokio::time::sleep(limits.drain_timeout) => warn!("drain timeout: closing remaining connections"),
    }
}

/// Requests running on one connection, and when the last one ended.
#[derive(Clone, Default)]
struct Activity(Arc<std::sync::Mutex<(usize, Option<tokio::time::Instant>)>>);

/// A running request; ends when dropped (the handler has answered).
struct Running(Activity);

impl Activity {
    fn start(&self) -> Running {
        self.0.lock().expect("not poisoned").0 += 1;
        Running(self.clone())
    }

    /// When the connection becomes idle for `limit`: `None` while a request runs.
    fn idle_deadline(
        &self,
        limit: Duration,
        opened: tokio::time::Instant,
    ) -> Option<tokio::time::Instant> {
        let (running, last) = *self.0.lock().expect("not poisoned");
        (running == 0).then(|| last.unwrap_or(opened) + limit)
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        let mut state = (self.0).0.lock().expect("not poisoned");
        state.0 -= 1;
        state.1 = Some(tokio::time::Instant::now());
    }
}

/// Serves one HTTP/2 connection and its `streams` until it ends; closes it gracefully (GOAWAY,
/// running streams finish) when no request has run for `idle`, or when the server stops.
async fn serve_h2<I, S>(
    conn: http2::Connection<I, S, StreamExecutor>,
    mut streams: Streams,
    activity: Activity,
    idle: Duration,
    mut stopping: tokio::sync::watch::Receiver<bool>,
) -> hyper::Result<()>
where
    I: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static,
    S: hyper::service::HttpService<Incoming, ResBody = super::responses::Body>,
    S::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    StreamExecutor: hyper::rt::bounds::Http2ServerConnExec<S::Future, super::responses::Body>,
{
    let opened = tokio::time::Instant::now();
    tokio::pin!(conn);
    let mut closing = false;
    loop {
        let deadline = activity.idle_deadline(idle, opened);
        let check_again = tokio::time::Instant::now() + idle;
        let close = tokio::select! {
            ended = std::future::poll_fn(|cx| streams.poll_with(cx, |cx| conn.as_mut().poll(cx))) => {
                return ended
            }
            () = tokio::time::sleep_until(deadline.unwrap_or(check_again)), if !closing => {
                let idle = activity.idle_deadline(idle, opened).is_some_and(|d| d <= tokio::time::Instant::now());
                if idle {
                    debug!("HTTP/2 connection idle: closing");
                }
                idle
            }
            _ = stopping.wait_for(|s| *s), if !closing => true,
        };
        if close {
            conn.as_mut().graceful_shutdown();
            // Polled next, to send its GOAWAY (its state changed other than through its waker).
            streams.wake_connection();
            closing = true;
        }
    }
}

/// Waits until the client sends something after the handshake (or `limit` passes: `false`).
/// The HTTP connection, with its buffers (hyper allocates 16 KiB for HTTP/1.1), is built only
/// then, so a connection that stays idle after its handshake costs only its TLS state, as in
/// nginx, which allocates its buffers lazily.
async fn first_bytes(
    tls: &mut tokio_rustls::server::TlsStream<tokio::net::TcpStream>,
    limit: Duration,
) -> bool {
    let (tcp, conn) = tls.get_mut();
    // Data that came with the handshake's last flight is already in rustls, not in the socket.
    match conn.process_new_packets() {
        Ok(state) if state.plaintext_bytes_to_read() > 0 => return true,
        Ok(_) => {}
        Err(_) => return false,
    }
    matches!(
        tokio::time::timeout(limit, tcp.readable()).await,
        Ok(Ok(()))
    )
}
