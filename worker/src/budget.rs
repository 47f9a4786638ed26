//! What is left of the attempt's budget: the worker meters every turn against the limits
//! the orchestrator passed in and says, before any turn starts, whether one is crossed.
//! Budgets are hard: a crossed limit stops the round before the next turn, never after it.

use std::time::{Duration, Instant};

use goalpost_shared::plan::Budget;
use goalpost_shared::protocol::Usage;

/// Per-turn timeout when the budget sets no wall time.
pub const DEFAULT_TURN_TIMEOUT: Duration = Duration::from_secs(30 * 60);

/// A limit that has been reached, in the words of the stop report.
#[derive(Debug, Clone, PartialEq)]
pub struct Crossed {
    /// Which budget: `wall`, `turns`, `iterations`, `tokens`, `tokens_in`, `tokens_out`,
    /// `tokens_cached`, `cost_usd`, `tool_calls`.
    pub budget: &'static str,
    pub limit: String,
    pub used: String,
}

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
    pub fn crossed(&self) -> Option<Crossed> {
        crossed(&self.budget, &self.usage, self.started.elapsed())
    }

    /// The first limit reached if one more implementer iteration started now.
    pub fn crossed_before_iteration(&self) -> Option<Crossed> {
        self.crossed().or_else(|| {
            let limit = self.budget.iterations.as_ref()?.value;
            (self.iterations >= limit).then(|| Crossed {
                budget: "iterations",
                limit: limit.to_string(),
                used: self.iterations.to_string(),
            })
        })
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

/// The first of `budget`'s limits that `usage` and `elapsed` have reached. Reaching a limit
/// counts as crossing it: a turn started at the limit would go past it. Iterations are not
/// looked at here (an iteration in progress may finish with its reviewer turn);
/// [`Meter::crossed_before_iteration`] stops a new one at the limit.
pub fn crossed(budget: &Budget, usage: &Usage, elapsed: Duration) -> Option<Crossed> {
    if let Some(wall) = &budget.wall
        && elapsed >= wall.value.duration
    {
        return Some(Crossed {
            budget: "wall",
            limit: wall.value.text.clone(),
            used: format!("{:.1}s", elapsed.as_secs_f64()),
        });
    }
    let counts: [(&'static str, Option<u64>, u64); 6] = [
        (
            "turns",
            budget.turns.as_ref().map(|s| u64::from(s.value)),
            u64::from(usage.turns),
        ),
        (
            "tokens",
            budget.tokens.as_ref().map(|s| s.value),
            usage.tokens_in + usage.tokens_out,
        ),
        (
            "tokens_in",
            budget.tokens_in.as_ref().map(|s| s.value),
            usage.tokens_in,
        ),
        (
            "tokens_out",
            budget.tokens_out.as_ref().map(|s| s.value),
            usage.tokens_out,
        ),
        (
            "tokens_cached",
            budget.tokens_cached.as_ref().map(|s| s.value),
            usage.tokens_cached,
        ),
        (
            "tool_calls",
            budget.tool_calls.as_ref().map(|s| s.value),
            usage.tool_calls,
        ),
    ];
    for (name, limit, used) in counts {
        if let Some(limit) = limit
            && used >= limit
        {
            return Some(Crossed {
                budget: name,
                limit: limit.to_string(),
                used: used.to_string(),
            });
        }
    }
    if let Some(cost) = &budget.cost_usd
        && usage.cost_usd >= cost.value
    {
        return Some(Crossed {
            budget: "cost_usd",
            limit: format!("{:.4}", cost.value),
            used: format!("{:.4}", usage.cost_usd),
        });
    }
    None
}

pub fn duration_ms(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;
    use goalpost_shared::contract::Spanned;
    use goalpost_shared::plan::WallTime;

    fn spanned<T>(v: T) -> Option<Spanned<T>> {
        Some(Spanned::new(v, 1, 1))
    }

    #[test]
    fn no_limits_never_cross() {
        let usage = Usage {
            tokens_in: 1 << 40,
            turns: 1000,
            cost_usd: 1e9,
            ..Usage::default()
        };
        assert_eq!(
            crossed(&Budget::default(), &usage, Duration::from_secs(1 << 20)),
            None
        );
    }

    #[test]
    fn reaching_the_turn_limit_crosses_it() {
        let budget = Budget {
            turns: spanned(2),
            ..Budget::default()
        };
        let mut usage = Usage {
            turns: 1,
            ..Usage::default()
        };
        assert_eq!(crossed(&budget, &usage, Duration::ZERO), None);
        usage.turns = 2;
        let c = crossed(&budget, &usage, Duration::ZERO).unwrap();
        assert_eq!(
            (c.budget, c.limit.as_str(), c.used.as_str()),
            ("turns", "2", "2")
        );
    }

    #[test]
    fn tokens_count_in_plus_out() {
        let budget = Budget {
            tokens: spanned(100),
            ..Budget::default()
        };
        let usage = Usage {
            tokens_in: 60,
            tokens_out: 40,
            tokens_cached: 500,
            ..Usage::default()
        };
        assert_eq!(
            crossed(&budget, &usage, Duration::ZERO).unwrap().budget,
            "tokens"
        );
    }

    #[test]
    fn cost_and_tool_calls() {
        let budget = Budget {
            cost_usd: spanned(0.5),
            tool_calls: spanned(10),
            ..Budget::default()
        };
        let mut usage = Usage {
            cost_usd: 0.49,
            tool_calls: 9,
            ..Usage::default()
        };
        assert_eq!(crossed(&budget, &usage, Duration::ZERO), None);
        usage.tool_calls = 10;
        assert_eq!(
            crossed(&budget, &usage, Duration::ZERO).unwrap().budget,
            "tool_calls"
        );
        usage.tool_calls = 0;
        usage.cost_usd = 0.5;
        let c = crossed(&budget, &usage, Duration::ZERO).unwrap();
        assert_eq!((c.budget, c.used.as_str()), ("cost_usd", "0.5000"));
    }

    #[test]
    fn wall_time_crosses_first() {
        let budget = Budget {
            wall: spanned(WallTime {
                text: "90s".into(),
                duration: Duration::from_secs(90),
            }),
            turns: spanned(0),
            ..Budget::default()
        };
        let c = crossed(&budget, &Usage::default(), Duration::from_secs(91)).unwrap();
        assert_eq!((c.budget, c.limit.as_str()), ("wall", "90s"));
        let c = crossed(&budget, &Usage::default(), Duration::from_secs(10)).unwrap();
        assert_eq!(c.budget, "turns");
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
            (c.budget, c.limit.as_str(), c.used.as_str()),
            ("iterations", "1", "1")
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
