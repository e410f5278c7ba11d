//! The time a virtual machine's hypervisor takes from its cores (`steal` in `/proc/stat`).
//! While the hypervisor runs something else on a core, nothing of this box runs there, and
//! every request in flight waits at once. On the shared box these benches were written on, an
//! L7 load's p99 followed the steal during the run, for every proxy alike: through the router,
//! `h2load -c10 -m10` had a p99 of 8.4 ms at 0.1% steal, 11.5 ms at 3.5 to 4.3% and 14.2 ms at
//! 6.7%. The loads therefore record the steal of each run, and run again a run that lost
//! more than a limit.

use procfs::{CpuTime, CurrentSI as _, KernelStats};

/// Stolen and total ticks of some cores at one moment.
#[derive(Debug, Clone, Copy, Default)]
pub struct Ticks {
    stolen: u64,
    total: u64,
}

impl Ticks {
    /// Now, summed over `cores` (the whole box when empty; zero if `/proc/stat` cannot be
    /// read, when the share stolen reads as 0). A core is found by its place among the
    /// `cpuN` lines, which is its number while every core is online (`/proc/stat` leaves
    /// offline cores out).
    pub fn now(cores: &[usize]) -> Self {
        let Ok(stats) = KernelStats::current() else {
            return Self::default();
        };
        let of = |t: &CpuTime| Ticks {
            stolen: t.steal.unwrap_or(0),
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
                .fold(Self::default(), |a, b| Ticks {
                    stolen: a.stolen + b.stolen,
                    total: a.total + b.total,
                }),
        }
    }

    /// The share of the cores' time the hypervisor took between `self` and `later`.
    pub fn share_stolen_until(self, later: Ticks) -> f64 {
        let total = later.total.saturating_sub(self.total);
        match total {
            0 => 0.0,
            total => later.stolen.saturating_sub(self.stolen) as f64 / total as f64,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_share_is_of_the_ticks_between_the_two_moments() {
        let before = Ticks {
            stolen: 10,
            total: 1_000,
        };
        let after = Ticks {
            stolen: 30,
            total: 1_400,
        };
        assert_eq!(before.share_stolen_until(after), 0.05);
        assert_eq!(before.share_stolen_until(before), 0.0);
    }

    #[test]
    fn this_box_can_be_read() {
        let now = Ticks::now(&[]);
        assert!(now.total > 0, "/proc/stat read as {now:?}");
        assert!(now.stolen <= now.total);
        let first_core = Ticks::now(&[0]);
        assert!(first_core.total > 0 && first_core.total <= now.total);
    }
}
