//! The L7 section: HTTPS through the router to a local upstream, next to nginx and HAProxy as
//! TLS-terminating reverse proxies to the same upstream with the same certificate, in the same
//! run, inside a namespace the bench creates (loopback only).
//!
//! Each proxy gets one worker (`worker_processes 1`, `nbthread 1`, one tokio worker) pinned to
//! core 0; the load generator and the upstream share core 1. Measured per proxy:
//! - `l7.h1.keepalive`: wrk, HTTP/1.1 keep-alive: requests/s, CPU per request, p50, p99;
//! - `l7.h1.handshake`: wrk with `Connection: close`: a TLS handshake per request;
//! - `l7.h2`: h2load, HTTP/2 with concurrent streams: requests/s, p50, p99, p99.9;
//! - `l7.h1.redirect`: OWA for a mailbox of a site with an ExternalURL, answered 302 (R8) by
//!   the router after its directory lookup, by the peers from a static per-mailbox rule;
//! - `l7.h1.proxied` (the router only, next to its local path): OWA for a mailbox of a site
//!   without ExternalURL, proxied over HTTPS to that site's node (R8, CAS-CAS);
//! - `l7.stream`: a large RPC_IN_DATA body uploaded through to a back end that reads it all
//!   before answering: peak resident memory, MiB/s and CPU per GiB;
//! - `l7.rss`: resident memory idle, and with N idle TLS connections open.

mod idle;
mod load;
mod servers;
mod sink;
mod stream;

use crate::report::Results;
use crate::servers::{Launcher, Server};
use anyhow::Context as _;
use balancer_tests::{netns::Netns, pki::Ca};
use load::{Load, Shape};
use std::{path::Path, time::Duration};

/// The proxies' addresses in the namespace.
const OURS: &str = "127.0.0.1:8443";
const NGINX: &str = "127.0.0.1:8444";
const HAPROXY: &str = "127.0.0.1:8445";

struct Plan {
    keepalive: Shape,
    handshake: Shape,
    h2: Shape,
    h2_streams: u32,
    idle_connections: usize,
    stream_bytes: u64,
    /// Uploads per proxy (the median is kept: the generator's core, shared by curl, the
    /// upstream and the sink, is the limit, and how they share it varies from run to run).
    stream_runs: usize,
}

impl Plan {
    fn new(quick: bool) -> Self {
        let secs = Duration::from_secs(if quick { 1 } else { 8 });
        Self {
            keepalive: Shape {
                connections: 50,
                duration: secs,
            },
            handshake: Shape {
                connections: 20,
                duration: secs,
            },
            h2: Shape {
                connections: 10,
                duration: secs,
            },
            h2_streams: 10,
            // HAProxy holds at most `HAPROXY_MAX_CONNECTIONS` (9,990) here.
            idle_connections: if quick { 500 } else { 10_000 },
            stream_bytes: if quick { 64 << 20 } else { 1 << 30 },
            stream_runs: if quick { 1 } else { 3 },
        }
    }
}

/// What one proxy measured.
struct Figures {
    keepalive: Load,
    handshake: Load,
    h2: Load,
    redirect: Load,
    /// The router only.
    proxied: Option<Load>,
    streamed: stream::Streamed,
    rss_idle_kib: u64,
    idle_connections: usize,
    rss_connections_kib: u64,
}

