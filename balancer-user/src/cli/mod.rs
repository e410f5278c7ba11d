//! Command-line parsing and dispatch: one module per command group.

mod directory;
mod xdp;

use clap::{Parser, Subcommand};
use tracing_subscriber::EnvFilter;

/// Edge load balancer for Client Access front ends: XDP affinity steering (L4).
#[derive(Debug, Parser)]
#[command(name = "balancer", version)]
pub struct Args {
    /// Log as JSON lines instead of text (filter with RUST_LOG, default "info").
    #[arg(long, global = true)]
    pub log_json: bool,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// The L4 data plane: attach, detach, node health, owners, counters.
    #[command(subcommand)]
    Xdp(xdp::XdpCommand),
    /// The mailbox directory (R6): import, add, remove, lookup, list.
    Directory(directory::DirectoryArgs),
}

pub fn init_tracing(json: bool) {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    if json {
        builder.json().init();
    } else {
        builder.init();
    }
}

pub fn run(args: Args) -> anyhow::Result<()> {
    match args.command {
        Command::Xdp(cmd) => xdp::run(cmd),
        Command::Directory(args) => directory::run(args),
    }
}
