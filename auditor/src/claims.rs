//! Matching the implementer's claims to the auditor's own evidence.
//!
//! A claim is taken at its word only where the auditor's run can confirm or contradict it:
//!
//! - a claim with a metric value ("p95 is 98 ms", "parse_us=30", "p95_ms below 80") is
//!   compared with the auditor's reading of that metric: a stated bound must hold, a
//!   stated value must be within 10% of the reading (timings vary between runs);
//! - a claim that tests or checks pass ("tests pass", "all checks green", "`cargo test`
//!   passes") is matched to the checks it names, by command or by kind, and is verified
//!   when all of them passed in the auditor's run, refuted when one failed;
//! - anything else is unverifiable, with the evidence that would settle it.

use goalpost_shared::check::read_metric;
use goalpost_shared::contract::MetricOp;
use goalpost_shared::process;
use goalpost_shared::protocol::{CheckResult, ClaimFinding, ClaimStatus};

/// How much of a check's output a claim's evidence quotes, per stream.
const QUOTE_BYTES: usize = 800;

/// Relative difference within which a claimed metric value counts as confirmed.
const METRIC_TOLERANCE: f64 = 0.10;

/// Judges every claim against the auditor's check results.
pub fn judge_claims(claims: &[String], checks: &[CheckResult]) -> Vec<ClaimFinding> {
    claims
        .iter()
        .map(|claim| judge_claim(claim.trim(), checks))
        .collect()
}

fn judge_claim(claim: &str, checks: &[CheckResult]) -> ClaimFinding {
    // A metric the auditor did not read leaves the claim to the checks it may name.
    let metric = metric_claim(claim, checks);
    let (status, evidence) = metric
        .clone()
        .filter(|(status, _)| *status != ClaimStatus::Unverifiable)
        .or_else(|| check_claim(claim, checks))
        .or(metric)
        .unwrap_or_else(|| {
            (
                ClaimStatus::Unverifiable,
                "No machine check speaks to this. Evidence needed: a check in the contract \
                 whose output shows it, or a reviewer's reading of the diff."
                    .to_owned(),
            )
        });
    ClaimFinding {
        claim: claim.to_owned(),
        status,
        evidence,
    }
}

/// A bound or value the claim states for a metric.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Stated {
    About(f64),
    Bound(MetricOp, f64),
}

/// The metric names worth looking for: those the checks name, then `NAME=value` /
/// `NAME: value` written in the claim itself.
fn metric_claim(claim: &str, checks: &[CheckResult]) -> Option<(ClaimStatus, String)> {
    let mut names: Vec<String> = checks
        .iter()
        .filter_map(|c| c.metric.as_ref().map(|m| m.name.clone()))
        .collect();
    names.extend(assignments_in(claim));
    let (name, stated) = names
        .iter()
        .find_map(|name| stated_metric(claim, name).map(|s| (name.clone(), s)))?;
    let reading = checks.iter().find_map(|check| {
        let from_check = check
            .metric
            .as_ref()
            .filter(|m| m.name == name)
            .and_then(|m| m.value);
        from_check
            .or_else(|| read_metric(&check.record.stdout, &name))
            .or_else(|| read_metric(&check.record.stderr, &name))
            .map(|value| (value, check))
    });
    let Some((measured, check)) = reading else {
        return Some((
            ClaimStatus::Unverifiable,
            format!(
                "The auditor's checks printed no `{name}`. Evidence needed: a machine check \
                 whose output reports `{name}=<value>`."
            ),
        ));
    };
    let (holds, said) = match stated {
        Stated::About(value) => {
            let close = (value - measured).abs() <= METRIC_TOLERANCE * measured.abs().max(1e-9);
            (close, format!("{name}={value}"))
        }
        Stated::Bound(op, bound) => (
            op.holds(measured, bound),
            format!("{name} {} {bound}", op.as_str()),
        ),
    };
    let evidence = format!(
        "Claimed {said}; the auditor's run of `{}` read {name}={measured}.",
        check.command
    );
    let status = if holds {
        ClaimStatus::Verified
    } else {
        ClaimStatus::Refuted
    };
    Some((status, evidence))
}

