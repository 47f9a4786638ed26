//! The auditor agent (`roles.auditor`): a second, clean-context session that must agree
//! before anything merges. It runs after the machine audit, only when that would merge,
//! in a checkout of the candidate of its own that it may read but not change, with a CLI
//! home made anew for this audit from the user's login (nothing of any attempt's state),
//! in the sandbox. It is given the audit skill, the contract, the diff against the base,
//! the machine audit's evidence and the implementer's claims; never the implementer's
//! transcript, prompts, sessions or notes.
//!
//! Its answer is a structured verdict ([`goalpost_shared::verdict`]). It makes the audit
//! stricter only:
//! - a verdict of `revise` or `abandon` turns the machine audit's `merge` into it; so do
//!   a refuted claim and a failed human-language check (`revise`);
//! - a human-language check it judged `pass` with its evidence is verified, no longer
//!   listed as unverifiable;
//! - no verdict that counts (none given, one that does not parse or leaves a claim or a
//!   check unjudged, a failed turn) gets one more try, told why; a second failure, or a
//!   spent budget, abandons the candidate: the audit fails closed.

use std::collections::BTreeMap;
use std::ffi::OsString;
use std::fmt::Write as _;
use std::fs;
use std::path::{Path, PathBuf};
use std::time::Duration;

use goalpost_agents::TurnRequest;
use goalpost_shared::confine::Confinement;
use goalpost_shared::contract::{CheckKind, Contract};
use goalpost_shared::git::{Oid, Repo};
use goalpost_shared::plan::HeldOutFeedback;
use goalpost_shared::protocol::{AuditInput, AuditReport, Recommendation, Role, Usage};
use goalpost_shared::verdict::{
    AgentAudit, AgentVerdict, AuditAgentSpec, CheckJudgement, ClaimJudgement, JudgedCheck, SCHEMA,
};

use crate::checkout::Checkout;

/// Bytes of the diff the agent's prompt carries; it reads the rest with its own tools.
const DIFF_CAP: usize = 64 * 1024;

/// Turns one audit gives the agent: a second when the first gave no verdict.
const MAX_TURNS: u32 = 2;

/// The places of one audit the agent's turn uses.
pub struct Place<'a> {
    pub repo: &'a Repo,
    pub base: Oid,
    pub candidate: Oid,
    /// The audit's private directory: the agent's home, temp dir and prompt go here.
    pub scratch: &'a Path,
}

/// Runs the auditor agent on `report` (the machine audit's, which would merge) and
/// returns what it found; [`apply`] makes the report say so.
pub fn review(
    input: &AuditInput,
    spec: &AuditAgentSpec,
    place: &Place<'_>,
    report: &AuditReport,
) -> AgentAudit {
    let mut audit = AgentAudit {
        agent: spec.agent.name.clone(),
        skill_source: spec.skill_source.clone(),
        verdict: None,
        failures: Vec::new(),
        turns: 0,
        usage: Usage::default(),
        judged_checks: Vec::new(),
    };
    if let Some(why) = over_budget(spec, &audit.usage) {
        audit.failures.push(why);
        return audit;
    }
    let path = PathBuf::from(format!("{}-agent", input.worktree.display()));
    let checkout = match Checkout::create(place.repo, &path, place.candidate) {
        Ok(checkout) => checkout,
        Err(err) => {
            audit
                .failures
                .push(format!("cannot check the candidate out for it: {err}"));
            return audit;
        }
    };
    let claims = &input.claims;
    let human = human_checks(&input.contract);
    let prompt = prompt(input, spec, place, report, &human);
    let mut retry_note: Option<String> = None;
    while audit.turns < MAX_TURNS {
        audit.turns += 1;
        let text = match &retry_note {
            Some(why) => format!(
                "{prompt}\n## Your previous answer did not count\n\n{why}\n\nAnswer again with the JSON verdict alone.\n"
            ),
            None => prompt.clone(),
        };
        let turn = match turn(input, spec, place, checkout.path(), audit.turns, &text) {
            Ok(turn) => turn,
            Err(why) => {
                audit.failures.push(why);
                break;
            }
        };
        audit.usage.add(&turn.record.usage);
        let outcome = match (&turn.unavailable, &turn.record.error) {
            (Some(why), _) => Err(format!("the agent cannot be started: {why}")),
            (None, Some(error)) => Err(format!("its turn failed: {error}")),
            (None, None) => parse(&turn.record.message, claims.len(), human.len()),
        };
        if let Some(why) = over_budget(spec, &audit.usage) {
            audit.failures.push(why);
            break;
        }
        match outcome {
            Ok(verdict) => {
                audit.verdict = Some(verdict);
                audit.failures.clear();
                break;
            }
            Err(why) => {
                audit.failures.push(why.clone());
                if turn.unavailable.is_some() {
                    break;
                }
                retry_note = Some(why);
            }
        }
    }
    if let Some(verdict) = &audit.verdict {
        audit.judged_checks = verdict
            .checks
            .iter()
            .filter_map(|c| {
                Some(JudgedCheck {
                    check: human
                        .get(usize::try_from(c.n).ok()?.checked_sub(1)?)?
                        .clone(),
                    status: c.status,
                    evidence: c.evidence.clone(),
                })
            })
            .collect();
    }
    if let Err(err) = checkout.remove() {
        tracing::warn!("could not remove the auditor agent's checkout: {err}");
    }
    audit
}

