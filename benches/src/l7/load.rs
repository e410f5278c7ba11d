//! The load generators: wrk (HTTP/1.1) and h2load (HTTP/2), run in the bench namespace on their
//! own core, and what they print read back.

use super::Case;
use crate::steal::Shares;
use anyhow::{bail, Context as _};
use std::{path::Path, process::Command, time::Duration};

/// What one run measured.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Load {
    pub requests_per_s: f64,
    pub p50_ms: f64,
    pub p99_ms: f64,
    /// From wrk's `done` hook ([`wrk_script`]) or h2load's per-request log.
    pub p999_ms: Option<f64>,
    /// Non-2xx answers and socket errors: a run with many is not a fair figure.
    pub errors: u64,
    pub requests: u64,
    /// CPU time the proxy used per request (user and system), in microseconds: what a
    /// request costs, much less sensitive to the box's noise than requests/s.
    pub cpu_us_per_request: f64,
    /// Requests were timed once every connection was open ([`Shape::warm_up`]).
    pub warmed_up: bool,
    /// The share of the cores' time the hypervisor took during the run ([`crate::steal`]).
    pub stolen: f64,
    /// How the proxies' core spent the run: a core that sleeps loses time to the hypervisor
    /// when it wakes ([`crate::steal`]).
    pub proxy_core: Shares,
    /// Interrupts from other cores that the proxies' core received per request: mostly
    /// wake-ups of the proxy, whose cost falls on the waking core ([`crate::wakeups`]).
    pub proxy_core_wakeups: f64,
}

/// The median of `values` (the mean of the middle two for an even count; 0 for none).
pub fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    match values.len() {
        0 => 0.0,
        n if n % 2 == 1 => values[n / 2],
        n => (values[n / 2 - 1] + values[n / 2]) / 2.0,
    }
}

impl Load {
    /// The median of each figure over `runs`; requests and errors are summed.
    pub fn median(runs: &[Load]) -> Load {
        let median = |figure: fn(&Load) -> f64| median(runs.iter().map(figure).collect());
        let all_have_p999 = !runs.is_empty() && runs.iter().all(|l| l.p999_ms.is_some());
        Load {
            requests_per_s: median(|l| l.requests_per_s),
            p50_ms: median(|l| l.p50_ms),
            p99_ms: median(|l| l.p99_ms),
            p999_ms: all_have_p999.then(|| median(|l| l.p999_ms.unwrap_or_default())),
            errors: runs.iter().map(|l| l.errors).sum(),
            requests: runs.iter().map(|l| l.requests).sum(),
            cpu_us_per_request: median(|l| l.cpu_us_per_request),
            warmed_up: runs.iter().all(|l| l.warmed_up) && !runs.is_empty(),
            stolen: median(|l| l.stolen),
            proxy_core: Shares {
                stolen: median(|l| l.proxy_core.stolen),
                idle: median(|l| l.proxy_core.idle),
            },
            proxy_core_wakeups: median(|l| l.proxy_core_wakeups),
        }
    }
}

/// The runs of one kind of load through one proxy, in the order of the rounds (round `r` of
/// that load ran through every proxy back to back, in the same minute of the box).
#[derive(Debug, Clone)]
pub struct Rounds {
    pub case: Case,
    pub runs: Vec<Load>,
}

impl Rounds {
    /// The median of each figure.
    pub fn median(&self) -> Load {
        Load::median(&self.runs)
    }
}

/// One figure of a load run (its p99, its req/s...).
pub type Figure = fn(&Load) -> f64;

/// How hard to push.
#[derive(Debug, Clone, Copy)]
pub struct Shape {
    pub connections: u32,
    pub duration: Duration,
    /// Requests are timed once every connection is open: the first request of each waits
    /// [`WARM_UP`] (the keep-alive loads; not the load of a handshake per request).
    pub warm_up: bool,
}

