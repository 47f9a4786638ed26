//! The line-level syntax of a goal file: verification checks with their metric
//! expectations, the no-progress limit of the blocked stop condition, `Key: value` lines
//! and comma-separated lists.

use crate::check::MeasuredMetric;
use crate::contract::{CheckKind, MetricExpectation, MetricOp, Spanned};

/// Why a verification item could not be read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CheckError {
    pub message: String,
    pub expected: String,
}

const METRIC_EXPECTED: &str = "`COMMAND` reports `NAME` below|above|at most|at least NUMBER, e.g. `./bench.sh` reports `p95_ms` below 80";

/// Reads one verification item (without its list marker). A command in backticks makes a
/// machine check; "`cmd` reports `NAME` below|above|at most|at least N" adds a metric; no
/// command makes a human-language check.
pub fn parse_check(text: &str) -> Result<CheckKind, CheckError> {
    let Some((command, after)) = code_span(text) else {
        return Ok(CheckKind::Human);
    };
    if command.is_empty() {
        return Err(CheckError {
            message: "empty command in backticks".into(),
            expected: "a command to run, such as `cargo test`".into(),
        });
    }
    let metric = match find_word(after, "reports") {
        Some(i) => Some(parse_metric(&after[i + "reports".len()..])?),
        None => None,
    };
    Ok(CheckKind::Machine {
        command: command.to_string(),
        metric,
    })
}

fn parse_metric(spec: &str) -> Result<MetricExpectation, CheckError> {
    let whole = format!("reports{spec}");
    let err = |what: String| CheckError {
        message: format!("malformed metric expectation \"{}\": {what}", whole.trim()),
        expected: METRIC_EXPECTED.into(),
    };
    let spec = spec.trim_start();
    let (name, rest) = match code_span(spec) {
        Some((name, rest)) if spec.starts_with('`') => (name.to_string(), rest),
        _ => {
            let end = spec
                .find(|c: char| !(c.is_alphanumeric() || "_.-".contains(c)))
                .unwrap_or(spec.len());
            (spec[..end].to_string(), &spec[end..])
        }
    };
    if name.is_empty() {
        return Err(err("no metric name".into()));
    }
    if name.starts_with(MeasuredMetric::PREFIX) && MeasuredMetric::named(&name).is_none() {
        let known: Vec<String> = MeasuredMetric::ALL
            .iter()
            .map(|(_, n)| format!("`{n}`"))
            .collect();
        return Err(CheckError {
            message: format!("unknown measured metric `{name}`"),
            expected: format!("one goalpost measures: {}", known.join(", ")),
        });
    }
    let rest = rest.trim_start();
    let lower = rest.to_ascii_lowercase();
    let ops = [
        ("at most", MetricOp::AtMost),
        ("at least", MetricOp::AtLeast),
        ("below", MetricOp::Below),
        ("above", MetricOp::Above),
    ];
    let Some((word, op)) = ops.iter().find(|(w, _)| {
        lower.starts_with(w) && !lower[w.len()..].starts_with(|c: char| c.is_alphanumeric())
    }) else {
        let found = rest.split_whitespace().next().unwrap_or("");
        return Err(if found.is_empty() {
            err(format!("no comparison after `{name}`"))
        } else {
            err(format!("unknown comparison \"{found}\""))
        });
    };
    let number = rest[word.len()..].split_whitespace().next().unwrap_or("");
    let number = number.trim_end_matches(['.', ',', ';', ':', ')']);
    match number.parse::<f64>() {
        Ok(target) if target.is_finite() => Ok(MetricExpectation {
            name,
            op: *op,
            target,
        }),
        _ if number.is_empty() => Err(err(format!("no number after \"{word}\""))),
        _ => Err(err(format!("\"{number}\" is not a number"))),
    }
}

/// The first code span of `text` (its content, trimmed) and the text after it.
pub(crate) fn code_span(text: &str) -> Option<(&str, &str)> {
    let start = text.find('`')?;
    let ticks = text[start..].len() - text[start..].trim_start_matches('`').len();
    let body_start = start + ticks;
    let fence = &text[start..body_start];
    let mut from = body_start;
    while let Some(i) = text[from..].find(fence) {
        let close = from + i;
        let run = text[close..].len() - text[close..].trim_start_matches('`').len();
        if run == ticks {
            return Some((text[body_start..close].trim(), &text[close + ticks..]));
        }
        from = close + run;
    }
    None
}

/// The byte index of `word` in `text` as a whole word, case-insensitively.
fn find_word(text: &str, word: &str) -> Option<usize> {
    let lower = text.to_ascii_lowercase();
    let mut from = 0;
    while let Some(i) = lower[from..].find(word) {
        let at = from + i;
        let before = lower[..at].chars().next_back();
        let after = lower[at + word.len()..].chars().next();
        let boundary = |c: Option<char>| c.is_none_or(|c| !c.is_alphanumeric());
        if boundary(before) && boundary(after) {
            return Some(at);
        }
        from = at + word.len();
    }
    None
}

/// The no-progress limit of a blocked stop condition: the number before "... no
/// improvement" (or "no progress", "without improvement"), as in "Stop after 2 iterations
/// with no improvement" or "after 3 consecutive experiments with no improvement".
pub fn parse_no_progress_limit(text: &str) -> Option<u32> {
    let lower = text.to_lowercase();
    let words: Vec<&str> = lower
        .split(|c: char| !c.is_alphanumeric())
        .filter(|w| !w.is_empty())
        .collect();
    for i in 0..words.len().saturating_sub(1) {
        let negation = matches!(words[i], "no" | "without");
        let progress = matches!(words[i + 1], "improvement" | "improvements" | "progress");
        if !(negation && progress) {
            continue;
        }
        for w in words[i.saturating_sub(8)..i].iter().rev() {
            if let Some(n) = number_word(w) {
                return Some(n);
            }
        }
    }
    None
}

