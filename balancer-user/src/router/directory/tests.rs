use super::*;
use crate::router::version::Version;

#[test]
fn r6_addresses_and_aliases_resolve_to_one_mailbox() {
    let mut dir = MemoryDirectory::default();
    let alice = Mailbox {
        address: "alice@contoso.com".into(),
        site: "asia".into(),
        server: "mbx-asia-1".into(),
        version: Version::Exchange2007Sp1,
    };
    dir.insert(alice.clone(), &["CONTOSO\\alice", "alice@corp.contoso.com"]);
    for name in [
        "alice@contoso.com",
        "contoso\\alice",
        "alice@corp.contoso.com",
    ] {
        assert_eq!(
            dir.resolve(name).unwrap().as_deref(),
            Some(&alice),
            "R6: {name}"
        );
    }
    assert_eq!(
        dir.resolve("mallory@contoso.com").unwrap(),
        None,
        "R6: unknown names resolve to nothing"
    );
}