/// Runs `load` and adds the CPU time `server` used per request.
pub fn costed(
    server: &crate::servers::Server,
    load: impl FnOnce() -> anyhow::Result<Load>,
) -> anyhow::Result<Load> {
    let before = server.cpu_seconds();
    let mut measured = load()?;
    // Figures of a proxy that mostly failed would mean nothing: the harness is broken.
    if measured.requests == 0 || measured.errors * 2 > measured.requests {
        bail!(
            "{}: {} requests, {} failed: see its log",
            server.name,
            measured.requests,
            measured.errors
        );
    }
    let micros = (server.cpu_seconds() - before).max(0.0) * 1e6;
    measured.cpu_us_per_request = micros / measured.requests.max(1) as f64;
    Ok(measured)
}

/// Header asking for a new connection (and TLS handshake) per request.
pub const CLOSE: &str = "Connection: close";

/// In the keep-alive loads ([`Shape::warm_up`]), how long the first request of each connection
/// waits: every connection's TLS handshake is over before a request is timed. The generator is
/// single-threaded; while it still makes the handshakes of the last connections, the answers
/// to the first requests of the others wait in its sockets and are timed as slow. The proxy
/// that finishes its handshakes first (so lets requests start earliest) would pay most for the
/// generator's work. The handshakes have their own load, with [`CLOSE`].
pub const WARM_UP: Duration = Duration::from_millis(250);

/// wrk's script: its `--latency` table stops at the 99th percentile; this prints the 99.9th
/// (microseconds) and the rate over the timed part of the run when the run is done. With
/// `first_requests`, that many first requests (one per connection) wait [`WARM_UP`]. Only then
/// has it a `delay` hook: with one, wrk sends every request from a timer on the next pass of
/// its event loop rather than at once.
fn wrk_script(first_requests: u32) -> String {
    let (wait, delay) = match first_requests {
        0 => (0, String::new()),
        n => {
            let wait = WARM_UP.as_millis();
            let delay = format!(
                "local waiting = {n}\n\
                 delay = function()\n  \
                   if waiting > 0 then waiting = waiting - 1; return {wait} end\n  \
                   return 0\n\
                 end\n"
            );
            (wait, delay)
        }
    };
    format!(
        "{delay}\
         done = function(summary, latency, requests)\n  \
           io.write(string.format(\"p99.9 %d\\n\", latency:percentile(99.9)))\n  \
           io.write(string.format(\"timed %d %d\\n\", summary.requests, summary.duration - {wait} * 1000))\n\
         end\n"
    )
}