/// The report as the agent's verdict leaves it: stricter or unchanged, never laxer.
pub fn apply(report: &mut AuditReport, agent: AgentAudit) {
    let machine = report.recommendation;
    match &agent.verdict {
        None => {
            let why = agent.failures.last().cloned().unwrap_or_default();
            report.recommendation = Recommendation::Abandon;
            report.summary = format!(
                "the auditor agent {} gave no verdict that counts, so nothing merges: {why}",
                agent.agent
            );
        }
        Some(verdict) => {
            let refuted = verdict
                .claims
                .iter()
                .filter(|c| c.status == ClaimJudgement::Refuted)
                .count();
            let failed = verdict
                .checks
                .iter()
                .filter(|c| c.status == CheckJudgement::Fail)
                .count();
            let mut wanted = verdict.recommendation;
            if wanted == Recommendation::Merge && (refuted > 0 || failed > 0) {
                wanted = Recommendation::Revise;
            }
            let stricter = severity(wanted) > severity(machine);
            if stricter {
                report.recommendation = wanted;
                report.summary = format!(
                    "the auditor agent {} says {}: {}",
                    agent.agent,
                    wanted.as_str(),
                    verdict.summary.trim()
                );
            }
            report.unverified_checks.retain(|check| {
                !agent.judged_checks.iter().any(|j| {
                    &j.check == check
                        && j.status == CheckJudgement::Pass
                        && !j.evidence.trim().is_empty()
                })
            });
        }
    }
    report.agent = Some(Box::new(agent));
}

fn severity(r: Recommendation) -> u8 {
    match r {
        Recommendation::Merge => 0,
        Recommendation::Revise => 1,
        Recommendation::Abandon => 2,
    }
}

/// Why what the agent spent is more than its budget allows, if it is.
fn over_budget(spec: &AuditAgentSpec, usage: &Usage) -> Option<String> {
    let tokens = usage.tokens_in + usage.tokens_out;
    if let Some(limit) = spec.tokens
        && (tokens > limit || limit == 0)
    {
        return Some(if limit == 0 {
            "the run's audit budget of tokens is spent".to_owned()
        } else {
            format!("it spent {tokens} tokens, over its budget of {limit}")
        });
    }
    if let Some(limit) = spec.cost_usd
        && (usage.cost_usd > limit || limit <= 0.0)
    {
        return Some(if limit <= 0.0 {
            "the run's audit budget of dollars is spent".to_owned()
        } else {
            format!(
                "it spent ${:.4}, over its budget of ${limit:.4}",
                usage.cost_usd
            )
        });
    }
    None
}

/// The contract's human-language checks, in order: what the verdict's `checks` number.
fn human_checks(contract: &Contract) -> Vec<String> {
    contract
        .verification
        .iter()
        .filter(|c| matches!(c.kind, CheckKind::Human))
        .map(|c| c.text.value.clone())
        .collect()
}

