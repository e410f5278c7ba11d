//! The proxy with real upstreams over real TLS on loopback (R7, R8, R13-R15, R17, R19, R20):
//! upstream test servers say who they are and what they received.

mod common;

use ahash::AHashMap;
use balancer_user::router::{
    proxy::{HealthChecks, Proxy, ProxyConfig, ResponseTimeouts, BACK_END_HEADER},
    responses::Body,
    service::Router,
    testing,
};
use bytes::Bytes;
use common::{node, request, upstream, upstream_at, Ca, Upstream, CLIENT};
use http::{Request, StatusCode};
use http_body_util::BodyExt as _;
use std::{sync::Arc, time::Duration};

struct Lab {
    router: Router,
    proxy: Arc<Proxy>,
    ca: Ca,
    upstreams: AHashMap<String, Upstream>,
}

async fn lab() -> Lab {
    lab_with(HealthChecks::default()).await
}

async fn lab_with(health: HealthChecks) -> Lab {
    let ca = Ca::new();
    let mut upstreams = AHashMap::new();
    for name in ["usa-backend", "asia-1", "asia-2"] {
        let host = format!("{name}.contoso.internal");
        upstreams.insert(
            name.to_string(),
            upstream(name, Some(ca.issue(&host))).await,
        );
    }
    upstreams.insert("legacy".into(), upstream("legacy-backend", None).await);
    // Signed by another CA: must be refused (R15).
    upstreams.insert(
        "rogue".into(),
        upstream("rogue", Some(Ca::new().issue("rtm-1.contoso.internal"))).await,
    );
    let https = |name: &str| {
        node(
            name,
            "https",
            &format!("{name}.contoso.internal"),
            upstreams[name].addr,
        )
    };
    let mut sites = AHashMap::new();
    sites.insert("asia".to_string(), vec![https("asia-1"), https("asia-2")]);
    sites.insert(
        "rtm".to_string(),
        vec![node(
            "rtm-1",
            "https",
            "rtm-1.contoso.internal",
            upstreams["rogue"].addr,
        )],
    );
    let mut legacy = AHashMap::new();
    legacy.insert(
        "mbx-legacy.contoso.com".to_string(),
        node(
            "legacy-backend",
            "http",
            "mbx-legacy.contoso.com",
            upstreams["legacy"].addr,
        ),
    );
    let proxy = Proxy::new(ProxyConfig {
        node_name: http::HeaderValue::from_static("usa-1"),
        local: vec![https("usa-backend")],
        sites,
        legacy,
        trust: ca.roots(),
        max_in_flight_per_node: 100,
        max_idle_per_node: 16,
        connect_timeout: Duration::from_secs(2),
        ejection: Duration::from_secs(30),
        back_end_header: true,
        health,
        timeouts: ResponseTimeouts {
            default: Duration::from_secs(3),
            activesync: Duration::from_secs(10),
            rpc: Duration::from_secs(10),
        },
    });
    let router = testing::router("usa", Arc::new(proxy.clone()));
    Lab {
        router,
        proxy,
        ca,
        upstreams,
    }
}

fn get(uri: &str, headers: &[(&str, &str)]) -> Request<Body> {
    request("GET", uri, headers, Bytes::new())
}

async fn answer(lab: &Lab, req: Request<Body>) -> (StatusCode, String, String) {
    let r = lab.router.handle(req, &CLIENT).await;
    let status = r.status();
    let back_end = r
        .headers()
        .get(BACK_END_HEADER)
        .map(|v| v.to_str().unwrap().to_string())
        .unwrap_or_default();
    let body =
        String::from_utf8(r.into_body().collect().await.unwrap().to_bytes().to_vec()).unwrap();
    (status, back_end, body)
}

const ASIA: (&str, &str) = ("X-AnchorMailbox", "asia-user@contoso.com");

