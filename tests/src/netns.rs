//! Network namespaces for tests: created with `ip netns add`, removed (with every interface
//! inside) when the handle drops, entered by one thread at a time with `setns`.

use anyhow::{bail, Context as _};
use std::{
    fs::File,
    process::{Command, Output},
    sync::atomic::{AtomicU32, Ordering},
};

static NEXT: AtomicU32 = AtomicU32::new(0);

/// A network namespace named `<prefix>-<pid>-<n>`, deleted on drop; or a named one that
/// outlives its handle ([`Netns::persistent`]).
pub struct Netns {
    name: String,
    keep: bool,
}

impl Netns {
    pub fn new(prefix: &str) -> anyhow::Result<Self> {
        let name = format!(
            "{prefix}-{}-{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        );
        Self::add(name, false)
    }

    /// A namespace with exactly this name, left in place when the handle drops (a lab that
    /// stays up); `ip netns del` removes it.
    pub fn persistent(name: &str) -> anyhow::Result<Self> {
        Self::add(name.to_string(), true)
    }

    fn add(name: String, keep: bool) -> anyhow::Result<Self> {
        run(Command::new("ip").args(["netns", "add", &name]))?;
        let ns = Self { name, keep };
        ns.ip("link set lo up")?;
        Ok(ns)
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// Runs `ip -n <ns> <args>` (args split on whitespace).
    pub fn ip(&self, args: &str) -> anyhow::Result<String> {
        let out = run(Command::new("ip")
            .args(["-n", &self.name])
            .args(args.split_whitespace()))?;
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    }

    /// Sets a sysctl inside the namespace.
    pub fn sysctl(&self, key: &str, value: &str) -> anyhow::Result<()> {
        run(self
            .command("sysctl")
            .args(["-qw", &format!("{key}={value}")]))?;
        Ok(())
    }

    /// A command that runs in this namespace's network stack only (`nsenter --net`), so it
    /// still sees the host's mounts, bpffs included.
    pub fn command(&self, program: &str) -> Command {
        let mut cmd = Command::new("nsenter");
        cmd.arg(format!("--net=/run/netns/{}", self.name))
            .arg("--")
            .arg(program);
        cmd
    }

    /// Runs `f` on a thread that has entered this namespace.
    pub fn run_in<T: Send>(&self, f: impl FnOnce() -> T + Send) -> anyhow::Result<T> {
        let file = File::open(format!("/run/netns/{}", self.name))?;
        std::thread::scope(|s| {
            s.spawn(move || {
                nix::sched::setns(&file, nix::sched::CloneFlags::CLONE_NEWNET).context("setns")?;
                Ok(f())
            })
            .join()
            .map_err(|_| anyhow::anyhow!("thread in netns {} panicked", self.name))?
        })
    }

    /// The index of an interface in this namespace.
    pub fn ifindex(&self, interface: &str) -> anyhow::Result<u32> {
        let out = self.ip(&format!("-j link show dev {interface}"))?;
        let links: serde_json::Value = serde_json::from_str(&out)?;
        links[0]["ifindex"]
            .as_u64()
            .map(|i| i as u32)
            .context("no ifindex in `ip -j link` output")
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        if self.keep {
            return;
        }
        // Deleting the namespace removes its interfaces (and the veth peers elsewhere).
        let _ = Command::new("ip")
            .args(["netns", "del", &self.name])
            .output();
    }
}

/// A veth pair from `a`'s `a_if` to `b`'s `b_if`, both up.
pub fn veth(a: &Netns, a_if: &str, b: &Netns, b_if: &str) -> anyhow::Result<()> {
    run(Command::new("ip").args([
        "link",
        "add",
        a_if,
        "netns",
        a.name(),
        "type",
        "veth",
        "peer",
        "name",
        b_if,
        "netns",
        b.name(),
    ]))?;
    a.ip(&format!("link set {a_if} up"))?;
    b.ip(&format!("link set {b_if} up"))?;
    Ok(())
}

/// Runs a command, failing with its stderr if it fails.
pub fn run(cmd: &mut Command) -> anyhow::Result<Output> {
    let out = cmd.output().with_context(|| format!("running {cmd:?}"))?;
    if !out.status.success() {
        bail!(
            "{cmd:?} failed: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(out)
}

/// Starts `cmd` with no standard input and both outputs in `<dir>/<name>.log`.
pub fn spawn_logged(
    cmd: &mut Command,
    dir: &std::path::Path,
    name: &str,
) -> anyhow::Result<std::process::Child> {
    use std::process::Stdio;
    let log = File::create(dir.join(format!("{name}.log")))?;
    cmd.stdin(Stdio::null())
        .stdout(log.try_clone()?)
        .stderr(log)
        .spawn()
        .with_context(|| format!("starting {name}"))
}