/// One turn of the agent in `cwd`.
fn turn(
    input: &AuditInput,
    spec: &AuditAgentSpec,
    place: &Place<'_>,
    cwd: &Path,
    n: u32,
    prompt: &str,
) -> Result<goalpost_agents::Turn, String> {
    let dir = place.scratch.join("agent");
    let state = dir.join("state");
    let tmp = dir.join("tmp");
    for d in [&state, &tmp] {
        fs::create_dir_all(d).map_err(|e| format!("cannot create {}: {e}", d.display()))?;
    }
    let schema = dir.join("verdict.schema.json");
    fs::write(&schema, SCHEMA).map_err(|e| format!("cannot write {}: {e}", schema.display()))?;
    let confine = if input.unconfined {
        None
    } else {
        // It may read everything it is shown, its checkout included, and write only its
        // own state and temp dir.
        let rules = Confinement::new([])
            .with_writable(&state)
            .and_then(|r| r.with_scratch(&tmp, input.sandbox.tmp_bytes()))
            .map_err(|e| format!("cannot confine it: {e}"))?;
        Some(rules.hiding(&input.sandbox.hidden).showing(cwd))
    };
    let mut env: BTreeMap<OsString, OsString> = spec
        .env
        .iter()
        .map(|(k, v)| (OsString::from(k), OsString::from(v)))
        .collect();
    env.insert("TMPDIR".into(), tmp.into_os_string());
    // What it builds goes to its temp dir, not into the checkout it may not write.
    env.insert(
        "CARGO_TARGET_DIR".into(),
        dir.join("tmp/target").into_os_string(),
    );
    env.insert("PYTHONDONTWRITEBYTECODE".into(), "1".into());
    for (key, value) in &spec.agent.env {
        env.insert(key.into(), value.into());
    }
    let facts = [
        ("GOALPOST_ROLE", Role::Auditor.as_str().to_owned()),
        ("GOALPOST_PHASE", input.phase.clone()),
        ("GOALPOST_RUN", input.run_id.clone()),
        ("GOALPOST_STATE_DIR", state.display().to_string()),
    ];
    for (key, value) in facts {
        env.insert(key.into(), value.into());
    }
    let request = TurnRequest {
        role: Role::Auditor,
        iteration: n,
        prompt,
        cwd,
        env,
        prompt_file: dir.join(format!("prompt-{n}.md")),
        timeout: Duration::from_secs(spec.timeout_secs.max(1)),
        cancel: None,
        tree: place
            .repo
            .tree_of(place.candidate)
            .ok()
            .map(|t| t.to_string()),
        confine: confine.as_ref(),
        verdict_schema: Some(schema),
    };
    Ok(goalpost_agents::run_turn(&spec.agent, &request))
}

/// The agent's prompt: the skill, then this audit's facts and the answer it must give.
fn prompt(
    input: &AuditInput,
    spec: &AuditAgentSpec,
    place: &Place<'_>,
    report: &AuditReport,
    human: &[String],
) -> String {
    let mut out = String::new();
    out.push_str(spec.skill.trim_end());
    out.push_str("\n\n# This audit\n\n");
    let _ = writeln!(
        out,
        "Phase `{}`: candidate commit {} on base {}. The current directory is a fresh \
         checkout of the candidate, read-only to you; `git diff {} {}` shows the change.\n",
        input.phase, place.candidate, place.base, place.base, place.candidate
    );
    input.contract.without_held_out().write_markdown(&mut out);
    out.push_str("## The change\n\n");
    match place.repo.diff_text(place.base, place.candidate, DIFF_CAP) {
        Ok(diff) => {
            out.push_str("```diff\n");
            out.push_str(&diff);
            if !diff.ends_with('\n') {
                out.push('\n');
            }
            out.push_str("```\n\n");
        }
        Err(err) => {
            let _ = writeln!(out, "(the diff could not be printed: {err})\n");
        }
    }
    out.push_str("## The machine audit's evidence\n\n");
    // What a held-out check is stays with the auditor unless the goal file shows it.
    let feedback = input
        .held_out
        .as_ref()
        .map_or(HeldOutFeedback::Hidden, |h| h.feedback);
    let evidence = crate::report::feedback(report, feedback);
    for line in evidence.lines() {
        // Its headings one level down, under this one.
        if line.starts_with('#') {
            out.push('#');
        }
        out.push_str(line);
        out.push('\n');
    }
    out.push_str("\n## The implementer's claims\n\n");
    if input.claims.is_empty() {
        out.push_str("(none)\n");
    }
    for (i, claim) in input.claims.iter().enumerate() {
        let _ = writeln!(out, "{}. {}", i + 1, claim.trim());
    }
    out.push_str("\n## The human-language checks\n\n");
    if human.is_empty() {
        out.push_str("(none)\n");
    }
    for (i, check) in human.iter().enumerate() {
        let _ = writeln!(out, "{}. {}", i + 1, check.trim());
    }
    let _ = write!(
        out,
        "\n## Your answer\n\nAnswer with one JSON object and nothing else, matching this \
         schema. `claims` judges each claim above by its number ({} in all), `checks` each \
         human-language check by its number ({} in all); `evidence` quotes what you read or \
         ran. `findings` gives file and line.\n\n```json\n{SCHEMA}\n```\n",
        input.claims.len(),
        human.len()
    );
    out
}

