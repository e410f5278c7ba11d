//! `balancer run`: one node of an array, end to end. It attaches (or adopts) the XDP data plane,
//! fills its maps from the config, serves the router on the configured addresses, checks the
//! upstreams and the array's other nodes ([`peers`]), and then:
//! - SIGHUP, or a change of the config file: reload. The new config is checked whole and the
//!   new router built before anything changes; a config that fails is refused with its reason
//!   and the running state is kept.
//! - SIGTERM / Ctrl-C: stop accepting, drain in-flight requests (up to
//!   `router.limits.drain_timeout`), exit. The XDP program and the maps stay pinned, so steering
//!   continues while no process runs (R18); `balancer xdp detach` removes them.
//! - A new `balancer run` on the same node: it takes the listening sockets over
//!   ([`handover`]), and this process drains and exits.

mod handover;
mod l7;
mod listen;
mod peers;

use crate::{
    config::Config,
    dataplane::{self, sync, DataplaneMaps},
    router::{
        directory::{
            file::{plan_import, PlannedImport},
            plan::Mode,
            PinnedDirectory,
        },
        metrics::{self, Metrics, PinnedRouterStats},
        plain, server, tls,
    },
};
use anyhow::Context as _;
use arc_swap::ArcSwap;
use std::{
    os::fd::{AsFd as _, OwnedFd},
    path::{Path, PathBuf},
    sync::Arc,
    time::{Duration, SystemTime},
};
use tokio::{
    signal::unix::{signal, SignalKind},
    sync::watch,
};
use tracing::{error, info, warn};

/// How often the config file's modification time is checked.
const CONFIG_POLL: Duration = Duration::from_secs(2);
/// How often the router's counters are published into the pinned map.
const STATS_EVERY: Duration = Duration::from_secs(1);

pub struct RunOptions {
    pub config: PathBuf,
    /// Join a running array (see `balancer xdp attach --join`).
    pub join: bool,
}

/// Runs the node until SIGTERM, Ctrl-C or a successor takes over.
pub async fn run(opts: RunOptions) -> anyhow::Result<()> {
    let mut config = Config::load(&opts.config)?;
    let router_config = config.router()?.clone();
    let (mut loaded, report) = dataplane::bring_up(&config, opts.join)?;
    for (interface, mode) in &report.interfaces {
        info!(interface, ?mode, "XDP attached");
    }
    let kernel_log = dataplane::kernel_log::forward(&mut loaded)?;
    let pin_dir = config.dataplane.pin_dir.clone();
    if let Some(import) = plan_directory(&config)? {
        apply_directory(&pin_dir, &import)?;
    }
    let directory =
        Arc::new(PinnedDirectory::open(&pin_dir)?.with_cache(router_config.directory_cache));
    let wanted = config.dataplane.directory_entries as usize;
    if directory.capacity() != wanted {
        warn!(
            pinned = directory.capacity(),
            wanted,
            "dataplane.directory_entries differs from the pinned directory's capacity, which stays: \
             detach (`balancer detach`) and start again to resize it (then import the directory)"
        );
    }
    let certs = tls::CertStore::load(&config.cert_specs()?).context("router.certificates")?;

    // Listeners: the predecessor's, or new ones.
    let handover_path = router_config.handover_socket.clone();
    let inherited = handover::take(&handover_path)?.unwrap_or_default();
    if !inherited.is_empty() {
        info!(
            count = inherited.len(),
            "took the listeners over from the running process"
        );
    }
    // The counters carry on from what the predecessor published (read after it let go).
    let mut router_stats = PinnedRouterStats::open(&pin_dir)?;
    let metrics = Arc::new(Metrics::starting_from(router_stats.read()?));
    let mut l7 = l7::L7::build(&config, directory.clone(), metrics.clone())?;
    let mut peer_checks = peers::spawn(&config)?;
    let routers = Arc::new(ArcSwap::from(l7.router.clone()));
    let mut inherited = inherited.into_iter().map(Some).collect::<Vec<_>>();
    let https = listen::listener(router_config.https, &mut inherited)?;
    let http = match router_config.http {
        Some(addr) => Some(listen::listener(addr, &mut inherited)?),
        None => None,
    };
    let mut fds: Vec<OwnedFd> = vec![https.as_fd().try_clone_to_owned()?];
    if let Some(http) = &http {
        fds.push(http.as_fd().try_clone_to_owned()?);
    }
    let offer = handover::Offer::bind(&handover_path)?;

    let (stop_tx, stop_rx) = watch::channel(false);
    let stopped = |mut rx: watch::Receiver<bool>| async move {
        let _ = rx.wait_for(|s| *s).await;
    };
    let limits = config.limits()?;
    let mut servers = tokio::task::JoinSet::new();
    servers.spawn(server::serve(
        https,
        tls::FrontTls::new(certs.clone()),
        routers.clone(),
        limits.clone(),
        stopped(stop_rx.clone()),
    ));
    if let Some(http) = http {
        servers.spawn(plain::serve(
            http,
            limits.clone(),
            routers.load().settings.front_end.clone(),
            stopped(stop_rx.clone()),
        ));
    }
    info!(https = %router_config.https, http = ?router_config.http, node = %config.node.name, "serving");

    let mut hup = signal(SignalKind::hangup())?;
    let mut term = signal(SignalKind::terminate())?;
    let mut int = signal(SignalKind::interrupt())?;
    let mut poll = tokio::time::interval(CONFIG_POLL);
    let mut seen = modified(&opts.config);
    let hand_over = offer.hand_over(&fds);
    tokio::pin!(hand_over);
    let publisher = tokio::spawn(metrics::publish(
        metrics.clone(),
        PinnedRouterStats::open(&pin_dir)?,
        STATS_EVERY,
    ));
    let mut successor = false;
    loop {
        tokio::select! {
            _ = hup.recv() => {}
            _ = poll.tick() => {
                let now = modified(&opts.config);
                if now == seen {
                    continue;
                }
                seen = now;
            }
            _ = term.recv() => { info!("SIGTERM: draining"); break; }
            _ = int.recv() => { info!("interrupted: draining"); break; }
            () = &mut hand_over => {
                info!("a new process took over: draining");
                successor = true;
                break;
            }
        }
        match reload(
            &opts.config,
            &config,
            &certs,
            directory.clone(),
            metrics.clone(),
        ) {
            Ok((new_config, new_l7)) => {
                routers.store(new_l7.router.clone());
                l7 = new_l7; // the old health checks stop with the old L7
                peer_checks = match peers::spawn(&new_config) {
                    Ok(checks) => checks,
                    Err(e) => {
                        error!("array peer checks not restarted: {e:#}");
                        peers::PeerChecks::none()
                    }
                };
                config = new_config;
                info!("config reloaded");
            }
            Err(e) => error!("config reload refused, the running config stays: {e:#}"),
        }
    }
    // From here the successor, if any, publishes the counters.
    publisher.abort();
    let _ = stop_tx.send(true);
    while servers.join_next().await.is_some() {}
    if !successor {
        router_stats.write(metrics.snapshot())?;
    }
    drop(l7);
    drop(peer_checks);
    kernel_log.abort();
    info!("stopped; the XDP program stays attached and the maps pinned");
    Ok(())
}

