//! Dwell time (`l7.h1.keepalive.dwell_p50`, `dwell_p99`): how long an HTTP/1.1 keep-alive
//! request stays in the proxy, from the system call that reads it off the client's connection
//! to the one that writes the answer on it. It holds the proxy's own work and queueing and the
//! upstream's round trip, and leaves out what the client side adds: on this box the load
//! generator shares its core with the upstream, and how long an answer waits there for wrk
//! depends on how the two take turns, which the latency wrk reports includes.
//!
//! The proxy's socket system calls are traced with `perf` (the kernel's syscall tracepoints)
//! during a wrk run of its own: connections are those `accept4` returned during the trace; a
//! read that returns data on one starts a request (unless one is already waiting for its
//! answer), and the next write on it ends the request; a closed one is forgotten (its number
//! may come back as an upstream connection). Tracing costs every proxy the same
//! per system call, and slows all of them.

use super::load::{self, percentile, Shape, WARM_UP};
use crate::servers::{Launcher, Server};
use anyhow::{bail, Context as _};
use std::{
    collections::HashMap, os::unix::process::ExitStatusExt as _, path::Path, process::Command,
    time::Duration,
};

/// The tracepoints read: connections accepted and closed, data read, data written.
const EVENTS: [&str; 12] = [
    "syscalls:sys_exit_accept4",
    "syscalls:sys_enter_close",
    "syscalls:sys_enter_read",
    "syscalls:sys_exit_read",
    "syscalls:sys_enter_recvfrom",
    "syscalls:sys_exit_recvfrom",
    "syscalls:sys_enter_recvmsg",
    "syscalls:sys_exit_recvmsg",
    "syscalls:sys_enter_write",
    "syscalls:sys_enter_writev",
    "syscalls:sys_enter_sendto",
    "syscalls:sys_enter_sendmsg",
];

/// One proxy's dwell times, in microseconds.
#[derive(Debug, Clone, Copy)]
pub struct Dwell {
    pub p50_us: u64,
    pub p99_us: u64,
    pub requests: usize,
}

/// Traces `server` while wrk sends it `shape`, and reads the dwell times from the trace.
pub fn measure(
    server: &Server,
    generator: &Launcher,
    shape: Shape,
    dir: &Path,
) -> anyhow::Result<Dwell> {
    let data = dir.join(format!("{}-dwell.perf", server.name));
    let pids: Vec<String> = server.pids().iter().map(u32::to_string).collect();
    let mut record = Command::new("perf");
    record.args(["record", "-q", "-o"]).arg(&data);
    record.arg("-p").arg(pids.join(","));
    for event in EVENTS {
        record.args(["-e", event]);
    }
    let mut tracer = super::tracer::start(&mut record, dir)?;
    let url = super::owa_url(server);
    let load = load::wrk(&mut generator.prefix(), &url, shape, &[], dir);
    // perf writes its file out on SIGINT (and is killed if that cannot be sent).
    let pid = nix::unistd::Pid::from_raw(tracer.id() as i32);
    if nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGINT).is_err() {
        let _ = tracer.kill();
    }
    let stopped = tracer.wait()?;
    load.with_context(|| format!("wrk through {} while traced", server.name))?;
    // It may end by the signal, raised again once the file is written.
    if !stopped.success() && stopped.signal() != Some(nix::libc::SIGINT) {
        bail!("perf record on {} exited with {stopped}", server.name);
    }
    let script = Command::new("perf")
        .arg("script")
        .arg("-i")
        .arg(&data)
        .args(["-F", "tid,time,event,trace"])
        .output()
        .context("running perf script")?;
    let _ = std::fs::remove_file(&data);
    if !script.status.success() {
        bail!(
            "perf script failed: {}",
            String::from_utf8_lossy(&script.stderr)
        );
    }
    let script_text = String::from_utf8_lossy(&script.stdout);
    let mut times = dwell_times(&script_text, WARM_UP);
    if times.is_empty() {
        let accepts = script_text.matches("sys_exit_accept4").count();
        bail!(
            "no request of {} was seen in the trace ({accepts} returns of accept4 in it)",
            server.name
        );
    }
    times.sort_unstable();
    Ok(Dwell {
        p50_us: percentile(&times, 0.50),
        p99_us: percentile(&times, 0.99),
        requests: times.len(),
    })
}

/// The dwell times (µs) in the text of `perf script -F tid,time,event,trace`, of requests read
/// once `skip` has passed since the first connection was accepted (the TLS handshakes, whose
/// messages would read as requests, happen before the warm-up's first requests).
pub fn dwell_times(script: &str, skip: Duration) -> Vec<u64> {
    let mut first_accept = None;
    // Per connection: when the request waiting for its answer was read.
    let mut waiting: HashMap<u64, Option<f64>> = HashMap::new();
    // Per thread: the descriptor of the read under way.
    let mut reading: HashMap<u64, u64> = HashMap::new();
    let mut times = Vec::new();
    for line in script.lines() {
        let Some(event) = Event::parse(line) else {
            continue;
        };
        match event.kind {
            Kind::Accepted(fd) => {
                first_accept.get_or_insert(event.time);
                waiting.insert(fd, None);
            }
            Kind::Closed(fd) => {
                waiting.remove(&fd);
            }
            Kind::ReadStart(fd) => {
                reading.insert(event.tid, fd);
            }
            Kind::ReadEnd(returned) => {
                let Some(fd) = reading.remove(&event.tid) else {
                    continue;
                };
                let data = returned > 0 && returned < 1 << 63; // not an error (-errno)
                let counted = first_accept.is_some_and(|t| event.time - t >= skip.as_secs_f64());
                if let Some(read_at @ None) = waiting.get_mut(&fd) {
                    if data && counted {
                        *read_at = Some(event.time);
                    }
                }
            }
            Kind::Write(fd) => {
                if let Some(read_at) = waiting.get_mut(&fd).and_then(Option::take) {
                    times.push(((event.time - read_at) * 1e6).round() as u64);
                }
            }
        }
    }
    times
}