/// The verdict in the agent's final message: the message itself, its last ```json
/// block, or the outermost `{...}` in it. A verdict that leaves a claim or a human-language
/// check unjudged, judges one that is not there, or judges without evidence, does not count.
pub fn parse(message: &str, claims: usize, checks: usize) -> Result<AgentVerdict, String> {
    let text = json_text(message).ok_or_else(|| {
        format!(
            "its answer holds no JSON object: {:?}",
            crate::claims::tail(message, 200)
        )
    })?;
    let verdict: AgentVerdict = serde_json::from_str(text)
        .map_err(|e| format!("its verdict does not match the schema: {e}"))?;
    judged_once(
        "claim",
        verdict.claims.iter().map(|c| (c.n, c.evidence.as_str())),
        claims,
    )?;
    judged_once(
        "human-language check",
        verdict.checks.iter().map(|c| (c.n, c.evidence.as_str())),
        checks,
    )?;
    Ok(verdict)
}

/// Every one of `count` items judged exactly once, with evidence.
fn judged_once<'a>(
    what: &str,
    judged: impl Iterator<Item = (u32, &'a str)>,
    count: usize,
) -> Result<(), String> {
    let mut seen = vec![false; count];
    for (n, evidence) in judged {
        let slot = usize::try_from(n)
            .ok()
            .and_then(|n| n.checked_sub(1))
            .and_then(|i| seen.get_mut(i))
            .ok_or_else(|| format!("it judges {what} {n}, and there are {count}"))?;
        if *slot {
            return Err(format!("it judges {what} {n} twice"));
        }
        if evidence.trim().is_empty() {
            return Err(format!("it judges {what} {n} without evidence"));
        }
        *slot = true;
    }
    match seen.iter().position(|s| !s) {
        Some(i) => Err(format!("it leaves {what} {} unjudged", i + 1)),
        None => Ok(()),
    }
}