pub fn run(results: &mut Results, quick: bool, balancer: &Path) -> anyhow::Result<()> {
    raise_open_files(65536)?; // up to the hard limit
    let plan = Plan::new(quick);
    let ns = Netns::new("bench-l7")?;
    // `balancer run` attaches its data plane to an interface: a veth pair of this namespace.
    ns.ip("link add bl0 type veth peer name bl1")?;
    ns.ip("link set bl0 up")?;
    ns.ip("link set bl1 up")?;
    ns.ip("addr add 10.99.0.1/24 dev bl0")?;
    let dir = std::env::temp_dir().join(format!("balancer-bench-l7-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    let pin_dir =
        std::path::PathBuf::from(format!("/sys/fs/bpf/balancer-bench-{}", std::process::id()));
    let result = (|| {
        let ca = certificates(&dir)?;
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        let launcher = Launcher {
            netns: ns.name(),
            cpu: (cores >= 2).then(|| "0".to_string()),
            dir: &dir,
        };
        let generator = Launcher {
            netns: ns.name(),
            cpu: (cores >= 2).then(|| "1".to_string()),
            dir: &dir,
        };
        let _upstream = generator.upstream("upstream", servers::UPSTREAM)?;
        let _remote = generator.upstream("remote", servers::REMOTE)?;
        let _sink = sink::Sink::start(&ns, servers::SINK.parse()?, (cores >= 2).then_some(1))?;
        let mut figures = Vec::new();
        for proxy in ["balancer", "nginx", "haproxy"] {
            // One proxy at a time, stopped before the next starts.
            let server = match proxy {
                "balancer" => launcher.balancer(balancer, OURS, &pin_dir)?,
                "nginx" => launcher.nginx_proxy(NGINX)?,
                _ => launcher.haproxy(HAPROXY)?,
            };
            eprintln!("bench: L7 through {proxy} ...");
            figures.push((
                server.name,
                measure(&server, &generator, &plan, &ns, &ca, &dir)?,
            ));
        }
        record(results, &figures, &plan);
        Ok(())
    })();
    let _ = balancer_user::dataplane::detach(&pin_dir);
    let _ = std::fs::remove_dir_all(&dir);
    result
}

fn certificates(dir: &Path) -> anyhow::Result<Ca> {
    let ca = Ca::new();
    std::fs::write(dir.join("ca.pem"), ca.pem())?;
    for (file, name) in [
        ("front", servers::FRONT_NAME),
        ("upstream", servers::UPSTREAM_NAME),
        ("remote", servers::REMOTE_NAME),
    ] {
        let (cert, key) = ca.issue_pem(name);
        std::fs::write(dir.join(format!("{file}.pem")), cert)?;
        std::fs::write(dir.join(format!("{file}.key")), key)?;
    }
    Ok(ca)
}

fn measure(
    server: &Server,
    generator: &Launcher,
    plan: &Plan,
    ns: &Netns,
    ca: &Ca,
    dir: &Path,
) -> anyhow::Result<Figures> {
    let url = format!("https://{}/owa/", server.addr);
    // A short warm-up: connections to the upstream, caches.
    let warm_up = Shape {
        connections: 10,
        duration: Duration::from_secs(1),
    };
    load::wrk(&mut generator.prefix(), &url, warm_up, &[])?;
    let wrk = |shape, headers: &[&str]| {
        load::costed(server, || {
            load::wrk(&mut generator.prefix(), &url, shape, headers)
        })
    };
    let keepalive = wrk(plan.keepalive, &[])?;
    let handshake = wrk(plan.handshake, &[load::CLOSE])?;
    let anchor = |mailbox| format!("X-AnchorMailbox: {mailbox}");
    let redirect = wrk(plan.keepalive, &[&anchor(servers::REDIRECTED_MAILBOX)])?;
    let proxied = match server.name {
        "balancer" => Some(wrk(plan.keepalive, &[&anchor(servers::REMOTE_MAILBOX)])?),
        _ => None,
    };
    let log = dir.join(format!("{}-h2load.log", server.name));
    let h2 = load::costed(server, || {
        load::h2load(
            &mut generator.prefix(),
            &url,
            plan.h2,
            plan.h2_streams,
            &log,
        )
    })?;
    let body = stream::body_file(dir, plan.stream_bytes)?;
    let streamed = stream::uploads(
        server,
        generator,
        &body,
        &dir.join("ca.pem"),
        plan.stream_runs,
    )?;
    std::thread::sleep(Duration::from_millis(500));
    let rss_idle_kib = server.rss_kib();
    let roots = ca.roots();
    let addr = server.addr;
    let count = match server.name {
        "haproxy" => plan.idle_connections.min(servers::HAPROXY_MAX_CONNECTIONS),
        _ => plan.idle_connections,
    };
    let rss_connections_kib = ns
        .run_in(move || idle::with_idle_connections(addr, count, roots, || server.rss_kib()))?
        .with_context(|| format!("opening {count} idle TLS connections to {}", server.name))?;
    Ok(Figures {
        keepalive,
        handshake,
        h2,
        redirect,
        proxied,
        streamed,
        rss_idle_kib,
        idle_connections: count,
        rss_connections_kib,
    })
}

fn record(results: &mut Results, figures: &[(&str, Figures)], plan: &Plan) {
    let Some((_, ours)) = figures.iter().find(|(n, _)| *n == "balancer") else {
        return;
    };
    if let Some(proxied) = &ours.proxied {
        compare_loads(
            results,
            "l7.h1.proxied",
            "wrk -t1 -c50, OWA of a mailbox in a site without ExternalURL, proxied over HTTPS \
             to its node (R8), next to the router's local path",
            proxied,
            "balancer-local",
            &ours.keepalive,
        );
    }
    for (peer, theirs) in figures.iter().filter(|(n, _)| *n != "balancer") {
        let rows = [
            (
                "l7.h1.keepalive",
                &ours.keepalive,
                &theirs.keepalive,
                "wrk -t1 -c50, HTTP/1.1 keep-alive",
            ),
            (
                "l7.h1.handshake",
                &ours.handshake,
                &theirs.handshake,
                "wrk -t1 -c20, Connection: close (a TLS handshake per request)",
            ),
            ("l7.h2", &ours.h2, &theirs.h2, "h2load -t1 -c10 -m10"),
            (
                "l7.h1.redirect",
                &ours.redirect,
                &theirs.redirect,
                "wrk -t1 -c50, OWA of a mailbox in a site with ExternalURL: 302 (R8) after a \
                 directory lookup; the peer answers from a static rule for that mailbox",
            ),
        ];
        for (key, a, b, how) in rows {
            compare_loads(results, key, how, a, peer, b);
        }
        let mut compare = |key: &str, unit: &str, a: f64, b: f64, note: &str| {
            results.compare(key, unit, a, peer, b, note);
        };
        let mib = |kib: u64| kib as f64 / 1024.0;
        compare(
            "l7.stream.peak_rss",
            "MiB",
            mib(ours.streamed.peak_rss_kib),
            mib(theirs.streamed.peak_rss_kib),
            &format!(
                "peak resident memory while curl uploads a {} MiB RPC_IN_DATA body (HTTP/1.1, \
                 Content-Length) through to the upstream; lower is better",
                plan.stream_bytes >> 20
            ),
        );
        compare(
            "l7.stream.cpu_per_gib",
            "s",
            ours.streamed.cpu_s_per_gib,
            theirs.streamed.cpu_s_per_gib,
            "CPU time of the proxy's processes per GiB of that body; lower is better",
        );
        compare(
            "l7.stream.throughput",
            "MiB/s",
            ours.streamed.mib_per_s,
            theirs.streamed.mib_per_s,
            "upload speed of that body (curl); higher is better",
        );
        compare(
            "l7.rss.idle",
            "MiB",
            mib(ours.rss_idle_kib),
            mib(theirs.rss_idle_kib),
            "resident memory after the load runs, no connection open",
        );
        compare(
            "l7.rss.idle_tls_connections",
            "MiB",
            mib(ours.rss_connections_kib),
            mib(theirs.rss_connections_kib),
            &format!(
                "resident memory with {} (ours) and {} ({peer}) idle TLS connections open",
                ours.idle_connections, theirs.idle_connections
            ),
        );
    }
}

/// The comparisons of two load runs: requests/s, CPU per request and latency percentiles.
fn compare_loads(
    results: &mut Results,
    key: &str,
    how: &str,
    ours: &Load,
    peer: &str,
    theirs: &Load,
) {
    let mut compare = |what: &str, unit: &str, a: f64, b: f64, note: &str| {
        results.compare(&format!("{key}.{what}"), unit, a, peer, b, note);
    };
    compare(
        "rps",
        "req/s",
        ours.requests_per_s,
        theirs.requests_per_s,
        &format!(
            "{how}; higher is better; errors {} vs {}",
            ours.errors, theirs.errors
        ),
    );
    compare(
        "cpu_per_request",
        "us",
        ours.cpu_us_per_request,
        theirs.cpu_us_per_request,
        "CPU time of the proxy's processes per request; lower is better",
    );
    compare("p50", "ms", ours.p50_ms, theirs.p50_ms, "lower is better");
    compare("p99", "ms", ours.p99_ms, theirs.p99_ms, "lower is better");
    if let (Some(x), Some(y)) = (ours.p999_ms, theirs.p999_ms) {
        compare("p999", "ms", x, y, "lower is better");
    }
}

/// Lets this process (and the servers it starts) hold the idle connections.
fn raise_open_files(limit: u64) -> anyhow::Result<()> {
    use nix::sys::resource::{getrlimit, setrlimit, Resource};
    let (soft, hard) = getrlimit(Resource::RLIMIT_NOFILE)?;
    let target = limit.min(hard).max(soft);
    setrlimit(Resource::RLIMIT_NOFILE, target, hard).context("raising RLIMIT_NOFILE")?;
    Ok(())
}
