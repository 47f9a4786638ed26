//! The audit report as the orchestrator reads it (`audit.json`, the protocol's
//! [`AuditReport`]) and as people and the implementer read it (`audit.md`: the
//! recommendation first, then the checks with their output, the boundary violations, the
//! claims, and what a machine could not verify), and `feedback.md`, what an implementer
//! sent back to revise is given: `audit.md`, with the held-out checks told by number only
//! unless the goal file says `feedback = "full"`.

use std::fmt::Write as _;
use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use goalpost_shared::check::MeasuredMetric;
use goalpost_shared::git::quote_path;
use goalpost_shared::plan::HeldOutFeedback;
use goalpost_shared::protocol::{
    AuditReport, CheckResult, ClaimStatus, FEEDBACK_FILE, ViolationKind,
};
use goalpost_shared::verdict::{CheckJudgement, ClaimJudgement};

/// Writes `audit.json`, `audit.md` and `feedback.md` into `dir` and returns the first two
/// paths. Each file is written to a temporary name and renamed, so a reader never sees
/// half a report; `audit.json` comes last.
pub fn write(
    report: &AuditReport,
    dir: &Path,
    held_out: HeldOutFeedback,
) -> io::Result<(PathBuf, PathBuf)> {
    let json = serde_json::to_vec_pretty(report).map_err(io::Error::other)?;
    let json_path = dir.join("audit.json");
    let md_path = dir.join("audit.md");
    write_atomically(&md_path, markdown(report).as_bytes())?;
    write_atomically(
        &dir.join(FEEDBACK_FILE),
        feedback(report, held_out).as_bytes(),
    )?;
    write_atomically(&json_path, &json)?;
    Ok((json_path, md_path))
}

/// What an implementer is told of this audit.
pub fn feedback(report: &AuditReport, held_out: HeldOutFeedback) -> String {
    render(report, held_out)
}

fn write_atomically(path: &Path, bytes: &[u8]) -> io::Result<()> {
    let tmp = path.with_extension("tmp");
    fs::write(&tmp, bytes)?;
    fs::rename(&tmp, path)
}

/// The first 10 characters of an object id.
fn short(oid: &str) -> &str {
    oid.get(..10).unwrap_or(oid)
}

/// Renders the report as Markdown, everything shown.
pub fn markdown(report: &AuditReport) -> String {
    render(report, HeldOutFeedback::Full)
}

fn render(report: &AuditReport, held_out: HeldOutFeedback) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "# Audit of phase `{}`: `{}`..`{}`\n",
        report.phase,
        short(&report.base),
        short(&report.candidate)
    );
    let _ = writeln!(
        out,
        "**Recommendation: {}** — {}\n",
        report.recommendation.as_str(),
        report.summary
    );
    let restored = report.checks.iter().any(|c| c.record.tree.is_none());
    let _ = writeln!(
        out,
        "Candidate tree: `{}`{}\n",
        report.tree,
        if restored {
            " (the checks ran with its protected paths put back as they are at the base)"
        } else {
            ""
        }
    );
    cache_note(&mut out, report);
    setup_section(&mut out, report);
    let setup_failed = report.setup.as_ref().is_some_and(|s| s.failed());
    if !(setup_failed && report.checks.is_empty()) {
        checks_section(&mut out, "Checks", &report.checks, &reused_checks(report));
    }
    held_out_section(&mut out, &report.held_out, held_out);
    crate::integrity::markdown(&mut out, &report.checks);
    violations_section(&mut out, report);
    claims_section(&mut out, report);
    unverifiable_section(&mut out, report);
    agent_section(&mut out, report);
    let _ = writeln!(out, "## Changed paths\n");
    if report.changed_paths.is_empty() {
        let _ = writeln!(out, "None: the candidate's tree is the base's.");
    }
    for path in &report.changed_paths {
        let _ = writeln!(out, "- `{}`", quote_path(path));
    }
    out
}

/// Positions of the checks whose evidence came from the verification cache.
fn reused_checks(report: &AuditReport) -> Vec<usize> {
    report
        .cache
        .iter()
        .filter(|n| n.reused_from.is_some())
        .map(|n| n.check)
        .collect()
}

