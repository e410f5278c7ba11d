//! `balancer run` end to end, in test namespaces: a client namespace reaches the node's VIP
//! through a veth with the XDP program attached; the node serves HTTPS with certificates made
//! here and proxies to a back end that says who it is. Issue 4's "what must be shown":
//! - a restart while a client keeps connecting: no connection refused or reset (the new
//!   process takes the listeners over);
//! - a broken config on reload is refused with the field, and traffic continues;
//! - the directory changed by `balancer directory` is seen by the running router (R6, R9).

mod common;

use balancer_tests::{
    netns::{self, Netns},
    privileges,
};
use std::{
    path::{Path, PathBuf},
    process::{Child, Stdio},
    sync::{
        atomic::{AtomicBool, AtomicUsize, Ordering},
        Arc,
    },
    time::{Duration, Instant},
};

const BALANCER: &str = env!("CARGO_BIN_EXE_balancer");
const VIP: &str = "10.200.0.10";
const HOST: &str = "www.usa.contoso.com";

struct Lab {
    client: Netns,
    node: Netns,
    dir: PathBuf,
    config: PathBuf,
    pin_dir: PathBuf,
    upstream: common::Upstream,
    _runtime: tokio::runtime::Runtime,
}

impl Lab {
    fn new() -> Self {
        privileges::require_root_and_bpffs().unwrap();
        let client = Netns::new("runc").unwrap();
        let node = Netns::new("runn").unwrap();
        netns::veth(&client, "c0", &node, "eth0").unwrap();
        client.ip("addr add 10.100.1.1/24 dev c0").unwrap();
        client.ip("link set c0 up").unwrap();
        client
            .ip(&format!("route add {VIP}/32 via 10.100.1.2"))
            .unwrap();
        node.ip("addr add 10.100.1.2/24 dev eth0").unwrap();
        node.ip("link set eth0 up").unwrap();
        node.ip(&format!("addr add {VIP}/32 dev lo")).unwrap();

        let dir = std::env::temp_dir().join(format!("balancer-{}", node.name()));
        std::fs::create_dir_all(&dir).unwrap();
        let ca = common::Ca::new();
        std::fs::write(dir.join("ca.pem"), ca.pem()).unwrap();
        let (cert, key) = ca.issue_pem(HOST);
        std::fs::write(dir.join("front.pem"), cert).unwrap();
        std::fs::write(dir.join("front.key"), key).unwrap();

        // The site's back end, inside the node's namespace.
        let runtime = tokio::runtime::Runtime::new().unwrap();
        let listener = node
            .run_in(|| std::net::TcpListener::bind("127.0.0.1:0").unwrap())
            .unwrap();
        listener.set_nonblocking(true).unwrap();
        let upstream = runtime.block_on(async {
            let listener = tokio::net::TcpListener::from_std(listener).unwrap();
            common::upstream_on(
                "mbx-usa-1",
                Some(ca.issue("mbx-usa-1.contoso.internal")),
                listener,
            )
        });
        let pin_dir = PathBuf::from(format!("/sys/fs/bpf/balancer-{}", node.name()));
        let config = dir.join("node.toml");
        let lab = Self {
            client,
            node,
            dir,
            config,
            pin_dir,
            upstream,
            _runtime: runtime,
        };
        lab.write_config("0123456789abcdef-cookie");
        lab
    }

    fn write_config(&self, cookie_secret: &str) {
        let port = self.upstream.addr.port();
        let text = format!(
            r#"
[node]
site = "usa"
name = "usa-1"
[dataplane]
interfaces = ["eth0"]
pin_dir = "{pin}"
[[dataplane.vips]]
address = "{VIP}"
[router]
https = "{VIP}:443"
http = "{VIP}:80"
handover_socket = "{dir}/handover.sock"
cookie_secret = "{cookie_secret}"
[router.limits]
drain_timeout = "5s"
[[router.certificates]]
names = ["{HOST}"]
cert = "{dir}/front.pem"
key = "{dir}/front.key"
[router.upstreams]
trust = ["{dir}/ca.pem"]
[router.health]
interval = "1s"
[[sites]]
name = "usa"
version = "2010"
external_url = "https://www.usa.contoso.com"
[[sites.nodes]]
id = 1
name = "usa-1"
underlay_v4 = "10.100.1.2"
[[sites.backends]]
name = "mbx-usa-1"
url = "https://mbx-usa-1.contoso.internal:{port}"
connect = "127.0.0.1:{port}"
[[sites]]
name = "europe"
version = "2007sp1"
external_url = "https://www.europe.contoso.com"
[[sites.nodes]]
id = 1
name = "europe-1"
"#,
            pin = self.pin_dir.display(),
            dir = self.dir.display(),
        );
        std::fs::write(&self.config, text).unwrap();
    }