/// `NAME` of every `NAME=value` / `NAME: value` in the claim.
fn assignments_in(claim: &str) -> Vec<String> {
    let mut names = Vec::new();
    for (at, _) in claim.match_indices(['=', ':']) {
        let before = claim[..at].trim_end();
        let start = before
            .rfind(|c: char| !(c.is_alphanumeric() || c == '_'))
            .map_or(0, |i| i + 1);
        let name = &before[start..];
        if !name.is_empty() && read_metric(claim, name).is_some() {
            names.push(name.to_owned());
        }
    }
    names
}

/// What the claim states about metric `name`: `name=98`, `name: 98`, or the name (or its
/// first part, `p95` for `p95_ms`) followed within a few words by a number, optionally
/// after a comparison ("p95 is below 80 ms", "p95_ms under 80", "p95 of 98ms").
fn stated_metric(claim: &str, name: &str) -> Option<Stated> {
    if let Some(value) = read_metric(claim, name) {
        return Some(Stated::About(value));
    }
    let lower = claim.to_lowercase();
    let short = name.split('_').next().unwrap_or(name).to_lowercase();
    [name.to_lowercase(), short].iter().find_map(|key| {
        let at = word_position(&lower, key)?;
        let rest = &lower[at + key.len()..];
        let number_at = rest.find(|c: char| c.is_ascii_digit())?;
        let between = &rest[..number_at];
        // Only linking words between the name and the number: "p95 went from 120 to 98"
        // or "the time to parse is 3x lower" are not readings to compare.
        let linking = between
            .split(|c: char| c.is_whitespace() || c == '=' || c == ':' || c == '~')
            .filter(|w| !w.is_empty())
            .all(|w| LINKING_WORDS.contains(&w));
        if !linking {
            return None;
        }
        let digits: String = rest[number_at..]
            .chars()
            .take_while(|c| c.is_ascii_digit() || *c == '.')
            .collect();
        let after = rest[number_at + digits.len()..].trim_start();
        if after.starts_with(['x', '%']) || after.starts_with("times") {
            return None; // Relative ("3x faster", "20% lower"), not a value.
        }
        let value: f64 = digits.trim_end_matches('.').parse().ok()?;
        Some(match comparison(between) {
            Some(op) => Stated::Bound(op, value),
            None => Stated::About(value),
        })
    })
}

/// Words that may stand between a metric's name and its value in a claim.
const LINKING_WORDS: &[&str] = &[
    "is",
    "are",
    "was",
    "now",
    "of",
    "at",
    "about",
    "around",
    "approximately",
    "roughly",
    "down",
    "to",
    "measured",
    "reads",
    "stays",
    "remains",
    "below",
    "under",
    "less",
    "than",
    "most",
    "least",
    "above",
    "over",
    "more",
    "no",
    "<",
    "<=",
    ">",
    ">=",
];

fn comparison(words: &str) -> Option<MetricOp> {
    let has = |w: &str| words.contains(w);
    if has("at most") || has("<=") || has("no more than") {
        Some(MetricOp::AtMost)
    } else if has("at least") || has(">=") || has("no less than") {
        Some(MetricOp::AtLeast)
    } else if has("below") || has("under") || has("less than") || has("<") {
        Some(MetricOp::Below)
    } else if has("above") || has("over") || has("more than") || has(">") {
        Some(MetricOp::Above)
    } else {
        None
    }
}

/// The byte offset of `word` in `text` where it stands as a word of its own.
fn word_position(text: &str, word: &str) -> Option<usize> {
    let is_word = |c: char| c.is_alphanumeric() || c == '_';
    text.match_indices(word).map(|(at, _)| at).find(|&at| {
        let before = text[..at].chars().next_back();
        let after = text[at + word.len()..].chars().next();
        !before.is_some_and(is_word) && !after.is_some_and(is_word)
    })
}

