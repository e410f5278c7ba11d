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

#[test]
fn errors_name_the_field_and_the_reason() {
    let cases: [(&str, &str, &str); 8] = [
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
    for (from, to, expected) in cases {
        let err = refused(|t| t.replacen(from, to, 1));
        assert!(
            err.contains(expected),
            "editing {from:?} -> {to:?}: expected {expected:?} in {err:?}"
        );
    }
}

#[test]
fn toml_syntax_errors_say_where() {
    let err = refused(|t| t.replacen("[dataplane]", "[dataplane", 1));
    assert!(err.contains("line"), "{err}");
}
