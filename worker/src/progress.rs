//! The progress rule that keeps an attempt from looping forever: an iteration makes
//! progress when it changed the tree and either fewer machine checks fail than ever before
//! in this round (at first: than all of them), or a metric came closer to its target than
//! any earlier reading of this round. Iterations
//! without progress are counted; the loop blocks the attempt at the contract's limit.

use std::collections::BTreeMap;

use goalpost_shared::protocol::CheckResult;

/// The best the round has seen so far, and how long it has gone without beating it.
#[derive(Debug, Default)]
pub struct Progress {
    best_failing: Option<usize>,
    /// Distance to target of each metric check, keyed by the check's line and metric name.
    best_gap: BTreeMap<(u32, String), f64>,
    streak: u32,
}

impl Progress {
    /// Records one iteration's verification and says whether it made progress.
    /// An unchanged tree never makes progress, whatever the checks say (flaky output is
    /// not work).
    pub fn observe(&mut self, tree_changed: bool, checks: &[CheckResult]) -> bool {
        let failing = failing(checks);
        // Before the first iteration nothing is known to pass and no metric was read: the
        // first iteration is progress only if it makes a check pass, never by merely
        // giving a metric its first reading.
        let fewer_failing = failing < self.best_failing.unwrap_or(checks.len().max(1));
        let mut metric_closer = false;
        if tree_changed {
            for (key, gap) in gaps(checks) {
                match self.best_gap.get(&key) {
                    Some(&best) if gap >= best => {}
                    Some(_) => {
                        metric_closer = true;
                        self.best_gap.insert(key, gap);
                    }
                    None => {
                        self.best_gap.insert(key, gap);
                    }
                }
            }
            if fewer_failing {
                self.best_failing = Some(failing);
            }
        }
        let progress = tree_changed && (fewer_failing || metric_closer);
        self.no_progress_unless(progress);
        progress
    }

    /// Records an iteration that never reached verification (an empty turn): no progress.
    pub fn observe_nothing(&mut self) {
        self.no_progress_unless(false);
    }

    fn no_progress_unless(&mut self, progress: bool) {
        if progress {
            self.streak = 0;
        } else {
            self.streak += 1;
        }
    }

    /// Consecutive iterations without progress.
    pub fn streak(&self) -> u32 {
        self.streak
    }

    /// Whether `limit` consecutive iterations went by without progress. A limit of 0
    /// means none is set.
    pub fn exhausted(&self, limit: u32) -> bool {
        limit > 0 && self.streak >= limit
    }
}

/// Machine checks that did not pass.
pub fn failing(checks: &[CheckResult]) -> usize {
    checks.iter().filter(|c| !c.passed).count()
}

/// How far each metric reading is from meeting its target (0 when it meets it).
fn gaps(checks: &[CheckResult]) -> impl Iterator<Item = ((u32, String), f64)> + '_ {
    checks.iter().filter_map(|c| {
        let metric = c.metric.as_ref()?;
        let value = metric.value.filter(|v| v.is_finite())?;
        let gap = if metric.op.lower_is_better() {
            value - metric.target
        } else {
            metric.target - value
        };
        Some(((c.line, metric.name.clone()), gap.max(0.0)))
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use goalpost_shared::contract::MetricOp;
    use goalpost_shared::protocol::{CommandRecord, MetricReading};
    use std::path::PathBuf;

    fn check(line: u32, passed: bool, metric: Option<(f64, MetricOp, f64)>) -> CheckResult {
        CheckResult {
            check: format!("check {line}"),
            line,
            command: "true".into(),
            record: CommandRecord {
                exit_code: Some(if passed { 0 } else { 1 }),
                duration_ms: 1,
                ..CommandRecord::not_run(
                    vec!["sh".into(), "-c".into(), "true".into()],
                    PathBuf::from("."),
                )
            },
            metric: metric.map(|(value, op, target)| MetricReading {
                name: "p95_ms".into(),
                value: Some(value),
                target,
                op,
            }),
            passed,
            failure: (!passed).then(|| "exit status 1".into()),
            integrity: None,
        }
    }

    #[test]
    fn a_first_change_is_progress_only_if_it_makes_a_check_pass() {
        let mut p = Progress::default();
        assert!(!p.observe(true, &[check(1, false, None), check(2, false, None)]));
        assert_eq!(p.streak(), 1);
        let mut p = Progress::default();
        assert!(p.observe(true, &[check(1, true, None), check(2, false, None)]));
        assert_eq!(p.streak(), 0);
    }

    #[test]
    fn an_agent_that_never_improves_is_exhausted_after_exactly_the_limit() {
        let mut p = Progress::default();
        let failing = [check(1, false, None)];
        assert!(!p.observe(true, &failing));
        assert!(!p.exhausted(2));
        assert!(!p.observe(true, &failing));
        assert!(p.exhausted(2));
    }

    #[test]
    fn fewer_failing_than_the_best_is_progress_equal_is_not() {
        let mut p = Progress::default();
        let two_fail = [check(1, false, None), check(2, false, None)];
        let one_fails = [check(1, true, None), check(2, false, None)];
        assert!(!p.observe(true, &two_fail));
        assert!(p.observe(true, &one_fails));
        assert!(!p.observe(true, &one_fails));
        // Worse than the best, then back to the best: neither beats it.
        assert!(!p.observe(true, &two_fail));
        assert!(!p.observe(true, &one_fails));
        assert_eq!(p.streak(), 3);
        assert!(p.exhausted(3));
        assert!(!p.exhausted(4));
        assert!(!p.exhausted(0));
    }

    #[test]
    fn an_unchanged_tree_is_never_progress() {
        let mut p = Progress::default();
        assert!(!p.observe(false, &[check(1, true, None)]));
        assert_eq!(p.streak(), 1);
        // The unchanged tree did not set the best either: passing after a change counts.
        assert!(p.observe(true, &[check(1, true, None)]));
    }

    #[test]
    fn metric_closer_to_target_is_progress() {
        let mut p = Progress::default();
        let below = |v| [check(1, false, Some((v, MetricOp::Below, 80.0)))];
        // The first reading is only a baseline.
        assert!(!p.observe(true, &below(120.0)));
        assert!(p.observe(true, &below(100.0)));
        assert!(!p.observe(true, &below(100.0)));
        assert!(!p.observe(true, &below(110.0)));
        assert!(p.observe(true, &below(90.0)));
        let above = |v| [check(2, false, Some((v, MetricOp::AtLeast, 0.9)))];
        let mut p = Progress::default();
        assert!(!p.observe(true, &above(0.5)));
        assert!(!p.observe(true, &above(0.4)));
        assert!(p.observe(true, &above(0.6)));
    }

    #[test]
    fn empty_turns_count_against_the_limit() {
        let mut p = Progress::default();
        p.observe_nothing();
        p.observe_nothing();
        assert!(p.exhausted(2));
        assert!(p.observe(true, &[]));
        assert_eq!(p.streak(), 0);
    }
}
