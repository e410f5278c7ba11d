//! Config parsing and validation: a broken file is refused with the field and the reason.

use super::*;

const EXAMPLE: &str = include_str!("../../../config/example.toml");

#[test]
fn the_annotated_example_is_valid() {
    let c = Config::parse(EXAMPLE).unwrap();
    assert_eq!(c.this_node().id, 1);
    assert_eq!(c.site().nodes.len(), 2);
    assert_eq!(c.dataplane.vips[0].affinity, Affinity::Single);
    assert_eq!(c.dataplane.xdp_mode, XdpMode::Auto);
}

fn refused(edit: impl Fn(&str) -> String) -> String {
    let text = edit(EXAMPLE);
    format!(
        "{:#}",
        Config::parse(&text).expect_err("a broken config was accepted")
    )
}

/// Each (from, to, expected): the example with `from` edited to `to` is refused with an error
/// that contains `expected`.
fn assert_refused(cases: &[(&str, &str, &str)]) {
    for (from, to, expected) in cases {
        let err = refused(|t| t.replacen(from, to, 1));
        assert!(
            err.contains(expected),
            "editing {from:?} -> {to:?}: expected {expected:?} in {err:?}"
        );
    }
}

#[test]
fn errors_name_the_field_and_the_reason() {
    let cases: [(&str, &str, &str); 9] = [
        (
            "ring_size = 65537",
            "ring_size = 65536",
            "dataplane.ring_size: 65536 is not a prime",
        ),
        (
            "id = 2\n",
            "id = 1\n",
            "sites[0].nodes[1].id: 1 is used twice",
        ),
        (
            "name = \"usa-1\"        #",
            "name = \"nobody\"        #",
            "node.name: \"nobody\" is not a node",
        ),
        (
            "name = \"usa-2\"",
            "name = \"usa 2, b\"",
            "sites[0].nodes[1].name: \"usa 2, b\" must be printable ASCII with no space or comma",
        ),
        (
            "site = \"usa\"",
            "site = \"mars\"",
            "node.site: \"mars\" is not one of the sites",
        ),
        (
            "ports = [80, 443]",
            "ports = []",
            "dataplane.vips[0].ports: empty",
        ),
        (
            "underlay_v4 = \"10.100.2.2\"",
            "",
            "sites[0].nodes[1].underlay_v4: missing",
        ),
        (
            "affinity = \"single\"",
            "affinity = \"sticky\"",
            "unknown variant `sticky`",
        ),
        (
            "interfaces = [\"eth0\"]",
            "interfaces = [\"eth0\"]\nmystery = 1",
            "unknown field `mystery`",
        ),
    ];
    assert_refused(&cases);
}

#[test]
fn toml_syntax_errors_say_where() {
    let err = refused(|t| t.replacen("[dataplane]", "[dataplane", 1));
    assert!(err.contains("line"), "{err}");
}

#[test]
fn router_fields_are_checked_with_their_names() {
    let cases = [
        (
            "cookie_secret = \"change-me-to-32-random-bytes!!!!\"",
            "cookie_secret = \"short\"",
            "router.cookie_secret: 5 bytes",
        ),
        (
            "url = \"http://be-2003.contoso.internal\"",
            "url = \"https://be-2003.contoso.internal\"",
            "sites[3].backends[0].url: \"https://be-2003.contoso.internal\" must be an absolute http URL",
        ),
        (
            "external_url = \"https://www.europe.contoso.com\"",
            "external_url = \"www.europe.contoso.com\"",
            "sites[1].external_url",
        ),
        (
            "internal_url = \"https://asia-1.contoso.internal\"",
            "internal_url = \"http://asia-1.contoso.internal\"",
            "sites[2].nodes[0].internal_url",
        ),
        ("rise = 2 ", "rise = 0 ", "dataplane.peer_checks: rise and fall"),
        (
            "rise = 2                         #",
            "rise = 0 #",
            "router.health: rise and fall",
        ),
        ("interval = \"5s\"", "interval = \"often\"", "interval"),
        ("version = \"2010\"", "version = \"2013\"", "unknown variant `2013`"),
        (
            "http = \"[::]:80\"",
            "http = \"10.200.0.10:80\"",
            "router.http: 10.200.0.10:80 does not answer where the array's peers check",
        ),
        (
            "http = \"[::]:80\"",
            "http = \"\"",
            "router.http: \"\" (off), but the array's peers check",
        ),
        ("port = 80 ", "port = 8080 ", "router.http: [::]:80 does not answer"),
        ("fall = 3                  #", "fall = 3\nextra = 1 #", "unknown field `extra`"),
    ];
    assert_refused(&cases);
}

#[test]
fn the_example_gives_the_routers_topology_and_upstreams() {
    let c = Config::parse(EXAMPLE).unwrap();
    let topology = c.topology();
    assert_eq!(topology.this_site, "usa");
    let europe = topology.site("europe").unwrap();
    assert_eq!(
        europe.external.ews.as_deref(),
        Some("https://www.europe.contoso.com/EWS/Exchange.asmx")
    );
    assert_eq!(
        topology.site("asia").unwrap().external.owa,
        None,
        "R8: not Internet-facing"
    );
    let mut example = c.clone();
    example.router.as_mut().unwrap().upstreams.trust.clear();
    let proxy = example.proxy_config().unwrap();
    assert_eq!(proxy.local[0].name, "mbx-usa-1", "R7: this site's back end");
    assert_eq!(
        proxy.sites["asia"][0].base.host(),
        Some("asia-1.contoso.internal")
    );
    assert_eq!(
        proxy.legacy["be-2003"].base.scheme_str(),
        Some("http"),
        "R13"
    );
    assert!(
        !proxy.sites.contains_key("usa"),
        "this site is not a remote site"
    );
    assert_eq!(
        proxy.timeouts.for_path("/Microsoft-Server-ActiveSync"),
        std::time::Duration::from_secs(61 * 60),
        "R19: [router.timeouts] reaches the proxy"
    );
}

#[test]
fn per_directory_internal_urls_change_the_origin_only() {
    let text = EXAMPLE.replacen(
        "internal_url = \"https://asia-1.contoso.internal\"\n",
        "internal_url = \"https://asia-1.contoso.internal\"\n\
         [sites.nodes.internal_urls]\n\
         ews = \"https://ews.asia-1.contoso.internal:8443/EWS/Exchange.asmx\"\n",
        1,
    );
    let mut c = Config::parse(&text).unwrap();
    c.router.as_mut().unwrap().upstreams.trust.clear();
    let asia = &c.proxy_config().unwrap().sites["asia"][0];
    let ews = asia.base_for("/EWS/Exchange.asmx");
    assert_eq!(
        (ews.host(), ews.port_u16()),
        (Some("ews.asia-1.contoso.internal"), Some(8443))
    );
    assert_eq!(
        asia.base_for("/owa/").host(),
        Some("asia-1.contoso.internal")
    );

    let wrong = text.replace("8443/EWS/Exchange.asmx", "8443/owa");
    let err = format!("{:#}", Config::parse(&wrong).unwrap_err());
    assert!(
        err.contains("sites[2].nodes[0].internal_urls.ews") && err.contains("virtual directory"),
        "{err}"
    );
}