/// Says which checks were not run again, and why that is sound. Nothing when every check
/// ran in this audit.
fn cache_note(out: &mut String, report: &AuditReport) {
    let reused: Vec<_> = report
        .cache
        .iter()
        .filter_map(|n| Some((report.checks.get(n.check)?, n.reused_from.as_deref()?)))
        .collect();
    if reused.is_empty() {
        return;
    }
    let _ = writeln!(
        out,
        "Verification cache: {} of {} check{} not run again. The same command already passed \
         on this exact tree with the same environment and the same protected paths; its \
         evidence below is from that audit:\n",
        reused.len(),
        report.checks.len(),
        if report.checks.len() == 1 {
            " was"
        } else {
            "s were"
        },
    );
    for (check, source) in reused {
        let _ = writeln!(out, "- `{}`: from `{source}`", check.command);
    }
    out.push('\n');
}

/// The setup commands as they ran before the checks, each with its output.
fn setup_section(out: &mut String, report: &AuditReport) {
    let Some(setup) = &report.setup else {
        return;
    };
    let _ = writeln!(
        out,
        "## Setup
"
    );
    match &setup.failure {
        Some(why) => {
            let _ = writeln!(
                out,
                "**The setup failed**, so no check ran: {why}. Fix the goal file's setup \
                 commands, or what they read in the candidate (its lockfile, its manifest).\n"
            );
        }
        None => {
            let _ = writeln!(
                out,
                "Every setup command succeeded before the checks ran.\n"
            );
        }
    }
    for record in &setup.commands {
        let command = record.argv.last().map_or("", String::as_str);
        let exit = match (record.exit_code, record.signal) {
            _ if record.timed_out => "timed out".to_owned(),
            (Some(code), _) => format!("exit {code}"),
            (None, Some(signal)) => format!("signal {signal}"),
            (None, None) => "not run".to_owned(),
        };
        let _ = writeln!(
            out,
            "### `{command}` ({exit}, {})\n",
            duration(record.duration_ms)
        );
        let mut quoted = false;
        for (label, text) in [("stdout", &record.stdout), ("stderr", &record.stderr)] {
            if text.trim().is_empty() {
                continue;
            }
            quoted = true;
            let note = if record.truncated { ", tail" } else { "" };
            let _ = writeln!(out, "{label}{note}:\n");
            fenced(out, text);
        }
        if !quoted {
            let _ = writeln!(out, "No output.\n");
        }
    }
}

/// The held-out checks: with their commands and output, or by number only.
fn held_out_section(out: &mut String, checks: &[CheckResult], shown: HeldOutFeedback) {
    if checks.is_empty() {
        return;
    }
    if shown == HeldOutFeedback::Full {
        checks_section(out, "Held-out checks", checks, &[]);
        return;
    }
    let n = checks.len();
    let _ = writeln!(
        out,
        "## Held-out checks\n\nThe audit ran {n} held-out check{} that the implementer \
         cannot see; what they test and what they printed is not shown here.\n",
        if n == 1 { "" } else { "s" }
    );
    for (i, check) in checks.iter().enumerate() {
        let result = if check.passed {
            "passed".to_owned()
        } else {
            match check.record.exit_code {
                Some(code) => format!("**failed** (exit {code})"),
                None => "**failed**".to_owned(),
            }
        };
        let _ = writeln!(out, "- held-out check {}: {result}", i + 1);
    }
    out.push('\n');
}

