//! Cores: pinning threads, and how busy each core was over a measurement (`/proc/stat`), which
//! tells whether the generator's core or the node's core was the limit.

/// The core of the node's receive processing and servers; the generator and clients take the
/// other one (core 0). With a single core, nothing is pinned.
pub const NODE_CORE: usize = 1;
pub const GENERATOR_CORE: usize = 0;

/// Whether the box has the two cores the cases are spread over (cores online, whatever the
/// calling thread is pinned to).
pub fn split() -> bool {
    // SAFETY: plain libc call.
    let online = unsafe { nix::libc::sysconf(nix::libc::_SC_NPROCESSORS_ONLN) };
    online > NODE_CORE as i64
}

/// Gives thread `tid` real-time priority (SCHED_FIFO, the lowest real-time level).
pub fn real_time(tid: u32) -> anyhow::Result<()> {
    use nix::libc;
    let param = libc::sched_param { sched_priority: 1 };
    // SAFETY: plain system call on a valid parameter block.
    if unsafe { libc::sched_setscheduler(tid as i32, libc::SCHED_FIFO, &param) } != 0 {
        anyhow::bail!(
            "SCHED_FIFO for thread {tid}: {}",
            std::io::Error::last_os_error()
        );
    }
    Ok(())
}

/// Busy and total jiffies of each core since boot.
#[derive(Debug, Clone)]
pub struct Times(Vec<(u64, u64)>);

impl Times {
    pub fn now() -> Self {
        let stat = std::fs::read_to_string("/proc/stat").unwrap_or_default();
        Self(
            stat.lines()
                .filter(|l| l.starts_with("cpu") && !l.starts_with("cpu "))
                .map(|l| {
                    let v: Vec<u64> = l
                        .split_whitespace()
                        .skip(1)
                        .filter_map(|x| x.parse().ok())
                        .collect();
                    let total: u64 = v.iter().take(8).sum();
                    // idle and iowait are not busy.
                    let idle = v.get(3).copied().unwrap_or(0) + v.get(4).copied().unwrap_or(0);
                    (total - idle, total)
                })
                .collect(),
        )
    }

    /// How busy `core` was between `earlier` and `self`, 0 to 1.
    pub fn busy_since(&self, earlier: &Self, core: usize) -> f64 {
        match (self.0.get(core), earlier.0.get(core)) {
            (Some(&(b1, t1)), Some(&(b0, t0))) if t1 > t0 => (b1 - b0) as f64 / (t1 - t0) as f64,
            _ => 0.0,
        }
    }
}
