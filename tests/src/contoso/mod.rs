//! The Contoso lab: MISSION.md's default topology in network namespaces, with the real
//! `balancer run` on every Client Access node (XDP attached, router serving), the mailbox back
//! ends and the 2003 back end as `lab-upstream` processes, certificates made by a CA created
//! at start, and the directory in a CSV file every node's config names (`[directory] file`).
//!
//! Everything is named from a prefix (namespaces `<prefix>-usa-1`, pins under
//! `/sys/fs/bpf/balancer-<prefix>`, files and PID files in `$TMPDIR/balancer-<prefix>`), so
//! [`Lab::down`] can take down a lab that another process brought up (`cargo xtask lab down`),
//! or one that failed halfway. Traffic stays inside the namespaces.

pub mod requests;
pub mod topology;

use crate::{
    netns::{run, veth, Netns},
    pki::Ca,
};
use anyhow::{bail, Context as _};
use balancer_user::dataplane::{self, DataplaneMaps, LoadOptions};
use std::{
    collections::HashMap,
    net::Ipv4Addr,
    path::PathBuf,
    process::{Child, Command},
    time::{Duration, Instant},
};
use topology::{NodePaths, LEGACY_BACKEND, MAILBOXES, SITES};

/// How long the lab waits for a node to serve.
const START_TIMEOUT: Duration = Duration::from_secs(90);

/// A Contoso lab, up or being brought up.
pub struct Lab {
    pub prefix: String,
    pub dir: PathBuf,
    pin_root: PathBuf,
    /// Where `balancer` and `lab-upstream` are (beside the running executable).
    bin_dir: PathBuf,
    /// Processes this handle started (reaped when stopped).
    children: HashMap<String, Child>,
    /// Brought up by this handle and taken down when it drops (panics included), unless
    /// [`Lab::keep`] leaves it running.
    owned: bool,
}

impl Drop for Lab {
    fn drop(&mut self) {
        if self.owned {
            self.down();
        }
    }
}

impl Lab {
    /// A handle on the lab `prefix`, up or not (nothing is created).
    pub fn handle(prefix: &str) -> anyhow::Result<Self> {
        let exe = std::env::current_exe()?;
        Ok(Self {
            prefix: prefix.to_string(),
            dir: std::env::temp_dir().join(format!("balancer-{prefix}")),
            pin_root: PathBuf::from(format!("/sys/fs/bpf/balancer-{prefix}")),
            bin_dir: exe.parent().context("executable directory")?.to_path_buf(),
            children: HashMap::new(),
            owned: false,
        })
    }

    /// Brings the whole lab up and waits until every node serves; on failure, takes down
    /// what was made.
    pub fn up(prefix: &str) -> anyhow::Result<Self> {
        crate::privileges::require_root_and_bpffs()?;
        let mut lab = Self::handle(prefix)?;
        if lab.dir.exists() || !lab.namespaces().is_empty() {
            bail!(
                "a lab {prefix:?} seems to be up ({} exists): take it down first",
                lab.dir.display()
            );
        }
        lab.owned = true; // from here, a failure takes down what was made
        lab.build()?;
        Ok(lab)
    }

    /// Leaves the lab running when the handle drops (`cargo xtask lab up`).
    pub fn keep(mut self) {
        self.owned = false;
    }

    pub fn ns(&self, short: &str) -> String {
        format!("{}-{short}", self.prefix)
    }

    /// A command in namespace `short`'s network stack.
    pub fn command(&self, short: &str, program: impl AsRef<std::ffi::OsStr>) -> Command {
        let mut cmd = Command::new("nsenter");
        cmd.arg(format!("--net=/run/netns/{}", self.ns(short)))
            .arg("--")
            .arg(program);
        cmd
    }

    pub fn pin_dir(&self, node: &str) -> PathBuf {
        self.pin_root.join(node)
    }

    pub fn config_path(&self, node: &str) -> PathBuf {
        self.dir.join(format!("{node}.toml"))
    }

    pub fn balancer(&self) -> PathBuf {
        self.bin_dir.join("balancer")
    }

