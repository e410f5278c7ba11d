//! New TCP connections per second through the node: the XDP program passing the clients'
//! connections to a listener on the VIP in the node's own stack, or HAProxy (`mode tcp`,
//! `balance source`, one thread) on the VIP in front of two backends. Every server accepts
//! and closes at once; each client connects, reads until the server closes, and closes.

use super::{
    cpu,
    dataplane::{NodeDataplane, OnNode},
    topology::{connection_client, pin_receive, Topology, GEN_IF, NODE_IF},
};
use crate::{
    servers::{Launcher, Server},
    threads::{join, spawn_in},
};
use anyhow::{ensure, Context as _};
use balancer_tests::{fixture, netns::Netns};
use nix::libc;
use std::{
    net::{SocketAddr, SocketAddrV4, TcpListener},
    os::fd::AsRawFd,
    path::PathBuf,
    sync::{
        atomic::{AtomicBool, AtomicU64, Ordering},
        Arc,
    },
    thread::JoinHandle,
    time::{Duration, Instant},
};
use tokio::{io::AsyncReadExt as _, net::TcpSocket};

/// Who accepts the clients' connections on the VIP.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Front {
    /// The XDP program (every ring slot this node's) passes them to a listener on the VIP.
    Xdp,
    /// HAProxy on the VIP, relaying each to one of two backends (no XDP steering).
    Haproxy,
}

/// Connections the clients keep in progress at once.
const CONCURRENCY: usize = 64;
const PORT: u16 = 443;
/// HAProxy's backends, on the node's loopback.
const BACKENDS: [&str; 2] = ["127.0.0.1:9001", "127.0.0.1:9002"];

#[derive(Debug)]
pub struct Connections {
    /// Connections completed per second (connect, server's close seen, close).
    pub per_second: f64,
    /// Connections that failed in the window.
    pub failed: u64,
    /// Time of the node's core per completed connection, in microseconds: the node's whole
    /// share of the work (its receive processing, the XDP program, TCP, the servers).
    pub node_cpu_us: f64,
    pub node_core_busy: f64,
    pub client_core_busy: f64,
}

/// An accept-and-close TCP server on a thread of its own, in a namespace; stopped on drop.
struct AcceptClose {
    listener: Arc<TcpListener>,
    thread: Option<JoinHandle<anyhow::Result<()>>>,
}

impl AcceptClose {
    fn start(ns: &Netns, addr: SocketAddr, core: Option<usize>) -> anyhow::Result<Self> {
        let listener = Arc::new(ns.run_in(|| TcpListener::bind(addr))??);
        let accepting = listener.clone();
        let thread = spawn_in(ns, core, move || {
            // Ends when the listener is shut down (accept fails).
            while let Ok((stream, _)) = accepting.accept() {
                drop(stream);
            }
            Ok(())
        })?;
        Ok(Self {
            listener,
            thread: Some(thread),
        })
    }
}

