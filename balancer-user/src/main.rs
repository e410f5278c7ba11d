//! `balancer`: the command an operator runs on an edge node.
//!
//! Today it drives the L4 data plane (`balancer xdp ...`); each subcommand lives in [`cli`].
use clap::Parser;

mod cli;

fn main() -> std::process::ExitCode {
    let args = cli::Args::parse();
    cli::init_tracing(args.log_json);
    match cli::run(args) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("balancer: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
