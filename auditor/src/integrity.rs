//! The audit's integrity step for each machine check: its canary (can it still fail?) and
//! its test census against the base's (does it still run what it ran?). A passing check
//! whose canary passes too, or that runs fewer tests or skips more than at the base, is
//! failed with the reason; the findings ride on the check's result, so the verification
//! cache keeps them with it.

use std::collections::BTreeMap;
use std::ffi::OsString;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::time::Duration;

use git2::Oid;
use goalpost_shared::boundary::BoundaryRules;
use goalpost_shared::cache;
use goalpost_shared::check::run_check;
use goalpost_shared::confine::Confinement;
use goalpost_shared::contract::{Boundaries, Check, Spanned};
use goalpost_shared::git::Repo;
use goalpost_shared::integrity::{
    CanaryOutcome, CanaryStatus, Census, CensusComparison, CheckIntegrity,
};
use goalpost_shared::protocol::{CachedCheck, CheckResult, PoolSpec};

use goalpost_shared::setup::run_setup;

use crate::audit::AuditError;
use crate::canary::{self, Plan};
use crate::census;
use crate::checkout::{Checkout, CheckoutError};
use crate::claims::tail;
use crate::place::{self, Place};
use crate::protected::ProtectedFiles;
use crate::runner::{self, CommitFiles, Kind, Runner};

/// What the integrity step needs to know of one check before anything runs.
#[derive(Debug, Clone)]
pub struct Prepared {
    /// The runners the command starts, at the candidate or at the base: a candidate that
    /// rewrites a Makefile recipe to `@true` still gets the base recipe's canary.
    pub runners: Vec<Runner>,
    pub canary: Plan,
    /// Whether the census is compared with the base's.
    pub census: bool,
    /// Globs of paths whose change allows fewer tests or more skipped.
    pub census_allow: Vec<String>,
}

impl Prepared {
    fn kinds(&self) -> Vec<Kind> {
        let mut kinds: Vec<Kind> = self.runners.iter().map(|r| r.kind).collect();
        kinds.dedup();
        kinds
    }

    fn wants_census(&self) -> bool {
        self.census && !self.runners.is_empty()
    }

    /// The check's cache key: its verdict depends on the base when its census is compared.
    pub fn key(&self, key: String, base_tree: &str) -> String {
        if self.wants_census() {
            cache::with_base(&key, base_tree)
        } else {
            key
        }
    }
}

/// Prepares every check of `machine` from the files of `candidate` and `base`.
pub fn prepare(repo: &Repo, base: Oid, candidate: Oid, machine: &[&Check]) -> Vec<Prepared> {
    let mut files: Option<(CommitFiles, CommitFiles)> = None;
    machine
        .iter()
        .map(|check| {
            let settings = check.integrity();
            let command = check.command().unwrap_or_default();
            let (cand, base) = files.get_or_insert_with(|| {
                (
                    CommitFiles::new(repo, candidate),
                    CommitFiles::new(repo, base),
                )
            });
            let mut runners = runner::recognise(command, cand);
            runners.extend(runner::recognise(command, base));
            runners.sort();
            runners.dedup();
            Prepared {
                canary: canary::plan(&settings.canary, &runners, cand),
                runners,
                census: settings.census,
                census_allow: settings.census_allow,
            }
        })
        .collect()
}

/// Whether a check's canary runs beside the check, in a checkout of its own, rather than
/// after it in the same one: a planted canary of a runner that builds nothing. A canary
/// that compiles (`cargo`, `go`) stays in the checkout the check built, where it costs an
/// incremental build instead of a whole one; a goal file's canary command stays there too.
pub fn runs_beside(prepared: &Prepared) -> bool {
    matches!(prepared.canary, Plan::Plant(_))
        && !prepared.runners.is_empty()
        && prepared
            .runners
            .iter()
            .all(|r| !matches!(r.kind, Kind::Cargo | Kind::Nextest | Kind::Go))
}

