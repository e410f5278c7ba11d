//! Instructions per request (`l7.<case>.instructions`): each proxy is started again under
//! valgrind's callgrind, which counts the instructions it executes in user space. Unlike CPU
//! time, the count does not move with what else the box is doing, so its ratios hold from one
//! run to the next. Kernel work (TCP, system calls) is not counted; the CPU figures of the
//! timed loads include it.
//!
//! Each case counts two runs of h2load, [`SMALL`] and `SMALL + counted` requests, with the
//! counters zeroed before each (`callgrind_control`); the difference holds `counted` requests
//! and no connection set-up, which both runs share. A first run as long as the longer one, not
//! counted, opens the proxy's connections to the upstream, which the counted runs then reuse
//! (HAProxy opens them over several runs: after a shorter first run, its h2 count was 3.5
//! times the steady one).

use super::servers;
use crate::servers::{Launcher, Server};
use anyhow::{bail, Context as _};
use std::process::Command;

/// The requests of the shorter run of each case.
const SMALL: u64 = 200;

/// The cases counted, by key: the h2load arguments, and the mailbox named (X-AnchorMailbox).
pub const CASES: [(&str, &[&str], Option<&str>); 3] = [
    ("l7.h1.keepalive", &["--h1", "-c50"], None),
    ("l7.h2", &["-c10", "-m10"], None),
    (
        "l7.h1.redirect",
        &["--h1", "-c50"],
        Some(servers::REDIRECTED_MAILBOX),
    ),
];

/// Instructions per request of `server` (started under callgrind) in each of [`CASES`], from
/// `counted` requests each.
pub fn count(server: &Server, generator: &Launcher, counted: u64) -> anyhow::Result<Vec<f64>> {
    let url = super::owa_url(server);
    CASES
        .iter()
        .map(|(_, args, mailbox)| {
            let header = mailbox.map(|m| format!("X-AnchorMailbox: {m}"));
            let run = |n| requests(generator, &url, args, header.as_deref(), n);
            let measured = |n| -> anyhow::Result<u64> {
                control(server, &["--zero"])?;
                run(n)?;
                instructions(server)
            };
            run(SMALL + counted)?;
            let small = measured(SMALL)?;
            let large = measured(SMALL + counted)?;
            if large <= small {
                bail!(
                    "{} counted {large} instructions in the longer run, {small} in the shorter",
                    server.name
                );
            }
            Ok((large - small) as f64 / counted as f64)
        })
        .collect()
}

/// `h2load -n n` through to `url`; fails unless every request succeeds.
fn requests(
    generator: &Launcher,
    url: &str,
    args: &[&str],
    header: Option<&str>,
    n: u64,
) -> anyhow::Result<()> {
    let mut cmd = generator.prefix();
    cmd.args(["h2load", "-t1"]).args(args).arg(format!("-n{n}"));
    if let Some(h) = header {
        cmd.args(["-H", h]);
    }
    cmd.arg(url);
    crate::provenance::command(&cmd);
    let out = cmd.output().context("running h2load")?;
    let text = String::from_utf8_lossy(&out.stdout);
    if !out.status.success() || !text.contains(&format!("{n} succeeded")) {
        bail!("h2load -n{n} did not succeed: {text}");
    }
    Ok(())
}

/// The instructions `server` executed since its counters were zeroed (all threads).
fn instructions(server: &Server) -> anyhow::Result<u64> {
    let text = control(server, &["-e", "Ir"])?;
    let total = parse_totals(&text).with_context(|| format!("callgrind_control said: {text}"))?;
    Ok(total)
}

/// The sum of the per-thread lines (`Th 1  88,692,803`) of `callgrind_control -e Ir`.
fn parse_totals(text: &str) -> Option<u64> {
    let counts: Vec<u64> = text
        .lines()
        .filter_map(|l| l.trim().strip_prefix("Th "))
        .filter_map(|l| l.split_whitespace().nth(1))
        .filter_map(|n| n.replace(',', "").parse().ok())
        .collect();
    (!counts.is_empty()).then(|| counts.iter().sum())
}

fn control(server: &Server, args: &[&str]) -> anyhow::Result<String> {
    let out = Command::new("callgrind_control")
        .args(args)
        .arg(server.pid().to_string())
        .output()
        .context("running callgrind_control")?;
    if !out.status.success() {
        bail!(
            "callgrind_control {args:?} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn totals_add_up_the_threads() {
        let text = "PID 21875: /bin/x run\n\n  Totals:        Ir \n   Th 1  88,692,803 \n   Th 2  1,000 \n";
        assert_eq!(parse_totals(text), Some(88_693_803));
        assert_eq!(parse_totals("PID 1: x\n  OK.\n"), None);
    }
}
