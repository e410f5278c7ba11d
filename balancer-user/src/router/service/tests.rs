//! The pipeline with a fake upstream that says where a request would have gone.

use super::*;
use crate::router::testing;
use crate::router::testing::{target, CLIENT};
use base64::Engine as _;
use http::header::HeaderName;

fn router(this_site: &str) -> Router {
    testing::router(this_site, Arc::new(testing::Recorder))
}

fn request(method: Method, uri: &str, headers: &[(&str, &str)], body: &str) -> Request<Body> {
    let mut r = Request::builder().method(method).uri(uri);
    for (k, v) in headers {
        r = r.header(HeaderName::from_bytes(k.as_bytes()).unwrap(), *v);
    }
    r.body(full(Bytes::from(body.to_string()))).unwrap()
}

async fn text(r: Response<Body>) -> String {
    String::from_utf8(r.into_body().collect().await.unwrap().to_bytes().to_vec()).unwrap()
}

#[tokio::test]
async fn r17_health_check_answers_200() {
    for path in [
        "/owa/healthcheck.htm",
        "/EWS/HealthCheck.htm",
        "/Microsoft-Server-ActiveSync/healthcheck.htm",
    ] {
        let r = router("usa")
            .handle(request(Method::GET, path, &[], ""), &CLIENT)
            .await;
        assert_eq!(r.status(), 200, "R17 {path}");
        assert_eq!(target(&r), "(answered by the router)");
    }
}

#[tokio::test]
async fn r20_loops_are_refused_and_responses_name_the_front_end() {
    let r = router("usa")
        .handle(
            request(
                Method::GET,
                "/owa/",
                &[(VIA_HEADER.as_str(), "europe-1, usa-1")],
                "",
            ),
            &CLIENT,
        )
        .await;
    assert_eq!(r.status(), StatusCode::LOOP_DETECTED, "R20 loop");
    assert_eq!(
        r.headers()[FRONT_END_HEADER],
        "usa-1",
        "R20 front-end header"
    );
    let mut quiet = router("usa");
    quiet.settings.front_end = None;
    let r = quiet
        .handle(
            request(
                Method::GET,
                "/owa/",
                &[(VIA_HEADER.as_str(), "europe-1")],
                "",
            ),
            &CLIENT,
        )
        .await;
    assert_eq!(r.status(), 200, "another router's name is no loop");
    assert!(
        r.headers().get(FRONT_END_HEADER).is_none(),
        "R20: the header can be switched off"
    );
}

#[tokio::test]
async fn r8_owa_for_europe_gets_the_link_page_and_an_affinity_cookie() {
    let r = router("usa")
        .handle(
            request(
                Method::GET,
                "/owa/",
                &[("X-AnchorMailbox", "europe-user@contoso.com")],
                "",
            ),
            &CLIENT,
        )
        .await;
    assert_eq!(r.status(), 200);
    let cookie = r.headers()[header::SET_COOKIE]
        .to_str()
        .unwrap()
        .to_string();
    assert!(
        cookie.starts_with("balancer_mailbox=")
            && cookie.contains("Secure")
            && cookie.contains("HttpOnly"),
        "{cookie}"
    );
    let page = text(r).await;
    assert!(
        page.contains("href=\"https://www.europe.contoso.com/owa\""),
        "R8 link page: {page}"
    );

    // R5: the cookie alone identifies the mailbox on the next request.
    let value = cookie.split(';').next().unwrap();
    let r = router("usa")
        .handle(
            request(Method::GET, "/owa/", &[("Cookie", value)], ""),
            &CLIENT,
        )
        .await;
    assert!(
        text(r).await.contains("https://www.europe.contoso.com/owa"),
        "R5 affinity cookie"
    );
}

#[tokio::test]
async fn r9_activesync_for_europe_answers_451() {
    let uri = "/Microsoft-Server-ActiveSync?Cmd=Sync&User=CONTOSO%5Ceurope-user&DeviceId=X";
    let r = router("usa")
        .handle(request(Method::POST, uri, &[], ""), &CLIENT)
        .await;
    assert_eq!(r.status().as_u16(), 451, "R9");
    assert_eq!(
        r.headers()["x-ms-location"],
        "https://www.europe.contoso.com/Microsoft-Server-ActiveSync"
    );
    assert!(text(r).await.is_empty(), "R9: empty body");
}

#[tokio::test]
async fn r8_owa_for_asia_is_proxied_with_the_logon_segment_stripped() {
    let r = router("usa")
        .handle(
            request(
                Method::GET,
                "/owa/asia-user@contoso.com/inbox/?ae=Folder",
                &[],
                "",
            ),
            &CLIENT,
        )
        .await;
    assert_eq!(
        target(&r),
        r#"Site { site: "asia", pick: Sticky { mailbox: "asia-user@contoso.com" } }"#
    );
    assert!(
        text(r).await.contains(" /owa/inbox/?ae=Folder "),
        "R5: the logon segment is stripped"
    );
}

#[tokio::test]
async fn r11_autodiscover_identity_comes_from_the_body_which_is_forwarded_whole() {
    let body = "<Autodiscover><Request><EMailAddress>asia-user@contoso.com</EMailAddress></Request></Autodiscover>";
    let r = router("usa")
        .handle(
            request(Method::POST, "/autodiscover/autodiscover.xml", &[], body),
            &CLIENT,
        )
        .await;
    assert!(target(&r).contains("\"asia\""), "R11: {}", target(&r));
    assert!(
        text(r).await.ends_with(body),
        "the body reaches the upstream unchanged"
    );

    let huge = format!("<Autodiscover>{}</Autodiscover>", " ".repeat(4096));
    let r = router("usa")
        .handle(
            request(Method::POST, "/autodiscover/autodiscover.xml", &[], &huge),
            &CLIENT,
        )
        .await;
    assert_eq!(
        r.status(),
        StatusCode::PAYLOAD_TOO_LARGE,
        "R5: the body is read with a bound"
    );
}