fn modified(path: &Path) -> Option<SystemTime> {
    std::fs::metadata(path).and_then(|m| m.modified()).ok()
}

/// Builds everything from the new config, then applies it; any error leaves the running state.
fn reload(
    path: &Path,
    running: &Config,
    certs: &tls::CertStore,
    directory: Arc<PinnedDirectory>,
    metrics: Arc<Metrics>,
) -> anyhow::Result<(Config, l7::L7)> {
    let config = Config::load(path)?;
    let (old, new) = (running.router()?, config.router()?);
    if (old.https, old.http, &old.handover_socket) != (new.https, new.http, &new.handover_socket) {
        warn!("router listen addresses changed: they take effect at the next restart");
    }
    if config.dataplane.pin_dir != running.dataplane.pin_dir {
        anyhow::bail!("dataplane.pin_dir: cannot change while running; restart to move the pins");
    }
    let new_certs = tls::CertSet::read(&config.cert_specs()?).context("router.certificates")?;
    let import = plan_directory(&config).context("directory.file")?;
    let l7 = l7::L7::build(&config, directory, metrics)?;
    let mut maps = DataplaneMaps::open_for_write(&config.dataplane.pin_dir)?;
    let report = sync::apply(&config, &mut maps, sync::NewMembers::Joining)?;
    dataplane::neighbours::prime(&config);
    info!(?report, "data plane synchronised");
    if let Some(import) = &import {
        apply_directory(&config.dataplane.pin_dir, import)?;
    }
    certs.install(new_certs);
    Ok((config, l7))
}

/// The import of the config's directory file, planned (read and checked whole) but not written.
fn plan_directory(config: &Config) -> anyhow::Result<Option<PlannedImport>> {
    let Some(source) = &config.directory else {
        return Ok(None);
    };
    let current = PinnedDirectory::open(&config.dataplane.pin_dir)?;
    Ok(Some(plan_import(
        &source.file,
        source.format,
        &current,
        Mode::Replace,
    )?))
}

fn apply_directory(pin_dir: &Path, import: &PlannedImport) -> anyhow::Result<()> {
    PinnedDirectory::open(pin_dir)?.apply(&import.plan)?;
    info!(
        mailboxes = import.mailboxes,
        changes = %import.plan.summary,
        "directory file imported"
    );
    Ok(())
}
