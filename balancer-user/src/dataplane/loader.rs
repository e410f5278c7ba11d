//! Loading the XDP object, attaching it to interfaces and detaching it.
//!
//! Maps are pinned by name under the pin directory as they are created; a later load finds
//! and reuses them, so counters, tables and the connection table survive a restart (R18).
//! Each attachment is a BPF link pinned at `<pin_dir>/links/<interface>`: it stays in force
//! with no process holding it, and attaching again replaces the program in the link
//! atomically (`bpf_link_update`) instead of detaching first.

use super::{bpffs, maps::DataplaneMaps, object::OBJECT};
use crate::config::XdpMode;
use anyhow::{bail, Context as _};
use aya::{
    programs::{links::FdLink, links::PinnedLink, Xdp, XdpMode as AyaXdpMode},
    Ebpf, EbpfLoader,
};
use balancer_common::{maps as names, node::RING_SLOTS};
use std::path::{Path, PathBuf};
use tracing::{info, warn};

/// What to load.
#[derive(Debug, Clone)]
pub struct LoadOptions {
    /// Pin the maps here (a directory on bpffs); `None` loads private, unpinned maps (tests).
    pub pin_dir: Option<PathBuf>,
    pub ring_size: u32,
    pub conn_table_entries: u32,
    /// Names the mailbox directory can hold (not preallocated).
    pub directory_entries: u32,
}

/// A loaded object: programs verified and loaded, maps created or adopted.
pub struct Loaded {
    pub ebpf: Ebpf,
    pub maps: DataplaneMaps,
    /// The maps were already pinned (an earlier `balancer` created them) and were reused.
    pub adopted: bool,
}

impl Loaded {
    /// The steering program.
    pub fn program(&mut self) -> &mut Xdp {
        program(&mut self.ebpf, names::PROGRAM)
    }

    /// The minimal XDP_PASS program (benchmark baseline, veth peers).
    pub fn pass_program(&mut self) -> &mut Xdp {
        program(&mut self.ebpf, names::PASS_PROGRAM)
    }
}

fn program<'a>(ebpf: &'a mut Ebpf, name: &str) -> &'a mut Xdp {
    ebpf.program_mut(name)
        .and_then(|p| p.try_into().ok())
        .unwrap_or_else(|| panic!("load() checked that the object has the XDP program {name}"))
}

/// Loads (and verifies) both programs and creates or adopts the maps.
pub fn load(opts: &LoadOptions) -> anyhow::Result<Loaded> {
    if let Some(dir) = &opts.pin_dir {
        bpffs::ensure_pin_dir(dir)?;
    }
    let ring_entries = RING_SLOTS * opts.ring_size;
    let pin_paths: Vec<(&str, PathBuf)> = match &opts.pin_dir {
        Some(dir) => names::ALL.iter().map(|n| (*n, dir.join(n))).collect(),
        None => Vec::new(),
    };
    let adopted = opts
        .pin_dir
        .as_ref()
        .is_some_and(|d| d.join(names::CONFIG).exists());
    let mut loader = EbpfLoader::new();
    loader
        .map_max_entries(names::RING, ring_entries)
        .map_max_entries(names::CONN_TABLE, opts.conn_table_entries)
        .map_max_entries(names::DIRECTORY, opts.directory_entries);
    for (name, path) in &pin_paths {
        loader.map_pin_path(name, path.as_path());
    }
    let mut ebpf = loader
        .load(OBJECT)
        .map_err(explain_permission)
        .context("loading the XDP object")?;
    for name in names::ALL {
        if ebpf.map(name).is_none() {
            bail!(
                "the XDP object declares no map {name}: balancer-common and balancer-ebpf disagree"
            );
        }
    }
    for name in [names::PROGRAM, names::PASS_PROGRAM] {
        let prog: &mut Xdp = ebpf
            .program_mut(name)
            .with_context(|| format!("the XDP object has no program {name}"))?
            .try_into()?;
        prog.load()
            .map_err(explain_permission)
            .with_context(|| format!("verifying and loading {name}"))?;
    }
    let maps = DataplaneMaps::from_ebpf(&mut ebpf)?;
    if maps.ring.len() != ring_entries {
        bail!(
            "the pinned ring map holds {} entries, a ring size of {} needs {ring_entries}: \
             detach (`balancer xdp detach`) to start afresh with the new size",
            maps.ring.len(),
            opts.ring_size
        );
    }
    Ok(Loaded {
        ebpf,
        maps,
        adopted,
    })
}

/// Maps permission errors to the fix.
fn explain_permission<E: std::error::Error + Send + Sync + 'static>(e: E) -> anyhow::Error {
    let text = format!("{e:?}");
    let err = anyhow::Error::new(e);
    // EPERM is a missing privilege; the verifier's EACCES ("Permission denied") is not.
    if text.contains("Operation not permitted") || text.contains("os error 1)") {
        err.context("permission denied: loading XDP programs needs CAP_BPF, CAP_NET_ADMIN and CAP_SYS_ADMIN (run as root)")
    } else {
        err
    }
}

