//! The `balancer` command against the real kernel, in its own network namespace: attach,
//! inspect with bpftool (named fields, as the README shows), owner, health, stats, attach again
//! (adoption), a broken config refused with the field, detach (nothing left behind).

use balancer_tests::{netns::Netns, privileges};
use std::{path::PathBuf, process::Output};

const BALANCER: &str = env!("CARGO_BIN_EXE_balancer");

struct Cli {
    ns: Netns,
    config: PathBuf,
    pin_dir: PathBuf,
}

impl Cli {
    fn new() -> Self {
        privileges::require_root_and_bpffs().unwrap();
        let ns = Netns::new("cli").unwrap();
        ns.ip("link add eth0 type veth peer name peer0").unwrap();
        ns.ip("link set eth0 up").unwrap();
        ns.ip("link set peer0 up").unwrap();
        ns.ip("addr add 10.100.1.2/24 dev eth0").unwrap();
        let pin_dir = PathBuf::from(format!("/sys/fs/bpf/balancer-cli-{}", ns.name()));
        let config = std::env::temp_dir().join(format!("{}.toml", ns.name()));
        std::fs::write(&config, config_text(&pin_dir)).unwrap();
        Self {
            ns,
            config,
            pin_dir,
        }
    }

    fn balancer(&self, args: &[&str]) -> Output {
        let out = self
            .ns
            .command(BALANCER)
            .args(args)
            .arg("--config")
            .arg(&self.config)
            .output()
            .unwrap();
        eprintln!(
            "balancer {args:?}: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        out
    }

    fn ok(&self, args: &[&str]) -> String {
        let out = self.balancer(args);
        assert!(out.status.success(), "balancer {args:?} failed");
        String::from_utf8(out.stdout).unwrap()
    }

    fn bpftool_dump(&self, map: &str) -> serde_json::Value {
        let path = self.pin_dir.join(map);
        let out = std::process::Command::new("bpftool")
            .args(["-j", "map", "dump", "pinned"])
            .arg(&path)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "bpftool map dump {}: {}",
            path.display(),
            String::from_utf8_lossy(&out.stderr)
        );
        serde_json::from_slice(&out.stdout).unwrap()
    }
}

impl Drop for Cli {
    fn drop(&mut self) {
        let _ = balancer_user::dataplane::detach(&self.pin_dir);
        let _ = std::fs::remove_file(&self.config);
    }
}

/// Moves `name` to `site` (a 2007 SP1 server) in the pinned directory as a hand edit would
/// (bpftool), without bumping the generation.
fn move_by_hand(pin_dir: &std::path::Path, name: &str, site: &str) {
    use aya::maps::{HashMap, Map, MapData};
    use balancer_common::directory::{text_field, MailboxEntry, MailboxName};
    let data = MapData::from_pin(pin_dir.join("DIRECTORY")).unwrap();
    let mut map: HashMap<_, MailboxName, MailboxEntry> =
        HashMap::try_from(Map::from_map_data(data).unwrap()).unwrap();
    let key = MailboxName {
        name: text_field(name).unwrap(),
    };
    let mut entry = map.get(&key, 0).unwrap();
    entry.site = text_field(site).unwrap();
    entry.server = text_field("mbx-eu-1").unwrap();
    entry.version = 3;
    map.insert(key, entry, 0).unwrap();
}

fn config_text(pin_dir: &std::path::Path) -> String {
    format!(
        r#"
[node]
site = "usa"
name = "usa-1"
[dataplane]
interfaces = ["eth0"]
pin_dir = "{}"
directory_entries = 300000
[[dataplane.vips]]
address = "10.200.0.10"
[[sites]]
name = "usa"
[[sites.nodes]]
id = 1
name = "usa-1"
underlay_v4 = "10.100.1.2"
[[sites.nodes]]
id = 2
name = "usa-2"
underlay_v4 = "10.100.1.3"
"#,
        pin_dir.display()
    )
}

