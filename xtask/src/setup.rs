//! Installs, once and cached, what the build and the tests need on a fresh machine, saying
//! what it does: the nightly's rust-src, bpf-linker built against the nightly's own LLVM,
//! Debian packages, and a mounted bpffs.

use anyhow::{bail, Context as _};
use std::{
    path::{Path, PathBuf},
    process::Command,
};

/// Tool cache: `$XDG_CACHE_HOME/balancer-xtask` or `~/.cache/balancer-xtask`.
fn cache_dir() -> anyhow::Result<PathBuf> {
    let base = match std::env::var_os("XDG_CACHE_HOME") {
        Some(dir) => PathBuf::from(dir),
        None => PathBuf::from(std::env::var_os("HOME").context("HOME is not set")?).join(".cache"),
    };
    Ok(base.join("balancer-xtask"))
}

pub fn say(what: &str) {
    eprintln!("xtask: {what}");
}

/// Runs a command, failing with a message that names it.
pub fn run(cmd: &mut Command) -> anyhow::Result<()> {
    let status = cmd.status().with_context(|| format!("starting {cmd:?}"))?;
    if !status.success() {
        bail!("{cmd:?} failed ({status})");
    }
    Ok(())
}

pub fn output(cmd: &mut Command) -> anyhow::Result<String> {
    let out = cmd.output().with_context(|| format!("starting {cmd:?}"))?;
    if !out.status.success() {
        bail!(
            "{cmd:?} failed: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// The nightly toolchain's `rustc -vV`, or a clear error.
fn nightly_version() -> anyhow::Result<String> {
    output(Command::new("rustup").args(["run", "nightly", "rustc", "-vV"])).context(
        "the eBPF program is built with a nightly Rust toolchain, and none is installed: \
         run `rustup toolchain install nightly`",
    )
}

fn field<'a>(version: &'a str, key: &str) -> anyhow::Result<&'a str> {
    version
        .lines()
        .find_map(|l| l.strip_prefix(key))
        .map(str::trim)
        .with_context(|| format!("no {key:?} in `rustc +nightly -vV`"))
}

/// Makes sure rust-src and a matching bpf-linker are installed; returns the directory to put
/// first on PATH for builds.
pub fn toolchain() -> anyhow::Result<PathBuf> {
    let version = nightly_version()?;
    // The eBPF build compiles core from source.
    rustup_components("nightly", &["rust-src"])?;
    let tools = cache_dir()?.join("tools");
    let bin = tools.join("bin");
    let stamp_path = tools.join("bpf-linker.stamp");
    let stamp = format!("{}\n", field(&version, "commit-hash:")?);
    let current = std::fs::read_to_string(&stamp_path).unwrap_or_default();
    if current != stamp || !bin.join("bpf-linker").exists() {
        install_bpf_linker(&version, &tools)?;
        std::fs::write(&stamp_path, stamp)?;
    }
    Ok(bin)
}

/// bpf-linker's default LLVM may not match the nightly's: build it against the nightly's own
/// libLLVM (same major by construction), with an rpath so that it runs without
/// LD_LIBRARY_PATH.
fn install_bpf_linker(version: &str, tools: &Path) -> anyhow::Result<()> {
    let llvm = field(version, "LLVM version:")?;
    let major = llvm.split('.').next().unwrap_or(llvm);
    let sysroot =
        output(Command::new("rustup").args(["run", "nightly", "rustc", "--print", "sysroot"]))?;
    let lib = PathBuf::from(sysroot.trim()).join("lib");
    let libllvm = std::fs::read_dir(&lib)?
        .filter_map(Result::ok)
        .map(|e| e.path())
        .find(|p| {
            p.file_name()
                .is_some_and(|n| n.to_string_lossy().starts_with("libLLVM.so"))
        })
        .with_context(|| {
            format!(
                "no libLLVM.so in {}: is the nightly toolchain complete?",
                lib.display()
            )
        })?;
    let prefix = tools.join("llvm-prefix");
    std::fs::create_dir_all(prefix.join("lib"))?;
    let link = prefix.join("lib/libLLVM.so");
    let _ = std::fs::remove_file(&link);
    std::os::unix::fs::symlink(&libllvm, &link)?;
    say(&format!(
        "building bpf-linker against the nightly's LLVM {major} (about a minute, once)"
    ));
    run(Command::new("rustup")
        .args([
            "run",
            "nightly",
            "cargo",
            "install",
            "--locked",
            "--force",
            "bpf-linker",
        ])
        .args([
            "--no-default-features",
            "--features",
            &format!("llvm-{major}"),
        ])
        .arg("--root")
        .arg(tools)
        .env("LLVM_PREFIX", &prefix)
        .env(
            "RUSTFLAGS",
            format!("-C link-arg=-Wl,-rpath,{}", lib.display()),
        ))
}

fn is_root() -> bool {
    nix::unistd::geteuid().is_root()
}

/// Installs missing Debian packages (needs root).
pub fn debian_packages(packages: &[&str]) -> anyhow::Result<()> {
    let missing: Vec<&str> = packages
        .iter()
        .copied()
        .filter(|p| {
            let status = Command::new("dpkg-query").args(["-W", "-f=${Status}", p]).output();
            !matches!(status, Ok(o) if String::from_utf8_lossy(&o.stdout).contains("install ok installed"))
        })
        .collect();
    if missing.is_empty() {
        return Ok(());
    }
    if !is_root() {
        bail!(
            "missing Debian packages {missing:?}: install them with `sudo apt-get install {}`",
            missing.join(" ")
        );
    }
    say(&format!(
        "installing Debian packages: {}",
        missing.join(" ")
    ));
    run(Command::new("apt-get").args(["update", "-qq"]))?;
    run(Command::new("apt-get")
        .args(["install", "-y", "-qq", "--no-install-recommends"])
        .args(&missing)
        .env("DEBIAN_FRONTEND", "noninteractive"))
}

/// Privileged runs need root and a bpffs at /sys/fs/bpf (mounted here if missing).
pub fn privileged() -> anyhow::Result<()> {
    if !is_root() {
        bail!("this command attaches XDP programs and creates network namespaces: run it as root");
    }
    let mounts = std::fs::read_to_string("/proc/self/mounts")?;
    let mounted = mounts.lines().any(|l| {
        let f: Vec<&str> = l.split_whitespace().collect();
        f.get(1) == Some(&"/sys/fs/bpf") && f.get(2) == Some(&"bpf")
    });
    if !mounted {
        say("mounting bpffs at /sys/fs/bpf");
        run(Command::new("mount").args(["-t", "bpf", "bpf", "/sys/fs/bpf"]))?;
    }
    Ok(())
}

/// Packages the tests, the demo and the README's inspection commands use.
pub const TEST_PACKAGES: &[&str] = &[
    "bpftool",
    "curl",
    "ethtool",
    "iproute2",
    "procps",
    "util-linux",
];

/// The peers and load generators of `cargo xtask bench`, valgrind (instruction counts), perf
/// (the proxies' system calls traced for their dwell times) and openssl (the cipher suite
/// each proxy negotiates).
pub const BENCH_PACKAGES: &[&str] = &[
    "wrk",
    "nghttp2-client",
    "nginx",
    "haproxy",
    "nftables",
    "valgrind",
    "linux-perf",
    "openssl",
];

/// Installs the `components` of `toolchain` that are missing.
pub fn rustup_components(toolchain: &str, components: &[&str]) -> anyhow::Result<()> {
    let installed = output(Command::new("rustup").args([
        "component",
        "list",
        "--toolchain",
        toolchain,
        "--installed",
    ]))?;
    for component in components {
        if !installed.lines().any(|l| l.starts_with(component)) {
            say(&format!(
                "installing {component} for the {toolchain} toolchain"
            ));
            run(Command::new("rustup").args([
                "component",
                "add",
                component,
                "--toolchain",
                toolchain,
            ]))?;
        }
    }
    Ok(())
}

/// `cargo` with the tool directory first on PATH (bpf-linker for balancer-user's build script).
pub fn cargo(tools: &Path) -> anyhow::Result<Command> {
    let mut cmd = Command::new(std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into()));
    cmd.env("PATH", path_with(tools)?);
    Ok(cmd)
}

/// The workspace's target directory: `cargo xtask` runs this program from `<target>/debug/`.
pub fn target_dir() -> anyhow::Result<PathBuf> {
    let exe = std::env::current_exe()?;
    exe.parent()
        .and_then(Path::parent)
        .map(Path::to_path_buf)
        .ok_or_else(|| anyhow::anyhow!("no target directory above {}", exe.display()))
}

/// PATH with the tool directory first (the eBPF crates' build scripts look for bpf-linker).
pub fn path_with(tools: &Path) -> anyhow::Result<std::ffi::OsString> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    let mut paths = vec![tools.to_path_buf()];
    paths.extend(std::env::split_paths(&path));
    Ok(std::env::join_paths(paths)?)
}
