//! R6: the directory maps an address and its aliases to one mailbox; imports and removals
//! report what changed and never leave a name pointing at the wrong mailbox.

use super::*;
use crate::router::directory::records::{parse, Format};

fn records(csv: &str) -> Vec<MailboxRecord> {
    parse(
        &format!("address,aliases,site,server,version\n{csv}"),
        Format::Csv,
    )
    .unwrap()
}

fn merge(current: &mut BTreeMap<String, NameEntry>, recs: &[MailboxRecord]) {
    let plan = import(current, recs, Mode::Merge, 10).unwrap();
    applied(current, &plan);
}

fn applied(current: &mut BTreeMap<String, NameEntry>, plan: &Plan) {
    for (name, entry) in &plan.writes {
        current.insert(name.clone(), entry.clone());
    }
    for name in &plan.deletes {
        current.remove(name);
    }
}

#[test]
fn r6_import_adds_addresses_and_aliases() {
    let current = BTreeMap::new();
    let recs =
        records("Alice@Contoso.com,CONTOSO\\alice;alice@corp.contoso.com,asia,mbx-asia-1,2007sp1");
    let plan = import(&current, &recs, Mode::Merge, 10).unwrap();
    assert_eq!(plan.summary.added, 3);
    let names: Vec<&str> = plan.writes.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(
        names,
        [
            "alice@contoso.com",
            "alice@corp.contoso.com",
            "contoso\\alice"
        ]
    );
    assert!(plan
        .writes
        .iter()
        .all(|(_, e)| e.mailbox.address == "alice@contoso.com"));
    assert_eq!(plan.writes.iter().filter(|(_, e)| e.alias).count(), 2);
}

#[test]
fn r6_reimport_reports_changes_and_drops_stale_aliases() {
    let mut current = BTreeMap::new();
    let first = records(
        "alice@contoso.com,old-alias,asia,mbx-asia-1,2010\nbob@contoso.com,,europe,mbx-eu-1,2010",
    );
    merge(&mut current, &first);
    let moved = records("alice@contoso.com,new-alias,na,mbx-na-1,2010");
    let plan = import(&current, &moved, Mode::Merge, 10).unwrap();
    assert_eq!(
        plan.summary,
        Summary {
            added: 1,
            changed: 1,
            unchanged: 0,
            removed: 1
        }
    );
    applied(&mut current, &plan);
    assert!(!current.contains_key("old-alias"), "the old alias is gone");
    assert_eq!(current["new-alias"].mailbox.site, "na");
    assert_eq!(
        current["bob@contoso.com"].mailbox.site, "europe",
        "merge keeps others"
    );
}

#[test]
fn r6_replace_removes_mailboxes_not_in_the_file() {
    let mut current = BTreeMap::new();
    let first =
        records("alice@contoso.com,,asia,mbx-asia-1,2010\nbob@contoso.com,,europe,mbx-eu-1,2010");
    merge(&mut current, &first);
    let plan = import(
        &current,
        &records("alice@contoso.com,,asia,mbx-asia-1,2010"),
        Mode::Replace,
        10,
    )
    .unwrap();
    assert_eq!(
        plan.summary,
        Summary {
            added: 0,
            changed: 0,
            unchanged: 1,
            removed: 1
        }
    );
    assert_eq!(plan.deletes, ["bob@contoso.com"]);
}

#[test]
fn r6_a_name_cannot_belong_to_two_mailboxes() {
    let current = BTreeMap::new();
    let recs =
        records("alice@contoso.com,shared,asia,m1,2010\nbob@contoso.com,shared,asia,m1,2010");
    assert!(matches!(
        import(&current, &recs, Mode::Merge, 10),
        Err(PlanError::Claimed { .. })
    ));
    let mut current = BTreeMap::new();
    merge(&mut current, &records("bob@contoso.com,,asia,m1,2010"));
    let steal = records("alice@contoso.com,bob@contoso.com,asia,m1,2010");
    assert_eq!(
        import(&current, &steal, Mode::Merge, 10).unwrap_err(),
        PlanError::TakesAddress {
            name: "bob@contoso.com".into()
        }
    );
}

#[test]
fn r6_an_import_beyond_capacity_is_refused_whole() {
    let recs = records("a@contoso.com,x;y,asia,m1,2010");
    assert_eq!(
        import(&BTreeMap::new(), &recs, Mode::Merge, 2).unwrap_err(),
        PlanError::Full {
            needed: 3,
            capacity: 2
        }
    );
}

#[test]
fn r6_remove_by_alias_removes_every_name_of_the_mailbox() {
    let mut current = BTreeMap::new();
    let recs =
        records("alice@contoso.com,contoso\\alice;a2,asia,m1,2010\nbob@contoso.com,,asia,m1,2010");
    merge(&mut current, &recs);
    let plan = remove(&current, "contoso\\alice").unwrap();
    assert_eq!(plan.deletes, ["a2", "alice@contoso.com", "contoso\\alice"]);
    assert!(remove(&current, "nobody@contoso.com").is_none());
}

#[test]
fn bad_records_name_the_line_and_field() {
    let err = parse(
        "address,aliases,site,server,version\nalice@contoso.com,,asia,m1,2010\nbob,,asia,m1,2010\n",
        Format::Csv,
    )
    .unwrap_err();
    assert_eq!((err.line, err.field), (3, "address"));
    let err = parse(
        "{\"address\":\"a@b.c\",\"site\":\"asia\",\"server\":\"m\",\"version\":\"2012\"}",
        Format::Jsonl,
    )
    .unwrap_err();
    assert_eq!((err.line, err.field), (1, "version"));
    let long = format!("{}@contoso.com", "x".repeat(60));
    let err = parse(
        &format!("address,aliases,site,server,version\n{long},,asia,m1,2010"),
        Format::Csv,
    )
    .unwrap_err();
    assert_eq!(err.field, "address");
    assert!(err.reason.contains("longer than 63"), "{err}");
}

#[test]
fn jsonl_and_csv_read_the_same() {
    let csv = parse(
        "address,aliases,site,server,version\nalice@contoso.com,a1;a2,asia,m1,2007sp1",
        Format::Csv,
    )
    .unwrap();
    let jsonl = parse(r#"{"address":"alice@contoso.com","aliases":["a1","a2"],"site":"asia","server":"m1","version":"2007sp1"}"#, Format::Jsonl).unwrap();
    assert_eq!(csv, jsonl);
    assert_eq!(Format::detect("  {\"address\""), Format::Jsonl);
    assert_eq!(Format::detect("address,aliases"), Format::Csv);
}
