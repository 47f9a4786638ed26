//! Budgets: the kinds of limit a goal file sets, what a usage record has spent of each,
//! which limit is reached, what is left of a budget, and raising a limit on resume. The
//! worker meters one round against what was left when it started; the orchestrator an
//! attempt's whole life and the run. Both ask here, so a kind is named, counted and
//! described in one place.

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use crate::contract::Spanned;

/// How long one agent turn, or one check of the worker's, may run when the budget sets
/// no wall time.
pub const DEFAULT_TURN_TIMEOUT: Duration = Duration::from_secs(30 * 60);
use crate::plan::{Budget, WallTime};
use crate::protocol::Usage;

/// One kind of limit of a `[budget]` or `[run_budget]` table.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum BudgetKind {
    /// Wall time.
    Wall,
    /// Agent turns.
    Turns,
    /// Tokens in + out (cached input included in "in").
    Tokens,
    TokensIn,
    TokensOut,
    TokensCached,
    ToolCalls,
    CostUsd,
    /// Implementer iterations.
    Iterations,
}

impl BudgetKind {
    /// Every kind, in the order a crossed limit is looked for.
    pub const ALL: [BudgetKind; 9] = [
        BudgetKind::Wall,
        BudgetKind::Turns,
        BudgetKind::Tokens,
        BudgetKind::TokensIn,
        BudgetKind::TokensOut,
        BudgetKind::TokensCached,
        BudgetKind::ToolCalls,
        BudgetKind::CostUsd,
        BudgetKind::Iterations,
    ];

    /// The kind's name in goal files, `--budget` and stop reports.
    pub fn name(self) -> &'static str {
        match self {
            BudgetKind::Wall => "wall",
            BudgetKind::Turns => "turns",
            BudgetKind::Tokens => "tokens",
            BudgetKind::TokensIn => "tokens_in",
            BudgetKind::TokensOut => "tokens_out",
            BudgetKind::TokensCached => "tokens_cached",
            BudgetKind::ToolCalls => "tool_calls",
            BudgetKind::CostUsd => "cost_usd",
            BudgetKind::Iterations => "iterations",
        }
    }

    /// Every kind's name, comma-separated, for error hints.
    pub fn names() -> String {
        Self::ALL.map(BudgetKind::name).join(", ")
    }

    /// The limit `budget` sets for this kind, as a number (seconds for wall time).
    pub fn limit(self, budget: &Budget) -> Option<f64> {
        let n = |s: &Option<Spanned<u64>>| s.as_ref().map(|s| s.value as f64);
        match self {
            BudgetKind::Wall => budget.wall.as_ref().map(|w| w.value.duration.as_secs_f64()),
            BudgetKind::Turns => budget.turns.as_ref().map(|s| f64::from(s.value)),
            BudgetKind::Tokens => n(&budget.tokens),
            BudgetKind::TokensIn => n(&budget.tokens_in),
            BudgetKind::TokensOut => n(&budget.tokens_out),
            BudgetKind::TokensCached => n(&budget.tokens_cached),
            BudgetKind::ToolCalls => n(&budget.tool_calls),
            BudgetKind::CostUsd => budget.cost_usd.as_ref().map(|s| s.value),
            BudgetKind::Iterations => budget.iterations.as_ref().map(|s| f64::from(s.value)),
        }
    }
}

impl fmt::Display for BudgetKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for BudgetKind {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::ALL
            .into_iter()
            .find(|k| k.name() == s)
            .ok_or_else(|| {
                format!(
                    "unknown budget kind `{s}`; expected one of {}",
                    Self::names()
                )
            })
    }
}

/// What has been spent against a budget.
#[derive(Debug, Clone, Copy)]
pub struct Spent<'a> {
    pub usage: &'a Usage,
    /// Implementer iterations; `None` leaves the iteration limit out (an iteration in
    /// progress may finish with its reviewer turn).
    pub iterations: Option<u32>,
    /// Wall time; the usage record's own `wall_ms` when `None`.
    pub elapsed: Option<Duration>,
}