    /// Starts `balancer run` in the node namespace with `extra` arguments, logging to `log`.
    fn start(&self, log: &str, extra: &[&str]) -> Child {
        let log = std::fs::File::create(self.dir.join(log)).unwrap();
        self.node
            .command(BALANCER)
            .args(["run", "--config"])
            .arg(&self.config)
            .args(extra)
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap()
    }

    fn log(&self, log: &str) -> String {
        std::fs::read_to_string(self.dir.join(log)).unwrap_or_default()
    }

    /// curl from the client namespace to the VIP: (status, body) or curl's error.
    fn curl(&self, path: &str, extra: &[&str]) -> Result<(u16, String), String> {
        curl_in(&self.client, &self.dir, path, extra)
    }

    fn wait_serving(&self, log: &str) {
        let deadline = Instant::now() + Duration::from_secs(60);
        while let Err(e) = self.curl("/owa/healthcheck.htm", &[]) {
            assert!(
                Instant::now() < deadline,
                "balancer run did not start serving: {e}\n{}",
                self.log(log)
            );
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    fn balancer(&self, args: &[&str]) -> String {
        let out = self.node.command(BALANCER).args(args).output().unwrap();
        assert!(
            out.status.success(),
            "balancer {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        let _ = balancer_user::dataplane::detach(&self.pin_dir);
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn curl_in(ns: &Netns, dir: &Path, path: &str, extra: &[&str]) -> Result<(u16, String), String> {
    let out = ns
        .command("curl")
        .args(["-sS", "--max-time", "10", "--cacert"])
        .arg(dir.join("ca.pem"))
        .args(["--resolve", &format!("{HOST}:443:{VIP}")])
        .args(["-w", "\n%{http_code}"])
        .args(extra)
        .arg(format!("https://{HOST}{path}"))
        .output()
        .map_err(|e| e.to_string())?;
    let stdout = String::from_utf8_lossy(&out.stdout).to_string();
    if !out.status.success() {
        return Err(format!("{stdout}{}", String::from_utf8_lossy(&out.stderr)));
    }
    let (body, code) = stdout.rsplit_once('\n').unwrap_or(("", &stdout));
    Ok((code.trim().parse().unwrap_or(0), body.to_string()))
}

/// The router's request total, as bpftool reads the pinned `ROUTER_STATS` map.
fn router_requests(pin_dir: &Path) -> u64 {
    let out = std::process::Command::new("bpftool")
        .args(["-j", "map", "dump", "pinned"])
        .arg(pin_dir.join("ROUTER_STATS"))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let dump: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    dump[0]["formatted"]["value"]["requests"]
        .as_u64()
        .unwrap_or_else(|| panic!("no requests field in {dump}"))
}

/// SIGTERM to `child` and waits for it; nothing if it has already been waited for (its PID may
/// be another process's by then).
fn terminate(child: &mut Child) {
    if let Ok(Some(_)) = child.try_wait() {
        return;
    }
    let _ = nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(child.id() as i32),
        nix::sys::signal::Signal::SIGTERM,
    );
    let _ = child.wait();
}

/// Kills the child on drop, so that a failed assertion leaves no process behind.
struct Running(Child);

impl Drop for Running {
    fn drop(&mut self) {
        terminate(&mut self.0);
    }
}

#[test]
fn run_serves_reloads_and_restarts_without_a_failed_connection() {
    let lab = Lab::new();
    let mut first = Running(lab.start("first.log", &[]));
    lab.wait_serving("first.log");

    // R7: no identity, served in this site: proxied to the site's back end.
    let (status, body) = lab.curl("/owa/", &[]).unwrap();
    assert_eq!(status, 200, "{body}");
    assert!(body.starts_with("mbx-usa-1 /owa/"), "{body}");

    // R6 + R9: a mailbox moved to europe with `balancer directory` is redirected at once.
    lab.balancer(&[
        "directory",
        "add",
        "eve@contoso.com",
        "--site",
        "europe",
        "--server",
        "mbx-eu-1",
        "--version",
        "2007sp1",
        "--pin-dir",
        lab.pin_dir.to_str().unwrap(),
    ]);
    let moved = lab
        .curl(
            "/Microsoft-Server-ActiveSync?User=eve@contoso.com&Cmd=Sync",
            &["-X", "POST"],
        )
        .unwrap();
    assert_eq!(
        moved.0, 451,
        "R9: ActiveSync for a europe mailbox: {moved:?}"
    );

    // A broken config on reload is refused with the field; traffic continues.
    lab.write_config("short");
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(first.0.id() as i32),
        nix::sys::signal::Signal::SIGHUP,
    )
    .unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    while !lab.log("first.log").contains("reload refused") {
        assert!(
            Instant::now() < deadline,
            "no refusal logged: {}",
            lab.log("first.log")
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(
        lab.log("first.log").contains("router.cookie_secret"),
        "the field is named"
    );
    assert_eq!(lab.curl("/owa/", &[]).unwrap().0, 200, "still serving");
    lab.write_config("0123456789abcdef-cookie");

    // The router's counters are published into the pinned map for `status` and bpftool.
    std::thread::sleep(Duration::from_millis(1500));
    let status = lab.balancer(&["status", "--config", lab.config.to_str().unwrap()]);
    assert!(status.contains("router: running (pid"), "{status}");
    let before_restart = router_requests(&lab.pin_dir);
    assert!(
        before_restart >= 4,
        "requests counted: {before_restart}\n{status}"
    );

    // A restart while a client keeps connecting: every connection succeeds.
    let stop = Arc::new(AtomicBool::new(false));
    let (ok, failed) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
    let errors = Arc::new(std::sync::Mutex::new(Vec::new()));
    std::thread::scope(|s| {
        s.spawn(|| {
            while !stop.load(Ordering::Relaxed) {
                match lab.curl("/owa/", &[]) {
                    Ok((200, _)) => ok.fetch_add(1, Ordering::Relaxed),
                    other => {
                        errors.lock().unwrap().push(format!("{other:?}"));
                        failed.fetch_add(1, Ordering::Relaxed)
                    }
                };
            }
        });
        std::thread::sleep(Duration::from_secs(1));
        let before = ok.load(Ordering::Relaxed);
        // The new process polls its sockets after each wake-up instead of sleeping at once
        // (an upgrade that turns busy polling on): it serves the same stream, then stops on
        // SIGTERM at the end like the first.
        let second = lab.start("second.log", &["--busy-poll", "200us"]);
        // The first process hands its listeners over, drains and exits by itself.
        let mut old = std::mem::replace(&mut first.0, second);
        let exited = old.wait().unwrap();
        assert!(
            exited.success(),
            "the old process exits cleanly: {exited:?}"
        );
        std::thread::sleep(Duration::from_secs(2));
        stop.store(true, Ordering::Relaxed);
        assert!(
            ok.load(Ordering::Relaxed) > before,
            "requests were served during the restart"
        );
    });
    eprintln!(
        "restart: {} requests served, {} failed",
        ok.load(Ordering::Relaxed),
        failed.load(Ordering::Relaxed)
    );
    assert_eq!(
        failed.load(Ordering::Relaxed),
        0,
        "no request failed across the restart: {:?}",
        errors.lock().unwrap()
    );
    assert!(lab.log("second.log").contains("took the listeners over"));
    assert!(lab
        .log("second.log")
        .contains("busy polling after each wake-up"));
    std::thread::sleep(Duration::from_millis(1500));
    let after_restart = router_requests(&lab.pin_dir);
    assert!(
        after_restart > before_restart,
        "totals carry over the restart: {before_restart} then {after_restart}"
    );
    assert!(lab.log("first.log").contains("a new process took over"));
    // The busy-polling process drains and exits on SIGTERM, as any other.
    terminate(&mut first.0);
    let stopped = first.0.wait().unwrap();
    assert!(stopped.success(), "exit on SIGTERM: {stopped:?}");
    drop(first);
    assert!(
        lab.node.ip("link show eth0").unwrap().contains("prog/xdp"),
        "R18: steering continues with no process running"
    );
}