/// A claim that checks pass: matched to checks by command, then by kind.
fn check_claim(claim: &str, checks: &[CheckResult]) -> Option<(ClaimStatus, String)> {
    let lower = claim.to_lowercase();
    let by_command: Vec<&CheckResult> = checks
        .iter()
        .filter(|check| {
            command_keys(&check.command)
                .iter()
                .any(|key| lower.contains(key))
        })
        .collect();
    let matched = if !by_command.is_empty() {
        by_command
    } else {
        let mentions = |words: &[&str]| words.iter().any(|w| word_position(&lower, w).is_some());
        let about_tests = mentions(&["test", "tests", "test suite", "specs"]);
        let about_checks = mentions(&["check", "checks", "green", "verification", "ci"]);
        let tool = [
            "build",
            "builds",
            "compiles",
            "lint",
            "clippy",
            "fmt",
            "bench",
            "benchmark",
        ]
        .into_iter()
        .find(|w| word_position(&lower, w).is_some());
        if !(about_tests || about_checks || tool.is_some()) {
            return None;
        }
        if checks.is_empty() {
            return Some((
                ClaimStatus::Unverifiable,
                "The contract has no machine check. Evidence needed: a machine check that \
                 runs what the claim is about."
                    .to_owned(),
            ));
        }
        let containing = |word: &str| -> Vec<&CheckResult> {
            checks
                .iter()
                .filter(|c| c.command.to_lowercase().contains(word))
                .collect()
        };
        if about_tests && !containing("test").is_empty() {
            containing("test")
        } else if let Some(tool) = tool.filter(|_| !about_tests && !about_checks) {
            let stem = tool.trim_end_matches('s').trim_end_matches("mark");
            let found = containing(if stem == "compile" { "build" } else { stem });
            if found.is_empty() {
                return Some((
                    ClaimStatus::Unverifiable,
                    format!(
                        "No machine check runs a {tool} step. Evidence needed: a check that does."
                    ),
                ));
            }
            found
        } else {
            checks.iter().collect()
        }
    };
    if asserts_failure(&lower) {
        return Some((
            ClaimStatus::Unverifiable,
            "The claim reports a failure rather than a result to verify.".to_owned(),
        ));
    }
    if !asserts_success(&lower) {
        return None; // "Added tests for X" says what was done, not how the checks came out.
    }
    let failed: Vec<&&CheckResult> = matched.iter().filter(|c| !c.passed).collect();
    let evidence = if failed.is_empty() {
        let list: Vec<String> = matched
            .iter()
            .map(|c| format!("`{}` passed in {} ms", c.command, c.record.duration_ms))
            .collect();
        let last = matched.last().map(|c| quote(c)).unwrap_or_default();
        (
            ClaimStatus::Verified,
            join_quote(format!("In the auditor's run: {}.", list.join("; ")), last),
        )
    } else {
        let list: Vec<String> = failed
            .iter()
            .map(|c| {
                format!(
                    "`{}` failed ({})",
                    c.command,
                    c.failure.as_deref().unwrap_or("failed")
                )
            })
            .collect();
        (
            ClaimStatus::Refuted,
            join_quote(
                format!("In the auditor's run: {}.", list.join("; ")),
                quote(failed[0]),
            ),
        )
    };
    Some(evidence)
}

/// Negative claims ("the flaky test fails") are not claims of success to check.
fn asserts_failure(lower: &str) -> bool {
    let fails = lower.contains("fail")
        || ["broken", "red", "crash", "crashes"]
            .iter()
            .any(|w| word_position(lower, w).is_some());
    let negated = [
        "no ", "none ", "nothing ", "0 ", "zero ", "not ", "without ", "never ",
    ]
    .iter()
    .any(|w| lower.contains(&format!("{w}fail")) || lower.contains(&format!("{w}test fail")))
        || lower.contains("no tests fail");
    fails && !negated
}

