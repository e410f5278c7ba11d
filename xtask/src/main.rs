//! `cargo xtask`: the project's commands. Each lives in its own module; this file only
//! parses and dispatches.
//!
//! - `build`: install what the eBPF build needs on a fresh machine, then build everything.
//! - `test`: formatting and clippy, then the whole test suite, privileged tests included (CI
//!   runs this as root).
//! - `lint`: the lint gate of `test` alone.
//! - `demo`: the Contoso lab (every node running `balancer run`), checked case by case.
//! - `lab up|down|status`: the same lab, kept running to explore.
//! - `bench`: side-by-side measurements (`--quick` for CI).

mod bench;
mod build;
mod demo;
mod lint;
mod pgo;
mod setup;
mod test;

use clap::{Parser, Subcommand};

#[derive(Debug, Parser)]
#[command(name = "cargo xtask")]
struct Args {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Install toolchain parts (rust-src, bpf-linker) if missing, then build the XDP object
    /// and the `balancer` binary.
    Build {
        #[arg(long)]
        release: bool,
        /// With --release: build the `balancer` binary with profile-guided optimisation (an
        /// instrumented build carries the L7 bench's loads first; needs root), into
        /// `target/pgo/optimised/release/balancer`.
        #[arg(long, requires = "release")]
        pgo: bool,
    },
    /// Run every test: the lint gate, then unit, BPF_PROG_TEST_RUN fixtures and
    /// network-namespace tests (needs root).
    Test,
    /// The lint gate alone: rustfmt, clippy with warnings as errors, clippy on the eBPF crate.
    Lint,
    /// Build, bring the Contoso lab up in network namespaces, send a request per case of
    /// MISSION.md, fail nodes, check every row, take it down.
    Demo,
    /// The Contoso lab of the demo, kept running: `up`, `down`, `status`.
    Lab {
        #[arg(value_parser = ["up", "down", "status"])]
        action: String,
    },
    /// Benchmarks, side by side with peers, reported as ratios.
    Bench {
        /// A short run (CI): the harness runs end to end, figures are not meaningful.
        #[arg(long)]
        quick: bool,
        /// Run the L7 section's router with `balancer run --busy-poll WINDOW` (`200us`).
        #[arg(long, value_name = "WINDOW")]
        busy_poll: Option<String>,
    },
}

fn main() -> anyhow::Result<()> {
    match Args::parse().command {
        Command::Build { release, pgo } => build::run(release, pgo),
        Command::Test => test::run(),
        Command::Lint => lint::run(&setup::toolchain()?),
        Command::Demo => demo::run(),
        Command::Lab { action } => demo::lab(&action),
        Command::Bench { quick, busy_poll } => bench::run(quick, busy_poll),
    }
}
