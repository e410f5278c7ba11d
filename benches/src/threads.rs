//! Threads of the bench itself inside a network namespace, pinned to a core: the veth
//! section's generators and clients, the L7 section's streaming sink.

use anyhow::Context as _;
use balancer_tests::netns::Netns;
use std::{os::fd::AsFd, thread::JoinHandle};

/// Pins thread `tid` (0: the calling thread) to `cpu`.
pub fn pin(tid: u32, cpu: usize) -> anyhow::Result<()> {
    let mut set = nix::sched::CpuSet::new();
    set.set(cpu)?;
    nix::sched::sched_setaffinity(nix::unistd::Pid::from_raw(tid as i32), &set)
        .with_context(|| format!("pinning thread {tid} to CPU {cpu}"))
}

/// Starts a thread in `ns` (pinned to `cpu` if given) running `f`.
pub fn spawn_in<T: Send + 'static>(
    ns: &Netns,
    cpu: Option<usize>,
    f: impl FnOnce() -> anyhow::Result<T> + Send + 'static,
) -> anyhow::Result<JoinHandle<anyhow::Result<T>>> {
    let file = std::fs::File::open(format!("/run/netns/{}", ns.name()))?;
    Ok(std::thread::spawn(move || {
        nix::sched::setns(file.as_fd(), nix::sched::CloneFlags::CLONE_NEWNET).context("setns")?;
        if let Some(cpu) = cpu {
            pin(0, cpu)?;
        }
        f()
    }))
}

/// Joins a thread of [`spawn_in`].
pub fn join<T>(handle: JoinHandle<anyhow::Result<T>>) -> anyhow::Result<T> {
    handle
        .join()
        .map_err(|_| anyhow::anyhow!("a bench thread panicked"))?
}