fn json_text(message: &str) -> Option<&str> {
    let trimmed = message.trim();
    if trimmed.starts_with('{') && trimmed.ends_with('}') {
        return Some(trimmed);
    }
    if let Some(start) = trimmed.rfind("```json") {
        let rest = &trimmed[start + "```json".len()..];
        if let Some(end) = rest.find("```") {
            return Some(rest[..end].trim());
        }
    }
    let start = trimmed.find('{')?;
    let end = trimmed.rfind('}')?;
    (start < end).then(|| &trimmed[start..=end])
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = r#"{"recommendation":"merge","summary":"ok",
        "claims":[{"n":1,"status":"verified","evidence":"ran `make test`: 3 passed"}],
        "checks":[{"n":1,"status":"pass","evidence":"error.rs:12 says \"no such file\""}],
        "findings":[]}"#;

    #[test]
    fn a_verdict_is_read_from_the_message_a_fence_or_the_outer_braces() {
        assert_eq!(
            parse(GOOD, 1, 1).unwrap().recommendation,
            Recommendation::Merge
        );
        let fenced = format!("Here it is.\n```json\n{GOOD}\n```\nThanks.");
        assert_eq!(parse(&fenced, 1, 1).unwrap().summary, "ok");
        let inline = format!("Verdict: {GOOD} (end)");
        assert_eq!(parse(&inline, 1, 1).unwrap().claims.len(), 1);
    }

    #[test]
    fn a_verdict_that_is_malformed_or_incomplete_does_not_count() {
        let err = |m: &str, claims, checks| parse(m, claims, checks).unwrap_err();
        assert!(err("VERDICT: approve", 0, 0).contains("no JSON object"));
        assert!(err(r#"{"recommendation":"ship"}"#, 0, 0).contains("schema"));
        assert!(
            err(GOOD, 2, 1).contains("claim 2 unjudged"),
            "{}",
            err(GOOD, 2, 1)
        );
        assert!(err(GOOD, 0, 1).contains("judges claim 1, and there are 0"));
        let bare = GOOD.replace("ran `make test`: 3 passed", " ");
        assert!(err(&bare, 1, 1).contains("claim 1 without evidence"));
        let twice = GOOD.replace(
            r#""checks":[{"n":1,"status":"pass","evidence":"error.rs:12 says \"no such file\""}]"#,
            r#""checks":[{"n":1,"status":"pass","evidence":"a"},{"n":1,"status":"fail","evidence":"b"}]"#,
        );
        assert!(err(&twice, 1, 1).contains("human-language check 1 twice"));
    }

    fn report(recommendation: Recommendation) -> AuditReport {
        AuditReport {
            phase: "p".into(),
            base: "b".into(),
            candidate: "c".into(),
            tree: "t".into(),
            recommendation,
            summary: "machine".into(),
            checks: Vec::new(),
            unverified_checks: vec!["errors read well".into()],
            violations: Vec::new(),
            claims: Vec::new(),
            changed_paths: Vec::new(),
            cache: Vec::new(),
            base_censuses: Vec::new(),
            setup: None,
            held_out: Vec::new(),
            agent: None,
        }
    }

    fn audit(verdict: Option<AgentVerdict>) -> AgentAudit {
        let judged_checks = verdict
            .iter()
            .flat_map(|v| &v.checks)
            .map(|c| JudgedCheck {
                check: "errors read well".into(),
                status: c.status,
                evidence: c.evidence.clone(),
            })
            .collect();
        AgentAudit {
            agent: "judge".into(),
            skill_source: "goalpost's own".into(),
            failures: if verdict.is_none() {
                vec!["its answer holds no JSON object".into()]
            } else {
                Vec::new()
            },
            verdict,
            turns: 1,
            usage: Usage::default(),
            judged_checks,
        }
    }

    #[test]
    fn the_verdict_makes_an_audit_stricter_never_laxer() {
        let good = parse(GOOD, 1, 1).unwrap();
        let mut r = report(Recommendation::Merge);
        apply(&mut r, audit(Some(good.clone())));
        assert_eq!(r.recommendation, Recommendation::Merge);
        assert!(r.unverified_checks.is_empty(), "judged pass with evidence");

        let mut r = report(Recommendation::Revise);
        apply(&mut r, audit(Some(good.clone())));
        assert_eq!(
            r.recommendation,
            Recommendation::Revise,
            "merge never undoes revise"
        );
        assert_eq!(r.summary, "machine");

        let mut refuted = good.clone();
        refuted.claims[0].status = ClaimJudgement::Refuted;
        let mut r = report(Recommendation::Merge);
        apply(&mut r, audit(Some(refuted)));
        assert_eq!(r.recommendation, Recommendation::Revise);
        assert!(r.summary.starts_with("the auditor agent judge says revise"));

        let mut failed = good.clone();
        failed.checks[0].status = CheckJudgement::Fail;
        let mut r = report(Recommendation::Merge);
        apply(&mut r, audit(Some(failed)));
        assert_eq!(r.recommendation, Recommendation::Revise);
        assert_eq!(r.unverified_checks, ["errors read well"]);

        let mut abandon = good;
        abandon.recommendation = Recommendation::Abandon;
        let mut r = report(Recommendation::Merge);
        apply(&mut r, audit(Some(abandon)));
        assert_eq!(r.recommendation, Recommendation::Abandon);

        let mut r = report(Recommendation::Merge);
        apply(&mut r, audit(None));
        assert_eq!(r.recommendation, Recommendation::Abandon);
        assert!(
            r.summary.contains("no verdict that counts"),
            "{}",
            r.summary
        );
    }

    #[test]
    fn a_spent_budget_is_a_failure() {
        let mut spec = AuditAgentSpec {
            agent: goalpost_shared::protocol::AgentSpec {
                name: "judge".into(),
                adapter: goalpost_shared::plan::Adapter::Command,
                command: vec!["true".into()],
                args: Vec::new(),
                model: None,
                env: BTreeMap::new(),
                price: None,
            },
            skill: String::new(),
            skill_source: String::new(),
            env: BTreeMap::new(),
            timeout_secs: 1,
            tokens: Some(100),
            cost_usd: None,
        };
        let mut usage = Usage {
            tokens_in: 80,
            tokens_out: 20,
            ..Usage::default()
        };
        assert_eq!(over_budget(&spec, &usage), None);
        usage.tokens_out = 21;
        assert!(over_budget(&spec, &usage).unwrap().contains("101 tokens"));
        spec.tokens = Some(0);
        assert!(
            over_budget(&spec, &Usage::default())
                .unwrap()
                .contains("spent")
        );
    }
}
