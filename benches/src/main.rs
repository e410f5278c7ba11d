//! `cargo xtask bench`: measurements of the balancer next to baselines and peers measured in
//! the same run, reported as ratios in `target/bench/results.json` and `target/bench/report.md`.
//!
//! Sections: [`l4`] (per-packet cost of each XDP path against a minimal XDP program),
//! [`tables`] (Maglev build and publish), [`directory`] (lookups with a million mailboxes) and
//! [`l7`] (HTTPS through the router next to nginx and HAProxy).

mod directory;
mod l4;
mod l7;
mod report;
mod tables;

use clap::Parser;
use std::path::PathBuf;

#[derive(Debug, Parser)]
struct Args {
    /// A short run: the harness goes end to end (CI), the figures are not meaningful.
    #[arg(long)]
    quick: bool,
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let mut results = report::Results {
        quick: args.quick,
        machine: report::Machine::read(),
        command: format!(
            "cargo xtask bench{}",
            if args.quick { " --quick" } else { "" }
        ),
        ..Default::default()
    };
    eprintln!("bench: L4 paths (BPF_PROG_TEST_RUN) ...");
    l4::run(&mut results, args.quick)?;
    eprintln!("bench: Maglev tables ...");
    tables::run(&mut results, args.quick)?;
    eprintln!("bench: directory lookups ...");
    directory::run(&mut results, args.quick)?;
    eprintln!("bench: L7 (HTTPS through the router, nginx, HAProxy) ...");
    let balancer = std::env::current_exe()?
        .parent()
        .map(|d| d.join("balancer"))
        .filter(|b| b.exists())
        .ok_or_else(|| anyhow::anyhow!("no `balancer` binary beside the bench: build it with `cargo build --release -p balancer-user`"))?;
    l7::run(&mut results, args.quick, &balancer)?;
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
