//! Running the verification surface: each machine check of a contract as `/bin/sh -c
//! COMMAND`, recorded as evidence and judged by its exit status and, when the check names
//! one, a metric read from its output.
//!
//! This is the plain door both the worker (informational runs) and the auditor (the run
//! that counts) go through; it judges one check at a time and knows nothing of claims,
//! boundaries or recommendations.

use std::collections::BTreeMap;
use std::ffi::OsString;
use std::path::Path;
use std::time::Duration;

use crate::confine::Confinement;
use crate::contract::{Check, CheckKind, Contract, MetricExpectation};
use crate::process::{self, Command, Outcome};
use crate::protocol::{CheckResult, CommandRecord, Measured, MetricReading};

/// The shell every check runs under. An absolute path, so a check runs even when the
/// environment it is given has no `PATH`.
const SHELL: &str = "/bin/sh";

/// Runs one check in `cwd` with exactly `env` as its environment, ends it after
/// `timeout`, and keeps at most `output_cap` bytes of each output stream. With `confine`,
/// the check (and everything it starts) may write only where those rules allow.
///
/// It passes when the command exits 0 and, if the check names a metric, the metric is in
/// the output and meets its expectation. A human-language check is not run: it comes back
/// failed with "not a machine check". [`CheckResult::record`]'s `tree` is left `None` for
/// the caller, who knows which tree `cwd` holds.
pub fn run_check(
    check: &Check,
    cwd: &Path,
    env: &BTreeMap<OsString, OsString>,
    timeout: Duration,
    output_cap: usize,
    confine: Option<&Confinement>,
) -> CheckResult {
    let CheckKind::Machine { command, metric } = &check.kind else {
        return not_run(check, cwd, "not a machine check".to_owned());
    };
    let cmd = Command::new(SHELL, cwd)
        .arg("-c")
        .arg(command.as_str())
        .envs(env.iter().map(|(k, v)| (k.clone(), v.clone())))
        .timeout(timeout)
        .output_cap(output_cap)
        .confine(confine.cloned());
    let outcome = match process::run(&cmd, None) {
        Ok(outcome) => outcome,
        Err(err) => return not_run(check, cwd, format!("cannot run: {err}")),
    };
    judge(check, command, metric.as_ref(), cwd, &outcome, timeout)
}

/// Runs every machine check of `contract`, in the order the goal file lists them.
/// Human-language checks are skipped: they are never run, never passed.
pub fn run_checks(
    contract: &Contract,
    cwd: &Path,
    env: &BTreeMap<OsString, OsString>,
    timeout: Duration,
    output_cap: usize,
    confine: Option<&Confinement>,
) -> Vec<CheckResult> {
    contract
        .verification
        .iter()
        .filter(|check| check.command().is_some())
        .map(|check| run_check(check, cwd, env, timeout, output_cap, confine))
        .collect()
}

/// Whether the check's command could not be run at all, as opposed to running and
/// failing: the shell reported 126 (not executable) or 127 (not found), or the shell
/// itself could not be started.
pub fn cannot_run(result: &CheckResult) -> bool {
    let record = &result.record;
    matches!(record.exit_code, Some(126 | 127))
        || (record.exit_code.is_none() && record.signal.is_none() && !record.timed_out)
}

