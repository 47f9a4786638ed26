//! The test census: how many tests a check's run ran, passed, failed and skipped, read
//! from the summaries its runners print, and the verdict on the candidate's census
//! against the base's: fewer tests run, or more skipped or ignored, is a violation.

use goalpost_shared::integrity::Census;

use crate::runner::Kind;

/// The census of one run's output, summed over the summaries of `kinds`; `None` when the
/// output holds none of them (a runner that never got to its summary, or never ran).
/// `truncated` says the output was cut in its middle: figures read from summaries spread
/// over the whole output are then [`Census::partial`].
pub fn read(kinds: &[Kind], output: &str, truncated: bool) -> Option<Census> {
    let mut total: Option<Census> = None;
    let mut seen = Vec::new();
    for &kind in kinds {
        // Two runners of the same kind (two `cargo test` in one recipe) print their
        // summaries into the same output: read it once.
        let family = match kind {
            Kind::Cargo | Kind::Nextest => Kind::Cargo,
            k => k,
        };
        if seen.contains(&family) {
            continue;
        }
        seen.push(family);
        let found = match family {
            Kind::Cargo => cargo(output)
                .map(|c| Census {
                    partial: truncated,
                    ..c
                })
                .or_else(|| nextest(output)),
            Kind::Pytest => pytest(output),
            Kind::Unittest => unittest(output),
            Kind::NodeTest => node(output),
            Kind::Jest => jest(output),
            Kind::Vitest => vitest(output),
            Kind::Go => go(output).map(|c| Census {
                partial: truncated,
                ..c
            }),
            Kind::Nextest => None,
        };
        if let Some(c) = found {
            let t = total.get_or_insert_with(Census::default);
            t.ran += c.ran;
            t.passed += c.passed;
            t.failed += c.failed;
            t.skipped += c.skipped;
            t.partial |= c.partial;
        }
    }
    total
}

/// The violation, if the candidate runs fewer tests than the base or skips more; `None`
/// when it does not, or when the base's census is unknown.
pub fn judge(command: &str, candidate: Option<Census>, base: Option<Census>) -> Option<String> {
    let base = base?;
    let Some(candidate) = candidate else {
        return (base.ran > 0).then(|| {
            format!(
                "`{command}` printed no test summary (it ran no test to its end), {} at the base",
                tests(base.ran)
            )
        });
    };
    if candidate.partial {
        // Summaries were lost in the cut: fewer counted proves nothing, unless the base's
        // output was whole, and then nothing shows the candidate ran as many.
        return (!base.partial).then(|| {
            format!(
                "`{command}` printed more than the audit keeps, so its test summaries cannot all \
                 be read ({} at the base)",
                tests(base.ran)
            )
        });
    }
    if candidate.ran < base.ran {
        return Some(format!(
            "`{command}` ran {}, {} at the base",
            tests(candidate.ran),
            base.ran
        ));
    }
    if candidate.skipped > base.skipped {
        return Some(format!(
            "`{command}` skipped or ignored {}, {} at the base",
            tests(candidate.skipped),
            base.skipped
        ));
    }
    None
}

fn tests(n: u64) -> String {
    format!("{n} test{}", if n == 1 { "" } else { "s" })
}

/// The number before `word` in `text` ("5 passed" for "passed").
fn count_before(text: &str, word: &str) -> Option<u64> {
    let words: Vec<&str> = text
        .split(|c: char| c.is_whitespace() || ",;|()".contains(c))
        .filter(|w| !w.is_empty())
        .collect();
    words
        .windows(2)
        .find(|w| w[1].trim_end_matches(['.', ':']) == word)
        .and_then(|w| w[0].parse().ok())
}

/// `test result: ok. 3 passed; 1 failed; 2 ignored; 0 measured; 0 filtered out`, summed
/// over every test binary (unit tests, integration tests, doc tests).
fn cargo(output: &str) -> Option<Census> {
    let mut census: Option<Census> = None;
    for line in output.lines() {
        let Some(rest) = line.trim().strip_prefix("test result:") else {
            continue;
        };
        let c = census.get_or_insert_with(Census::default);
        let passed = count_before(rest, "passed").unwrap_or(0);
        let failed = count_before(rest, "failed").unwrap_or(0);
        c.passed += passed;
        c.failed += failed;
        c.ran += passed + failed;
        c.skipped += count_before(rest, "ignored").unwrap_or(0);
    }
    census
}