    fn build(&mut self) -> anyhow::Result<()> {
        std::fs::create_dir_all(&self.dir)?;
        self.certificates()?;
        std::fs::write(self.dir.join("mailboxes.csv"), MAILBOXES)?;
        self.network()?;
        let (legacy, legacy_addr) = LEGACY_BACKEND;
        for site in &SITES {
            let (name, addr) = site.backend;
            self.start_upstream(name, addr, 443, true)?;
        }
        self.start_upstream(legacy, legacy_addr, 80, false)?;
        for site in &SITES {
            for node in site.node_names() {
                let paths = NodePaths {
                    dir: &self.dir,
                    pin_dir: &self.pin_dir(&node),
                };
                std::fs::write(
                    self.config_path(&node),
                    topology::node_config(&node, &paths),
                )?;
                self.start_node(&node)?;
            }
        }
        for site in &SITES {
            for node in site.node_names() {
                self.wait_serving(&node)?;
            }
        }
        for site in &SITES {
            for node in site.node_names() {
                self.wait_array_up(&node, site.nodes)?;
            }
        }
        Ok(())
    }

    fn certificates(&self) -> anyhow::Result<()> {
        let ca = Ca::new();
        std::fs::write(self.dir.join("ca.pem"), ca.pem())?;
        let mut hosts: Vec<String> = SITES
            .iter()
            .filter_map(|s| s.external_host.map(String::from))
            .collect();
        for site in &SITES {
            hosts.extend(site.node_names().map(|n| topology::internal_host(&n)));
            hosts.push(topology::internal_host(site.backend.0));
        }
        for host in hosts {
            let (cert, key) = ca.issue_pem(&host);
            std::fs::write(self.dir.join(format!("{host}.pem")), cert)?;
            std::fs::write(self.dir.join(format!("{host}.key")), key)?;
        }
        Ok(())
    }

    /// Namespaces, links, addresses, routes (ECMP for each Internet-facing VIP).
    fn network(&self) -> anyhow::Result<()> {
        let client = Netns::persistent(&self.ns("client"))?;
        let router = Netns::persistent(&self.ns("router"))?;
        crate::lab::wire_client_and_router(&client, &router)?;
        for i in 1..=requests::CLIENTS {
            client.ip(&format!("addr add {}/32 dev lo", requests::client(i)))?;
        }

        let servers = Netns::persistent(&self.ns("servers"))?;
        veth(&servers, "eth0", &router, "r-srv")?;
        servers.ip("addr add 10.110.0.2/24 dev eth0")?;
        router.ip("addr add 10.110.0.1/24 dev r-srv")?;
        servers.ip("route add default via 10.110.0.1")?;
        router.ip("route add 10.110.1.0/24 via 10.110.0.2")?;
        let backends = SITES.iter().map(|s| s.backend.1).chain([LEGACY_BACKEND.1]);
        for addr in backends {
            servers.ip(&format!("addr add {addr}/32 dev lo"))?;
        }

        let mut router_ifs = Vec::new();
        for site in &SITES {
            for (i, node) in site.node_names().enumerate() {
                let ns = Netns::persistent(&self.ns(&node))?;
                let link = format!("r-{node}");
                veth(&ns, "eth0", &router, &link)?;
                for (n, interface) in [(&ns, "eth0"), (&router, link.as_str())] {
                    n.ip(&format!("link set {interface} mtu 1600"))?; // room for IP-in-IP
                }
                let (addr, gateway) = site.node_addr(i as u32 + 1);
                ns.ip(&format!("addr add {addr}/24 dev eth0"))?;
                router.ip(&format!("addr add {gateway}/24 dev {link}"))?;
                ns.ip(&format!("route add default via {gateway}"))?;
                ns.ip(&format!("addr add {}/32 dev lo", site.vip))?;
                router_ifs.push(link);
            }
            self.route_vip(site, &[])?;
        }
        // The router's node-facing veth ends run XDP_PASS, pinned so that it stays.
        let pins = self.pin_dir("router");
        router.run_in(|| -> anyhow::Result<()> {
            let mut loaded = dataplane::load(&LoadOptions {
                pin_dir: Some(pins.clone()),
                ring_size: 13,
                conn_table_entries: 16,
                directory_entries: 16,
            })?;
            for interface in &router_ifs {
                dataplane::attach_pass(&mut loaded, interface, &pins)?;
            }
            Ok(())
        })??;
        Ok(())
    }