fn judge(
    check: &Check,
    command: &str,
    expectation: Option<&MetricExpectation>,
    cwd: &Path,
    outcome: &Outcome,
    timeout: Duration,
) -> CheckResult {
    let stdout = outcome.stdout.text_lossy();
    let stderr = outcome.stderr.text_lossy();
    let metric = expectation.map(|expected| MetricReading {
        name: expected.name.clone(),
        value: match MeasuredMetric::named(&expected.name) {
            // Never read from the output, which the checked code writes.
            Some(measured) => measured.value(outcome),
            // The metric is normally on stdout; a tool that reports on stderr still counts.
            None => read_metric(&stdout, &expected.name)
                .or_else(|| read_metric(&stderr, &expected.name)),
        },
        target: expected.target,
        op: expected.op,
    });
    let failure = if outcome.timed_out {
        Some(format!("timed out after {}", seconds(timeout)))
    } else if outcome.cancelled {
        Some("cancelled".to_owned())
    } else {
        match (outcome.status.code, outcome.status.signal) {
            (Some(0), _) => metric.as_ref().and_then(metric_failure),
            (Some(code @ (126 | 127)), _) => Some(format!(
                "cannot run: exit {code} ({})",
                if code == 127 {
                    "command not found"
                } else {
                    "not executable"
                }
            )),
            (Some(code), _) => Some(format!("exit status {code}")),
            (None, _) => Some(outcome.status.to_string()),
        }
    };
    CheckResult {
        check: check.text.value.clone(),
        line: check.text.line,
        command: command.to_owned(),
        record: CommandRecord {
            argv: vec![SHELL.to_owned(), "-c".to_owned(), command.to_owned()],
            cwd: cwd.to_path_buf(),
            exit_code: outcome.status.code,
            signal: outcome.status.signal,
            duration_ms: u64::try_from(outcome.duration.as_millis()).unwrap_or(u64::MAX),
            stdout,
            stderr,
            truncated: outcome.stdout.truncated || outcome.stderr.truncated,
            timed_out: outcome.timed_out,
            tree: None,
            measured: Measured {
                cpu_ms: outcome.usage.map(|u| u.cpu_us / 1000),
                max_rss_kb: outcome.usage.map(|u| u.max_rss_kb),
                late_bytes: outcome.late_bytes,
            },
        },
        metric,
        passed: failure.is_none(),
        failure,
        integrity: None,
    }
}

/// Why a metric reading does not meet its expectation, or `None` when it does.
fn metric_failure(reading: &MetricReading) -> Option<String> {
    let measured = MeasuredMetric::named(&reading.name).is_some();
    match reading.value {
        None if measured => Some(format!("{} could not be measured", reading.name)),
        None => Some(format!("metric {} not found in the output", reading.name)),
        Some(value) if reading.op.holds(value, reading.target) => None,
        Some(value) => Some(format!(
            "{}={value} is not {} {}{}",
            reading.name,
            reading.op.as_str(),
            reading.target,
            if measured {
                " (measured by goalpost, outside the check)"
            } else {
                ""
            }
        )),
    }
}

/// A metric goalpost measures of a check's run itself, where the checked code cannot
/// write: a check that names one (`reports `measured.wall_ms` below 300`) is judged by
/// the figure the kernel and goalpost took, never by anything in its output.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MeasuredMetric {
    /// Milliseconds from the check's start to its exit, on goalpost's clock.
    WallMs,
    /// Milliseconds of CPU time (user and system) of the check's processes that were
    /// waited for, as the kernel counted them.
    CpuMs,
    /// The peak resident memory, in MiB, of the largest of those processes.
    MaxRssMb,
}