#[tokio::test(flavor = "multi_thread")]
async fn r8_r14_owa_to_asia_sticks_to_one_node_with_forwarding_headers() {
    let lab = lab().await;
    let (status, back_end, body) =
        answer(&lab, get("/owa/asia-user@contoso.com/inbox/", &[])).await;
    assert_eq!(status, 200, "{body}");
    assert!(
        back_end == "asia-1" || back_end == "asia-2",
        "R8 proxied to asia: {back_end}"
    );
    assert!(
        body.contains(" /owa/inbox/ "),
        "R5: logon segment stripped: {body}"
    );
    assert!(
        body.contains("fwd=192.0.2.7") && body.contains("via=usa-1"),
        "R20 / X-Forwarded-For: {body}"
    );
    for _ in 0..5 {
        let (_, again, _) = answer(&lab, get("/owa/", &[ASIA])).await;
        assert_eq!(again, back_end, "R14: OWA sticks to one node");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn r14_activesync_to_asia_goes_round_robin() {
    let lab = lab().await;
    let mut seen = Vec::new();
    for _ in 0..4 {
        let (status, back_end, _) = answer(
            &lab,
            request(
                "POST",
                "/Microsoft-Server-ActiveSync?Cmd=Ping&User=asia-user@contoso.com",
                &[],
                Bytes::new(),
            ),
        )
        .await;
        assert_eq!(status, 200);
        seen.push(back_end);
    }
    assert!(
        seen.contains(&"asia-1".to_string()) && seen.contains(&"asia-2".to_string()),
        "R14: {seen:?}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn r7_local_and_r13_legacy_back_ends() {
    let lab = lab().await;
    let (_, back_end, _) = answer(
        &lab,
        get("/owa/", &[("X-AnchorMailbox", "usa-user@contoso.com")]),
    )
    .await;
    assert_eq!(back_end, "usa-backend", "R7");
    let (status, back_end, body) = answer(
        &lab,
        get(
            "/exchange/legacy-user/",
            &[("X-AnchorMailbox", "legacy-user@contoso.com")],
        ),
    )
    .await;
    assert_eq!(
        (status.as_u16(), back_end.as_str()),
        (200, "legacy-backend"),
        "R13 over HTTP: {body}"
    );
    // A client on HTTP/2 (curl and browsers over TLS) still reaches the HTTP/1.1 back end.
    let mut h2 = get(
        "/exchange/legacy-user/",
        &[("X-AnchorMailbox", "legacy-user@contoso.com")],
    );
    *h2.version_mut() = http::Version::HTTP_2;
    let (status, back_end, body) = answer(&lab, h2).await;
    assert_eq!(
        (status.as_u16(), back_end.as_str()),
        (200, "legacy-backend"),
        "R13 from an HTTP/2 client: {body}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn r15_an_untrusted_upstream_certificate_is_refused() {
    let lab = lab().await;
    let (status, _, body) = answer(
        &lab,
        get("/owa/", &[("X-AnchorMailbox", "rtm-user@contoso.com")]),
    )
    .await;
    // The node cannot be reached securely: it is unavailable, and the answer says why.
    assert_eq!(
        status,
        StatusCode::SERVICE_UNAVAILABLE,
        "R15: never accept anything: {body}"
    );
    assert!(
        body.contains("certificate"),
        "R15: the reason names the certificate: {body}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn r19_bodies_stream_through() {
    let lab = lab().await;
    let body = Bytes::from(vec![7u8; 64 << 20]);
    let (status, _, text) =
        answer(&lab, request("POST", "/EWS/Exchange.asmx", &[ASIA], body)).await;
    assert_eq!(status, 200);
    assert!(
        text.ends_with(&format!("bytes={}", 64 << 20)),
        "R19: {text}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn r17_failover_then_503_when_the_site_is_down() {
    let mut lab = lab().await;
    let (_, sticky, _) = answer(&lab, get("/owa/", &[ASIA])).await;
    let other = if sticky == "asia-1" {
        "asia-2"
    } else {
        "asia-1"
    };
    drop(lab.upstreams.remove(&sticky));
    tokio::time::sleep(Duration::from_millis(50)).await;
    let (status, back_end, body) = answer(&lab, get("/owa/", &[ASIA])).await;
    assert_eq!(
        (status.as_u16(), back_end.as_str()),
        (200, other),
        "R17: failover from {sticky}: {body}"
    );
    let (_, again, _) = answer(&lab, get("/owa/", &[ASIA])).await;
    assert_eq!(again, other, "the failed node stays out");
    drop(lab.upstreams.remove(other));
    tokio::time::sleep(Duration::from_millis(50)).await;
    let r = lab.router.handle(get("/owa/", &[ASIA]), &CLIENT).await;
    assert_eq!(
        r.status(),
        StatusCode::SERVICE_UNAVAILABLE,
        "R17: the whole site down"
    );
    assert!(
        r.headers().contains_key(http::header::RETRY_AFTER),
        "R17: Retry-After"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn r17_active_checks_take_a_dead_node_out_and_bring_it_back() {
    let fast = HealthChecks {
        interval: Duration::from_millis(100),
        timeout: Duration::from_millis(500),
        rise: 2,
        fall: 2,
        ..HealthChecks::default()
    };
    let mut lab = lab_with(fast).await;
    let checks = lab.proxy.spawn_health_checks();
    let (_, sticky, _) = answer(&lab, get("/owa/", &[ASIA])).await;
    let other = if sticky == "asia-1" {
        "asia-2"
    } else {
        "asia-1"
    };
    let addr = lab.upstreams.remove(&sticky).unwrap().addr;
    // No request meanwhile: only the active checks can notice.
    tokio::time::sleep(Duration::from_millis(800)).await;
    assert_eq!(
        lab.proxy.is_healthy(&sticky),
        Some(false),
        "R17: {sticky} failed its checks"
    );
    let (_, now, _) = answer(&lab, get("/owa/", &[ASIA])).await;
    assert_eq!(now, other, "R17: traffic goes to the healthy node");

    let host = format!("{sticky}.contoso.internal");
    lab.upstreams.insert(
        sticky.clone(),
        upstream_at(&sticky, Some(lab.ca.issue(&host)), addr).await,
    );
    tokio::time::sleep(Duration::from_millis(800)).await;
    assert_eq!(
        lab.proxy.is_healthy(&sticky),
        Some(true),
        "R17: {sticky} passed its checks again"
    );
    let (_, back, _) = answer(&lab, get("/owa/", &[ASIA])).await;
    assert_eq!(back, sticky, "R14: the mailbox goes back to its node");
    checks.abort();
}

#[tokio::test(flavor = "multi_thread")]
async fn r19_per_path_timeouts_let_long_polls_wait_and_cut_slow_answers() {
    let lab = lab().await;
    let usa = ("X-AnchorMailbox", "usa-user@contoso.com");
    // An ActiveSync Ping hangs (here 4 s) within its own, longer limit (10 s here).
    let (status, back_end, body) = answer(
        &lab,
        request(
            "POST",
            "/Microsoft-Server-ActiveSync?Cmd=Ping&delay_ms=4000",
            &[usa],
            Bytes::new(),
        ),
    )
    .await;
    assert_eq!(
        (status.as_u16(), back_end.as_str()),
        (200, "usa-backend"),
        "{body}"
    );
    // The same wait on OWA exceeds the default limit (3 s here): 504 with the reason.
    let (status, _, body) = answer(&lab, get("/owa/?delay_ms=4000", &[usa])).await;
    assert_eq!(status, StatusCode::GATEWAY_TIMEOUT, "{body}");
    assert!(body.contains("did not answer within 3 s"), "{body}");
    // And the node is not taken for dead: the next request is served.
    let (status, _, _) = answer(&lab, get("/owa/", &[usa])).await;
    assert_eq!(status, StatusCode::OK);
}
