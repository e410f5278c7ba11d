//! Active health checks' verdicts with rise/fall hysteresis (HAProxy's `rise`/`fall`): a
//! target changes state only after `rise` consecutive passes or `fall` consecutive failures.
//! Shared by the router's upstream checks (R17) and `balancer run`'s checks of its array peers.

use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};

/// How many consecutive results change a verdict.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Thresholds {
    /// Consecutive passes that bring a target back.
    pub rise: u32,
    /// Consecutive failures that take a target out.
    pub fall: u32,
}

/// One target's verdict, updated by each check's result.
#[derive(Debug)]
pub struct Verdict {
    healthy: AtomicBool,
    /// Consecutive results against the current verdict.
    streak: AtomicU32,
}

impl Verdict {
    pub fn new(healthy: bool) -> Self {
        Self {
            healthy: AtomicBool::new(healthy),
            streak: AtomicU32::new(0),
        }
    }

    pub fn healthy(&self) -> bool {
        self.healthy.load(Ordering::Relaxed)
    }

    /// Records one check's result. Returns the new verdict and the streak that made it when
    /// the verdict changes, `None` otherwise.
    pub fn record(&self, passed: bool, thresholds: Thresholds) -> Option<(bool, u32)> {
        let healthy = self.healthy();
        if passed == healthy {
            self.streak.store(0, Ordering::Relaxed);
            return None;
        }
        let streak = self.streak.fetch_add(1, Ordering::Relaxed) + 1;
        let needed = if healthy {
            thresholds.fall
        } else {
            thresholds.rise
        };
        if streak < needed.max(1) {
            return None;
        }
        self.healthy.store(passed, Ordering::Relaxed);
        self.streak.store(0, Ordering::Relaxed);
        Some((passed, streak))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const T: Thresholds = Thresholds { rise: 2, fall: 3 };

    #[test]
    fn a_target_falls_after_fall_failures_and_rises_after_rise_passes() {
        let v = Verdict::new(true);
        assert_eq!(v.record(false, T), None);
        assert_eq!(v.record(false, T), None);
        assert_eq!(v.record(false, T), Some((false, 3)));
        assert!(!v.healthy());
        assert_eq!(v.record(true, T), None);
        assert_eq!(v.record(true, T), Some((true, 2)));
        assert!(v.healthy());
    }

    #[test]
    fn a_result_that_agrees_resets_the_streak() {
        let v = Verdict::new(true);
        v.record(false, T);
        v.record(false, T);
        v.record(true, T);
        assert_eq!(v.record(false, T), None);
        assert_eq!(v.record(false, T), None);
        assert!(
            v.healthy(),
            "two failures after a pass are not three in a row"
        );
    }

    #[test]
    fn zero_thresholds_act_as_one() {
        let v = Verdict::new(false);
        let t = Thresholds { rise: 0, fall: 0 };
        assert_eq!(v.record(true, t), Some((true, 1)));
    }
}
