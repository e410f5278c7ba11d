//! `cargo xtask bench`: measurements of the balancer next to baselines and peers measured in
//! the same run, reported as ratios in `target/bench/results.json` and `target/bench/report.md`.
//!
//! Sections: [`l4`] (per-packet cost of each XDP path against a minimal XDP program),
//! [`tables`] (Maglev build and publish), [`directory`] (lookups with a million mailboxes),
//! [`veth`] (L4 throughput on a veth pair next to nftables and HAProxy) and [`l7`] (HTTPS
//! through the router next to nginx and HAProxy). `--only` runs some of them.

mod directory;
mod l4;
mod l7;
mod provenance;
mod report;
mod servers;
mod steal;
mod tables;
mod threads;
mod veth;
mod wakeups;

use clap::{Parser, ValueEnum};
use std::path::PathBuf;

#[derive(Debug, Parser)]
struct Args {
    /// A short run: the harness goes end to end (CI), the figures are not meaningful.
    #[arg(long)]
    quick: bool,
    /// Run only these sections (repeatable, or a comma list: `--only l4,veth`); all by default.
    #[arg(long, value_enum, value_delimiter = ',')]
    only: Vec<Section>,
    /// Instead of measuring, run the training workload of the router's profile-guided build
    /// through this instrumented `balancer` (`cargo xtask build --release --pgo` does).
    #[arg(long, value_name = "BALANCER")]
    train: Option<PathBuf>,
    /// The `balancer` binary of the L7 section; by default the one beside this program.
    #[arg(long, value_name = "PATH")]
    balancer: Option<PathBuf>,
    /// Run the router of the L7 section with `balancer run --busy-poll WINDOW` (`200us`); the
    /// peers keep their defaults.
    #[arg(long, value_name = "WINDOW", value_parser = humantime::parse_duration)]
    busy_poll: Option<std::time::Duration>,
}

/// A section of the bench, in the order they run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Section {
    L4,
    Tables,
    Directory,
    Veth,
    L7,
}

impl Args {
    fn runs(&self, section: Section) -> bool {
        self.only.is_empty() || self.only.contains(&section)
    }

    /// The command that reproduces this run (`cargo xtask bench` has no `--only`: a run of
    /// some sections names the bench binary itself).
    fn command(&self) -> String {
        let mut command = String::from(if self.only.is_empty() {
            "cargo xtask bench"
        } else {
            "target/release/bench"
        });
        if self.quick {
            command.push_str(" --quick");
        }
        for section in &self.only {
            let name = section.to_possible_value().expect("no skipped variants");
            command.push_str(&format!(" --only {}", name.get_name()));
        }
        if let (false, Some(balancer)) = (self.only.is_empty(), &self.balancer) {
            command.push_str(&format!(" --balancer {}", balancer.display()));
        }
        if let Some(window) = self.busy_poll {
            command.push_str(&format!(
                " --busy-poll {}",
                humantime::format_duration(window)
            ));
        }
        command
    }
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    if let Some(balancer) = &args.train {
        eprintln!("bench: training run of {} ...", balancer.display());
        return l7::train(balancer);
    }
    let mut results = report::Results {
        quick: args.quick,
        machine: report::Machine::read(),
        command: args.command(),
        tools: provenance::versions(),
        ..Default::default()
    };
    if args.runs(Section::L4) {
        eprintln!("bench: L4 paths (BPF_PROG_TEST_RUN) ...");
        l4::run(&mut results, args.quick)?;
    }
    if args.runs(Section::Tables) {
        eprintln!("bench: Maglev tables ...");
        tables::run(&mut results, args.quick)?;
    }
    if args.runs(Section::Directory) {
        eprintln!("bench: directory lookups ...");
        directory::run(&mut results, args.quick)?;
    }
    if args.runs(Section::Veth) {
        eprintln!("bench: L4 throughput on veth (XDP, nftables, HAProxy) ...");
        veth::run(&mut results, args.quick)?;
    }
    if args.runs(Section::L7) {
        eprintln!("bench: L7 (HTTPS through the router, nginx, HAProxy) ...");
        let balancer = match &args.balancer {
            Some(given) if given.exists() => given.clone(),
            Some(given) => anyhow::bail!("--balancer {}: no such file", given.display()),
            None => std::env::current_exe()?
                .parent()
                .map(|d| d.join("balancer"))
                .filter(|b| b.exists())
                .ok_or_else(|| anyhow::anyhow!("no `balancer` binary beside the bench: build it with `cargo build --release -p balancer-user`, or name one with --balancer"))?,
        };
        l7::run(&mut results, args.quick, &balancer, args.busy_poll)?;
    }
    let dir = target_dir().join("bench");
    results.write(&dir)?;
    println!("{}", results.markdown());
    eprintln!(
        "bench: wrote {} and {}",
        dir.join("results.json").display(),
        dir.join("report.md").display()
    );
    Ok(())
}

/// The workspace's target directory (CARGO_TARGET_DIR if set).
fn target_dir() -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target"))
}