/// nextest's `Summary [ 0.02s] 5 tests run: 4 passed, 1 failed, 2 skipped`.
fn nextest(output: &str) -> Option<Census> {
    let line = output
        .lines()
        .rev()
        .find(|l| l.trim_start().starts_with("Summary") && l.contains(" run: "))?;
    let (head, tail) = line.split_once(" run: ")?;
    let ran = head.split_whitespace().rev().nth(1)?.parse().ok()?;
    let failed =
        count_before(tail, "failed").unwrap_or(0) + count_before(tail, "timed").unwrap_or(0);
    Some(Census {
        ran,
        passed: count_before(tail, "passed").unwrap_or(0),
        failed,
        skipped: count_before(tail, "skipped").unwrap_or(0),
        ..Census::default()
    })
}

/// pytest's last summary line: `==== 3 passed, 1 skipped, 1 xfailed in 0.12s ====` (or
/// without the rules under `-q`), or `no tests ran in 0.01s`.
fn pytest(output: &str) -> Option<Census> {
    let line = output.lines().rev().find(|l| {
        let l = l.trim().trim_matches('=').trim();
        (l.contains(" in ") && l.ends_with('s'))
            && (l.starts_with("no tests ran")
                || l.split(',').any(|part| {
                    let mut w = part.split_whitespace();
                    w.next().is_some_and(|n| n.parse::<u64>().is_ok())
                        && w.next().is_some_and(|word| {
                            matches!(
                                word,
                                "passed"
                                    | "failed"
                                    | "skipped"
                                    | "error"
                                    | "errors"
                                    | "xfailed"
                                    | "xpassed"
                                    | "deselected"
                                    | "warning"
                                    | "warnings"
                            )
                        })
                }))
    })?;
    let n = |w: &str| count_before(line, w).unwrap_or(0);
    let passed = n("passed") + n("xpassed");
    let failed = n("failed") + n("error") + n("errors");
    Some(Census {
        ran: passed + failed,
        passed,
        failed,
        skipped: n("skipped") + n("xfailed"),
        ..Census::default()
    })
}

/// unittest's `Ran 5 tests in 0.001s` and the status line after it, `OK (skipped=1)` or
/// `FAILED (failures=1, errors=1, skipped=2)`. unittest counts skipped tests as run.
fn unittest(output: &str) -> Option<Census> {
    let lines: Vec<&str> = output.lines().collect();
    let at = lines
        .iter()
        .rposition(|l| l.starts_with("Ran ") && l.contains(" test"))?;
    let total: u64 = lines[at].split_whitespace().nth(1)?.parse().ok()?;
    let status = lines[at + 1..]
        .iter()
        .find(|l| l.starts_with("OK") || l.starts_with("FAILED"))
        .copied()
        .unwrap_or("");
    let field = |name: &str| {
        status
            .split(['(', ')', ','])
            .filter_map(|p| p.trim().strip_prefix(name)?.strip_prefix('='))
            .find_map(|v| v.trim().parse::<u64>().ok())
            .unwrap_or(0)
    };
    let skipped = field("skipped");
    let failed = field("failures") + field("errors") + field("unexpected successes");
    let ran = total.saturating_sub(skipped);
    Some(Census {
        ran,
        passed: ran.saturating_sub(failed),
        failed,
        skipped,
        ..Census::default()
    })
}

/// node's test runner: `# tests 5`, `# pass 4`, `# fail 1`, `# skipped 0`, `# todo 0`,
/// `# cancelled 0` (TAP), or the same lines after `ℹ` (the spec reporter).
fn node(output: &str) -> Option<Census> {
    let value = |name: &str| {
        output.lines().rev().find_map(|l| {
            let l = l.trim();
            let rest = l.strip_prefix("# ").or_else(|| l.strip_prefix("ℹ "))?;
            rest.strip_prefix(name)?
                .strip_prefix(' ')?
                .trim()
                .parse::<u64>()
                .ok()
        })
    };
    let total = value("tests")?;
    let skipped = value("skipped").unwrap_or(0) + value("todo").unwrap_or(0);
    let failed = value("fail").unwrap_or(0) + value("cancelled").unwrap_or(0);
    Some(Census {
        ran: total.saturating_sub(skipped),
        passed: value("pass").unwrap_or(0),
        failed,
        skipped,
        ..Census::default()
    })
}

