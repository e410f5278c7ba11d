//! Command-line parsing and dispatch: one module per command group.

mod directory;
mod status;
mod xdp;

use anyhow::Context as _;
use balancer_user::{busy_poll::BusyPoll, config::Config};
use clap::{Parser, Subcommand};
use tracing_subscriber::EnvFilter;

/// Edge load balancer for Client Access front ends: XDP affinity steering (L4) and the
/// Client Access router (L7).
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
    /// The L4 data plane: attach, sync, detach, node health, owners.
    #[command(subcommand)]
    Xdp(xdp::XdpCommand),
    /// Run this node: attach the data plane, serve the router, check the upstreams; SIGHUP or
    /// a changed config file reloads, SIGTERM drains and exits (steering continues), and a new
    /// `balancer run` takes the listeners over without a gap.
    Run {
        #[arg(long)]
        config: std::path::PathBuf,
        /// Join a running array (no clients until marked up on every node).
        #[arg(long)]
        join: bool,
        /// Threads serving traffic (default: one per core). With 1, everything runs on one
        /// thread with no cross-thread scheduling, as one nginx worker or one HAProxy thread.
        #[arg(long, env = "BALANCER_WORKERS", value_parser = clap::value_parser!(u16).range(1..))]
        workers: Option<u16>,
        /// After each wake-up, keep polling the sockets until this long (`200us`) has gone by
        /// with nothing to do, instead of sleeping at once: spends idle CPU to spare a virtual
        /// machine's costly wake-ups (see the README). Off by default.
        #[arg(long, env = "BALANCER_BUSY_POLL", value_parser = humantime::parse_duration)]
        busy_poll: Option<std::time::Duration>,
    },
    /// Check a config file; every error names the field and says what is wrong.
    CheckConfig { file: std::path::PathBuf },
    /// The mailbox directory (R6): import, add, remove, lookup, list.
    Directory(directory::DirectoryArgs),
    /// The node at a glance: the array (each node's state and share of the table), the VIPs,
    /// the directory's size, the router (running, connections open, totals).
    Status {
        #[arg(long)]
        config: std::path::PathBuf,
    },
    /// Counters per VIP, per node and of the router; `--watch` prints rates every interval.
    Stats {
        #[arg(long)]
        config: std::path::PathBuf,
        /// Print rates per second every interval (`1s`, `500ms`) until interrupted.
        #[arg(long, value_parser = humantime::parse_duration, num_args = 0..=1, default_missing_value = "1s")]
        watch: Option<std::time::Duration>,
    },
    /// Detach the XDP program from every interface and remove the pinned maps and links.
    Detach {
        #[arg(long)]
        config: std::path::PathBuf,
    },
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

/// The runtime of `balancer run`: one thread for one worker, else a thread per worker (or per
/// core); with `busy_poll`, a spinning task per thread ([`BusyPoll`]).
fn runtime(
    workers: Option<u16>,
    busy_poll: Option<std::time::Duration>,
) -> std::io::Result<tokio::runtime::Runtime> {
    let mut builder = match workers {
        Some(1) => tokio::runtime::Builder::new_current_thread(),
        Some(n) => {
            let mut builder = tokio::runtime::Builder::new_multi_thread();
            builder.worker_threads(n.into());
            builder
        }
        None => tokio::runtime::Builder::new_multi_thread(),
    };
    let busy_poll = busy_poll.map(|window| BusyPoll::install(&mut builder, window));
    let runtime = builder.enable_all().build()?;
    if let Some(busy_poll) = busy_poll {
        tracing::info!(window = ?busy_poll.window(), "busy polling after each wake-up");
        for _ in 0..runtime.metrics().num_workers() {
            runtime.spawn(busy_poll.clone().run());
        }
    }
    Ok(runtime)
}

pub fn run(args: Args) -> anyhow::Result<()> {
    match args.command {
        Command::Xdp(cmd) => xdp::run(cmd),
        Command::Directory(args) => directory::run(args),
        Command::Status { config } => status::status(&Config::load(&config)?),
        Command::Stats { config, watch } => status::stats(&Config::load(&config)?, watch),
        Command::Detach { config } => xdp::run(xdp::XdpCommand::Detach { config }),
        Command::Run {
            config,
            join,
            workers,
            busy_poll,
        } => runtime(workers, busy_poll)?.block_on(balancer_user::node::run(
            balancer_user::node::RunOptions { config, join },
        )),
        Command::CheckConfig { file } => {
            let config = Config::load(&file)?;
            if config.router.is_some() {
                config.proxy_config()?;
                balancer_user::router::tls::CertStore::load(&config.cert_specs()?)?;
            }
            if let Some(source) = &config.directory {
                let records =
                    balancer_user::router::directory::file::read(&source.file, source.format)
                        .context("directory.file")?;
                println!("{}: {} mailboxes", source.file.display(), records.len());
            }
            println!("{}: ok", file.display());
            Ok(())
        }
    }
}