/// Runs the canaries of the checks `beside` in a second checkout of the candidate, made
/// ready as the checks' own (protected files, setup commands, sandbox), while the checks
/// run in theirs. A canary that could not run this way (the checkout or its setup failed)
/// is missing from the result and runs after the checks instead.
pub fn canaries_beside(
    from: &place::Source<'_>,
    protected: &ProtectedFiles,
    machine: &[&Check],
    prepared: &[Prepared],
    beside: &[usize],
    timeout: Duration,
    output_cap: usize,
) -> BTreeMap<usize, CanaryOutcome> {
    let run = || -> Result<BTreeMap<usize, CanaryOutcome>, AuditError> {
        // A handle of its own: the checks' thread uses the audit's.
        let repo = Repo::discover(&from.input.repo)?;
        let (scratch, env) = place::scratch("canary")?;
        let worktree = PathBuf::from(format!("{}-canary", from.input.worktree.display()));
        let place = Place::make(&repo, from, protected, &worktree, scratch.path(), &env)?;
        let setup = &from.input.contract.setup;
        let ready = setup.commands.is_empty()
            || !run_setup(
                setup,
                place.path(),
                &place.env,
                output_cap,
                place.confine.as_ref(),
            )
            .failed();
        let mut done = BTreeMap::new();
        if ready {
            for &i in beside {
                let outcome = canary::run(
                    &prepared[i].canary,
                    machine[i],
                    place.path(),
                    &place.env,
                    timeout,
                    place.confine.as_ref(),
                );
                done.insert(i, outcome);
            }
        }
        place.finish();
        Ok(done)
    };
    run().unwrap_or_else(|err| {
        tracing::warn!("cannot run the canaries beside the checks ({err}): they run after them");
        BTreeMap::new()
    })
}

/// Records on each check in `fresh` its canary: the one in `beside` if it ran there, else
/// run now in `checkout` (where every reported check has already run). A check that
/// failed on its own needs none.
#[allow(clippy::too_many_arguments)]
pub fn run_canaries(
    prepared: &[Prepared],
    machine: &[&Check],
    slots: &mut [Option<CheckResult>],
    fresh: &[bool],
    mut beside: BTreeMap<usize, CanaryOutcome>,
    checkout: &Path,
    env: &BTreeMap<OsString, OsString>,
    timeout: Duration,
    confine: Option<&Confinement>,
) {
    // A goal file's canary command may change anything in the checkout and nothing puts
    // it back, while planted files are removed again: commands run after every planted
    // canary, so none of those runs on what a command left behind.
    let mut order: Vec<usize> = (0..slots.len()).collect();
    order.sort_by_key(|&i| matches!(prepared[i].canary, Plan::Command(_)));
    for i in order {
        let Some(result) = slots[i].as_mut().filter(|_| fresh[i]) else {
            continue;
        };
        let outcome = match beside.remove(&i) {
            Some(outcome) if result.passed => outcome,
            None if result.passed => canary::run(
                &prepared[i].canary,
                machine[i],
                checkout,
                env,
                timeout,
                confine,
            ),
            _ => CanaryOutcome {
                status: CanaryStatus::NotNeeded,
                detail: "the check failed on its own".to_owned(),
                planted: Vec::new(),
                exit_code: None,
                duration_ms: 0,
                output: String::new(),
            },
        };
        if outcome.status == CanaryStatus::Passed {
            result.passed = false;
            let planted: Vec<String> = outcome.planted.iter().map(|p| format!("`{p}`")).collect();
            result.failure = Some(if planted.is_empty() {
                outcome.detail.clone()
            } else {
                format!(
                    "passed with a failing canary test added: it cannot fail ({})",
                    planted.join(", ")
                )
            });
        }
        result.integrity = Some(CheckIntegrity {
            canary: outcome,
            census: None,
        });
    }
}

/// Where the base's census is taken from.
pub struct BaseRun<'a> {
    pub repo: &'a Repo,
    pub base: Oid,
    pub base_tree: String,
    /// Where a checkout of the base may be added.
    pub worktree: PathBuf,
    pub pool: Option<&'a PoolSpec>,
    /// Evidence recorded earlier, among which the base's own runs.
    pub cached: &'a [CachedCheck],
    pub unconfined: bool,
    pub scratch: &'a Path,
    /// The paths the candidate changed, for `Census: allow`.
    pub changed: &'a [String],
    /// Each check's cache key on the candidate, from which its base run's key is made.
    pub keys: &'a [String],
    /// This audit's report directory, where a base run's evidence is said to come from.
    pub source: String,
}