impl Spent<'_> {
    fn wall(&self) -> Duration {
        self.elapsed
            .unwrap_or(Duration::from_millis(self.usage.wall_ms))
    }

    /// How much of `kind` was spent, as a number (seconds for wall time).
    pub fn of(&self, kind: BudgetKind) -> Option<f64> {
        let u = self.usage;
        Some(match kind {
            BudgetKind::Wall => self.wall().as_secs_f64(),
            BudgetKind::Turns => f64::from(u.turns),
            BudgetKind::Tokens => (u.tokens_in + u.tokens_out) as f64,
            BudgetKind::TokensIn => u.tokens_in as f64,
            BudgetKind::TokensOut => u.tokens_out as f64,
            BudgetKind::TokensCached => u.tokens_cached as f64,
            BudgetKind::ToolCalls => u.tool_calls as f64,
            BudgetKind::CostUsd => u.cost_usd,
            BudgetKind::Iterations => f64::from(self.iterations?),
        })
    }
}

/// A limit that has been reached, in the words of the stop report.
#[derive(Debug, Clone, PartialEq)]
pub struct Crossed {
    pub kind: BudgetKind,
    pub limit: String,
    pub used: String,
}

impl fmt::Display for Crossed {
    /// "tokens: used 1200 of 1000".
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: used {} of {}", self.kind, self.used, self.limit)
    }
}

/// The first of `budget`'s limits that `spent` has reached, in [`BudgetKind::ALL`]'s
/// order. Reaching a limit counts as crossing it: a turn started at the limit would go
/// past it.
pub fn crossed(budget: &Budget, spent: Spent<'_>) -> Option<Crossed> {
    BudgetKind::ALL.into_iter().find_map(|kind| {
        let limit = kind.limit(budget)?;
        let used = spent.of(kind)?;
        (used >= limit).then(|| figures(budget, kind, spent))?
    })
}

/// `kind`'s limit in `budget` and what `spent` used of it, in the words of a stop report,
/// reached or not; `None` when `budget` sets no such limit.
pub fn figures(budget: &Budget, kind: BudgetKind, spent: Spent<'_>) -> Option<Crossed> {
    let limit = kind.limit(budget)?;
    let used = spent.of(kind)?;
    Some(Crossed {
        kind,
        limit: describe(budget, kind, limit),
        used: match kind {
            BudgetKind::Wall => format!("{used:.1}s"),
            BudgetKind::CostUsd => format!("{used:.4}"),
            _ => format!("{used}"),
        },
    })
}

/// A limit as the goal file wrote it (wall time) or as a number.
fn describe(budget: &Budget, kind: BudgetKind, limit: f64) -> String {
    match (kind, &budget.wall) {
        (BudgetKind::Wall, Some(w)) => w.value.text.clone(),
        (BudgetKind::CostUsd, _) => format!("{limit:.4}"),
        _ => format!("{limit}"),
    }
}

/// What is left of `budget` after `spent` (iterations count only when given); a limit
/// never goes below zero, and a limit `budget` does not set stays unset.
pub fn remaining(budget: &Budget, spent: Spent<'_>) -> Budget {
    fn left<T: Copy + std::ops::Sub<Output = T> + PartialOrd + Default>(
        limit: &Option<Spanned<T>>,
        used: T,
    ) -> Option<Spanned<T>> {
        limit.as_ref().map(|l| {
            let v = if used >= l.value {
                T::default()
            } else {
                l.value - used
            };
            Spanned::new(v, l.line, l.col)
        })
    }
    let u = spent.usage;
    let wall = budget.wall.as_ref().map(|w| {
        let d = w.value.duration.saturating_sub(spent.wall());
        Spanned::new(
            WallTime {
                text: format!("{}s", d.as_secs()),
                duration: d,
            },
            w.line,
            w.col,
        )
    });
    Budget {
        turns: left(&budget.turns, u.turns),
        wall,
        tokens: left(&budget.tokens, u.tokens_in + u.tokens_out),
        tokens_in: left(&budget.tokens_in, u.tokens_in),
        tokens_out: left(&budget.tokens_out, u.tokens_out),
        tokens_cached: left(&budget.tokens_cached, u.tokens_cached),
        cost_usd: left(&budget.cost_usd, u.cost_usd),
        tool_calls: left(&budget.tool_calls, u.tool_calls),
        iterations: left(&budget.iterations, spent.iterations.unwrap_or(0)),
        tmp_mb: budget.tmp_mb.clone(),
        // A cap on what is held at once, not an amount spent.
        objects_mb: budget.objects_mb.clone(),
        // The auditor's spend is the run's, not the attempt's: each audit gets its own.
        audit: budget.audit.clone(),
    }
}

