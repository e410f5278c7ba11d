//! R19: a 1 GiB RPC_IN_DATA body streams through the router to this site's back end without
//! being buffered: the whole test process (client, router and upstream) peaks under 64 MiB of
//! resident memory. Its own test binary, so that nothing else runs in the process.

mod common;

use ahash::AHashMap;
use balancer_user::router::{
    proxy::{HealthChecks, Proxy, ProxyConfig},
    responses::{Body, BodyError},
    testing,
};
use bytes::Bytes;
use common::{node, upstream, Ca, CLIENT};
use http::{Method, Request};
use http_body_util::BodyExt as _;
use hyper::body::{Frame, SizeHint};
use std::{
    pin::Pin,
    sync::Arc,
    task::{Context, Poll},
    time::Duration,
};

const GIB: u64 = 1 << 30;
const CHUNK: usize = 64 * 1024;

/// A body of `left` bytes, produced chunk by chunk, never held whole.
struct Generated {
    left: u64,
    chunk: Bytes,
}

impl hyper::body::Body for Generated {
    type Data = Bytes;
    type Error = BodyError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        _: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BodyError>>> {
        if self.left == 0 {
            return Poll::Ready(None);
        }
        let n = self.left.min(CHUNK as u64) as usize;
        self.left -= n as u64;
        Poll::Ready(Some(Ok(Frame::data(self.chunk.slice(..n)))))
    }

    fn size_hint(&self) -> SizeHint {
        SizeHint::with_exact(self.left)
    }
}

/// Peak resident memory of this process (VmHWM), in bytes.
fn peak_rss() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let kb: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .unwrap()
        .trim()
        .trim_end_matches(" kB")
        .trim()
        .parse()
        .unwrap();
    kb * 1024
}

#[tokio::test(flavor = "multi_thread")]
async fn r19_a_1_gib_rpc_in_data_body_streams_through() {
    let ca = Ca::new();
    let backend = upstream(
        "usa-backend",
        Some(ca.issue("usa-backend.contoso.internal")),
    )
    .await;
    let proxy = Proxy::new(ProxyConfig {
        node_name: http::HeaderValue::from_static("usa-1"),
        local: vec![node(
            "usa-backend",
            "https",
            "usa-backend.contoso.internal",
            backend.addr,
        )],
        sites: AHashMap::new(),
        legacy: AHashMap::new(),
        trust: ca.roots(),
        max_in_flight_per_node: 10,
        max_idle_per_node: 16,
        connect_timeout: Duration::from_secs(2),
        ejection: Duration::from_secs(30),
        back_end_header: true,
        health: HealthChecks::default(),
        timeouts: Default::default(),
    });
    let router = testing::router("usa", Arc::new(proxy));
    let body: Body = Generated {
        left: GIB,
        chunk: Bytes::from(vec![0x5au8; CHUNK]),
    }
    .boxed();
    let request = Request::builder()
        .method(Method::from_bytes(b"RPC_IN_DATA").unwrap())
        .uri("/rpc/rpcproxy.dll?mbx-usa.contoso.com:6001")
        .header(http::header::CONTENT_LENGTH, GIB.to_string())
        .body(body)
        .unwrap();
    let before = peak_rss();
    let response = router.handle(request, &CLIENT).await;
    assert_eq!(response.status(), 200);
    let text = String::from_utf8(
        response
            .into_body()
            .collect()
            .await
            .unwrap()
            .to_bytes()
            .to_vec(),
    )
    .unwrap();
    assert!(
        text.ends_with(&format!("bytes={GIB}")),
        "the back end received 1 GiB: {text}"
    );
    let peak = peak_rss();
    eprintln!(
        "peak RSS {} MiB (before the transfer {} MiB)",
        peak >> 20,
        before >> 20
    );
    assert!(
        peak < 64 << 20,
        "R19: peak RSS {} MiB: the body was buffered",
        peak >> 20
    );
}