/// Mode an interface ended up in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AttachedMode {
    Native,
    Generic,
    /// An existing pinned attachment now runs the new program.
    Replaced,
}

fn link_path(pin_dir: &Path, interface: &str) -> PathBuf {
    pin_dir.join("links").join(interface)
}

/// Attaches the steering program to `interface` and pins the link. If a pinned link exists
/// (a previous `balancer` attached it), the program in it is replaced atomically.
pub fn attach(
    loaded: &mut Loaded,
    interface: &str,
    mode: XdpMode,
    pin_dir: &Path,
) -> anyhow::Result<AttachedMode> {
    let path = link_path(pin_dir, interface);
    let prog = loaded.program();
    if path.exists() {
        let pinned = PinnedLink::from_pin(&path)
            .with_context(|| format!("opening the pinned XDP link {}", path.display()))?;
        let link = aya::programs::xdp::XdpLink::try_from(FdLink::from(pinned))?;
        prog.attach_to_link(link)
            .with_context(|| format!("replacing the program attached to {interface}"))?;
        info!(interface, "replaced the XDP program in the pinned link");
        return Ok(AttachedMode::Replaced);
    }
    let (id, attached) = match mode {
        XdpMode::Native => (
            attach_mode(prog, interface, AyaXdpMode::Driver)?,
            AttachedMode::Native,
        ),
        XdpMode::Generic => (
            attach_mode(prog, interface, AyaXdpMode::Skb)?,
            AttachedMode::Generic,
        ),
        XdpMode::Auto => match attach_mode(prog, interface, AyaXdpMode::Driver) {
            Ok(id) => (id, AttachedMode::Native),
            Err(e) => {
                warn!(interface, error = %format!("{e:#}"), "native XDP unavailable, falling back to generic (slower)");
                (
                    attach_mode(prog, interface, AyaXdpMode::Skb)?,
                    AttachedMode::Generic,
                )
            }
        },
    };
    let link = prog.take_link(id)?;
    let fd_link = FdLink::try_from(link)
        .context("XDP attachment is not a BPF link (kernel older than 5.9?)")?;
    std::fs::create_dir_all(path.parent().expect("has parent"))?;
    fd_link
        .pin(&path)
        .with_context(|| format!("pinning the XDP link at {}", path.display()))?;
    info!(interface, mode = ?attached, "attached the XDP program");
    Ok(attached)
}

/// Attaches the XDP_PASS program to `interface` (native mode) and pins the link under
/// `pin_dir`, as [`attach`] does: for the veth peers of a lab that outlives its process (a
/// veth end receives the frames its peer sends with XDP_TX only if it runs an XDP program).
pub fn attach_pass(loaded: &mut Loaded, interface: &str, pin_dir: &Path) -> anyhow::Result<()> {
    let prog = loaded.pass_program();
    let id = attach_mode(prog, interface, AyaXdpMode::Driver)?;
    let link = FdLink::try_from(prog.take_link(id)?)
        .context("XDP attachment is not a BPF link (kernel older than 5.9?)")?;
    let path = link_path(pin_dir, interface);
    std::fs::create_dir_all(path.parent().expect("has parent"))?;
    link.pin(&path)
        .with_context(|| format!("pinning the XDP link at {}", path.display()))?;
    Ok(())
}

fn attach_mode(
    prog: &mut Xdp,
    interface: &str,
    mode: AyaXdpMode,
) -> anyhow::Result<aya::programs::xdp::XdpLinkId> {
    prog.attach(interface, mode).map_err(explain_permission).with_context(|| {
        format!("attaching XDP to {interface} in {mode:?} mode (does the interface exist in this network namespace? \
                 if the driver lacks native XDP, set dataplane.xdp_mode = \"generic\")")
    })
}

/// Detaches from every interface with a pinned link and removes the pins (maps included).
pub fn detach(pin_dir: &Path) -> anyhow::Result<Vec<String>> {
    let mut detached = Vec::new();
    let links = pin_dir.join("links");
    if links.exists() {
        for entry in std::fs::read_dir(&links)? {
            let path = entry?.path();
            let pinned = PinnedLink::from_pin(&path)
                .with_context(|| format!("opening {}", path.display()))?;
            // Unpinning drops the last reference: the kernel detaches the program.
            drop(
                pinned
                    .unpin()
                    .with_context(|| format!("unpinning {}", path.display()))?,
            );
            detached.push(
                path.file_name()
                    .unwrap_or_default()
                    .to_string_lossy()
                    .into_owned(),
            );
        }
        std::fs::remove_dir(&links)?;
    }
    for name in names::ALL {
        let path = pin_dir.join(name);
        if path.exists() {
            std::fs::remove_file(&path).with_context(|| format!("removing {}", path.display()))?;
        }
    }
    if pin_dir.exists() {
        std::fs::remove_dir(pin_dir).with_context(|| format!("removing {}", pin_dir.display()))?;
    }
    Ok(detached)
}