/// Reads the census of each check in `fresh` that still passes, and compares it with the
/// base's: from an earlier run on the base's exact tree when there is one, else from a run
/// in a checkout of the base. Returns those runs of the base, for the verification cache.
#[allow(clippy::too_many_arguments)]
pub fn compare_censuses(
    prepared: &[Prepared],
    machine: &[&Check],
    slots: &mut [Option<CheckResult>],
    fresh: &[bool],
    at_base: &BaseRun,
    env: &BTreeMap<OsString, OsString>,
    timeout: Duration,
    output_cap: usize,
) -> Result<Vec<CachedCheck>, CheckoutError> {
    let wanted: Vec<usize> = (0..slots.len())
        .filter(|&i| fresh[i] && prepared[i].wants_census())
        .filter(|&i| slots[i].as_ref().is_some_and(|r| r.integrity.is_some()))
        .collect();
    let mut base: BTreeMap<usize, (Option<Census>, Option<String>)> = BTreeMap::new();
    let mut to_run = Vec::new();
    for &i in &wanted {
        let kinds = prepared[i].kinds();
        let cached = at_base.cached.iter().find(|c| {
            c.result.command == machine[i].command().unwrap_or_default()
                && c.result.record.tree.as_deref() == Some(at_base.base_tree.as_str())
                && c.result
                    .integrity
                    .as_ref()
                    .and_then(|g| g.census.as_ref())
                    .is_some()
        });
        match cached {
            Some(c) => {
                let output = format!("{}{}", c.result.record.stdout, c.result.record.stderr);
                // The stored figures are the base's own; its output, capped for the report,
                // may no longer hold the summary.
                let figures = c
                    .result
                    .integrity
                    .as_ref()
                    .and_then(|g| g.census.as_ref())
                    .and_then(|g| g.candidate)
                    .or_else(|| census::read(&kinds, &output, c.result.record.truncated));
                base.insert(i, (figures, Some(c.source.clone())));
            }
            // A check that failed on its own has nothing to compare; one failed by its
            // canary still gets its census, as more evidence.
            None if passed_on_its_own(slots[i].as_ref()) => to_run.push(i),
            None => {}
        }
    }
    let mut base_runs = Vec::new();
    if !to_run.is_empty() {
        let checkout =
            Checkout::create_pooled(at_base.repo, &at_base.worktree, at_base.base, at_base.pool)?;
        let confine = if at_base.unconfined {
            None
        } else {
            match Confinement::for_worktree(at_base.repo, checkout.path(), &[at_base.scratch]) {
                Ok(c) => Some(c),
                Err(err) => {
                    tracing::warn!("cannot confine the base's checks: {err}");
                    return Ok(Vec::new());
                }
            }
        };
        for &i in &to_run {
            let result = run_check(
                machine[i],
                checkout.path(),
                env,
                timeout,
                output_cap,
                confine.as_ref(),
            );
            let output = format!("{}{}", result.record.stdout, result.record.stderr);
            let figures = census::read(&prepared[i].kinds(), &output, result.record.truncated);
            base.insert(i, (figures, None));
            base_runs.push(base_run(result, figures, &prepared[i], at_base, i));
        }
        if let Err(err) = checkout.remove() {
            tracing::warn!("could not remove the base's audit worktree: {err}");
        }
    }
    for &i in &wanted {
        let Some(result) = slots[i].as_mut() else {
            continue;
        };
        let kinds = prepared[i].kinds();
        let output = format!("{}{}", result.record.stdout, result.record.stderr);
        let candidate = census::read(&kinds, &output, result.record.truncated);
        let (base_census, base_from) = base.remove(&i).unwrap_or((None, None));
        let mut violation = census::judge(&result.command, candidate, base_census);
        let mut allowed = None;
        if let Some(why) = &violation
            && let Some(path) = allowing_change(&prepared[i].census_allow, at_base.changed)
        {
            allowed = Some(format!("{why}: allowed, the candidate changed `{path}`"));
            violation = None;
        }
        if result.passed
            && let Some(why) = &violation
        {
            result.passed = false;
            result.failure = Some(why.clone());
        }
        if let Some(integrity) = result.integrity.as_mut() {
            integrity.census = Some(CensusComparison {
                runners: kinds.iter().map(|k| k.as_str().to_owned()).collect(),
                candidate,
                base: base_census,
                base_from,
                violation,
                allowed,
            });
        }
    }
    Ok(base_runs)
}