/// Whether the claim says something passed: "tests pass", "all green", "clippy is
/// clean", "it builds", "no tests fail".
fn asserts_success(lower: &str) -> bool {
    [
        "pass",
        "green",
        "succe",
        "clean",
        "compiles",
        "builds",
        "no error",
        "no warning",
    ]
    .iter()
    .any(|w| lower.contains(w))
        || ["ok", "work", "works", "fine"]
            .iter()
            .any(|w| word_position(lower, w).is_some())
        || (lower.contains("fail") && !asserts_failure(lower))
}

/// Strings that identify a check's command in a claim: the whole command, its first two
/// words when the second is not an option (`cargo test`), and words that look like a
/// script (`tests/run.sh`).
fn command_keys(command: &str) -> Vec<String> {
    let lower = command.trim().to_lowercase();
    let words: Vec<&str> = lower.split_whitespace().collect();
    let mut keys = vec![lower.clone()];
    if let [first, second, ..] = words[..]
        && !second.starts_with('-')
    {
        keys.push(format!("{first} {second}"));
    }
    keys.extend(
        words
            .iter()
            .filter(|w| w.contains('/') || w.ends_with(".sh") || w.ends_with(".py"))
            .map(|w| (*w).to_owned()),
    );
    keys.retain(|k| k.len() >= 4);
    keys.dedup();
    keys
}

/// The tail of a check's output, for quoting: stdout and stderr, each labelled.
pub fn quote(check: &CheckResult) -> String {
    let mut parts = Vec::new();
    for (label, text) in [
        ("stdout", &check.record.stdout),
        ("stderr", &check.record.stderr),
    ] {
        let text = text.trim_end();
        if !text.is_empty() {
            parts.push(format!("[{label}]\n{}", tail(text, QUOTE_BYTES)));
        }
    }
    parts.join("\n")
}

/// Evidence text: a sentence, then (after a blank line) quoted output, if any.
fn join_quote(sentence: String, quoted: String) -> String {
    if quoted.is_empty() {
        sentence
    } else {
        format!("{sentence}\n\n{quoted}")
    }
}

/// At most the last `max` bytes of `text`, cut at a line start when one is near, after a
/// line saying how much was cut.
pub fn tail(text: &str, max: usize) -> String {
    process::tail(text.as_bytes(), max)
        .from_line_start(max / 4)
        .marked()
}

#[cfg(test)]
pub(crate) mod tests {
    use std::path::PathBuf;

    use goalpost_shared::protocol::{CommandRecord, MetricReading};

    use super::*;

    /// A check result as the auditor's run would record it.
    pub(crate) fn result(command: &str, failure: Option<&str>, stdout: &str) -> CheckResult {
        CheckResult {
            check: format!("`{command}`"),
            line: 5,
            command: command.to_owned(),
            record: CommandRecord {
                exit_code: Some(if failure.is_some() { 1 } else { 0 }),
                duration_ms: 120,
                stdout: stdout.to_owned(),
                ..CommandRecord::not_run(
                    vec!["/bin/sh".into(), "-c".into(), command.into()],
                    PathBuf::from("/audit"),
                )
            },
            metric: None,
            passed: failure.is_none(),
            failure: failure.map(str::to_owned),
            integrity: None,
        }
    }

    fn status(claim: &str, checks: &[CheckResult]) -> ClaimStatus {
        judge_claims(&[claim.to_owned()], checks)[0].status
    }

    fn checks() -> Vec<CheckResult> {
        let mut bench = result("sh bench.sh", None, "p95_ms=71\nparse_us=30\n");
        bench.metric = Some(MetricReading {
            name: "p95_ms".to_owned(),
            value: Some(71.0),
            target: 80.0,
            op: MetricOp::Below,
        });
        vec![
            result("cargo test --workspace", None, "test result: ok"),
            result(
                "cargo clippy -- -D warnings",
                Some("exit status 1"),
                "error: unused",
            ),
            bench,
        ]
    }

    #[test]
    fn test_claims_follow_the_test_checks() {
        let checks = checks();
        assert_eq!(status("Tests pass", &checks), ClaimStatus::Verified);
        assert_eq!(status("cargo test passes", &checks), ClaimStatus::Verified);
        assert_eq!(
            status("the test suite is green", &checks),
            ClaimStatus::Verified
        );
        assert_eq!(status("no tests fail", &checks), ClaimStatus::Verified);
    }