#[test]
fn attach_inspect_operate_and_detach() {
    let cli = Cli::new();
    let out = cli.ok(&["xdp", "attach"]);
    assert!(out.contains("eth0: Native"), "{out}");
    assert!(out.contains("verified instructions"), "{out}");
    let link = cli.ns.ip("link show eth0").unwrap();
    assert!(link.contains("prog/xdp"), "XDP attached: {link}");

    // bpftool prints named fields (BTF), as the README shows.
    let vips = cli.bpftool_dump("VIPS");
    let ports: Vec<u64> = vips
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["formatted"]["key"]["port"].as_u64().unwrap())
        .collect();
    assert!(
        ports.contains(&443) && ports.contains(&80) && ports.contains(&0),
        "VIPS ports {ports:?}"
    );
    let config = cli.bpftool_dump("CONFIG");
    assert_eq!(config[0]["formatted"]["value"]["self_node"], 1, "{config}");
    let nodes = cli.bpftool_dump("NODES");
    assert_eq!(
        nodes[2]["formatted"]["value"]["underlay_v4"],
        serde_json::json!([10, 100, 1, 3])
    );

    let owner = cli.ok(&["xdp", "owner", "192.0.2.7"]);
    assert!(
        owner.trim() == "usa-1" || owner.trim() == "usa-2",
        "{owner}"
    );
    let health = cli.ok(&["xdp", "health", "usa-2", "down"]);
    assert!(health.contains("republished"), "{health}");
    assert_eq!(
        cli.ok(&["xdp", "owner", "192.0.2.7"]).trim(),
        "usa-1",
        "R3: usa-2 down, its clients on usa-1"
    );
    let status = cli.ok(&["status"]);
    assert!(
        status.contains("usa-2") && status.contains("drained"),
        "an operator's down drains the node: {status}"
    );
    assert!(
        status.contains("100.00%"),
        "usa-1 holds the whole table: {status}"
    );
    assert!(
        status.contains("router: has never run on this node"),
        "{status}"
    );
    assert!(
        status.contains("(capacity 300000)"),
        "dataplane.directory_entries sizes the map: {status}"
    );
    let stats = cli.ok(&["stats"]);
    assert!(
        stats.contains("10.200.0.10:443") && stats.contains("usa-2"),
        "{stats}"
    );

    // Attaching again adopts the pinned maps (usa-2 stays drained) and replaces the program.
    let again = cli.ok(&["xdp", "attach"]);
    assert!(again.contains("eth0: Replaced"), "{again}");
    assert_eq!(
        cli.ok(&["xdp", "owner", "192.0.2.7"]).trim(),
        "usa-1",
        "R18: state survives"
    );
    let status = cli.ok(&["status"]);
    assert!(status.contains("drained"), "the drain survives: {status}");

    // A broken config is refused with the field, and the running state is kept.
    std::fs::write(
        &cli.config,
        config_text(&cli.pin_dir).replace("id = 2", "id = 1"),
    )
    .unwrap();
    let refused = cli.balancer(&["xdp", "sync"]);
    assert!(!refused.status.success());
    assert!(
        String::from_utf8_lossy(&refused.stderr).contains("sites[0].nodes[1].id"),
        "the error names the field"
    );
    assert!(
        cli.ns.ip("link show eth0").unwrap().contains("prog/xdp"),
        "still attached"
    );
    std::fs::write(&cli.config, config_text(&cli.pin_dir)).unwrap();

    let detached = cli.ok(&["xdp", "detach"]);
    assert!(detached.contains("eth0"), "{detached}");
    assert!(!cli.pin_dir.exists(), "pins removed");
    assert!(
        !cli.ns.ip("link show eth0").unwrap().contains("prog/xdp"),
        "XDP detached"
    );
}