/// The first changed path a `Census: allow` glob matches (the same gitignore-like globs as
/// the boundaries').
fn allowing_change<'p>(globs: &[String], changed: &'p [String]) -> Option<&'p str> {
    if globs.is_empty() {
        return None;
    }
    let boundaries = Boundaries {
        protected: globs
            .iter()
            .map(|g| Spanned::new(g.clone(), 0, 0))
            .collect(),
        ..Boundaries::default()
    };
    let rules = BoundaryRules::new(&boundaries, &[]).ok()?;
    changed
        .iter()
        .find(|p| rules.is_protected(p))
        .map(String::as_str)
}

/// A run of check `i` on the base's exact tree as the verification cache keeps it: found
/// by tree, command and census, under a key no candidate's check has.
fn base_run(
    mut result: CheckResult,
    figures: Option<Census>,
    prepared: &Prepared,
    at_base: &BaseRun,
    i: usize,
) -> CachedCheck {
    result.record.tree = Some(at_base.base_tree.clone());
    // Its figures are kept; of its output, what a report keeps.
    for text in [&mut result.record.stdout, &mut result.record.stderr] {
        if text.len() > 4096 {
            *text = tail(text, 4096);
            result.record.truncated = true;
        }
    }
    result.integrity = Some(CheckIntegrity {
        canary: CanaryOutcome {
            status: CanaryStatus::NotRun,
            detail: "run on the base for its census only".to_owned(),
            planted: Vec::new(),
            exit_code: None,
            duration_ms: 0,
            output: String::new(),
        },
        census: Some(CensusComparison {
            runners: prepared
                .kinds()
                .iter()
                .map(|k| k.as_str().to_owned())
                .collect(),
            candidate: figures,
            base: None,
            base_from: None,
            violation: None,
            allowed: None,
        }),
    });
    let key = at_base.keys.get(i).map_or_else(String::new, |k| {
        cache::with_base(&format!("census of the base for {k}"), &at_base.base_tree)
    });
    CachedCheck {
        key,
        result,
        source: at_base.source.clone(),
    }
}

fn passed_on_its_own(result: Option<&CheckResult>) -> bool {
    result
        .and_then(|r| r.integrity.as_ref())
        .is_some_and(|g| g.canary.status != CanaryStatus::NotNeeded)
}

