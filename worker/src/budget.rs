//! What is left of the attempt's budget: the worker meters every turn against the limits
//! the orchestrator passed in and says, before any turn starts, whether one is crossed.
//! Budgets are hard: a crossed limit stops the round before the next turn, never after it.

use std::time::{Duration, Instant};

pub use goalpost_shared::budget::Crossed;
use goalpost_shared::budget::{self, Spent};
use goalpost_shared::plan::Budget;
use goalpost_shared::protocol::Usage;

pub use goalpost_shared::budget::DEFAULT_TURN_TIMEOUT;

/// What this round has used so far, against what was left when it started.
#[derive(Debug)]
pub struct Meter {
    budget: Budget,
    started: Instant,
    usage: Usage,
    iterations: u32,
}

impl Meter {
    pub fn new(budget: Budget) -> Self {
        Meter {
            budget,
            started: Instant::now(),
            usage: Usage::default(),
            iterations: 0,
        }
    }

    /// Adds one turn's usage.
    pub fn record(&mut self, usage: &Usage) {
        self.usage.add(usage);
    }

    /// Counts one implementer iteration as started.
    pub fn start_iteration(&mut self) {
        self.iterations += 1;
    }

    /// The round's usage, its wall time included.
    pub fn usage(&self) -> Usage {
        let mut usage = self.usage.clone();
        usage.wall_ms = duration_ms(self.started.elapsed());
        usage
    }

    /// The first limit reached, if any. Called before every turn.
    /// Iterations are not looked at here (an iteration in progress may finish with its
    /// reviewer turn); [`Meter::crossed_before_iteration`] stops a new one at the limit.
    pub fn crossed(&self) -> Option<Crossed> {
        budget::crossed(&self.budget, self.spent(None))
    }

    /// The first limit reached if one more implementer iteration started now.
    pub fn crossed_before_iteration(&self) -> Option<Crossed> {
        budget::crossed(&self.budget, self.spent(Some(self.iterations)))
    }

    fn spent(&self, iterations: Option<u32>) -> Spent<'_> {
        Spent {
            usage: &self.usage,
            iterations,
            elapsed: Some(self.started.elapsed()),
        }
    }

    /// How long the next turn (or check) may run: what is left of the wall budget, or
    /// [`DEFAULT_TURN_TIMEOUT`] without one.
    pub fn timeout(&self) -> Duration {
        match &self.budget.wall {
            Some(wall) => wall
                .value
                .duration
                .saturating_sub(self.started.elapsed())
                .max(Duration::from_secs(1)),
            None => DEFAULT_TURN_TIMEOUT,
        }
    }
}

pub fn duration_ms(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use goalpost_shared::budget::BudgetKind;
    use goalpost_shared::contract::Spanned;
    use goalpost_shared::plan::WallTime;

    fn spanned<T>(v: T) -> Option<Spanned<T>> {
        Some(Spanned::new(v, 1, 1))
    }

    #[test]
    fn a_meter_crosses_at_the_turn_limit_of_what_was_left() {
        let mut meter = Meter::new(Budget {
            turns: spanned(2),
            ..Budget::default()
        });
        meter.record(&Usage {
            turns: 1,
            ..Usage::default()
        });
        assert_eq!(meter.crossed(), None);
        meter.record(&Usage {
            turns: 1,
            ..Usage::default()
        });
        let c = meter.crossed().unwrap();
        assert_eq!(
            (c.kind, c.limit.as_str(), c.used.as_str()),
            (BudgetKind::Turns, "2", "2")
        );
    }

    #[test]
    fn iterations_stop_a_new_iteration_at_the_limit() {
        let mut meter = Meter::new(Budget {
            iterations: spanned(1),
            ..Budget::default()
        });
        assert_eq!(meter.crossed_before_iteration(), None);
        meter.start_iteration();
        // The running iteration may finish (its reviewer turn still starts)...
        assert_eq!(meter.crossed(), None);
        // ...but no new one starts.
        let c = meter.crossed_before_iteration().unwrap();
        assert_eq!(
            (c.kind, c.limit.as_str(), c.used.as_str()),
            (BudgetKind::Iterations, "1", "1")
        );
    }

    #[test]
    fn timeout_is_what_is_left_of_the_wall() {
        let meter = Meter::new(Budget::default());
        assert_eq!(meter.timeout(), DEFAULT_TURN_TIMEOUT);
        let meter = Meter::new(Budget {
            wall: spanned(WallTime {
                text: "1h".into(),
                duration: Duration::from_secs(3600),
            }),
            ..Budget::default()
        });
        assert!(meter.timeout() <= Duration::from_secs(3600));
        assert!(meter.timeout() > Duration::from_secs(3500));
    }
}