    #[test]
    fn claims_about_everything_include_the_failing_check() {
        let checks = checks();
        assert_eq!(status("All checks green", &checks), ClaimStatus::Refuted);
        assert_eq!(status("clippy is clean", &checks), ClaimStatus::Refuted);
        assert_eq!(
            status("`cargo clippy -- -D warnings` passes", &checks),
            ClaimStatus::Refuted
        );
        let finding = &judge_claims(&["lint passes".to_owned()], &checks)[0];
        assert_eq!(
            finding.status,
            ClaimStatus::Unverifiable,
            "no check runs a lint step"
        );
    }

    #[test]
    fn refuted_claims_quote_the_failing_output() {
        let finding = &judge_claims(&["all checks pass".to_owned()], &checks())[0];
        assert_eq!(finding.status, ClaimStatus::Refuted);
        assert_eq!(
            finding.evidence,
            "In the auditor's run: `cargo clippy -- -D warnings` failed (exit status 1).\n\n\
             [stdout]\nerror: unused"
        );
    }

    #[test]
    fn metric_claims_are_compared_with_the_reading() {
        let checks = checks();
        assert_eq!(status("p95 is 70 ms", &checks), ClaimStatus::Verified);
        assert_eq!(status("p95_ms: 74", &checks), ClaimStatus::Verified);
        assert_eq!(status("p95 is 98 ms", &checks), ClaimStatus::Refuted);
        assert_eq!(status("p95_ms is under 80", &checks), ClaimStatus::Verified);
        assert_eq!(status("p95 is at most 60", &checks), ClaimStatus::Refuted);
        // Not named by a check, but printed by one.
        assert_eq!(status("parse_us=30", &checks), ClaimStatus::Verified);
        assert_eq!(status("parse_us=60", &checks), ClaimStatus::Refuted);
        let finding = &judge_claims(&["alloc_kb=12".to_owned()], &checks)[0];
        assert_eq!(finding.status, ClaimStatus::Unverifiable);
        assert!(
            finding.evidence.contains("`alloc_kb=<value>`"),
            "{}",
            finding.evidence
        );
        let finding = &judge_claims(&["p95 is 98 ms".to_owned()], &checks)[0];
        assert_eq!(
            finding.evidence,
            "Claimed p95_ms=98; the auditor's run of `sh bench.sh` read p95_ms=71."
        );
    }

    #[test]
    fn other_claims_are_unverifiable() {
        let checks = checks();
        assert_eq!(
            status("Added tests for the parser", &checks),
            ClaimStatus::Unverifiable
        );
        assert_eq!(
            status("p95 went from 120 to 98", &checks),
            ClaimStatus::Unverifiable
        );
        assert_eq!(
            status("p95 is 3x lower", &checks),
            ClaimStatus::Unverifiable
        );
        assert_eq!(
            status("p95 is 20% lower", &checks),
            ClaimStatus::Unverifiable
        );
        // An unread metric does not hide the check the claim names.
        assert_eq!(
            status("cargo test passes, exit code: 0", &checks),
            ClaimStatus::Verified
        );
        assert_eq!(
            status("Refactored the parser", &checks),
            ClaimStatus::Unverifiable
        );
        assert_eq!(
            status("the flaky test fails sometimes", &checks),
            ClaimStatus::Unverifiable
        );
        assert_eq!(status("tests pass", &[]), ClaimStatus::Unverifiable);
    }

    #[test]
    fn command_keys_and_tails() {
        assert_eq!(
            command_keys("cargo test --workspace"),
            ["cargo test --workspace", "cargo test"]
        );
        assert_eq!(
            command_keys("sh tests/run.sh"),
            ["sh tests/run.sh", "tests/run.sh"]
        );
        assert_eq!(tail("short", 10), "short");
        assert_eq!(
            tail("line one\nline two\nend", 12),
            "[... 9 bytes before ...]\nline two\nend"
        );
    }
}
