//! Round-by-round comparison of two proxies. Each round runs the proxies back to back, so a
//! round's two runs met the same moment of the box; the medians of the runs do not pair them.
//! The box's speed drifts by a third within a minute (another tenant of the host), which moves
//! every proxy's req/s; the ratio within a round, and how often one proxy was the better, say
//! more than the ratio of two medians taken at different moments.

use super::load::{median, Figure, Rounds};

/// `ours`' figure over `theirs`', round by round.
#[derive(Debug, Clone, PartialEq)]
pub struct Paired {
    ratios: Vec<f64>,
}

impl Paired {
    /// The rounds both ran; `None` for two kinds of load (their rounds ran at other times) or
    /// for fewer than two rounds.
    pub fn new(ours: &Rounds, theirs: &Rounds, figure: Figure) -> Option<Self> {
        if ours.case != theirs.case {
            return None;
        }
        let ratios: Vec<f64> = ours
            .runs
            .iter()
            .zip(&theirs.runs)
            .map(|(a, b)| figure(a) / figure(b))
            .filter(|ratio| ratio.is_finite())
            .collect();
        (ratios.len() > 1).then_some(Self { ratios })
    }

    /// The note for a figure where `higher` is better (req/s) or lower is (latency): in how
    /// many rounds ours was the better, the chance of that many or more (either way) if each
    /// round were a coin toss, and the median and range of the rounds' ratios.
    pub fn note(&self, higher: bool) -> String {
        let n = self.ratios.len();
        let better = self
            .ratios
            .iter()
            .filter(|&&r| if higher { r > 1.0 } else { r < 1.0 })
            .count();
        let (low, high) = self
            .ratios
            .iter()
            .fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), &r| {
                (lo.min(r), hi.max(r))
            });
        let p = sign_test(better, n);
        // Two digits, or as many as it takes to show more than none (9 of 9 is 0.004).
        let digits = if p < 0.01 { 3 } else { 2 };
        format!(
            "ours {} in {better} of {n} rounds (sign test p = {p:.digits$}), the rounds' ratios \
             {:.2} (median), {low:.2} to {high:.2}",
            if higher { "higher" } else { "lower" },
            median(self.ratios.clone()),
        )
    }
}

/// Two-sided sign test: the chance that `n` fair coin tosses give `k` heads or a count as far
/// from `n / 2`.
fn sign_test(k: usize, n: usize) -> f64 {
    let far = k.max(n - k);
    // C(n, i) / 2^n summed over the tail, built term by term (n is a few dozen at most).
    let mut term = 0.5f64.powi(n as i32);
    let mut tail = 0.0;
    for i in 0..=n {
        if i >= far {
            tail += term;
        }
        term *= (n - i) as f64 / (i + 1) as f64;
    }
    (2.0 * tail).min(1.0)
}

#[cfg(test)]
mod tests {
    use super::super::{load::Load, Case};
    use super::*;

    fn rounds(case: Case, rps: &[f64]) -> Rounds {
        let runs = rps
            .iter()
            .map(|&requests_per_s| Load {
                requests_per_s,
                ..Load::default()
            })
            .collect();
        Rounds { case, runs }
    }

    const RPS: Figure = |l| l.requests_per_s;

    #[test]
    fn the_sign_test_matches_the_binomial_tails() {
        // 5 of 5: 2 / 32.
        assert!((sign_test(5, 5) - 0.0625).abs() < 1e-12);
        assert!((sign_test(0, 5) - 0.0625).abs() < 1e-12);
        // 8 of 9: 2 * (9 + 1) / 512.
        assert!((sign_test(8, 9) - 20.0 / 512.0).abs() < 1e-12);
        // 7 of 9: 2 * (36 + 9 + 1) / 512.
        assert!((sign_test(7, 9) - 92.0 / 512.0).abs() < 1e-12);
        // Even splits and near ones are no evidence at all.
        assert_eq!(sign_test(5, 9), 1.0);
        assert_eq!(sign_test(2, 4), 1.0);
    }

    #[test]
    fn rounds_are_paired_run_by_run_not_by_their_medians() {
        // The keep-alive runs of a full run (README): ours carried more in 3 of the 5 rounds,
        // yet its median is 0.96 times the other's, as its two slowest runs met the box's two
        // slowest moments.
        let ours = rounds(
            Case::KeepAlive,
            &[40247.0, 32426.0, 31094.0, 41701.0, 37209.0],
        );
        let theirs = rounds(
            Case::KeepAlive,
            &[38604.0, 37588.0, 38774.0, 41183.0, 35514.0],
        );
        assert!(ours.median().requests_per_s < theirs.median().requests_per_s);
        let paired = Paired::new(&ours, &theirs, RPS).unwrap();
        assert_eq!(
            paired.note(true),
            "ours higher in 3 of 5 rounds (sign test p = 1.00), the rounds' ratios 1.01 \
             (median), 0.80 to 1.05"
        );
        // p in two digits (5 of 5: 0.06), or in three under 0.01 (9 of 9: 0.004, not 0.00).
        let lopsided = Paired::new(&ours, &rounds(Case::KeepAlive, &[1.0; 5]), RPS).unwrap();
        assert!(lopsided
            .note(true)
            .contains("5 of 5 rounds (sign test p = 0.06)"));
        let nine = rounds(Case::KeepAlive, &[2.0; 9]);
        let all = Paired::new(&nine, &rounds(Case::KeepAlive, &[1.0; 9]), RPS).unwrap();
        assert!(all
            .note(true)
            .contains("9 of 9 rounds (sign test p = 0.004)"));
        // Seen as a figure where lower is better: the other two rounds.
        assert!(paired
            .note(false)
            .starts_with("ours lower in 2 of 5 rounds"));
    }

    #[test]
    fn only_the_rounds_both_ran_of_the_same_load_are_paired() {
        let ours = rounds(Case::KeepAlive, &[10.0, 20.0, 30.0]);
        let two = rounds(Case::KeepAlive, &[20.0, 10.0]);
        let paired = Paired::new(&ours, &two, RPS).unwrap();
        assert!(paired
            .note(true)
            .starts_with("ours higher in 1 of 2 rounds"));
        // A tie is the better in neither direction.
        let tied = Paired::new(&ours, &rounds(Case::KeepAlive, &[10.0, 20.0]), RPS).unwrap();
        assert!(tied.note(true).starts_with("ours higher in 0 of 2"));
        assert!(tied.note(false).starts_with("ours lower in 0 of 2"));
        assert_eq!(Paired::new(&ours, &rounds(Case::H2, &[1.0; 3]), RPS), None);
        // One round is no pairing; a run that measured nothing is left out.
        assert_eq!(
            Paired::new(&ours, &rounds(Case::KeepAlive, &[5.0]), RPS),
            None
        );
        let zero = rounds(Case::KeepAlive, &[0.0, 10.0, 10.0]);
        assert!(Paired::new(&ours, &zero, RPS)
            .unwrap()
            .note(true)
            .contains("of 2 rounds"));
    }
}