fn checks_section(out: &mut String, title: &str, checks: &[CheckResult], reused: &[usize]) {
    let _ = writeln!(out, "## {title}\n");
    if checks.is_empty() {
        let _ = writeln!(
            out,
            "The contract has no machine check: nothing here was verified by running it.\n"
        );
        return;
    }
    let _ = writeln!(out, "| check | result | exit | duration |");
    let _ = writeln!(out, "| --- | --- | --- | --- |");
    for (i, check) in checks.iter().enumerate() {
        let result = match &check.failure {
            None if reused.contains(&i) => "passed (cached)".to_owned(),
            None => "passed".to_owned(),
            Some(why) => format!("**failed**: {why}"),
        };
        let exit = match (check.record.exit_code, check.record.signal) {
            (Some(code), _) => code.to_string(),
            (None, Some(signal)) => format!("signal {signal}"),
            (None, None) => "–".to_owned(),
        };
        let _ = writeln!(
            out,
            "| {} | {} | {} | {} |",
            cell(&format!("`{}` (line {})", check.command, check.line)),
            cell(&result),
            exit,
            duration(check.record.duration_ms)
        );
    }
    out.push('\n');
    for check in checks {
        let _ = writeln!(out, "### `{}`\n", check.command);
        if let Some(metric) = &check.metric {
            let value = metric
                .value
                .map_or_else(|| "not found".to_owned(), |v| v.to_string());
            let source = if MeasuredMetric::named(&metric.name).is_some() {
                ", measured by goalpost outside the check"
            } else {
                ""
            };
            let _ = writeln!(
                out,
                "Metric `{}`: {value} (expected {} {}{source}).\n",
                metric.name,
                metric.op.as_str(),
                metric.target
            );
        }
        let late = check.record.measured.late_bytes;
        if late > 0 {
            let _ = writeln!(
                out,
                "{late} bytes of output written after the check's process had exited (by \
                 a process it left behind) were not read: nothing written after the exit \
                 counts.\n"
            );
        }
        let mut quoted = false;
        for (label, text) in [
            ("stdout", &check.record.stdout),
            ("stderr", &check.record.stderr),
        ] {
            if text.trim().is_empty() {
                continue;
            }
            quoted = true;
            let note = if check.record.truncated { ", tail" } else { "" };
            let _ = writeln!(out, "{label}{note}:\n");
            fenced(out, text);
        }
        if !quoted {
            let _ = writeln!(out, "No output.\n");
        }
    }
}

fn violations_section(out: &mut String, report: &AuditReport) {
    let _ = writeln!(out, "## Boundary violations\n");
    if report.violations.is_empty() {
        let _ = writeln!(out, "None.\n");
        return;
    }
    for violation in &report.violations {
        let kind = match violation.kind {
            ViolationKind::Forbidden => "forbidden path",
            ViolationKind::NotAllowed => "outside the allowed paths",
            ViolationKind::Protected => "protected path changed",
            ViolationKind::GitLevel => "git-level change",
            ViolationKind::ModifiedByCheck => "changed while the checks ran",
            ViolationKind::CheckConfig => "check configuration",
        };
        let _ = writeln!(
            out,
            "- `{}`: {kind} — {}",
            quote_path(&violation.path),
            violation.rule
        );
    }
    out.push('\n');
}

fn claims_section(out: &mut String, report: &AuditReport) {
    let _ = writeln!(out, "## Claims\n");
    let judged: Vec<_> = report
        .claims
        .iter()
        .filter(|c| c.status != ClaimStatus::Unverifiable)
        .collect();
    if report.claims.is_empty() {
        let _ = writeln!(out, "The implementer made no claims.\n");
    } else if judged.is_empty() {
        let _ = writeln!(
            out,
            "None could be checked against the evidence (see below).\n"
        );
    }
    for claim in judged {
        let status = match claim.status {
            ClaimStatus::Verified => "verified",
            ClaimStatus::Refuted => "**refuted**",
            ClaimStatus::Unverifiable => "unverifiable",
        };
        let _ = writeln!(out, "- {status}: “{}”", claim.claim);
        evidence(out, &claim.evidence);
    }
}

fn unverifiable_section(out: &mut String, report: &AuditReport) {
    let claims: Vec<_> = report
        .claims
        .iter()
        .filter(|c| c.status == ClaimStatus::Unverifiable)
        .collect();
    if claims.is_empty() && report.unverified_checks.is_empty() {
        return;
    }
    let _ = writeln!(out, "## Not verifiable by machine\n");
    for check in &report.unverified_checks {
        let _ = writeln!(
            out,
            "- check: “{check}”\n\n  Evidence needed: a person's (or an auditor agent's) \
             judgement; a machine never counts it as passed.\n"
        );
    }
    for claim in claims {
        let _ = writeln!(out, "- claim: “{}”", claim.claim);
        evidence(out, &claim.evidence);
    }
}