    /// Points the router's route for a site's VIP at its nodes, less `failed` (ECMP).
    pub fn route_vip(&self, site: &topology::SiteSpec, failed: &[&str]) -> anyhow::Result<()> {
        let hops: String = site
            .node_names()
            .enumerate()
            .filter(|(_, n)| !failed.contains(&n.as_str()))
            .map(|(i, n)| {
                let (addr, _) = site.node_addr(i as u32 + 1);
                format!(" nexthop via {addr} dev r-{n}")
            })
            .collect();
        let mut cmd = Command::new("ip");
        cmd.args(["-n", &self.ns("router"), "route", "replace"])
            .arg(format!("{}/32", site.vip))
            .args(hops.split_whitespace());
        run(&mut cmd)?;
        Ok(())
    }

    /// Starts a process in namespace `ns`, logging to `<dir>/<name>.log`, its PID in
    /// `<dir>/<name>.pid`.
    fn spawn(&mut self, name: &str, mut cmd: Command) -> anyhow::Result<()> {
        let child = crate::netns::spawn_logged(&mut cmd, &self.dir, name)?;
        std::fs::write(self.dir.join(format!("{name}.pid")), child.id().to_string())?;
        self.children.insert(name.to_string(), child);
        Ok(())
    }

    fn start_upstream(
        &mut self,
        name: &str,
        addr: Ipv4Addr,
        port: u16,
        tls: bool,
    ) -> anyhow::Result<()> {
        let mut cmd = self.command("servers", self.bin_dir.join("lab-upstream"));
        cmd.args(["--name", name, "--listen", &format!("{addr}:{port}")]);
        if tls {
            let host = topology::internal_host(name);
            cmd.arg("--cert")
                .arg(self.dir.join(format!("{host}.pem")))
                .arg("--key")
                .arg(self.dir.join(format!("{host}.key")));
        }
        self.spawn(name, cmd)
    }

    /// Starts (or restarts) `balancer run` on a node.
    pub fn start_node(&mut self, node: &str) -> anyhow::Result<()> {
        let mut cmd = self.command(node, self.balancer());
        // One thread each: six nodes share this box's cores (and the single-thread runtime
        // goes through the whole demo: drain, reloads, peer checks, failover).
        cmd.arg("run")
            .arg("--config")
            .arg(self.config_path(node))
            .args(["--workers", "1"])
            .env("RUST_LOG", "info");
        self.spawn(node, cmd)
    }

