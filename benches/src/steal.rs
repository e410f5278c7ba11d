//! The time a virtual machine's hypervisor takes from its cores (`steal` in `/proc/stat`).
//! While the hypervisor runs something else on a core, nothing of this box runs there, and
//! every request in flight waits at once. On the shared box these benches were written on, an
//! L7 load's p99 followed the steal during the run, for every proxy alike: through the router,
//! `h2load -c10 -m10` had a p99 of 8.4 ms at 0.1% steal, 11.5 ms at 3.5 to 4.3% and 14.2 ms at
//! 6.7%. The loads therefore record the steal of each run, and run again a run that lost
//! more than a limit.
//!
//! Steal also falls on a core that sleeps: when a core goes idle, the hypervisor gives it to
//! something else, and taking it back when a packet arrives counts as stolen. On that box
//! (`cpuidle` driver `haltpoll`, with `guest_halt_poll_ns` 0: no polling before a halt), a
//! proxy whose core idled a quarter of the time lost 17 to 22% of it to steal, and one whose
//! core idled 1 to 4% of the time lost 1.4 to 4%. The loads therefore also record how much
//! of its time the proxies' core spent idle, and [`Machine::cpuidle`](crate::report::Machine)
//! says how the box's cores sleep.

use procfs::{CpuTime, CurrentSI as _, KernelStats};

/// Stolen, idle and total ticks of some cores at one moment.
#[derive(Debug, Clone, Copy, Default)]
pub struct Ticks {
    stolen: u64,
    idle: u64,
    total: u64,
}

/// How some cores' time went between two moments.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Shares {
    /// Taken by the hypervisor.
    pub stolen: f64,
    /// Idle (and waiting for I/O).
    pub idle: f64,
}

/// The kernel's time counters of every core at one moment (`/proc/stat`), read once for all
/// the sums taken of them.
pub struct Snapshot(Option<KernelStats>);

impl Snapshot {
    pub fn now() -> Self {
        Self(KernelStats::current().ok())
    }

    /// The ticks of `cores` (the whole box when empty; zero if `/proc/stat` could not be
    /// read, when every share reads as 0). A core is found by its place among the `cpuN`
    /// lines, which is its number while every core is online (`/proc/stat` leaves offline
    /// cores out).
    pub fn ticks(&self, cores: &[usize]) -> Ticks {
        let Some(stats) = &self.0 else {
            return Ticks::default();
        };
        let of = |t: &CpuTime| Ticks {
            stolen: t.steal.unwrap_or(0),
            idle: t.idle + t.iowait.unwrap_or(0),
            total: t.user
                + t.nice
                + t.system
                + t.idle
                + t.iowait.unwrap_or(0)
                + t.irq.unwrap_or(0)
                + t.softirq.unwrap_or(0)
                + t.steal.unwrap_or(0),
        };
        match cores {
            [] => of(&stats.total),
            cores => cores
                .iter()
                .filter_map(|&c| stats.cpu_time.get(c))
                .map(of)
                .fold(Ticks::default(), |a, b| Ticks {
                    stolen: a.stolen + b.stolen,
                    idle: a.idle + b.idle,
                    total: a.total + b.total,
                }),
        }
    }
}

impl Ticks {
    /// How the cores' time went between `self` and `later`.
    pub fn shares_until(self, later: Ticks) -> Shares {
        let total = later.total.saturating_sub(self.total);
        let share = |now: u64, then: u64| match total {
            0 => 0.0,
            total => now.saturating_sub(then) as f64 / total as f64,
        };
        Shares {
            stolen: share(later.stolen, self.stolen),
            idle: share(later.idle, self.idle),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_shares_are_of_the_ticks_between_the_two_moments() {
        let before = Ticks {
            stolen: 10,
            idle: 100,
            total: 1_000,
        };
        let after = Ticks {
            stolen: 30,
            idle: 200,
            total: 1_400,
        };
        let shares = before.shares_until(after);
        assert_eq!((shares.stolen, shares.idle), (0.05, 0.25));
        assert_eq!(before.shares_until(before), Shares::default());
    }

    #[test]
    fn this_box_can_be_read() {
        let snapshot = Snapshot::now();
        let now = snapshot.ticks(&[]);
        assert!(now.total > 0, "/proc/stat read as {now:?}");
        assert!(now.stolen + now.idle <= now.total);
        let first_core = snapshot.ticks(&[0]);
        assert!(first_core.total > 0 && first_core.total <= now.total);
    }
}