/// The auditor agent's verdict: what it judged, with its evidence, and what it found; or
/// why no verdict of it counted.
fn agent_section(out: &mut String, report: &AuditReport) {
    let Some(agent) = &report.agent else {
        return;
    };
    let u = &agent.usage;
    let _ = writeln!(
        out,
        "## Auditor agent `{}`\n\nA fresh session with the audit skill ({}); {} turn{}, {} tokens in, \
         {} out, ${:.4}.\n",
        agent.agent,
        agent.skill_source,
        agent.turns,
        if agent.turns == 1 { "" } else { "s" },
        u.tokens_in,
        u.tokens_out,
        u.cost_usd
    );
    let Some(verdict) = &agent.verdict else {
        let _ = writeln!(
            out,
            "**No verdict of it counts**, so the audit fails closed:\n"
        );
        for why in &agent.failures {
            let _ = writeln!(out, "- {why}");
        }
        out.push('\n');
        return;
    };
    let _ = writeln!(
        out,
        "**Its verdict: {}** — {}\n",
        verdict.recommendation.as_str(),
        verdict.summary.trim()
    );
    if !agent.judged_checks.is_empty() {
        let _ = writeln!(out, "### Human-language checks it judged\n");
        for judged in &agent.judged_checks {
            let status = match judged.status {
                CheckJudgement::Pass => "verified",
                CheckJudgement::Fail => "failed",
            };
            let _ = writeln!(out, "- “{}”: **{status}**\n", judged.check);
            fenced(out, &judged.evidence);
        }
    }
    if !verdict.claims.is_empty() {
        let _ = writeln!(out, "### Claims it judged\n");
        for claim in &verdict.claims {
            let text = usize::try_from(claim.n)
                .ok()
                .and_then(|n| report.claims.get(n.checked_sub(1)?))
                .map_or("", |c| c.claim.as_str());
            let status = match claim.status {
                ClaimJudgement::Verified => "verified",
                ClaimJudgement::Refuted => "refuted",
                ClaimJudgement::Unverifiable => "unverifiable",
            };
            let _ = writeln!(out, "- claim {}: “{text}”: **{status}**\n", claim.n);
            fenced(out, &claim.evidence);
        }
    }
    if !verdict.findings.is_empty() {
        let _ = writeln!(out, "### Findings\n");
        for f in &verdict.findings {
            let place = match f.line {
                Some(line) => format!("{}:{line}", f.file),
                None => f.file.clone(),
            };
            let _ = writeln!(out, "- `{place}`: {}", f.text.trim());
        }
        out.push('\n');
    }
}

/// A claim's evidence: its sentence, then any quoted output in a fenced block.
fn evidence(out: &mut String, text: &str) {
    let (sentence, quoted) = text.split_once("\n\n").unwrap_or((text, ""));
    let _ = writeln!(out, "\n  {sentence}\n");
    if !quoted.is_empty() {
        let mut block = String::new();
        fenced(&mut block, quoted);
        for line in block.lines() {
            if line.is_empty() {
                out.push('\n');
            } else {
                let _ = writeln!(out, "  {line}");
            }
        }
    }
}

/// `text` in a fenced block whose fence is longer than any backtick run inside it.
pub(crate) fn fenced(out: &mut String, text: &str) {
    let longest = text.split(|c| c != '`').map(str::len).max().unwrap_or(0);
    let fence = "`".repeat(longest.max(2) + 1);
    let _ = writeln!(
        out,
        "{fence}text\n{}\n{fence}\n",
        text.trim_end_matches('\n')
    );
}

/// A table cell: pipes escaped, newlines flattened.
fn cell(text: &str) -> String {
    text.replace('|', "\\|").replace('\n', " ")
}

/// "340 ms", "2.5 s", "3 min 5 s".
pub fn duration(ms: u64) -> String {
    match ms {
        0..1000 => format!("{ms} ms"),
        1000..60_000 => format!("{:.1} s", ms as f64 / 1000.0),
        _ => format!("{} min {} s", ms / 60_000, ms % 60_000 / 1000),
    }
}

#[cfg(test)]
mod tests {
    use goalpost_shared::contract::MetricOp;
    use goalpost_shared::protocol::{
        ClaimFinding, MetricReading, Recommendation, Violation, ViolationKind,
    };

    use super::*;
    use crate::claims::tests::result;