#[tokio::test]
async fn r13_and_r7_and_r5_reach_the_right_upstream() {
    let basic = format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode("CONTOSO\\legacy-user:pw")
    );
    let r = router("usa")
        .handle(
            request(
                Method::GET,
                "/exchange/legacy-user/",
                &[("Authorization", &basic)],
                "",
            ),
            &CLIENT,
        )
        .await;
    assert_eq!(
        target(&r),
        r#"Legacy { server: "mbx-legacy.contoso.com" }"#,
        "R13 via the DOMAIN\\user alias"
    );
    let r = router("usa")
        .handle(
            request(
                Method::GET,
                "/owa/",
                &[("X-AnchorMailbox", "usa-user@contoso.com")],
                "",
            ),
            &CLIENT,
        )
        .await;
    assert_eq!(target(&r), "Local", "R7");
    let r = router("usa")
        .handle(request(Method::GET, "/owa/", &[], ""), &CLIENT)
        .await;
    assert_eq!(target(&r), "Local", "R5: no identity");
    let r = router("usa")
        .handle(
            request(
                Method::GET,
                "/owa/",
                &[("X-AnchorMailbox", "nobody@contoso.com")],
                "",
            ),
            &CLIENT,
        )
        .await;
    assert_eq!(target(&r), "Local", "R6: unknown to the directory");
}

#[tokio::test]
async fn refusals_are_proper_responses_with_a_reason() {
    let r = router("usa")
        .handle(
            request(
                Method::POST,
                "/EWS/Exchange.asmx",
                &[("X-AnchorMailbox", "rtm-user@contoso.com")],
                "",
            ),
            &CLIENT,
        )
        .await;
    assert_eq!(r.status(), StatusCode::NOT_IMPLEMENTED, "R10");
    assert!(text(r).await.contains("2007 SP1"));
}

/// An EWS `GetFolder` of the inbox of each of `mailboxes` (delegate access).
fn ews_get_folders(mailboxes: &[&str]) -> String {
    let ids: String = mailboxes
        .iter()
        .map(|m| {
            format!(
                "<t:DistinguishedFolderId Id=\"inbox\"><t:Mailbox><t:EmailAddress>{m}\
                 </t:EmailAddress></t:Mailbox></t:DistinguishedFolderId>"
            )
        })
        .collect();
    format!(
        "<soap:Envelope xmlns:soap=\"http://schemas.xmlsoap.org/soap/envelope/\" \
         xmlns:t=\"t\" xmlns:m=\"m\"><soap:Body><m:GetFolder><m:FolderIds>{ids}\
         </m:FolderIds></m:GetFolder></soap:Body></soap:Envelope>"
    )
}

fn ews(body: &str, anchor: &str) -> Request<Body> {
    let len = body.len().to_string();
    request(
        Method::POST,
        "/EWS/Exchange.asmx",
        &[("X-AnchorMailbox", anchor), ("Content-Length", &len)],
        body,
    )
}

#[tokio::test]
async fn r10_an_ews_request_opening_mailboxes_of_two_sites_is_refused() {
    let body = ews_get_folders(&["usa-user@contoso.com", "europe-user@contoso.com"]);
    let r = router("usa")
        .handle(ews(&body, "usa-user@contoso.com"), &CLIENT)
        .await;
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    assert!(text(r).await.contains("one site per request"));

    let body = ews_get_folders(&["europe-user@contoso.com"]);
    let r = router("usa")
        .handle(ews(&body, "europe-user@contoso.com"), &CLIENT)
        .await;
    assert!(
        target(&r).starts_with("Site { site: \"europe\""),
        "one site: proxied there: {}",
        target(&r)
    );
    assert!(
        text(r).await.contains("europe-user@contoso.com"),
        "the body read for R10 is forwarded whole"
    );
}

#[tokio::test]
async fn r10_the_availability_service_may_name_mailboxes_of_several_sites() {
    let body = "<Envelope><Body><GetUserAvailabilityRequest><MailboxDataArray>\
        <MailboxData><Email><Address>europe-user@contoso.com</Address></Email></MailboxData>\
        <MailboxData><Email><Address>usa-user@contoso.com</Address></Email></MailboxData>\
        </MailboxDataArray></GetUserAvailabilityRequest></Body></Envelope>";
    let r = router("usa")
        .handle(ews(body, "usa-user@contoso.com"), &CLIENT)
        .await;
    assert_eq!(target(&r), "Local");
}

#[tokio::test]
async fn r10_a_message_to_recipients_in_other_sites_is_not_a_second_mailbox() {
    let body = "<Envelope><Body><CreateItem><Items><Message><ToRecipients>\
        <Mailbox><EmailAddress>europe-user@contoso.com</EmailAddress></Mailbox>\
        </ToRecipients></Message></Items></CreateItem></Body></Envelope>";
    let r = router("usa")
        .handle(ews(body, "usa-user@contoso.com"), &CLIENT)
        .await;
    assert_eq!(target(&r), "Local");
}