/// `wrk --latency` over HTTP/1.1 (keep-alive unless `headers` hold [`CLOSE`]), each request
/// carrying `headers`, timed as `shape` says; its script is written to `dir`.
pub fn wrk(
    prefix: &mut Command,
    url: &str,
    shape: Shape,
    headers: &[&str],
    dir: &Path,
) -> anyhow::Result<Load> {
    let first_requests = match shape.warm_up {
        true => shape.connections,
        false => 0,
    };
    let script = dir.join(format!("wrk-{first_requests}.lua"));
    if !script.exists() {
        crate::provenance::write_config(&script, &wrk_script(first_requests))?;
    }
    let cmd = prefix
        .args(["wrk", "-t1", "--latency"])
        .arg(format!("-c{}", shape.connections))
        .arg(format!("-d{}s", shape.duration.as_secs().max(1)))
        .arg("-s")
        .arg(&script);
    for header in headers {
        cmd.args(["-H", header]);
    }
    cmd.arg(url);
    crate::provenance::command(cmd);
    let out = cmd.output().context("running wrk")?;
    let text = String::from_utf8_lossy(&out.stdout);
    if !out.status.success() {
        bail!(
            "wrk failed: {}{}",
            text,
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let load = parse_wrk(&text).with_context(|| format!("reading wrk's output:\n{text}"))?;
    Ok(Load {
        warmed_up: shape.warm_up,
        ..load
    })
}

/// What h2load sends over each of its TLS connections.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Flow {
    /// HTTP/1.1 keep-alive: one request at a time.
    H1,
    /// HTTP/2 with this many concurrent streams.
    H2 { streams: u32 },
}

/// h2load over one TLS connection per client, timed as `shape` says, as fast as the proxy
/// answers; latency percentiles from its per-request log (which holds the timed requests only).
pub fn h2load(
    prefix: &mut Command,
    url: &str,
    shape: Shape,
    flow: Flow,
    log: &Path,
) -> anyhow::Result<Load> {
    let cmd = prefix
        .args(["h2load", "-t1"])
        .arg(format!("-c{}", shape.connections))
        .arg(format!("-D{}", shape.duration.as_secs().max(1)));
    cmd.arg(flow.arg());
    if shape.warm_up {
        cmd.arg(format!("--warm-up-time={}ms", WARM_UP.as_millis()));
    }
    let mut load = run_h2load(cmd.arg("--log-file").arg(log).arg(url), log, Duration::ZERO)?;
    load.warmed_up = shape.warm_up;
    Ok(load)
}

/// Requests a second each connection of a [`paced`] load is asked for. h2load sends a
/// connection's `--rps` requests from a timer that fires at most every 10 ms, each time with
/// all the requests then due: above 100 a second, a connection's requests leave in bursts
/// (at 352 a connection and 50 connections, every request of a run left within the same 4 ms
/// of each 10, at more than any proxy here carries flat out). At 100, one leaves per tick.
pub const PACED_PER_CONNECTION: u32 = 100;

/// The connections of a [`paced`] load at `rate` requests/s.
pub fn paced_connections(rate: u32) -> u32 {
    rate.div_ceil(PACED_PER_CONNECTION).max(1)
}

/// How long after its first request a [`paced`] load over `connections` starts timing: the
/// connections open one a millisecond, then [`WARM_UP`].
pub fn paced_skip(connections: u32) -> Duration {
    Duration::from_millis(connections.into()) + WARM_UP
}

/// h2load at `rate` requests/s in all, paced ([`Paced`]), for about `duration` once timed.
pub fn paced(
    prefix: &mut Command,
    url: &str,
    flow: Flow,
    rate: u32,
    duration: Duration,
    log: &Path,
) -> anyhow::Result<Load> {
    let Paced { args, skip } = Paced::new(flow, rate, duration);
    let cmd = prefix.arg("h2load").args(args);
    run_h2load(cmd.arg("--log-file").arg(log).arg(url), log, skip)
}

/// How a [`paced`] load runs: [`PACED_PER_CONNECTION`] a connection over
/// [`paced_connections`], the connections opened one a millisecond (h2load's rate mode). Each
/// connection's timer starts when its handshake ends, so theirs are spread over the 10 ms
/// period. Opened ten a millisecond, the handshakes ended in clumps, and so did the requests
/// (up to 35 in one millisecond of ten).
pub struct Paced {
    /// h2load's arguments (but the log and the URL).
    pub args: Vec<String>,
    /// How long after the first request the requests are timed ([`paced_skip`]).
    pub skip: Duration,
}

impl Paced {
    /// `rate` requests/s of `flow`, timed for about `duration`.
    pub fn new(flow: Flow, rate: u32, duration: Duration) -> Self {
        let connections = paced_connections(rate);
        let skip = paced_skip(connections);
        let per_connection = (duration + skip).as_secs_f64() * f64::from(PACED_PER_CONNECTION);
        let args = vec![
            "-t1".into(),
            format!("-c{connections}"),
            "-r1".into(),
            "--rate-period".into(),
            "1ms".into(),
            format!("--rps={PACED_PER_CONNECTION}"),
            format!("-n{}", u64::from(connections) * per_connection as u64),
            flow.arg(),
        ];
        Self { args, skip }
    }
}

impl Flow {
    /// h2load's argument for this flow.
    fn arg(self) -> String {
        match self {
            Flow::H1 => "--h1".into(),
            Flow::H2 { streams } => format!("-m{streams}"),
        }
    }
}

/// Runs h2load (`cmd`, logging to `log`): its counts from what it prints, and its latency
/// percentiles from the log, leaving out the requests started in the first `skip` (then
/// req/s is the rate of those kept).
fn run_h2load(cmd: &mut Command, log: &Path, skip: Duration) -> anyhow::Result<Load> {
    fresh_log(log)?;
    crate::provenance::command(cmd);
    let out = cmd.output().context("running h2load")?;
    let text = String::from_utf8_lossy(&out.stdout);
    if !out.status.success() {
        bail!(
            "h2load failed: {}{}",
            text,
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let mut load =
        parse_h2load(&text).with_context(|| format!("reading h2load's output:\n{text}"))?;
    let logged = parse_h2load_log(&std::fs::read_to_string(log)?);
    let Timed { mut micros, per_s } = timed(&logged, skip);
    micros.sort_unstable();
    let pct = |p: f64| percentile(&micros, p) as f64 / 1000.0;
    (load.p50_ms, load.p99_ms, load.p999_ms) = (pct(0.50), pct(0.99), Some(pct(0.999)));
    if let Some(per_s) = per_s {
        load.requests_per_s = per_s;
    }
    Ok(load)
}

/// Removes the log of an earlier run: h2load appends to its log file, so every run's figures
/// would otherwise hold the runs before it (through the same proxy, of every load).
fn fresh_log(log: &Path) -> anyhow::Result<()> {
    match std::fs::remove_file(log) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
            Err(e).with_context(|| format!("removing {}", log.display()))
        }
        _ => Ok(()),
    }
}

/// h2load's per-request log: when each request started (µs since the epoch) and how long it
/// took (µs).
fn parse_h2load_log(text: &str) -> Vec<(u64, u64)> {
    text.lines()
        .filter_map(|l| {
            let mut fields = l.split('\t');
            let start = fields.next()?.trim().parse().ok()?;
            let micros = fields.nth(1)?.trim().parse().ok()?;
            Some((start, micros))
        })
        .collect()
}

/// The requests of a log that are timed.
struct Timed {
    micros: Vec<u64>,
    /// Their rate, when some were left out.
    per_s: Option<f64>,
}

/// The requests of `logged` started at least `skip` after the first.
fn timed(logged: &[(u64, u64)], skip: Duration) -> Timed {
    let first = logged.iter().map(|(start, _)| *start).min().unwrap_or(0);
    let cut = first + skip.as_micros() as u64;
    let kept: Vec<&(u64, u64)> = logged.iter().filter(|(start, _)| *start >= cut).collect();
    let last = kept.iter().map(|(start, _)| *start).max().unwrap_or(cut);
    let per_s =
        (!skip.is_zero() && last > cut).then(|| kept.len() as f64 * 1e6 / (last - cut) as f64);
    Timed {
        micros: kept.iter().map(|(_, micros)| *micros).collect(),
        per_s,
    }
}

/// The `p`-quantile (nearest rank) of sorted values; 0 for none.
pub fn percentile(sorted: &[u64], p: f64) -> u64 {
    if sorted.is_empty() {
        return 0;
    }
    let rank = ((p * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len());
    sorted[rank - 1]
}

/// wrk's duration (`812.00us`, `4.98ms`, `1.02s`), in milliseconds.
fn wrk_ms(text: &str) -> Option<f64> {
    let split = text.find(|c: char| c.is_ascii_alphabetic())?;
    let (n, unit) = text.split_at(split);
    let n: f64 = n.parse().ok()?;
    Some(match unit {
        "us" => n / 1000.0,
        "ms" => n,
        "s" => n * 1000.0,
        "m" => n * 60_000.0,
        _ => return None,
    })
}

pub fn parse_wrk(text: &str) -> Option<Load> {
    let mut load = Load::default();
    let mut timed = None;
    for line in text.lines().map(str::trim) {
        let words: Vec<&str> = line.split_whitespace().collect();
        match words.as_slice() {
            ["Requests/sec:", n] => load.requests_per_s = n.parse().ok()?,
            ["50%", t] => load.p50_ms = wrk_ms(t)?,
            ["99%", t] => load.p99_ms = wrk_ms(t)?,
            ["p99.9", us] => load.p999_ms = Some(us.parse::<f64>().ok()? / 1000.0),
            ["timed", requests, us] => {
                timed = Some((requests.parse::<f64>().ok()?, us.parse::<f64>().ok()?))
            }
            [n, "requests", "in", ..] => load.requests = n.parse().ok()?,
            ["Non-2xx", "or", "3xx", "responses:", n] => load.errors += n.parse::<u64>().ok()?,
            ["Socket", "errors:", rest @ ..] => {
                load.errors += rest
                    .iter()
                    .filter_map(|w| w.trim_end_matches(',').parse::<u64>().ok())
                    .sum::<u64>()
            }
            _ => {}
        }
    }
    // wrk's own rate counts the warm-up's time too.
    if let Some((requests, us)) = timed.filter(|(_, us)| *us > 0.0) {
        load.requests_per_s = requests * 1e6 / us;
    }
    (load.requests_per_s > 0.0).then_some(load)
}

pub fn parse_h2load(text: &str) -> Option<Load> {
    let mut load = Load::default();
    for line in text.lines().map(str::trim) {
        if let Some(rest) = line.strip_prefix("finished in ") {
            let rps = rest.split(", ").nth(1)?.strip_suffix(" req/s")?;
            load.requests_per_s = rps.parse().ok()?;
        }
        if let Some(rest) = line.strip_prefix("requests: ") {
            for part in rest.split(", ") {
                let mut w = part.split_whitespace();
                let (n, what) = (w.next()?.parse::<u64>().ok()?, w.next()?);
                match what {
                    "succeeded" => load.requests = n,
                    "failed" | "errored" | "timeout" => load.errors += n,
                    _ => {}
                }
            }
        }
    }
    (load.requests_per_s > 0.0).then_some(load)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_warmed_loads_have_a_delay_hook() {
        assert!(!wrk_script(0).contains("delay"), "{}", wrk_script(0));
        assert!(wrk_script(0).contains("duration - 0 * 1000"));
        let warmed = wrk_script(50);
        assert!(warmed.contains("local waiting = 50") && warmed.contains("return 250"));
        assert!(warmed.contains("duration - 250 * 1000"));
    }

    #[test]
    fn wrk_output_is_read() {
        let text = "Running 2s test @ https://127.0.0.1:8443/owa/
  1 threads and 50 connections
  Thread Stats   Avg      Stdev     Max   +/- Stdev
    Latency     5.12ms    1.02ms  20.00ms   90.00%
    Req/Sec     9.80k   500.00    10.50k    70.00%
  Latency Distribution
     50%  812.00us
     75%    5.50ms
     90%    6.20ms
     99%    1.02s
  19600 requests in 2.00s, 2.34MB read
  Socket errors: connect 0, read 3, write 0, timeout 1
  Non-2xx or 3xx responses: 5
Requests/sec:   9800.00
Transfer/sec:      1.17MB
p99.9 1234567
";
        let l = parse_wrk(text).unwrap();
        assert_eq!(l.requests_per_s, 9800.0, "no timed part: wrk's rate");
        let warmed = parse_wrk(&format!("{text}timed 19600 1750000\n")).unwrap();
        assert_eq!(
            warmed.requests_per_s, 11200.0,
            "the rate over the timed part"
        );
        assert_eq!(l.p50_ms, 0.812);
        assert_eq!(l.p99_ms, 1020.0);
        assert_eq!(l.p999_ms, Some(1234.567));
        assert_eq!((l.requests, l.errors), (19600, 9));
    }

    #[test]
    fn each_h2load_run_starts_a_fresh_log() {
        let log = std::env::temp_dir().join(format!("h2load-log-test-{}", std::process::id()));
        std::fs::write(&log, "1000000\t200\t900\n").unwrap();
        fresh_log(&log).unwrap();
        assert!(!log.exists());
        fresh_log(&log).unwrap(); // none there: nothing to do
    }

    #[test]
    fn the_first_requests_of_a_paced_log_are_left_out() {
        let log = "1000000\t200\t900\n1100000\t200\t800\n1250000\t200\t300\n\
                   1500000\t200\t200\n1750000\t-1\t100\n";
        let logged = parse_h2load_log(log);
        assert_eq!(logged.len(), 5);
        let Timed { micros, per_s } = timed(&logged, Duration::from_millis(250));
        assert_eq!(micros, [300, 200, 100]);
        // 3 requests started over the 0.5 s from the cut to the last.
        assert_eq!(per_s, Some(6.0));
        let all = timed(&logged, Duration::ZERO);
        assert_eq!((all.micros.len(), all.per_s), (5, None));
    }

    #[test]
    fn a_paced_load_asks_one_request_a_tick_of_each_connection() {
        // 17,600 req/s: 176 connections at 100 a second, opened over 176 ms.
        assert_eq!(paced_connections(17_600), 176);
        assert_eq!(paced_connections(50), 1);
        assert_eq!(paced_skip(176), Duration::from_millis(176) + WARM_UP);
        // 4 s timed after 426 ms of opening and warm-up: 442 requests a connection.
        let paced = Paced::new(Flow::H1, 17_600, Duration::from_secs(4));
        assert_eq!(paced.skip, paced_skip(176));
        let args = paced.args.join(" ");
        assert_eq!(
            args,
            "-t1 -c176 -r1 --rate-period 1ms --rps=100 -n77792 --h1"
        );
    }

    #[test]
    fn h2load_output_is_read() {
        let text = "finished in 2.00s, 9876.50 req/s, 1.23MB/s
requests: 19753 total, 19803 started, 19753 done, 19750 succeeded, 3 failed, 3 errored, 0 timeout
status codes: 19750 2xx, 0 3xx, 0 4xx, 0 5xx
";
        let l = parse_h2load(text).unwrap();
        assert_eq!(l.requests_per_s, 9876.5);
        assert_eq!((l.requests, l.errors), (19750, 6));
    }

    #[test]
    fn the_median_of_runs_is_taken_figure_by_figure() {
        let run = |rps, p99, cpu, p999| Load {
            requests_per_s: rps,
            p50_ms: 1.0,
            p99_ms: p99,
            p999_ms: p999,
            errors: 1,
            requests: 100,
            cpu_us_per_request: cpu,
            warmed_up: true,
            stolen: cpu / 1000.0,
            proxy_core: Shares {
                stolen: cpu / 2000.0,
                idle: p99 / 10.0,
            },
            proxy_core_wakeups: rps / 10.0,
        };
        let odd = Load::median(&[
            run(10.0, 9.0, 50.0, Some(3.0)),
            run(30.0, 1.0, 70.0, Some(1.0)),
            run(20.0, 5.0, 60.0, Some(2.0)),
        ]);
        assert_eq!(
            (odd.requests_per_s, odd.p99_ms, odd.cpu_us_per_request),
            (20.0, 5.0, 60.0)
        );
        assert_eq!((odd.p999_ms, odd.requests, odd.errors), (Some(2.0), 300, 3));
        assert!(odd.warmed_up);
        assert_eq!(odd.stolen, 0.06);
        assert_eq!((odd.proxy_core.stolen, odd.proxy_core.idle), (0.03, 0.5));
        assert_eq!(odd.proxy_core_wakeups, 2.0);
        let even = Load::median(&[run(10.0, 2.0, 50.0, None), run(20.0, 4.0, 70.0, Some(1.0))]);
        assert_eq!(
            (even.requests_per_s, even.p99_ms, even.p999_ms),
            (15.0, 3.0, None)
        );
        assert_eq!(Load::median(&[]), Load::default());
    }

    #[test]
    fn percentiles_by_nearest_rank() {
        let v: Vec<u64> = (1..=1000).collect();
        assert_eq!(percentile(&v, 0.5), 500);
        assert_eq!(percentile(&v, 0.99), 990);
        assert_eq!(percentile(&v, 0.999), 999);
        assert_eq!(percentile(&[], 0.5), 0);
    }
}