    fn revise_report() -> AuditReport {
        let mut bench = result(
            "sh bench.sh | tee out",
            Some("p95_ms=91 is not below 80"),
            "p95_ms=91\n",
        );
        bench.record.duration_ms = 2500;
        bench.record.tree = Some("3333333333cccccccccccccccccccccccccccccc".to_owned());
        bench.metric = Some(MetricReading {
            name: "p95_ms".to_owned(),
            value: Some(91.0),
            target: 80.0,
            op: MetricOp::Below,
        });
        let mut test = result("cargo test", None, "test result: ok. 3 passed\n");
        test.record.tree = Some("3333333333cccccccccccccccccccccccccccccc".to_owned());
        test.record.stderr = "warning: ```fenced``` in output\n".to_owned();
        AuditReport {
            phase: "parser".to_owned(),
            base: "1111111111aaaaaaaaaaaaaaaaaaaaaaaaaaaaaa".to_owned(),
            candidate: "2222222222bbbbbbbbbbbbbbbbbbbbbbbbbbbbbb".to_owned(),
            tree: "3333333333cccccccccccccccccccccccccccccc".to_owned(),
            recommendation: Recommendation::Revise,
            summary: "1 boundary violation (`vendor/lib.c`); 1 of 2 checks failed \
                      (`sh bench.sh | tee out`: p95_ms=91 is not below 80)"
                .to_owned(),
            checks: vec![test, bench],
            unverified_checks: vec!["Error messages name the line".to_owned()],
            violations: vec![Violation {
                kind: ViolationKind::Forbidden,
                path: "vendor/lib.c".to_owned(),
                rule: "forbidden `vendor/` (line 14)".to_owned(),
            }],
            claims: vec![
                ClaimFinding {
                    claim: "cargo test passes".to_owned(),
                    status: ClaimStatus::Verified,
                    evidence: "In the auditor's run: `cargo test` passed in 120 ms.\n\n\
                               [stdout]\ntest result: ok. 3 passed"
                        .to_owned(),
                },
                ClaimFinding {
                    claim: "p95 is 70 ms".to_owned(),
                    status: ClaimStatus::Refuted,
                    evidence: "Claimed p95_ms=70; the auditor's run of `sh bench.sh | tee out` \
                               read p95_ms=91."
                        .to_owned(),
                },
                ClaimFinding {
                    claim: "The parser is faster on big files".to_owned(),
                    status: ClaimStatus::Unverifiable,
                    evidence: "No machine check speaks to this.".to_owned(),
                },
            ],
            changed_paths: vec!["src/parse.rs".to_owned(), "vendor/lib.c".to_owned()],
            cache: Vec::new(),
            base_censuses: Vec::new(),
            setup: None,
            held_out: Vec::new(),
            agent: None,
        }
    }

    fn held_out_report() -> AuditReport {
        let mut report = revise_report();
        report.violations.clear();
        report.checks.remove(1);
        report.claims.truncate(1);
        report.summary = "held-out check 2 failed".to_owned();
        let passed = result(
            "python3 -m unittest discover -s .goalpost-held-out -p 'test_a*'",
            None,
            "Ran 4 tests\n\nOK\n",
        );
        let mut failed = result(
            "python3 -m unittest discover -s .goalpost-held-out -p 'test_b*'",
            Some("exit status 1"),
            "",
        );
        failed.record.exit_code = Some(1);
        failed.record.stderr =
            "FAIL: test_unseen_input\nAssertionError: [1, 2, 3, 4] != [4, 3, 2, 1]\n".to_owned();
        report.held_out = vec![passed, failed];
        report
    }

    #[test]
    fn held_out_checks_in_full_for_the_user_and_by_number_for_the_implementer() {
        let report = held_out_report();
        let full = markdown(&report);
        insta::assert_snapshot!("held_out_full", full);
        let hidden = feedback(&report, HeldOutFeedback::Hidden);
        insta::assert_snapshot!("held_out_hidden", hidden);
        for secret in [
            "test_unseen_input",
            "[4, 3, 2, 1]",
            ".goalpost-held-out",
            "test_b*",
        ] {
            assert!(full.contains(secret), "{secret} is in audit.md");
            assert!(
                !hidden.contains(secret),
                "{secret} leaked into the feedback"
            );
        }
        assert!(hidden.contains("- held-out check 2: **failed** (exit 1)"));
        assert_eq!(feedback(&report, HeldOutFeedback::Full), full);
        // Without held-out checks, the feedback is the report.
        let plain = revise_report();
        assert_eq!(feedback(&plain, HeldOutFeedback::Hidden), markdown(&plain));
    }