struct Event {
    tid: u64,
    /// Seconds.
    time: f64,
    kind: Kind,
}

enum Kind {
    Accepted(u64),
    Closed(u64),
    ReadStart(u64),
    /// What the read returned (`-errno` as an unsigned number on failure).
    ReadEnd(u64),
    Write(u64),
}

impl Event {
    /// `12674 11464.391012: syscalls:sys_enter_recvfrom: fd: 0x00000028, ubuf: ...`
    fn parse(line: &str) -> Option<Self> {
        let mut words = line.split_whitespace();
        let tid = words.next()?.parse().ok()?;
        let time = words.next()?.trim_end_matches(':').parse().ok()?;
        let name = words
            .next()?
            .strip_prefix("syscalls:sys_")?
            .trim_end_matches(':');
        let hex = |w: Option<&str>| {
            u64::from_str_radix(w?.trim_end_matches(',').strip_prefix("0x")?, 16).ok()
        };
        let (phase, call) = name.split_once('_')?;
        let kind = match (phase, call) {
            ("exit", "accept4") => match hex(words.next())? {
                fd if fd < 1 << 63 => Kind::Accepted(fd),
                _ => return None,
            },
            ("exit", _) => Kind::ReadEnd(hex(words.next())?),
            ("enter", call) => {
                let fd = match words.next()? {
                    "fd:" => hex(words.next())?,
                    _ => return None,
                };
                match call {
                    "close" => Kind::Closed(fd),
                    "read" | "recvfrom" | "recvmsg" => Kind::ReadStart(fd),
                    _ => Kind::Write(fd),
                }
            }
            _ => return None,
        };
        Some(Self { tid, time, kind })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SKIP: Duration = Duration::from_millis(250);

    #[test]
    fn a_request_dwells_from_its_read_to_its_answers_write() {
        let script = "\
7 10.000000: syscalls:sys_exit_accept4: 0x21
7 10.000100: syscalls:sys_enter_read: fd: 0x00000021, buf: 0x1, count: 0x4000
7 10.000110: syscalls:sys_exit_read: 0x120
7 10.000200: syscalls:sys_enter_write: fd: 0x00000021, buf: 0x1, count: 0x80
7 10.300000: syscalls:sys_enter_recvfrom: fd: 0x00000021, ubuf: 0x1, size: 0x1000
7 10.300010: syscalls:sys_exit_recvfrom: 0x42
7 10.300050: syscalls:sys_enter_recvfrom: fd: 0x00000021, ubuf: 0x1, size: 0x1000
7 10.300052: syscalls:sys_exit_recvfrom: 0xfffffffffffffff5
7 10.300100: syscalls:sys_enter_writev: fd: 0x00000030, vec: 0x1, vlen: 0x1
7 10.300400: syscalls:sys_enter_read: fd: 0x00000030, buf: 0x1, count: 0x4000
7 10.300410: syscalls:sys_exit_read: 0x99
7 10.300510: syscalls:sys_enter_writev: fd: 0x00000021, vec: 0x1, vlen: 0x2
7 10.300600: syscalls:sys_enter_writev: fd: 0x00000021, vec: 0x1, vlen: 0x2
";
        // The handshake's exchange (before the skip) is not counted, the upstream's
        // connection (0x30, not accepted during the trace) is not a client's, the failed read
        // (EAGAIN) starts nothing, and the second write has no request left to answer.
        assert_eq!(dwell_times(script, SKIP), vec![500]);
    }

    #[test]
    fn reads_pair_with_their_own_threads_call() {
        let script = "\
1 5.000000: syscalls:sys_exit_accept4: 0x10
2 5.000001: syscalls:sys_exit_accept4: 0x11
1 5.400000: syscalls:sys_enter_read: fd: 0x00000010, buf: 0x1, count: 0x10
2 5.400001: syscalls:sys_enter_read: fd: 0x00000011, buf: 0x1, count: 0x10
2 5.400002: syscalls:sys_exit_read: 0xfffffffffffffff5
1 5.400003: syscalls:sys_exit_read: 0x40
2 5.400100: syscalls:sys_enter_write: fd: 0x00000011, buf: 0x1, count: 0x10
1 5.401003: syscalls:sys_enter_sendto: fd: 0x00000010, buff: 0x1, len: 0x10
";
        assert_eq!(dwell_times(script, SKIP), vec![1000]);
    }

    #[test]
    fn lines_that_are_not_these_events_are_skipped() {
        assert!(Event::parse("").is_none());
        assert!(Event::parse("7 1.0: sched:sched_switch: prev_comm=x").is_none());
        assert!(Event::parse("7 1.0: syscalls:sys_exit_accept4: 0xfffffffffffffff5").is_none());
        assert!(matches!(
            Event::parse("7 1.5: syscalls:sys_enter_sendto: fd: 0x0000000a, buff: 0x1")
                .map(|e| e.kind),
            Some(Kind::Write(10))
        ));
    }
}