/// jest's `Tests:       1 failed, 1 skipped, 3 passed, 5 total`.
fn jest(output: &str) -> Option<Census> {
    let line = output
        .lines()
        .rev()
        .find_map(|l| l.trim().strip_prefix("Tests:"))?;
    let n = |w: &str| count_before(line, w).unwrap_or(0);
    let skipped = n("skipped") + n("todo");
    Some(Census {
        ran: n("total").saturating_sub(skipped),
        passed: n("passed"),
        failed: n("failed"),
        skipped,
        ..Census::default()
    })
}

/// vitest's `Tests  3 passed | 1 skipped (4)`.
fn vitest(output: &str) -> Option<Census> {
    let line = output.lines().rev().find_map(|l| {
        let l = l.trim();
        l.strip_prefix("Tests ").filter(|rest| rest.contains('('))
    })?;
    let n = |w: &str| count_before(line, w).unwrap_or(0);
    let (passed, failed) = (n("passed"), n("failed"));
    Some(Census {
        ran: passed + failed,
        passed,
        failed,
        skipped: n("skipped") + n("todo"),
        ..Census::default()
    })
}

/// `go test -v`'s `--- PASS:`, `--- FAIL:` and `--- SKIP:` lines (without `-v` go prints
/// no count).
fn go(output: &str) -> Option<Census> {
    let count = |tag: &str| {
        output
            .lines()
            .filter(|l| l.trim_start().starts_with(tag))
            .count() as u64
    };
    let (passed, failed, skipped) = (count("--- PASS:"), count("--- FAIL:"), count("--- SKIP:"));
    (passed + failed + skipped > 0).then_some(Census {
        ran: passed + failed,
        passed,
        failed,
        skipped,
        ..Census::default()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn c(ran: u64, passed: u64, failed: u64, skipped: u64) -> Option<Census> {
        Some(Census {
            ran,
            passed,
            failed,
            skipped,
            ..Census::default()
        })
    }

    #[test]
    fn cargo_sums_every_test_binary() {
        let out = "running 3 tests\ntest a ... ok\n\
                   test result: ok. 2 passed; 0 failed; 1 ignored; 0 measured; 0 filtered out; finished in 0.00s\n\
                   running 2 tests\n\
                   test result: FAILED. 1 passed; 1 failed; 0 ignored; 0 measured; 4 filtered out; finished in 0.00s\n\
                   Doc-tests x\nrunning 0 tests\n\
                   test result: ok. 0 passed; 0 failed; 0 ignored; 0 measured; 0 filtered out; finished in 0.00s\n";
        assert_eq!(read(&[Kind::Cargo], out, false), c(4, 3, 1, 1));
        assert_eq!(read(&[Kind::Cargo], "running 3 tests\n", false), None);
        assert_eq!(read(&[Kind::Cargo], "   Compiling x\n", false), None);
    }

    #[test]
    fn nextest_reads_its_summary() {
        let out = "    Starting 5 tests across 2 binaries (2 tests skipped)\n\
                   ------------\n     Summary [   0.017s] 5 tests run: 4 passed, 1 failed, 2 skipped\n";
        assert_eq!(read(&[Kind::Nextest], out, false), c(5, 4, 1, 2));
        let out = "     Summary [   0.017s] 1 test run: 1 passed, 0 skipped\n";
        assert_eq!(read(&[Kind::Nextest], out, false), c(1, 1, 0, 0));
    }

    #[test]
    fn pytest_reads_its_last_summary_line() {
        let out = "tests/test_a.py ..s.F\n\
                   ========= 1 failed, 3 passed, 1 skipped, 1 xfailed, 2 warnings in 0.12s =========\n";
        assert_eq!(read(&[Kind::Pytest], out, false), c(4, 3, 1, 2));
        assert_eq!(
            read(&[Kind::Pytest], "3 passed in 0.01s\n", false),
            c(3, 3, 0, 0)
        );
        assert_eq!(
            read(&[Kind::Pytest], "==== no tests ran in 0.01s ====\n", false),
            c(0, 0, 0, 0)
        );
        assert_eq!(read(&[Kind::Pytest], "collected 3 items\n", false), None);
    }

    #[test]
    fn unittest_counts_skipped_tests_apart() {
        let out = "..s\n----------------------------------------------------------------------\n\
                   Ran 3 tests in 0.001s\n\nOK (skipped=1)\n";
        assert_eq!(read(&[Kind::Unittest], out, false), c(2, 2, 0, 1));
        let out = "Ran 4 tests in 0.001s\n\nFAILED (failures=1, errors=1)\n";
        assert_eq!(read(&[Kind::Unittest], out, false), c(4, 2, 2, 0));
        assert_eq!(
            read(&[Kind::Unittest], "Ran 1 test in 0.000s\n\nOK\n", false),
            c(1, 1, 0, 0)
        );
        assert_eq!(read(&[Kind::Unittest], "F\n", false), None);
    }

    #[test]
    fn node_jest_vitest_and_go() {
        let tap =
            "# tests 4\n# suites 0\n# pass 2\n# fail 1\n# cancelled 0\n# skipped 1\n# todo 0\n";
        assert_eq!(read(&[Kind::NodeTest], tap, false), c(3, 2, 1, 1));
        let spec = "ℹ tests 2\nℹ pass 2\nℹ fail 0\nℹ skipped 0\n";
        assert_eq!(read(&[Kind::NodeTest], spec, false), c(2, 2, 0, 0));
        let out = "Tests:       1 failed, 1 skipped, 3 passed, 5 total\n";
        assert_eq!(read(&[Kind::Jest], out, false), c(4, 3, 1, 1));
        let out = "      Tests  3 passed | 1 skipped (4)\n";
        assert_eq!(read(&[Kind::Vitest], out, false), c(3, 3, 0, 1));
        let out =
            "=== RUN   TestA\n--- PASS: TestA (0.00s)\n--- SKIP: TestB (0.00s)\nok  \tx\t0.1s\n";
        assert_eq!(read(&[Kind::Go], out, false), c(1, 1, 0, 1));
        assert_eq!(read(&[Kind::Go], "ok  \tx\t0.1s\n", false), None);
    }

    #[test]
    fn two_runners_of_one_recipe_are_summed() {
        let out = "test result: ok. 2 passed; 0 failed; 0 ignored; 0 measured; 0 filtered out\n\
                   Ran 3 tests in 0.001s\n\nOK\n";
        assert_eq!(
            read(&[Kind::Cargo, Kind::Unittest], out, false),
            c(5, 5, 0, 0)
        );
    }

    #[test]
    fn a_cut_output_makes_a_cargo_census_partial() {
        let out = "test result: ok. 2 passed; 0 failed; 0 ignored; 0 measured; 0 filtered out\n";
        assert_eq!(
            read(&[Kind::Cargo], out, true).map(|c| c.partial),
            Some(true)
        );
        // unittest's summary is at the end, which a cut output keeps.
        let out = "Ran 1 test in 0.000s\n\nOK\n";
        assert_eq!(
            read(&[Kind::Unittest], out, true).map(|c| c.partial),
            Some(false)
        );
        let partial = Census {
            partial: true,
            ..c(2, 2, 0, 0).unwrap()
        };
        assert_eq!(
            judge("cargo test", Some(partial), c(5, 5, 0, 0)).as_deref(),
            Some(
                "`cargo test` printed more than the audit keeps, so its test summaries cannot all be read (5 tests at the base)"
            )
        );
        assert_eq!(judge("cargo test", Some(partial), Some(partial)), None);
    }

    #[test]
    fn fewer_run_or_more_skipped_is_a_violation() {
        let base = c(5, 5, 0, 0);
        assert_eq!(
            judge("cargo test", c(3, 3, 0, 0), base).as_deref(),
            Some("`cargo test` ran 3 tests, 5 at the base")
        );
        assert_eq!(
            judge("cargo test", c(5, 5, 0, 1), base).as_deref(),
            Some("`cargo test` skipped or ignored 1 test, 0 at the base")
        );
        assert_eq!(
            judge("make test", None, base).as_deref(),
            Some(
                "`make test` printed no test summary (it ran no test to its end), 5 tests at the base"
            )
        );
        assert_eq!(judge("cargo test", c(7, 7, 0, 0), base), None);
        assert_eq!(judge("cargo test", c(0, 0, 0, 0), None), None);
        assert_eq!(judge("cargo test", None, c(0, 0, 0, 0)), None);
    }
}