fn number_word(w: &str) -> Option<u32> {
    if let Ok(n) = w.parse::<u32>() {
        return (n > 0).then_some(n);
    }
    let words = [
        "one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten",
    ];
    words
        .iter()
        .position(|x| *x == w)
        .and_then(|i| u32::try_from(i + 1).ok())
}

/// A `Key: value` line: the key lowercased with single spaces, the value trimmed, and the
/// value's character offset in the line. Keys are one to four words of letters.
pub(crate) fn key_line(text: &str) -> Option<(String, &str, usize)> {
    let colon = text.find(':')?;
    let key = &text[..colon];
    let words: Vec<&str> = key.split_whitespace().collect();
    let letters = key
        .chars()
        .all(|c| c.is_alphabetic() || c == ' ' || c == '-' || c == '_');
    if words.is_empty() || words.len() > 4 || !letters {
        return None;
    }
    let after = &text[colon + 1..];
    let value = after.trim();
    let lead = after.len() - after.trim_start().len();
    let offset = text[..colon + 1 + lead].chars().count();
    Some((words.join(" ").to_lowercase(), value, offset))
}

/// Splits a comma-separated list (globs, phase ids, agent names), dropping backticks and
/// empty entries; each keeps its column given the list starts at `line`:`col`.
pub(crate) fn split_list(value: &str, line: u32, col: u32) -> Vec<Spanned<String>> {
    let mut out = vec![];
    let mut offset = 0usize;
    for part in value.split(',') {
        let lead = part
            .chars()
            .take_while(|c| c.is_whitespace() || *c == '`')
            .count();
        let item = part.trim().trim_matches('`').trim();
        if !item.is_empty() {
            let c = col + u32::try_from(offset + lead).unwrap_or(0);
            out.push(Spanned::new(item.to_string(), line, c));
        }
        offset += part.chars().count() + 1;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn metric(text: &str) -> MetricExpectation {
        match parse_check(text) {
            Ok(CheckKind::Machine {
                metric: Some(m), ..
            }) => m,
            other => panic!("{text}: {other:?}"),
        }
    }

    #[test]
    fn commands_and_metrics() {
        assert_eq!(
            parse_check("`cargo test -p search` passes"),
            Ok(CheckKind::Machine {
                command: "cargo test -p search".into(),
                metric: None
            })
        );
        assert_eq!(parse_check("The format is unchanged"), Ok(CheckKind::Human));
        let m = metric("`./bench/search.sh` reports `p95_ms` below 80");
        assert_eq!(
            (m.name.as_str(), m.op, m.target),
            ("p95_ms", MetricOp::Below, 80.0)
        );
        let m = metric("`./b.sh` reports `parse_us` at most 40");
        assert_eq!((m.op, m.target), (MetricOp::AtMost, 40.0));
        let m = metric("`./b.sh` reports hit_rate at least 0.95.");
        assert_eq!(
            (m.name.as_str(), m.op, m.target),
            ("hit_rate", MetricOp::AtLeast, 0.95)
        );
        let m = metric("`x` REPORTS `n` Above -3");
        assert_eq!((m.op, m.target), (MetricOp::Above, -3.0));
        assert_eq!(code_span("run ``a ` b`` now"), Some(("a ` b", " now")));
    }

    #[test]
    fn malformed_metrics_say_what_is_wrong() {
        let e = parse_check("`./b.sh` reports `p95` under 80").unwrap_err();
        assert!(e.message.contains("unknown comparison \"under\""), "{e:?}");
        let e = parse_check("`./b.sh` reports `p95` below eighty").unwrap_err();
        assert!(e.message.contains("\"eighty\" is not a number"), "{e:?}");
        let e = parse_check("`./b.sh` reports `p95` below").unwrap_err();
        assert!(e.message.contains("no number"), "{e:?}");
        let e = parse_check("`./b.sh` reports").unwrap_err();
        assert!(e.message.contains("no metric name"), "{e:?}");
    }

    #[test]
    fn no_progress_limits() {
        let cases = [
            (
                "Stop after 2 iterations with no improvement, or when a check cannot run.",
                Some(2),
            ),
            (
                "Stop when the benchmark cannot run, or after 3 consecutive experiments with no\nimprovement.",
                Some(3),
            ),
            ("after four rounds without progress", Some(4)),
            ("Stop when the benchmark cannot run.", None),
            ("no improvement at all", None),
        ];
        for (text, want) in cases {
            assert_eq!(parse_no_progress_limit(text), want, "{text}");
        }
    }

    #[test]
    fn key_lines_and_lists() {
        assert_eq!(
            key_line("Depends on: a, b"),
            Some(("depends on".into(), "a, b", 12))
        );
        assert_eq!(key_line("`cargo test`: x"), None);
        assert_eq!(key_line("no colon"), None);
        let l = split_list("a, `b` ,c", 3, 10);
        let got: Vec<(&str, u32)> = l.iter().map(|s| (s.value.as_str(), s.col)).collect();
        assert_eq!(got, [("a", 10), ("b", 14), ("c", 18)]);
    }
}