    /// Waits until a node's router answers its health check on its underlay address.
    fn wait_serving(&self, node: &str) -> anyhow::Result<()> {
        let (site, n) = topology::node(node);
        let (addr, _) = site.node_addr(n);
        let deadline = Instant::now() + START_TIMEOUT;
        loop {
            let out = self
                .command(node, "curl")
                .args([
                    "-s",
                    "-o",
                    "/dev/null",
                    "-w",
                    "%{http_code}",
                    "--max-time",
                    "2",
                ])
                .arg(format!("http://{addr}/owa/healthcheck.htm"))
                .output()?;
            if out.stdout == b"200" {
                return Ok(());
            }
            if Instant::now() > deadline {
                bail!("{node} did not start serving; its log:\n{}", self.log(node));
            }
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    /// Waits until `node`'s table has all `count` members of its array up.
    pub fn wait_array_up(&self, node: &str, count: u32) -> anyhow::Result<()> {
        self.wait_table(node, |up| up.len() as u32 == count)
    }

    /// Waits until the up members of `node`'s table satisfy `done`.
    pub fn wait_table(&self, node: &str, done: impl Fn(&[u32]) -> bool) -> anyhow::Result<()> {
        let deadline = Instant::now() + START_TIMEOUT;
        loop {
            let up = self.up_members(node)?;
            if done(&up) {
                return Ok(());
            }
            if Instant::now() > deadline {
                bail!(
                    "{node}'s table: members up {up:?}; its log:\n{}",
                    self.log(node)
                );
            }
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    /// Ids of the members `node`'s table has up.
    pub fn up_members(&self, node: &str) -> anyhow::Result<Vec<u32>> {
        let maps = DataplaneMaps::open(&self.pin_dir(node))?;
        let mut up = Vec::new();
        for id in 1..16 {
            if maps.nodes.get(&id, 0)?.flags & balancer_common::node::NODE_FLAG_HEALTHY != 0 {
                up.push(id);
            }
        }
        Ok(up)
    }

    pub fn log(&self, name: &str) -> String {
        std::fs::read_to_string(self.dir.join(format!("{name}.log"))).unwrap_or_default()
    }

    /// Kills a process of the lab at once (SIGKILL: a crash, no draining).
    pub fn kill(&mut self, name: &str) -> anyhow::Result<()> {
        self.stop(name, nix::sys::signal::Signal::SIGKILL)
    }

    /// Stops a process of the lab by its PID file, and waits until it has exited.
    fn stop(&mut self, name: &str, signal: nix::sys::signal::Signal) -> anyhow::Result<()> {
        let pid_file = self.dir.join(format!("{name}.pid"));
        let Ok(text) = std::fs::read_to_string(&pid_file) else {
            return Ok(());
        };
        let pid: i32 = text.trim().parse()?;
        if is_ours(pid) {
            let target = nix::unistd::Pid::from_raw(pid);
            let _ = nix::sys::signal::kill(target, signal);
            let deadline = Instant::now() + Duration::from_secs(10);
            while is_running(pid) && Instant::now() < deadline {
                if let Some(child) = self.children.get_mut(name) {
                    let _ = child.try_wait();
                }
                std::thread::sleep(Duration::from_millis(50));
            }
            if is_running(pid) {
                let _ = nix::sys::signal::kill(target, nix::sys::signal::Signal::SIGKILL);
            }
        }
        if let Some(mut child) = self.children.remove(name) {
            let _ = child.wait();
        }
        std::fs::remove_file(pid_file)?;
        Ok(())
    }

    /// Processes of the lab by their PID files: (name, running).
    pub fn processes(&self) -> Vec<(String, bool)> {
        let mut found = Vec::new();
        for entry in std::fs::read_dir(&self.dir).into_iter().flatten().flatten() {
            let path = entry.path();
            if path.extension().is_some_and(|e| e == "pid") {
                let name = path
                    .file_stem()
                    .unwrap_or_default()
                    .to_string_lossy()
                    .into_owned();
                let running = std::fs::read_to_string(&path)
                    .ok()
                    .and_then(|t| t.trim().parse().ok())
                    .is_some_and(|pid| is_ours(pid) && is_running(pid));
                found.push((name, running));
            }
        }
        found.sort();
        found
    }

    /// The lab's namespaces that exist.
    pub fn namespaces(&self) -> Vec<String> {
        let out = Command::new("ip").args(["netns", "list"]).output();
        let text = out.map(|o| String::from_utf8_lossy(&o.stdout).into_owned());
        let prefix = format!("{}-", self.prefix);
        let mut names: Vec<String> = text
            .unwrap_or_default()
            .lines()
            .filter_map(|l| l.split_whitespace().next())
            .filter(|n| n.starts_with(&prefix))
            .map(String::from)
            .collect();
        names.sort();
        names
    }

    /// Takes everything down: processes (SIGTERM), XDP attachments and pins, namespaces,
    /// files. Best effort: it goes on past what is already gone.
    pub fn down(&mut self) {
        self.owned = false;
        for (name, _) in self.processes() {
            if let Err(e) = self.stop(&name, nix::sys::signal::Signal::SIGTERM) {
                eprintln!("stopping {name}: {e:#}");
            }
        }
        for entry in std::fs::read_dir(&self.pin_root)
            .into_iter()
            .flatten()
            .flatten()
        {
            if let Err(e) = dataplane::detach(&entry.path()) {
                eprintln!("detaching {}: {e:#}", entry.path().display());
            }
        }
        let _ = std::fs::remove_dir(&self.pin_root);
        for ns in self.namespaces() {
            let _ = Command::new("ip").args(["netns", "del", &ns]).output();
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Whether `pid` is a process this lab starts (`balancer` or `lab-upstream`), so that a PID
/// file left behind never kills a stranger that reused the number.
fn is_ours(pid: i32) -> bool {
    std::fs::read(format!("/proc/{pid}/cmdline")).is_ok_and(|c| {
        let c = String::from_utf8_lossy(&c);
        c.contains("balancer") || c.contains("lab-upstream")
    })
}

/// Running: it exists and is not a zombie waiting to be reaped.
fn is_running(pid: i32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|s| {
        s.rsplit_once(')')
            .and_then(|(_, rest)| rest.split_whitespace().next())
            .is_some_and(|state| state != "Z" && state != "X")
    })
}