    /// A report whose machine audit would merge, made `revise` by its auditor agent.
    fn agent_report() -> AuditReport {
        use goalpost_shared::verdict::{
            AgentAudit, AgentVerdict, ClaimVerdict, Finding, JudgedCheck,
        };
        let mut report = revise_report();
        report.violations.clear();
        report.checks.truncate(1);
        report.claims.truncate(1);
        report.unverified_checks.clear();
        report.changed_paths = vec!["src/parse.rs".to_owned()];
        report.recommendation = Recommendation::Revise;
        report.summary = "the auditor agent critic says revise: `parse` answers the tests' \
                          inputs from a table"
            .to_owned();
        let verdict = AgentVerdict {
            recommendation: Recommendation::Revise,
            summary: "`parse` answers the tests' inputs from a table".to_owned(),
            claims: vec![ClaimVerdict {
                n: 1,
                status: ClaimJudgement::Refuted,
                evidence: "src/parse.rs:3: `KNOWN = {\"1+2\": 3}`".to_owned(),
            }],
            checks: vec![goalpost_shared::verdict::CheckVerdict {
                n: 1,
                status: CheckJudgement::Pass,
                evidence: "$ ./parse '1+'\nerror: line 1: expected a number after `+`".to_owned(),
            }],
            findings: vec![Finding {
                file: "src/parse.rs".to_owned(),
                line: Some(3),
                text: "a lookup table of the tests' inputs".to_owned(),
            }],
        };
        report.agent = Some(Box::new(AgentAudit {
            agent: "critic".to_owned(),
            skill_source: "goalpost's own".to_owned(),
            verdict: Some(verdict),
            failures: Vec::new(),
            turns: 1,
            usage: goalpost_shared::protocol::Usage {
                tokens_in: 5400,
                tokens_out: 320,
                cost_usd: 0.0213,
                ..Default::default()
            },
            judged_checks: vec![JudgedCheck {
                check: "Error messages name the line".to_owned(),
                status: CheckJudgement::Pass,
                evidence: "$ ./parse '1+'\nerror: line 1: expected a number after `+`".to_owned(),
            }],
        }));
        report
    }

    #[test]
    fn the_auditor_agents_verdict_with_its_evidence_and_findings() {
        let report = agent_report();
        insta::assert_snapshot!("agent_verdict", markdown(&report));
        let mut failed = report;
        if let Some(agent) = &mut failed.agent {
            agent.verdict = None;
            agent.judged_checks.clear();
            agent.turns = 2;
            agent.failures = vec![
                "its answer holds no JSON object: \"Looks fine to me.\"".to_owned(),
                "its verdict does not match the schema: missing field `claims`".to_owned(),
            ];
        }
        let text = markdown(&failed);
        assert!(text.contains("**No verdict of it counts**"), "{text}");
        assert!(text.contains("missing field `claims`"), "{text}");
    }

    #[test]
    fn a_revise_report_reads_well() {
        insta::assert_snapshot!(markdown(&revise_report()));
    }

    #[test]
    fn the_json_round_trips_and_both_files_are_written() {
        let dir = tempfile::tempdir().expect("temp dir");
        let report = revise_report();
        let (json, md) = write(&report, dir.path(), HeldOutFeedback::Hidden).expect("written");
        let back: AuditReport =
            serde_json::from_slice(&fs::read(json).expect("json")).expect("valid");
        assert_eq!(back, report);
        assert_eq!(fs::read_to_string(md).expect("md"), markdown(&report));
        let feedback = fs::read_to_string(dir.path().join(FEEDBACK_FILE)).expect("feedback");
        assert_eq!(feedback, markdown(&report));
        assert!(!dir.path().join("audit.tmp").exists());
    }

    #[test]
    fn a_measured_metric_and_output_cut_off_at_the_checks_exit_are_shown() {
        let mut report = revise_report();
        let bench = &mut report.checks[1];
        bench.metric = Some(MetricReading {
            name: "measured.wall_ms".to_owned(),
            value: Some(2503.4),
            target: 500.0,
            op: MetricOp::Below,
        });
        bench.failure = Some(
            "measured.wall_ms=2503.4 is not below 500 (measured by goalpost, outside the check)"
                .to_owned(),
        );
        bench.record.measured.late_bytes = 5;
        let md = markdown(&report);
        assert!(
            md.contains(
                "Metric `measured.wall_ms`: 2503.4 (expected below 500, measured by goalpost \
                 outside the check)."
            ),
            "{md}"
        );
        assert!(
            md.contains("5 bytes of output written after the check's process had exited"),
            "{md}"
        );
        assert!(!markdown(&revise_report()).contains("after the check's process had exited"));
    }

    #[test]
    fn durations() {
        assert_eq!(duration(340), "340 ms");
        assert_eq!(duration(2500), "2.5 s");
        assert_eq!(duration(185_000), "3 min 5 s");
    }
}