/// Issue 4's directory test (R6): 100,000 mailboxes imported into the pinned map, looked up,
/// removed, dumped by bpftool as text, and a router reading the same map sees every change
/// on its next request.
#[test]
fn directory_import_lookup_remove_and_the_router_sees_each_change() {
    use balancer_user::router::{
        directory::PinnedDirectory,
        testing::{self, CLIENT},
    };
    use http::{Request, StatusCode};
    use std::sync::Arc;

    let cli = Cli::new();
    cli.ok(&["xdp", "attach"]);

    let small = std::env::temp_dir().join(format!("{}-small.jsonl", cli.ns.name()));
    std::fs::write(
        &small,
        r#"{"address": "Alice@Contoso.com", "aliases": ["Alice@Corp.Contoso.com"], "site": "asia", "server": "mbx-asia-1", "version": "2007sp1"}"#,
    )
    .unwrap();
    let out = cli.ok(&["directory", "import", small.to_str().unwrap()]);
    assert!(out.contains("1 mailboxes; 2 added"), "{out}");
    let dump = cli.bpftool_dump("DIRECTORY");
    let alias = dump
        .as_array()
        .unwrap()
        .iter()
        .map(|e| &e["formatted"])
        .find(|e| e["key"]["name"] == "alice@corp.contoso.com")
        .unwrap_or_else(|| panic!("bpftool prints names as text: {dump}"));
    assert_eq!(alias["value"]["address"], "alice@contoso.com");
    assert_eq!(alias["value"]["site"], "asia");
    assert_eq!(alias["value"]["server"], "mbx-asia-1");

    // 100,000 mailboxes with one alias each, in one import.
    let big = std::env::temp_dir().join(format!("{}-big.csv", cli.ns.name()));
    let mut csv = String::from("address,aliases,site,server,version\n");
    for i in 0..100_000 {
        csv.push_str(&format!(
            "user{i}@contoso.com,CONTOSO\\user{i},usa,mbx-usa-{},2010\n",
            i % 7
        ));
    }
    std::fs::write(&big, csv).unwrap();
    let out = cli.ok(&["directory", "import", big.to_str().unwrap()]);
    assert!(
        out.contains("100000 mailboxes; 200000 added, 0 changed"),
        "{out}"
    );
    let found = cli.ok(&["directory", "lookup", "CONTOSO\\user99999"]);
    assert!(
        found.contains("alias of user99999@contoso.com") && found.contains("site=usa"),
        "{found}"
    );

    // A router over the same pinned map: ActiveSync from usa.
    let directory = Arc::new(
        PinnedDirectory::open(&cli.pin_dir)
            .unwrap()
            .with_cache(1024),
    );
    let mut router = testing::router("usa", Arc::new(testing::Recorder));
    router.directory = directory;
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let ask_for = |router: &balancer_user::router::service::Router, user: &str| {
        let request = Request::get(format!("/Microsoft-Server-ActiveSync?User={user}&Cmd=Sync"))
            .body(balancer_user::router::responses::full(""))
            .unwrap();
        runtime.block_on(router.handle(request, &CLIENT))
    };
    let ask =
        |router: &balancer_user::router::service::Router| ask_for(router, "user42@contoso.com");
    let local = ask(&router);
    assert_eq!(local.status(), StatusCode::OK);
    assert!(
        testing::target(&local).contains("Local"),
        "R7: {:?}",
        testing::target(&local)
    );

    cli.ok(&[
        "directory",
        "add",
        "user42@contoso.com",
        "--site",
        "europe",
        "--server",
        "mbx-eu-1",
        "--version",
        "2007sp1",
        "--alias",
        "CONTOSO\\user42",
    ]);
    let moved = ask(&router);
    assert_eq!(
        moved.status().as_u16(),
        451,
        "R9: moved to europe, seen without a restart"
    );
    assert!(moved.headers()["x-ms-location"]
        .to_str()
        .unwrap()
        .contains("www.europe.contoso.com"));

    let removed = cli.ok(&["directory", "remove", "user42@contoso.com"]);
    assert!(
        removed.contains("contoso\\user42"),
        "aliases go too: {removed}"
    );
    assert!(!cli
        .balancer(&["directory", "lookup", "contoso\\user42"])
        .status
        .success());
    let unknown = ask(&router);
    assert!(
        testing::target(&unknown).contains("Local"),
        "R5: unknown mailbox served here"
    );

    // The router's cache: each write above bumped the directory's generation (bpftool reads
    // it), which is what made the router see it. An edit by hand is seen once it is bumped.
    let generation = cli.bpftool_dump("DIRECTORY_GENERATION")[0]["formatted"]["value"]
        .as_u64()
        .expect("bpftool prints the generation as a number");
    assert!(
        generation >= 4,
        "two imports, an add and a remove: {generation}"
    );
    let user7 = "user7@contoso.com";
    assert!(testing::target(&ask_for(&router, user7)).contains("Local"));
    move_by_hand(&cli.pin_dir, user7, "europe");
    assert!(
        testing::target(&ask_for(&router, user7)).contains("Local"),
        "the cached entry stays until the generation changes"
    );
    let next = (generation + 1).to_le_bytes().map(|b| b.to_string());
    let bumped = std::process::Command::new("bpftool")
        .args(["map", "update", "pinned"])
        .arg(cli.pin_dir.join("DIRECTORY_GENERATION"))
        .args(["key", "0", "0", "0", "0", "value"])
        .args(next)
        .status()
        .unwrap();
    assert!(bumped.success());
    assert_eq!(
        ask_for(&router, user7).status().as_u16(),
        451,
        "R9: the hand edit is seen once the generation is bumped"
    );

    // A bad file is refused whole, naming the line and field; nothing changes.
    std::fs::write(
        &big,
        "address,aliases,site,server,version\nok@contoso.com,,usa,m,2010\nbad,,usa,m,2010\n",
    )
    .unwrap();
    let refused = cli.balancer(&["directory", "import", big.to_str().unwrap()]);
    assert!(!refused.status.success());
    assert!(String::from_utf8_lossy(&refused.stderr).contains("line 3: address"));
    assert!(!cli
        .balancer(&["directory", "lookup", "ok@contoso.com"])
        .status
        .success());
    let _ = std::fs::remove_file(&small);
    let _ = std::fs::remove_file(&big);
}