impl Drop for AcceptClose {
    fn drop(&mut self) {
        // SAFETY: the listener's descriptor, open while `self.listener` lives; shutting it
        // down wakes the blocked accept.
        unsafe { libc::shutdown(self.listener.as_raw_fd(), libc::SHUT_RDWR) };
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// HAProxy on the VIP in the node namespace: `mode tcp`, `balance source`, one thread.
fn haproxy(node: &Launcher) -> anyhow::Result<Server> {
    let servers: String = BACKENDS
        .iter()
        .enumerate()
        .map(|(i, addr)| format!("  server b{i} {addr}\n"))
        .collect();
    let vip = SocketAddr::from((fixture::VIP_V4, PORT));
    let conf = format!(
        "global\n  nbthread 1\n  maxconn 9000\n\
         defaults\n  mode tcp\n  timeout connect 5s\n  timeout client 30s\n  timeout server 30s\n\
         frontend fe\n  bind {vip}\n  default_backend be\n\
         backend be\n  balance source\n{servers}"
    );
    let path = node.file("haproxy.cfg");
    crate::provenance::write_config(&path, &conf)?;
    let mut cmd = node.command("haproxy");
    cmd.args(["-db", "-f"]).arg(&path);
    node.start("haproxy", &vip.to_string(), cmd)
        .context("HAProxy (Debian package haproxy)")
}

/// One connection from `source` (port chosen at connect): connect, read until the server
/// closes, close.
async fn connect_once(source: SocketAddrV4, to: SocketAddrV4) -> std::io::Result<()> {
    let socket = TcpSocket::new_v4()?;
    // Many connections from few addresses: let connect choose the port by 4-tuple.
    let one: i32 = 1;
    // SAFETY: a valid option value of its size, on the socket's own descriptor.
    let r = unsafe {
        libc::setsockopt(
            socket.as_raw_fd(),
            libc::IPPROTO_IP,
            libc::IP_BIND_ADDRESS_NO_PORT,
            (&one as *const i32).cast(),
            std::mem::size_of::<i32>() as libc::socklen_t,
        )
    };
    if r < 0 {
        return Err(std::io::Error::last_os_error());
    }
    socket.bind(source.into())?;
    let mut stream = socket.connect(to.into()).await?;
    let mut buf = [0u8; 64];
    while stream.read(&mut buf).await? > 0 {}
    Ok(())
}

/// The clients: one thread in the generator namespace running [`CONCURRENCY`] connection
/// loops (an event loop: no thread switch per connection), until stopped.
struct Clients {
    stop: Arc<AtomicBool>,
    done: Arc<AtomicU64>,
    failed: Arc<AtomicU64>,
    thread: Option<JoinHandle<anyhow::Result<()>>>,
}

impl Clients {
    fn start(ns: &Netns, core: Option<usize>) -> anyhow::Result<Self> {
        let stop = Arc::new(AtomicBool::new(false));
        let done = Arc::new(AtomicU64::new(0));
        let failed = Arc::new(AtomicU64::new(0));
        let to = SocketAddrV4::new(fixture::VIP_V4, PORT);
        let (s, d, f) = (stop.clone(), done.clone(), failed.clone());
        let thread = spawn_in(ns, core, move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_io()
                .build()?;
            runtime.block_on(async {
                let loops: Vec<_> = (0..CONCURRENCY)
                    .map(|i| {
                        let (stop, done, failed) = (s.clone(), d.clone(), f.clone());
                        tokio::spawn(async move {
                            let mut n = i as u8;
                            while !stop.load(Ordering::Relaxed) {
                                let source = SocketAddrV4::new(connection_client(n), 0);
                                n = n.wrapping_add(1);
                                match connect_once(source, to).await {
                                    Ok(()) => done.fetch_add(1, Ordering::Relaxed),
                                    Err(_) => failed.fetch_add(1, Ordering::Relaxed),
                                };
                            }
                        })
                    })
                    .collect();
                for l in loops {
                    l.await?;
                }
                Ok(())
            })
        })?;
        Ok(Self {
            stop,
            done,
            failed,
            thread: Some(thread),
        })
    }

    /// Connections completed and failed so far.
    fn counts(&self) -> (u64, u64) {
        (
            self.done.load(Ordering::Relaxed),
            self.failed.load(Ordering::Relaxed),
        )
    }

    fn stop(mut self) -> anyhow::Result<()> {
        self.stop.store(true, Ordering::Relaxed);
        match self.thread.take() {
            Some(t) => join(t),
            None => Ok(()),
        }
    }
}

impl Drop for Clients {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// Raises the soft limit of open files to the hard one (20,000 on the CI machines).
fn raise_open_files() -> anyhow::Result<()> {
    use nix::sys::resource::{getrlimit, setrlimit, Resource};
    let (_, hard) = getrlimit(Resource::RLIMIT_NOFILE)?;
    setrlimit(Resource::RLIMIT_NOFILE, hard, hard)?;
    Ok(())
}

pub fn measure(front: Front, warm_up: Duration, window: Duration) -> anyhow::Result<Connections> {
    raise_open_files()?;
    let topology = Topology::new()?;
    let on_node = match front {
        Front::Xdp => OnNode::Steering {
            owners: &[fixture::SELF],
        },
        Front::Haproxy => OnNode::Pass,
    };
    // An XDP program on both ends (XDP_PASS on gen0) gives each end a receive thread, so the
    // node's share of the work runs on the node's core and the clients' share on theirs.
    let dp = NodeDataplane::attach(&topology, on_node, true)?;
    let split = cpu::split();
    let (node_core, client_core) = if split {
        pin_receive(&topology.node, NODE_IF, cpu::NODE_CORE, false)?;
        pin_receive(&topology.generator, GEN_IF, cpu::GENERATOR_CORE, false)?;
        (cpu::NODE_CORE, cpu::GENERATOR_CORE)
    } else {
        (0, 0)
    };
    let pin_node = split.then_some(node_core);
    let dir = temp_dir();
    std::fs::create_dir_all(&dir)?;
    let node = Launcher {
        netns: topology.node.name(),
        cpu: pin_node.map(|core| core.to_string()),
        dir: &dir,
        callgrind: false,
    };
    let result = (|| {
        let mut servers = Vec::new();
        let mut _haproxy = None;
        match front {
            Front::Xdp => {
                let vip = SocketAddr::from((fixture::VIP_V4, PORT));
                servers.push(AcceptClose::start(&topology.node, vip, pin_node)?);
            }
            Front::Haproxy => {
                for addr in BACKENDS {
                    servers.push(AcceptClose::start(&topology.node, addr.parse()?, pin_node)?);
                }
                _haproxy = Some(haproxy(&node)?);
            }
        }
        let clients = Clients::start(&topology.generator, split.then_some(client_core))?;
        std::thread::sleep(warm_up);
        let (t0, cpu0, (done0, failed0)) = (Instant::now(), cpu::Times::now(), clients.counts());
        std::thread::sleep(window);
        let (t1, cpu1, (done1, failed1)) = (Instant::now(), cpu::Times::now(), clients.counts());
        clients.stop()?;
        let secs = (t1 - t0).as_secs_f64();
        let node_core_busy = cpu1.busy_since(&cpu0, node_core);
        let measured = Connections {
            per_second: (done1 - done0) as f64 / secs,
            failed: failed1 - failed0,
            node_cpu_us: node_core_busy * secs * 1e6 / (done1 - done0).max(1) as f64,
            node_core_busy,
            client_core_busy: cpu1.busy_since(&cpu0, client_core),
        };
        eprintln!(
            "bench: veth connections via {front:?}: {:.0}/s, {:.1} us of the node's core each, cores busy: node {:.0}%, clients {:.0}%",
            measured.per_second,
            measured.node_cpu_us,
            measured.node_core_busy * 100.0,
            measured.client_core_busy * 100.0
        );
        ensure!(
            measured.per_second > 0.0,
            "veth connections through {front:?}: none completed ({measured:?}): the harness is broken"
        );
        if front == Front::Xdp {
            ensure!(
                dp.passed_locally()? > 0,
                "veth connections: the XDP program passed nothing locally: the harness is broken"
            );
        }
        Ok(measured)
    })();
    let _ = std::fs::remove_dir_all(&dir);
    result
}

fn temp_dir() -> PathBuf {
    std::env::temp_dir().join(format!("balancer-bench-veth-{}", std::process::id()))
}
