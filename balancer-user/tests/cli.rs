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

fn config_text(pin_dir: &std::path::Path) -> String {
    format!(
        r#"
[node]
site = "usa"
name = "usa-1"
[dataplane]
interfaces = ["eth0"]
pin_dir = "{}"
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
    let stats = cli.ok(&["xdp", "stats"]);
    assert!(
        stats.contains("10.200.0.10:443") && stats.contains("usa-2"),
        "{stats}"
    );

    // Attaching again adopts the pinned maps (usa-2 stays down) and replaces the program.
    let again = cli.ok(&["xdp", "attach"]);
    assert!(again.contains("eth0: Replaced"), "{again}");
    assert_eq!(
        cli.ok(&["xdp", "owner", "192.0.2.7"]).trim(),
        "usa-1",
        "R18: state survives"
    );

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
