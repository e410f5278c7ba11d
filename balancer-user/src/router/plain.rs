//! Plain HTTP (port 80): health checks are answered (R17), OWA paths are redirected to https on
//! the same host, and everything else is refused: the Client Access protocols carry
//! credentials and need TLS.

use super::{
    accept::{Accepted, CappedListener},
    protocol::Protocol,
    responses::{self, Body, FRONT_END_HEADER},
    server::Limits,
};
use http::{header, HeaderValue, Method, Request, Response, StatusCode};
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use std::{convert::Infallible, future::Future, sync::Arc};
use tokio::net::TcpListener;
use tracing::debug;

/// The answer to a plain-HTTP request.
pub fn respond<B>(request: &Request<B>) -> Response<Body> {
    let path = request.uri().path();
    let health = path
        .rsplit_once('/')
        .is_some_and(|(dir, file)| !dir.is_empty() && file.eq_ignore_ascii_case("healthcheck.htm"));
    if health && (request.method() == Method::GET || request.method() == Method::HEAD) {
        return responses::health();
    }
    if matches!(
        Protocol::of_path(path),
        Protocol::Owa | Protocol::LegacyExchange
    ) {
        let host = request
            .headers()
            .get(header::HOST)
            .and_then(|h| h.to_str().ok());
        // The host without a port: https is on its default port.
        let Some(host) = host
            .map(|h| h.rsplit_once(':').map_or(h, |(name, _)| name))
            .filter(|h| !h.is_empty())
        else {
            return responses::refuse(
                StatusCode::BAD_REQUEST,
                "a Host header is needed to redirect to https",
            );
        };
        let path_and_query = request.uri().path_and_query().map_or(path, |p| p.as_str());
        return responses::redirect(
            StatusCode::MOVED_PERMANENTLY,
            format!("https://{host}{path_and_query}"),
        );
    }
    responses::refuse(StatusCode::FORBIDDEN, "use https")
}

/// Serves plain HTTP/1.1 on `listener` until `shutdown` completes; responses carry the
/// front-end header `front_end` if given (R20).
pub async fn serve(
    listener: TcpListener,
    limits: Limits,
    front_end: Option<HeaderValue>,
    shutdown: impl Future<Output = ()>,
) {
    let listener = CappedListener::new(listener, limits.max_connections);
    let h1 = Arc::new(limits.http1());
    tokio::pin!(shutdown);
    while let Some(Accepted { tcp, peer, permit }) = listener.next(&mut shutdown).await {
        let (h1, front_end) = (h1.clone(), front_end.clone());
        tokio::spawn(async move {
            let _permit = permit;
            let service = service_fn(|request: Request<hyper::body::Incoming>| {
                let front_end = front_end.clone();
                async move {
                    let mut response = respond(&request);
                    if let Some(v) = front_end {
                        response.headers_mut().insert(FRONT_END_HEADER, v);
                    }
                    Ok::<_, Infallible>(response)
                }
            });
            if let Err(e) = h1.serve_connection(TokioIo::new(tcp), service).await {
                debug!(%peer, error = %e, "plain HTTP connection ended with an error");
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn get(path: &str, host: Option<&str>) -> Response<Body> {
        let mut r = Request::get(path);
        if let Some(h) = host {
            r = r.header(header::HOST, h);
        }
        respond(&r.body(()).unwrap())
    }

    #[test]
    fn owa_redirects_to_https_health_answers_the_rest_is_refused() {
        let r = get("/owa/?ae=Folder", Some("www.usa.contoso.com:80"));
        assert_eq!(r.status(), StatusCode::MOVED_PERMANENTLY);
        assert_eq!(
            r.headers()[header::LOCATION],
            "https://www.usa.contoso.com/owa/?ae=Folder"
        );
        assert_eq!(
            get("/exchange/", Some("mail.contoso.com")).headers()[header::LOCATION],
            "https://mail.contoso.com/exchange/"
        );
        assert_eq!(
            get("/owa/healthcheck.htm", None).status(),
            StatusCode::OK,
            "R17 on port 80"
        );
        assert_eq!(
            get("/Microsoft-Server-ActiveSync", Some("x")).status(),
            StatusCode::FORBIDDEN,
            "credentials need TLS"
        );
        assert_eq!(
            get("/owa/", None).status(),
            StatusCode::BAD_REQUEST,
            "no Host: no redirect"
        );
    }
}
