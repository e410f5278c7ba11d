//! `balancer directory ...`: the mailbox directory (R6) in the pinned map the router reads.
//! Every change is planned whole (and refused whole) before the first write, and reported.

use anyhow::Context as _;
use balancer_common::maps::DEFAULT_PIN_DIR;
use balancer_user::config::Config;
use balancer_user::router::directory::{
    file::plan_import,
    plan::{self, Mode},
    records::{self, Format},
    NameEntry, PinnedDirectory,
};
use clap::Subcommand;
use std::path::PathBuf;

#[derive(Debug, clap::Args)]
pub struct DirectoryArgs {
    /// Find the pinned map from this config's `dataplane.pin_dir`.
    #[arg(long, global = true)]
    config: Option<PathBuf>,
    /// The bpffs directory the data plane pinned its maps in (default: from `--config`, or
    /// /sys/fs/bpf/balancer).
    #[arg(long, global = true)]
    pin_dir: Option<PathBuf>,
    #[command(subcommand)]
    command: DirectoryCommand,
}

#[derive(Debug, Subcommand)]
enum DirectoryCommand {
    /// Add or replace the mailboxes of a CSV (`address,aliases,site,server,version`, aliases
    /// separated by `;`) or JSON-lines file; the whole file is checked before any write.
    Import {
        file: PathBuf,
        /// Default: detected from the first character.
        #[arg(long, value_enum)]
        format: Option<Format>,
        /// Remove every mailbox that is not in the file.
        #[arg(long)]
        replace: bool,
    },
    /// Add or replace one mailbox.
    Add {
        address: String,
        #[arg(long)]
        site: String,
        #[arg(long)]
        server: String,
        /// 2003, 2007, 2007sp1 or 2010.
        #[arg(long)]
        version: String,
        /// Another name of the mailbox (repeat for more).
        #[arg(long = "alias")]
        aliases: Vec<String>,
    },
    /// Remove a mailbox, given its address or one of its aliases, with all its names.
    Remove { name: String },
    /// The mailbox a name (address or alias) resolves to.
    Lookup { name: String },
    /// Every name, with its mailbox.
    List {
        /// JSON lines instead of a table.
        #[arg(long)]
        json: bool,
    },
}

pub fn run(args: DirectoryArgs) -> anyhow::Result<()> {
    let pin_dir = match (args.pin_dir, &args.config) {
        (Some(dir), _) => dir,
        (None, Some(config)) => Config::load(config)?.dataplane.pin_dir,
        (None, None) => PathBuf::from(DEFAULT_PIN_DIR),
    };
    let mut directory = PinnedDirectory::open(&pin_dir)?;
    match args.command {
        DirectoryCommand::Import {
            file,
            format,
            replace,
        } => {
            let mode = if replace { Mode::Replace } else { Mode::Merge };
            let import = plan_import(&file, format, &directory, mode)?;
            directory.apply(&import.plan)?;
            println!(
                "{}: {} mailboxes; {}",
                file.display(),
                import.mailboxes,
                import.plan.summary
            );
        }
        DirectoryCommand::Add {
            address,
            site,
            server,
            version,
            aliases,
        } => {
            let record = records::validate(
                0,
                &address,
                aliases.iter().map(String::as_str),
                &site,
                &server,
                &version,
            )
            .map_err(|e| anyhow::anyhow!("{}: {}", e.field, e.reason))?;
            let plan = plan::import(
                &directory.entries()?,
                std::slice::from_ref(&record),
                Mode::Merge,
                directory.capacity(),
            )?;
            directory.apply(&plan)?;
            println!("{}: {}", record.address, plan.summary);
        }
        DirectoryCommand::Remove { name } => {
            let name = normalize(&name)?;
            let plan = plan::remove(&directory.entries()?, &name)
                .with_context(|| format!("no mailbox has the name {name}"))?;
            directory.apply(&plan)?;
            println!("removed {}", plan.deletes.join(", "));
        }
        DirectoryCommand::Lookup { name } => {
            let name = normalize(&name)?;
            let entry = directory
                .get(&name)?
                .with_context(|| format!("no mailbox has the name {name}"))?;
            println!("{}", describe(&name, &entry));
        }
        DirectoryCommand::List { json } => {
            for (name, entry) in directory.entries()? {
                if json {
                    println!("{}", json_line(&name, &entry));
                } else {
                    println!("{}", describe(&name, &entry));
                }
            }
        }
    }
    Ok(())
}

/// The name as the router looks it up (the identity rules' normalization).
fn normalize(name: &str) -> anyhow::Result<String> {
    balancer_user::router::identity::normalize(name).with_context(|| {
        format!("{name:?} is not a name (empty, too long or with control characters)")
    })
}

fn describe(name: &str, entry: &NameEntry) -> String {
    let m = &entry.mailbox;
    let kind = if entry.alias {
        format!("alias of {}", m.address)
    } else {
        "address".to_string()
    };
    format!(
        "{name}\t{kind}\tsite={}\tserver={}\tversion={}",
        m.site,
        m.server,
        m.version.key()
    )
}

fn json_line(name: &str, entry: &NameEntry) -> serde_json::Value {
    let m = &entry.mailbox;
    serde_json::json!({
        "name": name,
        "alias": entry.alias,
        "address": m.address,
        "site": m.site,
        "server": m.server,
        "version": m.version.key(),
    })
}
