//! Usage a CLI's output does not spell out as goalpost counts it: the `USAGE:` line of a
//! `command` agent, and the cost of tokens from the goal file's prices.

use goalpost_shared::plan;
use goalpost_shared::protocol::Usage;

/// Sets `usage.cost_usd` from `price` (dollars per million tokens) unless the CLI already
/// reported a cost. `tokens_in` counts cached input too; cached tokens cost the cached
/// price.
pub fn price_usage(price: &plan::Price, usage: &mut Usage) {
    if usage.cost_usd > 0.0 {
        return;
    }
    let cached = usage.tokens_cached.min(usage.tokens_in) as f64;
    let fresh = usage.tokens_in as f64 - cached;
    usage.cost_usd = (fresh * price.input_per_mtok
        + cached * price.cached_per_mtok
        + usage.tokens_out as f64 * price.output_per_mtok)
        / 1_000_000.0;
}

/// More than any one turn can use: figures above these are not believed.
const MAX_TOKENS: u64 = 1_000_000_000_000;
const MAX_COST_USD: f64 = 1_000_000.0;
const MAX_COUNT: u64 = 1_000_000;

/// Puts right what a turn's usage cannot be, and says what it was: a cost below zero or
/// not a number counts as no cost (a negative one would pay back what other turns spent);
/// figures larger than any turn can use stay as reported, so the budget they cross stops
/// the attempt. `None` when every figure is possible.
pub fn refuse_impossible(usage: &mut Usage) -> Option<String> {
    let mut wrong = Vec::new();
    if !usage.cost_usd.is_finite() || usage.cost_usd < 0.0 {
        wrong.push(format!("cost_usd {} (counted as 0)", usage.cost_usd));
        usage.cost_usd = 0.0;
    } else if usage.cost_usd > MAX_COST_USD {
        wrong.push(format!("cost_usd {}", usage.cost_usd));
    }
    for (name, value) in [
        ("tokens_in", usage.tokens_in),
        ("tokens_out", usage.tokens_out),
        ("tokens_cached", usage.tokens_cached),
    ] {
        if value > MAX_TOKENS {
            wrong.push(format!("{name} {value}"));
        }
    }
    for (name, value) in [
        ("turns", u64::from(usage.turns)),
        ("tool_calls", usage.tool_calls),
    ] {
        if value > MAX_COUNT {
            wrong.push(format!("{name} {value}"));
        }
    }
    (!wrong.is_empty()).then(|| {
        format!(
            "the agent reported usage no turn can have: {}",
            wrong.join(", ")
        )
    })
}

/// Usage from the last `USAGE:` line of a `command` agent's output; fields it does not
/// name stay 0, words it does not know are ignored.
pub fn parse_usage(output: &str) -> Usage {
    let mut usage = Usage::default();
    let Some(line) = output
        .lines()
        .rev()
        .find_map(|l| l.trim().strip_prefix("USAGE:"))
    else {
        return usage;
    };
    for word in line.split_whitespace() {
        let Some((key, value)) = word.split_once('=') else {
            continue;
        };
        let int = || value.parse::<u64>().ok();
        match key {
            "tokens_in" => usage.tokens_in = int().unwrap_or(0),
            "tokens_out" => usage.tokens_out = int().unwrap_or(0),
            "tokens_cached" => usage.tokens_cached = int().unwrap_or(0),
            "tool_calls" => usage.tool_calls = int().unwrap_or(0),
            "cost_usd" => {
                usage.cost_usd = value
                    .parse::<f64>()
                    .ok()
                    .filter(|c| c.is_finite())
                    .unwrap_or(0.0)
            }
            _ => {}
        }
    }
    usage
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn impossible_usage_is_refused_and_a_negative_cost_pays_nothing_back() {
        let mut fine = Usage {
            tokens_in: 5_000,
            cost_usd: 0.25,
            ..Usage::default()
        };
        assert_eq!(refuse_impossible(&mut fine), None);
        assert_eq!(fine.cost_usd, 0.25);
        for cost in [-5.0, f64::NAN, f64::INFINITY, f64::NEG_INFINITY] {
            let mut usage = Usage {
                cost_usd: cost,
                ..Usage::default()
            };
            let why = refuse_impossible(&mut usage).unwrap_or_default();
            assert!(why.contains("cost_usd"), "{cost}: {why}");
            assert_eq!(usage.cost_usd, 0.0, "{cost}");
        }
        let mut huge = Usage {
            tokens_out: u64::MAX,
            tool_calls: 10_000_000,
            ..Usage::default()
        };
        let why = refuse_impossible(&mut huge).unwrap_or_default();
        assert!(why.contains("tokens_out 18446744073709551615"), "{why}");
        assert!(why.contains("tool_calls 10000000"), "{why}");
        // Kept as reported: the budget it crosses stops the attempt.
        assert_eq!(huge.tokens_out, u64::MAX);
    }

    #[test]
    fn a_usage_line_with_a_negative_cost_is_refused_by_the_turn() {
        let mut usage = parse_usage("done\nUSAGE: tokens_in=10 cost_usd=-3.5\n");
        assert_eq!(usage.cost_usd, -3.5, "parsed as written");
        assert!(refuse_impossible(&mut usage).is_some());
        assert_eq!(usage.cost_usd, 0.0);
    }

    #[test]
    fn a_price_covers_fresh_cached_and_output_tokens_but_never_overrides_a_reported_cost() {
        let price = plan::Price {
            input_per_mtok: 3.0,
            output_per_mtok: 15.0,
            cached_per_mtok: 0.3,
        };
        let mut usage = Usage {
            tokens_in: 1_500,
            tokens_cached: 500,
            tokens_out: 100,
            ..Usage::default()
        };
        price_usage(&price, &mut usage);
        assert!(
            (usage.cost_usd - (1_000.0 * 3.0 + 500.0 * 0.3 + 100.0 * 15.0) / 1e6).abs() < 1e-15
        );
        let mut reported = Usage {
            tokens_in: 1_500,
            cost_usd: 0.5,
            ..Usage::default()
        };
        price_usage(&price, &mut reported);
        assert_eq!(reported.cost_usd, 0.5);
    }

    #[test]
    fn usage_line_is_read() {
        let out = "working\nUSAGE: tokens_in=10 tokens_out=5\nClaims:\n- x\n\
                   USAGE: tokens_in=1200 tokens_out=340 cost_usd=0.0125 tool_calls=7 bogus\n";
        let usage = parse_usage(out);
        assert_eq!(usage.tokens_in, 1200);
        assert_eq!(usage.tokens_out, 340);
        assert_eq!(usage.tool_calls, 7);
        assert!((usage.cost_usd - 0.0125).abs() < 1e-12);
        assert_eq!(usage.turns, 0);
    }

    #[test]
    fn no_usage_line_is_zero() {
        assert_eq!(parse_usage("done\n"), Usage::default());
        assert_eq!(
            parse_usage("USAGE: tokens_in=abc cost_usd=NaN").tokens_in,
            0
        );
        assert_eq!(
            parse_usage("USAGE: tokens_in=abc cost_usd=NaN").cost_usd,
            0.0
        );
    }
}