/// The `## Integrity` section of `audit.md`: each check's canary and census.
pub fn markdown(out: &mut String, checks: &[CheckResult]) {
    let with: Vec<(usize, &CheckResult, &CheckIntegrity)> = checks
        .iter()
        .enumerate()
        .filter_map(|(i, c)| Some((i + 1, c, c.integrity.as_ref()?)))
        .collect();
    if with.is_empty() {
        return;
    }
    let _ = writeln!(out, "## Integrity\n");
    let _ = writeln!(
        out,
        "| check | canary | census (ran / passed / failed / skipped) | at the base |"
    );
    let _ = writeln!(out, "| --- | --- | --- | --- |");
    for (n, check, integrity) in with {
        let figures = |c: Option<Census>| match c {
            Some(c) => format!(
                "{} / {} / {} / {}{}",
                c.ran,
                c.passed,
                c.failed,
                c.skipped,
                if c.partial { " (partial)" } else { "" }
            ),
            None => "no summary".to_owned(),
        };
        let (cand, base) = match &integrity.census {
            Some(g) => (
                format!(
                    "{}{}",
                    figures(g.candidate),
                    match (&g.violation, &g.allowed) {
                        (Some(v), _) => format!(" — **{}**", v.replace('|', r"\|")),
                        (None, Some(a)) => format!(" — {}", a.replace('|', r"\|")),
                        (None, None) => String::new(),
                    }
                ),
                format!(
                    "{}{}",
                    figures(g.base),
                    if g.base_from.is_some() {
                        " (cached)"
                    } else {
                        ""
                    }
                ),
            ),
            None => ("–".to_owned(), "–".to_owned()),
        };
        let _ = writeln!(
            out,
            "| {n}. `{}` | {}: {} | {cand} | {base} |",
            check.command.replace('|', "\\|"),
            integrity.canary.status.as_str(),
            integrity.canary.detail.replace('|', "\\|"),
        );
    }
    out.push('\n');
    // The evidence of a check that cannot fail: what it printed with its canary there.
    for check in checks {
        let Some(canary) = check.integrity.as_ref().map(|g| &g.canary) else {
            continue;
        };
        if canary.status == CanaryStatus::Passed && !canary.output.trim().is_empty() {
            let _ = writeln!(out, "`{}` with its canary, output tail:\n", check.command);
            crate::report::fenced(out, &canary.output);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::claims::tests::result;

    fn outcome(status: CanaryStatus, detail: &str, planted: &[&str]) -> CanaryOutcome {
        CanaryOutcome {
            status,
            detail: detail.to_owned(),
            planted: planted.iter().map(|p| (*p).to_owned()).collect(),
            exit_code: Some(if status == CanaryStatus::Passed {
                0
            } else {
                101
            }),
            duration_ms: 900,
            output: match status {
                CanaryStatus::Passed => "Ran 3 tests in 0.001s\n\nOK\n".to_owned(),
                _ => "test goalpost_canary ... FAILED\n".to_owned(),
            },
        }
    }

    fn census(ran: u64, skipped: u64) -> Option<Census> {
        Some(Census {
            ran,
            passed: ran,
            failed: 0,
            skipped,
            ..Census::default()
        })
    }

    fn checks() -> Vec<CheckResult> {
        let mut honest = result("cargo test", None, "");
        honest.integrity = Some(CheckIntegrity {
            canary: outcome(
                CanaryStatus::Failed,
                "the check failed with `tests/goalpost_canary.rs` added (exit status 101)",
                &["tests/goalpost_canary.rs"],
            ),
            census: Some(CensusComparison {
                runners: vec!["cargo test".to_owned()],
                candidate: census(4, 0),
                base: census(3, 0),
                base_from: Some("/state/audits/a1".to_owned()),
                violation: None,
                allowed: None,
            }),
        });
        let mut cannot_fail = result(
            "make test",
            Some("passed with a failing canary test added: it cannot fail"),
            "",
        );
        cannot_fail.integrity = Some(CheckIntegrity {
            canary: outcome(
                CanaryStatus::Passed,
                "the check passed with `test_goalpost_canary.py` added: it cannot fail",
                &["test_goalpost_canary.py"],
            ),
            census: Some(CensusComparison {
                runners: vec!["unittest".to_owned()],
                candidate: None,
                base: census(2, 0),
                base_from: None,
                violation: Some(
                    "`make test` printed no test summary (it ran no test to its end), 2 tests \
                     at the base"
                        .to_owned(),
                ),
                allowed: None,
            }),
        });
        let mut fewer = result(
            "pytest | cat",
            Some("`pytest | cat` ran 2 tests, 3 at the base"),
            "",
        );
        fewer.integrity = Some(CheckIntegrity {
            canary: outcome(CanaryStatus::Off, "switched off by the goal file", &[]),
            census: Some(CensusComparison {
                runners: vec!["pytest".to_owned()],
                candidate: census(2, 1),
                base: census(3, 0),
                base_from: None,
                violation: Some("`pytest | cat` ran 2 tests, 3 at the base".to_owned()),
                allowed: None,
            }),
        });
        let mut bench = result("./bench.sh", None, "");
        bench.integrity = Some(CheckIntegrity {
            canary: outcome(
                CanaryStatus::NotRun,
                "the command starts no test runner the auditor knows",
                &[],
            ),
            census: None,
        });
        vec![honest, cannot_fail, fewer, bench, result("true", None, "")]
    }

    #[test]
    fn the_integrity_table_reads_well() {
        let mut out = String::new();
        markdown(&mut out, &checks());
        insta::assert_snapshot!(out);
    }

    #[test]
    fn the_integrity_findings_in_audit_json() {
        insta::assert_json_snapshot!(checks()[1].integrity);
    }

    #[test]
    fn no_table_without_findings() {
        let mut out = String::new();
        markdown(&mut out, &[result("true", None, "")]);
        assert_eq!(out, "");
    }
}