impl MeasuredMetric {
    /// Every measured metric with its name, for the goal file's reference and errors.
    pub const ALL: [(MeasuredMetric, &'static str); 3] = [
        (MeasuredMetric::WallMs, "measured.wall_ms"),
        (MeasuredMetric::CpuMs, "measured.cpu_ms"),
        (MeasuredMetric::MaxRssMb, "measured.max_rss_mb"),
    ];

    /// The prefix every measured metric's name starts with.
    pub const PREFIX: &'static str = "measured.";

    /// The measured metric called `name`, if it is one.
    pub fn named(name: &str) -> Option<MeasuredMetric> {
        Self::ALL.iter().find(|(_, n)| *n == name).map(|(m, _)| *m)
    }

    /// The figure of `outcome`, to a tenth of its unit.
    fn value(self, outcome: &Outcome) -> Option<f64> {
        let value = match self {
            MeasuredMetric::WallMs => Some(outcome.duration.as_secs_f64() * 1000.0),
            MeasuredMetric::CpuMs => outcome.usage.map(|u| u.cpu_us as f64 / 1000.0),
            MeasuredMetric::MaxRssMb => outcome.usage.map(|u| u.max_rss_kb as f64 / 1024.0),
        };
        value.map(|v| (v * 10.0).round() / 10.0)
    }
}

/// A result for a check that never ran.
pub fn not_run(check: &Check, cwd: &Path, failure: String) -> CheckResult {
    let command = check.command().unwrap_or_default().to_owned();
    CheckResult {
        check: check.text.value.clone(),
        line: check.text.line,
        record: CommandRecord::not_run(
            vec![SHELL.to_owned(), "-c".to_owned(), command.clone()],
            cwd.to_path_buf(),
        ),
        command,
        metric: None,
        passed: false,
        failure: Some(failure),
        integrity: None,
    }
}

/// "60s", "1.5s", "250ms".
fn seconds(duration: Duration) -> String {
    if duration.subsec_millis() == 0 && duration.as_secs() > 0 {
        format!("{}s", duration.as_secs())
    } else if duration.as_secs() == 0 {
        format!("{}ms", duration.as_millis())
    } else {
        format!("{}s", duration.as_secs_f64())
    }
}

/// The value of metric `name` in `output`: the last occurrence of `NAME=value` or
/// `NAME: value` (spaces or tabs allowed on either side of `=` or `:`), where `NAME`
/// stands as a word of its own (`xp95_ms=1` is not `p95_ms`) and `value` is a decimal
/// number, optionally signed, with a fraction or an exponent, and optionally followed by
/// a unit that is ignored (`98ms`, `12.5 %`, `3 µs`). A number followed by anything else
/// (`1.2.3`, `12abc3`) is not a reading.
///
/// ```
/// use goalpost_shared::check::read_metric;
/// assert_eq!(read_metric("warmup p95_ms=120\nfinal p95_ms: 98ms\n", "p95_ms"), Some(98.0));
/// assert_eq!(read_metric("p95_ms is fine", "p95_ms"), None);
/// ```
pub fn read_metric(output: &str, name: &str) -> Option<f64> {
    if name.is_empty() {
        return None;
    }
    output
        .match_indices(name)
        .filter(|&(at, _)| {
            output[..at]
                .chars()
                .next_back()
                .is_none_or(|c| !is_name_char(c))
        })
        .filter_map(|(at, _)| value_after_name(&output[at + name.len()..]))
        .last()
}

fn is_name_char(c: char) -> bool {
    c.is_alphanumeric() || c == '_'
}

/// Reads `=value` or `: value` at the start of `rest` (what follows a metric's name).
fn value_after_name(rest: &str) -> Option<f64> {
    let rest = rest.trim_start_matches([' ', '\t']);
    let rest = if let Some(after) = rest.strip_prefix('=') {
        after
    } else {
        rest.strip_prefix(':')?
    };
    let rest = rest.trim_start_matches([' ', '\t']);
    let len = number_len(rest)?;
    let (number, after) = rest.split_at(len);
    // Whitespace ends the number whatever follows (`98 ms`, `2 next=3`); otherwise an
    // optional unit written on to it, then the end of the word.
    if after.is_empty() || after.starts_with(char::is_whitespace) {
        return number.parse::<f64>().ok().filter(|v| v.is_finite());
    }
    let unit_len = after
        .find(|c: char| !(c.is_alphabetic() || c == '%' || c == '/'))
        .unwrap_or(after.len());
    let mut following = after[unit_len..].chars();
    let ends_word = match following.next() {
        None => true,
        // A full stop ends a sentence; a point or comma before a digit (`1.2.3`, `1,000`)
        // means the number was not what we read.
        Some('.' | ',') => following.next().is_none_or(|c| !c.is_ascii_digit()),
        Some(c) => !(c.is_alphanumeric() || c == '_'),
    };
    if !ends_word {
        return None;
    }
    number.parse::<f64>().ok().filter(|v| v.is_finite())
}

/// The length of the decimal number at the start of `s`: `[+-]digits[.digits][e[+-]digits]`
/// (digits may be empty on one side of the point, not both).
fn number_len(s: &str) -> Option<usize> {
    let bytes = s.as_bytes();
    let mut i = 0;
    if matches!(bytes.first(), Some(b'+' | b'-')) {
        i += 1;
    }
    let int_start = i;
    while bytes.get(i).is_some_and(u8::is_ascii_digit) {
        i += 1;
    }
    let mut digits = i - int_start;
    if bytes.get(i) == Some(&b'.') && bytes.get(i + 1).is_some_and(u8::is_ascii_digit) {
        i += 1;
        let frac_start = i;
        while bytes.get(i).is_some_and(u8::is_ascii_digit) {
            i += 1;
        }
        digits += i - frac_start;
    }
    if digits == 0 {
        return None;
    }
    if matches!(bytes.get(i), Some(b'e' | b'E')) {
        let mut j = i + 1;
        if matches!(bytes.get(j), Some(b'+' | b'-')) {
            j += 1;
        }
        let exp_start = j;
        while bytes.get(j).is_some_and(u8::is_ascii_digit) {
            j += 1;
        }
        if j > exp_start {
            i = j;
        }
    }
    Some(i)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::contract::{MetricOp, Spanned};

    fn machine(command: &str, metric: Option<(&str, MetricOp, f64)>) -> Check {
        Check {
            text: Spanned::new(format!("`{command}`"), 7, 3),
            kind: CheckKind::Machine {
                command: command.to_owned(),
                metric: metric.map(|(name, op, target)| MetricExpectation {
                    name: name.to_owned(),
                    op,
                    target,
                }),
            },
        }
    }

    fn run(check: &Check, timeout: Duration) -> CheckResult {
        let dir = tempfile::tempdir().expect("temp dir");
        let env = process::env_allowlist(&["PATH"]);
        run_check(check, dir.path(), &env, timeout, 4096, None)
    }

    fn failure(check: &Check) -> Option<String> {
        run(check, Duration::from_secs(30)).failure
    }

    #[test]
    fn a_measured_metric_is_goalposts_figure_never_the_outputs() {
        // The output claims 1 ms; the check sleeps 0.3 s.
        let slow = "echo measured.wall_ms=1; echo 'measured.wall_ms: 1' >&2; sleep 0.3";
        let result = run(
            &machine(slow, Some(("measured.wall_ms", MetricOp::Below, 100.0))),
            Duration::from_secs(30),
        );
        let reading = result.metric.clone().unwrap();
        assert!(reading.value.unwrap() >= 300.0, "{result:?}");
        let why = result.failure.unwrap();
        assert!(
            why.starts_with("measured.wall_ms=")
                && why.ends_with("(measured by goalpost, outside the check)"),
            "{why}"
        );
        let passes = machine(slow, Some(("measured.wall_ms", MetricOp::Above, 250.0)));
        assert_eq!(failure(&passes), None);
    }

    #[test]
    fn cpu_time_and_memory_are_the_kernels_count_of_the_processes_waited_for() {
        if !Path::new("/usr/bin/python3").is_file() {
            return;
        }
        // A child that spins for 0.3 s of CPU and holds 64 MiB, waited for by the shell.
        let busy = "/usr/bin/python3 -c 'import time\nb = bytearray(64 << 20)\n\
                    end = time.process_time() + 0.3\nwhile time.process_time() < end: pass'; \
                    echo measured.cpu_ms=1 measured.max_rss_mb=1";
        let cpu = run(
            &machine(busy, Some(("measured.cpu_ms", MetricOp::AtLeast, 250.0))),
            Duration::from_secs(30),
        );
        assert!(cpu.passed, "{cpu:?}");
        assert!(cpu.record.measured.cpu_ms.unwrap() >= 250, "{cpu:?}");
        let rss = run(
            &machine(busy, Some(("measured.max_rss_mb", MetricOp::AtLeast, 64.0))),
            Duration::from_secs(30),
        );
        assert!(rss.passed, "{rss:?}");
        let small = run(
            &machine(
                "true",
                Some(("measured.max_rss_mb", MetricOp::AtLeast, 64.0)),
            ),
            Duration::from_secs(30),
        );
        assert!(!small.passed, "{small:?}");
    }

    #[test]
    fn reads_the_last_occurrence_in_either_form() {
        let out = "p95_ms=120\nsomething else\np95_ms: 98\n";
        assert_eq!(read_metric(out, "p95_ms"), Some(98.0));
        assert_eq!(read_metric("p95_ms: 98\np95_ms=97.5", "p95_ms"), Some(97.5));
        assert_eq!(read_metric("p95_ms = 4", "p95_ms"), Some(4.0));
        assert_eq!(read_metric("p95_ms:\t4", "p95_ms"), Some(4.0));
    }

    #[test]
    fn the_name_must_stand_as_a_word() {
        assert_eq!(read_metric("xp95_ms=1", "p95_ms"), None);
        assert_eq!(read_metric("p95_ms_max=1", "p95_ms"), None);
        assert_eq!(
            read_metric("p95_ms_max=1 p95_ms=2 xp95_ms=3", "p95_ms"),
            Some(2.0)
        );
        assert_eq!(read_metric("[p95_ms=3]", "p95_ms"), Some(3.0));
        assert_eq!(read_metric("bench.p95_ms=3", "p95_ms"), Some(3.0));
        assert_eq!(read_metric("anything", ""), None);
    }

    #[test]
    fn units_are_ignored_and_numbers_read_in_full() {
        assert_eq!(read_metric("p95_ms=98ms", "p95_ms"), Some(98.0));
        assert_eq!(read_metric("cov: 87.5 %", "cov"), Some(87.5));
        assert_eq!(read_metric("rate: 1200 ops/s", "rate"), Some(1200.0));
        assert_eq!(read_metric("t=3µs", "t"), Some(3.0));
        assert_eq!(read_metric("delta=-0.25", "delta"), Some(-0.25));
        assert_eq!(read_metric("delta=+2", "delta"), Some(2.0));
        assert_eq!(read_metric("x=.5", "x"), Some(0.5));
        assert_eq!(read_metric("x=1.5e3", "x"), Some(1500.0));
        assert_eq!(read_metric("x=2e", "x"), Some(2.0));
        assert_eq!(read_metric("done, x=7.", "x"), Some(7.0));
        assert_eq!(read_metric("x=7, y=8", "x"), Some(7.0));
    }

    #[test]
    fn what_is_not_a_reading() {
        assert_eq!(read_metric("p95_ms is 98", "p95_ms"), None);
        assert_eq!(read_metric("p95_ms=", "p95_ms"), None);
        assert_eq!(read_metric("p95_ms=fast", "p95_ms"), None);
        assert_eq!(read_metric("version=1.2.3", "version"), None);
        assert_eq!(read_metric("n=1,000", "n"), None);
        assert_eq!(read_metric("n=12abc3", "n"), None);
        assert_eq!(read_metric("n=1_000", "n"), None);
        assert_eq!(read_metric("p95_ms=\n98", "p95_ms"), None);
        assert_eq!(read_metric("p95_ms=NaN", "p95_ms"), None);
        // An unreadable last occurrence does not hide a readable earlier one.
        assert_eq!(read_metric("p95_ms=9\np95_ms=n/a", "p95_ms"), Some(9.0));
    }

    #[test]
    fn a_passing_check_is_recorded() {
        let result = run(
            &machine("echo hello; echo oops >&2", None),
            Duration::from_secs(30),
        );
        assert!(result.passed, "{result:?}");
        assert_eq!(result.failure, None);
        assert_eq!(result.record.exit_code, Some(0));
        assert_eq!(result.record.stdout, "hello\n");
        assert_eq!(result.record.stderr, "oops\n");
        assert_eq!(
            result.record.argv,
            ["/bin/sh", "-c", "echo hello; echo oops >&2"]
        );
        assert_eq!(result.line, 7);
        assert!(!cannot_run(&result));
    }

    #[test]
    fn a_failing_exit_status() {
        let check = machine("exit 1", None);
        assert_eq!(failure(&check).as_deref(), Some("exit status 1"));
    }

    #[test]
    fn a_missing_command_cannot_run() {
        let result = run(
            &machine("no-such-command-anywhere", None),
            Duration::from_secs(30),
        );
        assert_eq!(
            result.failure.as_deref(),
            Some("cannot run: exit 127 (command not found)")
        );
        assert!(cannot_run(&result));
        let result = run(&machine("exit 126", None), Duration::from_secs(30));
        assert_eq!(
            result.failure.as_deref(),
            Some("cannot run: exit 126 (not executable)")
        );
        assert!(cannot_run(&result));
    }

    #[test]
    fn a_missing_directory_cannot_run() {
        let env = process::env_allowlist(&["PATH"]);
        let check = machine("true", None);
        let result = run_check(
            &check,
            Path::new("/nonexistent/goalpost-check"),
            &env,
            Duration::from_secs(5),
            1024,
            None,
        );
        assert!(!result.passed);
        assert!(cannot_run(&result));
        let failure = result.failure.unwrap_or_default();
        assert!(failure.starts_with("cannot run: "), "{failure}");
    }

    #[test]
    fn a_check_that_runs_too_long_times_out() {
        let result = run(&machine("sleep 10", None), Duration::from_millis(200));
        assert_eq!(result.failure.as_deref(), Some("timed out after 200ms"));
        assert!(result.record.timed_out);
        assert!(!cannot_run(&result));
        assert_eq!(seconds(Duration::from_secs(60)), "60s");
        assert_eq!(seconds(Duration::from_millis(1500)), "1.5s");
    }

    #[test]
    fn a_missing_metric_fails() {
        let check = machine("echo p99_ms=3", Some(("p95_ms", MetricOp::Below, 80.0)));
        assert_eq!(
            failure(&check).as_deref(),
            Some("metric p95_ms not found in the output")
        );
    }

    #[test]
    fn a_metric_past_its_target_fails() {
        let check = machine("echo p95_ms=91", Some(("p95_ms", MetricOp::Below, 80.0)));
        let result = run(&check, Duration::from_secs(30));
        assert_eq!(result.failure.as_deref(), Some("p95_ms=91 is not below 80"));
        assert_eq!(result.metric.and_then(|m| m.value), Some(91.0));
        let check = machine("echo cov=79.5", Some(("cov", MetricOp::AtLeast, 80.0)));
        assert_eq!(
            failure(&check).as_deref(),
            Some("cov=79.5 is not at least 80")
        );
    }

    #[test]
    fn a_metric_meeting_its_target_passes_even_on_stderr() {
        let check = machine(
            "echo p95_ms=71ms >&2",
            Some(("p95_ms", MetricOp::AtMost, 80.0)),
        );
        let result = run(&check, Duration::from_secs(30));
        assert!(result.passed, "{result:?}");
        assert_eq!(result.metric.and_then(|m| m.value), Some(71.0));
    }

    #[test]
    fn a_failing_exit_wins_over_a_good_metric() {
        let check = machine(
            "echo p95_ms=1; exit 3",
            Some(("p95_ms", MetricOp::Below, 80.0)),
        );
        assert_eq!(failure(&check).as_deref(), Some("exit status 3"));
    }

    #[test]
    fn a_check_killed_by_a_signal() {
        let check = machine("kill -9 $$", None);
        let failure = failure(&check).unwrap_or_default();
        assert!(failure.starts_with("killed by signal 9"), "{failure}");
    }

    #[test]
    fn the_environment_is_exactly_the_one_given() {
        let dir = tempfile::tempdir().expect("temp dir");
        let mut env = process::env_allowlist(&["PATH"]);
        env.insert("ONLY_THIS".into(), "yes".into());
        let check = machine("env", None);
        let result = run_check(
            &check,
            dir.path(),
            &env,
            Duration::from_secs(30),
            4096,
            None,
        );
        assert!(result.record.stdout.contains("ONLY_THIS=yes"));
        assert!(
            !result.record.stdout.contains("HOME="),
            "{}",
            result.record.stdout
        );
    }

    #[test]
    fn human_checks_are_skipped_by_run_checks() {
        let contract = Contract {
            verification: vec![
                Check {
                    text: Spanned::new("The docs read well".to_owned(), 3, 3),
                    kind: CheckKind::Human,
                },
                machine("true", None),
                machine("false", None),
            ],
            ..Contract::default()
        };
        let dir = tempfile::tempdir().expect("temp dir");
        let env = process::env_allowlist(&["PATH"]);
        let results = run_checks(
            &contract,
            dir.path(),
            &env,
            Duration::from_secs(30),
            1024,
            None,
        );
        let commands: Vec<_> = results
            .iter()
            .map(|r| (r.command.as_str(), r.passed))
            .collect();
        assert_eq!(commands, [("true", true), ("false", false)]);
        let human = run_check(
            &contract.verification[0],
            dir.path(),
            &env,
            Duration::from_secs(1),
            1,
            None,
        );
        assert_eq!(human.failure.as_deref(), Some("not a machine check"));
    }
}
