//! The responses the router writes itself: redirects (link page, 302, 307), ActiveSync's 451,
//! refusals with a short reason, health checks.

use bytes::Bytes;
use http::{header, HeaderName, HeaderValue, Response, StatusCode};
use http_body_util::{combinators::BoxBody, BodyExt as _, Full};

/// Any error, boxed.
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// The error a body can carry (a streamed body's I/O error). A concrete type rather than
/// `BoxError` itself: hyper's connection bounds need one.
#[derive(Debug)]
pub struct BodyError(pub BoxError);

impl std::fmt::Display for BodyError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.fmt(f)
    }
}

impl std::error::Error for BodyError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        Some(&*self.0)
    }
}

/// Every request and response body: the router's own, or a streamed one.
pub type Body = BoxBody<Bytes, BodyError>;

/// Header naming this node on every response (R20; can be switched off).
pub const FRONT_END_HEADER: HeaderName = HeaderName::from_static("x-balancer-front-end");

pub fn full(bytes: impl Into<Bytes>) -> Body {
    Full::new(bytes.into())
        .map_err(|never| match never {})
        .boxed()
}

fn respond(
    status: StatusCode,
    content_type: &'static str,
    body: impl Into<Bytes>,
) -> Response<Body> {
    let mut r = Response::new(full(body));
    *r.status_mut() = status;
    r.headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    r.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    r
}

/// Escapes text for HTML (the URL is from the configuration, but a page must never inject).
fn html_escape(s: &str) -> String {
    let mut escaped = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => escaped.push_str("&amp;"),
            '<' => escaped.push_str("&lt;"),
            '>' => escaped.push_str("&gt;"),
            '"' => escaped.push_str("&quot;"),
            '\'' => escaped.push_str("&#39;"),
            c => escaped.push(c),
        }
    }
    escaped
}

/// `text` as a header value, without copying it.
pub fn header_value(text: String) -> Result<HeaderValue, http::header::InvalidHeaderValue> {
    HeaderValue::from_maybe_shared(Bytes::from(text))
}

/// R8's default: a page that shows the correct URL as a link, not followed automatically.
pub fn link_page(location: &str) -> Response<Body> {
    let url = html_escape(location);
    respond(
        StatusCode::OK,
        "text/html; charset=utf-8",
        format!(
            "<!DOCTYPE html>\n<html><head><title>Outlook Web Access</title></head><body>\n\
             <h1>Use the Outlook Web Access address for your mailbox</h1>\n\
             <p>Your mailbox is served from another site. Open <a href=\"{url}\">{url}</a> to \
             reach it, and use that address from now on.</p>\n</body></html>\n"
        ),
    )
}

/// `302 Found` or `307 Temporary Redirect` to `location`.
pub fn redirect(status: StatusCode, location: String) -> Response<Body> {
    let mut r = respond(
        status,
        "text/plain; charset=utf-8",
        format!("see {location}\n"),
    );
    match header_value(location) {
        Ok(v) => {
            r.headers_mut().insert(header::LOCATION, v);
            r
        }
        Err(_) => refuse(
            StatusCode::INTERNAL_SERVER_ERROR,
            "the configured redirect URL is not a valid header value",
        ),
    }
}

/// R9: ActiveSync's "use this server instead": 451, `X-MS-Location`, empty body.
pub fn activesync_451(location: String) -> Response<Body> {
    let mut r = Response::new(full(Bytes::new()));
    *r.status_mut() = StatusCode::from_u16(451).expect("451 is a status code");
    match header_value(location) {
        Ok(v) => {
            r.headers_mut().insert("x-ms-location", v);
            r
        }
        Err(_) => refuse(
            StatusCode::INTERNAL_SERVER_ERROR,
            "the configured ActiveSync URL is not a valid header value",
        ),
    }
}

/// A refusal: the status and a short reason, as plain text.
pub fn refuse(status: StatusCode, reason: &str) -> Response<Body> {
    respond(status, "text/plain; charset=utf-8", format!("{reason}\n"))
}

/// R17: `GET /<vdir>/healthcheck.htm` answers 200 when this node can serve.
pub fn health() -> Response<Body> {
    respond(
        StatusCode::OK,
        "text/html",
        "<html><body>200 OK</body></html>\n",
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_link_page_escapes_its_url() {
        assert_eq!(
            html_escape(r#"https://a/?x=1&y="<b>'"#),
            "https://a/?x=1&amp;y=&quot;&lt;b&gt;&#39;"
        );
    }

    #[test]
    fn a_location_that_is_no_header_value_is_refused_not_sent() {
        let r = redirect(StatusCode::FOUND, "https://a/\n".into());
        assert_eq!(r.status(), StatusCode::INTERNAL_SERVER_ERROR);
        assert!(!r.headers().contains_key(header::LOCATION));
    }
}
