//! Servers the benches run as processes of their own (HAProxy, nginx, `balancer run`): each
//! started directly (there is no init system), inside a bench's network namespace, pinned to
//! cores with `taskset` where the box has cores to spare, waited for until it listens, and
//! stopped by PID when dropped. A [`Server`] also reports the resident memory and CPU time of
//! its processes. The sections write their servers' configurations; this module runs them.

use anyhow::bail;
use procfs::process::Process;
use std::{
    net::SocketAddr,
    path::{Path, PathBuf},
    process::{Child, Command},
    time::{Duration, Instant},
};

/// How long a server may take to listen (TLS servers load certificates, the router its
/// directory), and how often to look.
const LISTEN_DEADLINE: Duration = Duration::from_secs(60);
const LISTEN_POLL: Duration = Duration::from_millis(50);
/// How long a server may take to exit after SIGTERM before it is killed.
const STOP_DEADLINE: Duration = Duration::from_secs(5);

/// A running server, stopped when dropped (SIGTERM, then SIGKILL).
pub struct Server {
    pub name: &'static str,
    pub addr: SocketAddr,
    child: Child,
}

impl Server {
    /// The server's processes: it and its children (nginx's worker is a child of the master).
    fn processes(&self) -> Vec<Process> {
        let Ok(main) = Process::new(self.child.id() as i32) else {
            return Vec::new();
        };
        let children = main
            .task_main_thread()
            .and_then(|t| t.children())
            .unwrap_or_default();
        let children = children
            .into_iter()
            .filter_map(|p| Process::new(p as i32).ok());
        std::iter::once(main).chain(children).collect()
    }

    /// The process started (nginx's master, or the only process).
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The PIDs of the server's processes.
    pub fn pids(&self) -> Vec<u32> {
        self.processes().iter().map(|p| p.pid as u32).collect()
    }

    /// Resident memory of the server's processes, in KiB.
    pub fn rss_kib(&self) -> u64 {
        let rss = |p: &Process| p.status().ok().and_then(|s| s.vmrss).unwrap_or(0);
        self.processes().iter().map(rss).sum()
    }

    /// CPU time the server's processes have used (user and system), in seconds.
    pub fn cpu_seconds(&self) -> f64 {
        let ticks = |p: &Process| p.stat().map_or(0, |s| s.utime + s.stime);
        let total: u64 = self.processes().iter().map(ticks).sum();
        total as f64 / procfs::ticks_per_second() as f64
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let pid = nix::unistd::Pid::from_raw(self.child.id() as i32);
        let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM);
        let deadline = Instant::now() + STOP_DEADLINE;
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// How to start processes: in the namespace, on a core.
pub struct Launcher<'a> {
    pub netns: &'a str,
    /// `taskset -c` CPU list, if the box has cores to spare.
    pub cpu: Option<String>,
    /// Where configurations and each server's log (`<name>.log`) go.
    pub dir: &'a Path,
    /// Whether servers run under valgrind's callgrind, which counts the instructions they
    /// execute (read with `callgrind_control`; see `l7::instructions`).
    pub callgrind: bool,
}

impl Launcher<'_> {
    /// `nsenter` into the namespace (and `taskset` onto the core): append the program.
    pub fn prefix(&self) -> Command {
        let mut cmd = Command::new("nsenter");
        cmd.arg(format!("--net=/run/netns/{}", self.netns))
            .arg("--");
        if let Some(cpu) = &self.cpu {
            cmd.args(["taskset", "-c", cpu]);
        }
        cmd
    }

    pub fn command(&self, program: &str) -> Command {
        let mut cmd = self.prefix();
        if self.callgrind {
            // Counts are read while it runs; the profile written at exit is not needed.
            cmd.args([
                "valgrind",
                "--tool=callgrind",
                "--callgrind-out-file=/dev/null",
            ]);
        }
        cmd.arg(program);
        cmd
    }

    /// A file of the launcher's directory.
    pub fn file(&self, name: &str) -> PathBuf {
        self.dir.join(name)
    }

    /// Starts `cmd` (from [`Self::command`]), its output to `<name>.log`, and waits until it
    /// listens on `addr`'s port.
    pub fn start(
        &self,
        name: &'static str,
        addr: &str,
        mut cmd: Command,
    ) -> anyhow::Result<Server> {
        crate::provenance::command(&cmd);
        let child = balancer_tests::netns::spawn_logged(&mut cmd, self.dir, name)?;
        let mut server = Server {
            name,
            addr: addr.parse()?,
            child,
        };
        self.wait_listening(&mut server)?;
        Ok(server)
    }

    /// Waits until `server` accepts TCP connections in the namespace; fails with its log if
    /// it exits first (none of them daemonizes) or takes too long.
    fn wait_listening(&self, server: &mut Server) -> anyhow::Result<()> {
        let deadline = Instant::now() + LISTEN_DEADLINE;
        let port = server.addr.port();
        loop {
            let out = Command::new("nsenter")
                .arg(format!("--net=/run/netns/{}", self.netns))
                .args(["--", "ss", "-Hltn", &format!("sport = :{port}")])
                .output()?;
            if !out.stdout.is_empty() {
                return Ok(());
            }
            let exited = server.child.try_wait()?;
            if exited.is_some() || Instant::now() > deadline {
                let log = std::fs::read_to_string(self.file(&format!("{}.log", server.name)));
                bail!(
                    "{} did not listen on {} ({}): {}",
                    server.name,
                    server.addr,
                    match exited {
                        Some(status) => format!("it exited, {status}"),
                        None => format!("not within {LISTEN_DEADLINE:?}"),
                    },
                    log.unwrap_or_default()
                );
            }
            std::thread::sleep(LISTEN_POLL);
        }
    }
}