/// Why a `--budget` change could not be applied.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("--budget {spec}: {why}")]
pub struct RaiseError {
    pub spec: String,
    pub why: String,
}

impl RaiseError {
    /// What a valid change looks like.
    pub fn hint() -> String {
        format!(
            "write KIND=+N or KIND=N, KIND one of {} (wall in seconds)",
            BudgetKind::names()
        )
    }
}

/// Applies `KIND=+N` (raise by N) or `KIND=N` (set to N) to `budget`: `+N` raises a limit
/// that is set and leaves an unset one unset (no limit stays no limit); `N` sets it either way.
pub fn raise(budget: &mut Budget, spec: &str) -> Result<(), RaiseError> {
    let bad = |why: &str| RaiseError {
        spec: spec.to_owned(),
        why: why.to_owned(),
    };
    let (kind, value) = spec.split_once('=').ok_or_else(|| bad("no `=`"))?;
    let kind: BudgetKind = kind.trim().parse().map_err(|e: String| bad(&e))?;
    let (add, number) = match value.strip_prefix('+') {
        Some(n) => (true, n),
        None => (false, value),
    };
    let n: f64 = number.trim().parse().map_err(|_| bad("not a number"))?;
    if !(n.is_finite() && n >= 0.0) {
        return Err(bad("not a non-negative number"));
    }
    fn apply<T: Copy + std::ops::Add<Output = T>>(slot: &mut Option<Spanned<T>>, add: bool, n: T) {
        match slot {
            Some(s) if add => s.value = s.value + n,
            Some(s) => s.value = n,
            None if !add => *slot = Some(Spanned::new(n, 0, 0)),
            None => {}
        }
    }
    // Counts are whole: a fraction of a turn or a token is dropped.
    let whole = n as u64;
    let small = u32::try_from(whole).unwrap_or(u32::MAX);
    match kind {
        BudgetKind::Turns => apply(&mut budget.turns, add, small),
        BudgetKind::Iterations => apply(&mut budget.iterations, add, small),
        BudgetKind::Tokens => apply(&mut budget.tokens, add, whole),
        BudgetKind::TokensIn => apply(&mut budget.tokens_in, add, whole),
        BudgetKind::TokensOut => apply(&mut budget.tokens_out, add, whole),
        BudgetKind::TokensCached => apply(&mut budget.tokens_cached, add, whole),
        BudgetKind::ToolCalls => apply(&mut budget.tool_calls, add, whole),
        BudgetKind::CostUsd => apply(&mut budget.cost_usd, add, n),
        BudgetKind::Wall => {
            let extra = Duration::from_secs(whole);
            match &mut budget.wall {
                Some(w) if add => {
                    w.value.duration += extra;
                    w.value.text = format!("{}s", w.value.duration.as_secs());
                }
                slot if !add || slot.is_some() => {
                    *slot = Some(Spanned::new(
                        WallTime {
                            text: format!("{whole}s"),
                            duration: extra,
                        },
                        0,
                        0,
                    ))
                }
                _ => {}
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn spanned<T>(v: T) -> Option<Spanned<T>> {
        Some(Spanned::new(v, 1, 1))
    }

    fn wall(secs: u64) -> Option<Spanned<WallTime>> {
        spanned(WallTime {
            text: format!("{secs}s"),
            duration: Duration::from_secs(secs),
        })
    }

    fn spent(usage: &Usage) -> Spent<'_> {
        Spent {
            usage,
            iterations: None,
            elapsed: None,
        }
    }

    #[test]
    fn every_kind_has_one_name_that_parses_back() {
        for kind in BudgetKind::ALL {
            assert_eq!(kind.name().parse::<BudgetKind>(), Ok(kind));
        }
        let err = "minutes".parse::<BudgetKind>().unwrap_err();
        assert!(err.contains("unknown budget kind `minutes`"), "{err}");
        assert!(err.contains("tool_calls"), "{err}");
    }

    #[test]
    fn no_limits_never_cross() {
        let usage = Usage {
            tokens_in: 1 << 40,
            turns: 1000,
            cost_usd: 1e9,
            wall_ms: 1 << 40,
            ..Usage::default()
        };
        let s = Spent {
            iterations: Some(1000),
            ..spent(&usage)
        };
        assert_eq!(crossed(&Budget::default(), s), None);
    }

    #[test]
    fn reaching_a_limit_crosses_it_and_says_so() {
        let budget = Budget {
            tokens: spanned(1000),
            ..Budget::default()
        };
        let mut usage = Usage {
            tokens_in: 700,
            tokens_out: 299,
            tokens_cached: 5000,
            ..Usage::default()
        };
        assert_eq!(crossed(&budget, spent(&usage)), None);
        usage.tokens_out = 500;
        let c = crossed(&budget, spent(&usage)).unwrap();
        assert_eq!(c.kind, BudgetKind::Tokens);
        assert_eq!(c.to_string(), "tokens: used 1200 of 1000");
    }

    #[test]
    fn wall_time_is_looked_at_first_and_read_from_the_usage_or_the_clock() {
        let budget = Budget {
            wall: wall(90),
            turns: spanned(0),
            ..Budget::default()
        };
        let usage = Usage {
            wall_ms: 91_000,
            ..Usage::default()
        };
        let c = crossed(&budget, spent(&usage)).unwrap();
        assert_eq!(c.to_string(), "wall: used 91.0s of 90s");
        let clock = Spent {
            elapsed: Some(Duration::from_secs(10)),
            ..spent(&usage)
        };
        assert_eq!(crossed(&budget, clock).unwrap().kind, BudgetKind::Turns);
    }

    #[test]
    fn iterations_count_only_when_given() {
        let budget = Budget {
            iterations: spanned(2),
            ..Budget::default()
        };
        let usage = Usage::default();
        assert_eq!(crossed(&budget, spent(&usage)), None);
        let s = Spent {
            iterations: Some(2),
            ..spent(&usage)
        };
        assert_eq!(
            crossed(&budget, s).unwrap().to_string(),
            "iterations: used 2 of 2"
        );
    }

    #[test]
    fn cost_is_written_to_four_places() {
        let budget = Budget {
            cost_usd: spanned(0.5),
            ..Budget::default()
        };
        let usage = Usage {
            cost_usd: 0.5,
            ..Usage::default()
        };
        assert_eq!(
            crossed(&budget, spent(&usage)).unwrap().to_string(),
            "cost_usd: used 0.5000 of 0.5000"
        );
    }

    #[test]
    fn remaining_subtracts_and_never_goes_below_zero() {
        let budget = Budget {
            turns: spanned(5),
            tokens: spanned(100),
            wall: wall(60),
            iterations: spanned(3),
            ..Budget::default()
        };
        let usage = Usage {
            turns: 7,
            tokens_in: 30,
            tokens_out: 20,
            wall_ms: 20_000,
            ..Usage::default()
        };
        let left = remaining(
            &budget,
            Spent {
                iterations: Some(1),
                ..spent(&usage)
            },
        );
        assert_eq!(left.turns.unwrap().value, 0);
        assert_eq!(left.tokens.unwrap().value, 50);
        assert_eq!(left.wall.unwrap().value.duration, Duration::from_secs(40));
        assert_eq!(left.iterations.unwrap().value, 2);
        assert_eq!(left.cost_usd, None);
    }

    #[test]
    fn raise_adds_to_a_set_limit_sets_with_a_plain_number_and_refuses_nonsense() {
        let mut budget = Budget {
            turns: spanned(4),
            wall: wall(60),
            ..Budget::default()
        };
        raise(&mut budget, "turns=+6").unwrap();
        raise(&mut budget, "wall=+30").unwrap();
        raise(&mut budget, "tokens=+100").unwrap();
        raise(&mut budget, "cost_usd=2.5").unwrap();
        assert_eq!(budget.turns.as_ref().unwrap().value, 10);
        assert_eq!(budget.wall.as_ref().unwrap().value.text, "90s");
        assert_eq!(budget.tokens, None, "no limit stays no limit");
        assert_eq!(budget.cost_usd.as_ref().unwrap().value, 2.5);
        for (spec, why) in [
            ("turns", "no `=`"),
            ("turns=x", "not a number"),
            ("turns=-1", "not a non-negative number"),
            ("minutes=5", "unknown budget kind `minutes`"),
        ] {
            let err = raise(&mut budget, spec).unwrap_err();
            assert!(err.to_string().contains(why), "{spec}: {err}");
            assert!(err.to_string().starts_with(&format!("--budget {spec}:")));
        }
    }
}
