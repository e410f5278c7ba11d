//! What a run used, for the report: the versions of the peers and load generators, the exact
//! command lines run (servers, load generators, nftables), and the configuration files they
//! were given. Sections record as they go; [`crate::report::Results::write`] takes it all.

use std::{
    collections::BTreeMap,
    path::Path,
    process::Command,
    sync::{Mutex, PoisonError},
};

#[derive(Default)]
struct Used {
    /// Command lines, shell-quoted, in the order first run.
    commands: Vec<String>,
    /// Configuration files by the path the commands name.
    files: BTreeMap<String, String>,
}

static USED: Mutex<Used> = Mutex::new(Used {
    commands: Vec::new(),
    files: BTreeMap::new(),
});

fn used() -> std::sync::MutexGuard<'static, Used> {
    USED.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Records `cmd`'s command line (once, however often it runs).
pub fn command(cmd: &Command) {
    let words = std::iter::once(cmd.get_program())
        .chain(cmd.get_args())
        .map(|w| w.to_string_lossy().into_owned())
        .collect::<Vec<_>>();
    let line =
        shlex::try_join(words.iter().map(String::as_str)).unwrap_or_else(|_| words.join(" "));
    let mut used = used();
    if !used.commands.contains(&line) {
        used.commands.push(line);
    }
}

/// Writes a configuration file and records it for the report.
pub fn write_config(path: &Path, content: &str) -> std::io::Result<()> {
    std::fs::write(path, content)?;
    record_config(&path.display().to_string(), content);
    Ok(())
}

/// Records a configuration given otherwise (on a command's standard input) under `name`.
pub fn record_config(name: &str, content: &str) {
    used().files.insert(name.to_string(), content.to_string());
}

/// The command lines and configuration files recorded so far.
pub fn take() -> (Vec<String>, BTreeMap<String, String>) {
    let mut used = used();
    (
        std::mem::take(&mut used.commands),
        std::mem::take(&mut used.files),
    )
}

/// The first line of each peer's and load generator's version (`not installed` if absent).
pub fn versions() -> BTreeMap<String, String> {
    let tools: [(&str, &[&str]); 6] = [
        ("nginx", &["-v"]),
        ("haproxy", &["-v"]),
        ("nft", &["--version"]),
        ("wrk", &["-v"]),
        ("h2load", &["--version"]),
        ("curl", &["--version"]),
    ];
    tools
        .iter()
        .map(|(tool, args)| {
            let version = Command::new(tool)
                .args(*args)
                .output()
                .ok()
                .and_then(|out| {
                    // nginx prints its version on stderr, wrk on stdout with a non-zero exit.
                    let text = [out.stdout, out.stderr].concat();
                    let line = String::from_utf8_lossy(&text)
                        .lines()
                        .next()?
                        .trim()
                        .to_string();
                    (!line.is_empty()).then_some(line)
                })
                .unwrap_or_else(|| "not installed".into());
            (tool.to_string(), version)
        })
        .collect()
}
