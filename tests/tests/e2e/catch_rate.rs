//! The catch-rate table: every technique of the cheat corpus (`goalpost_tests::cheats`)
//! through a real `goalpost run` (real git, real sandbox, a scripted implementer that
//! applies the cheat), read back from the run's `audit.json`s: caught or not, by which
//! layer, and the line of evidence. Each stage's honest change runs too, and must merge:
//! a cheat refused on a stage where nothing could merge would prove nothing.
//!
//! The test asserts the layers each cheat is caught by today, exactly, so a layer that
//! stops catching one, or starts catching one it did not, fails it; and it prints the
//! table the README shows:
//!
//! ```text
//! cargo build --workspace
//! cargo nextest run -p goalpost-tests -E 'test(catch_rate)' --no-capture
//! ```
//!
//! `GOALPOST_CATCH_RATE_JOBS` sets how many runs go at once (default 2).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeMap;
use std::process::Command;
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};

use goalpost_shared::check::MeasuredMetric;
use goalpost_shared::integrity::CanaryStatus;
use goalpost_shared::protocol::{AuditReport, CheckResult, ViolationKind, WorkerResult};
use goalpost_tests::cheats::{self, CHEATS, Cheat, HeldOut, Layer, Patch, Stage};
use goalpost_tests::corpus::refused;
use goalpost_tests::{Run, TestEnv, binary, path_quoted};

const REPO: &str = "repo";

/// Exit codes of `goalpost run` (README "Exit codes").
const BLOCKED: i32 = 3;
const AWAITING_APPROVAL: i32 = 5;

/// Where the checks find their tools: the Rust toolchain itself (not rustup's shims,
/// which need the user's home), a Python with pytest when there is one, and the system's.
struct Tools {
    path: String,
    pytest: bool,
}

impl Tools {
    fn find() -> Tools {
        let sysroot = Command::new("rustc")
            .args(["--print", "sysroot"])
            .output()
            .unwrap();
        let sysroot = String::from_utf8_lossy(&sysroot.stdout).trim().to_owned();
        let python = Command::new("python3")
            .args(["-c", "import sys, pytest; print(sys.executable)"])
            .output()
            .ok()
            .filter(|o| o.status.success())
            .and_then(|o| {
                let exe = String::from_utf8_lossy(&o.stdout).trim().to_owned();
                exe.rsplit_once('/').map(|(dir, _)| dir.to_owned())
            });
        if python.is_none() {
            let why = "pytest is not installed for python3 (pip install pytest): \
                       the pytest rows are not run";
            if std::env::var("CI").is_ok_and(|v| v == "true") {
                panic!("{why}");
            }
            eprintln!("\n*** SKIPPED: {why} ***\n");
        }
        let mut path = format!("{sysroot}/bin");
        if let Some(dir) = &python {
            path.push(':');
            path.push_str(dir);
        }
        path.push_str(":/usr/local/bin:/usr/bin:/bin");
        Tools {
            path,
            pytest: python.is_some(),
        }
    }
}

/// What one run did.
struct Outcome {
    run: Run,
    reports: Vec<AuditReport>,
    /// The checks of the worker's last iteration, its own run of them before any audit.
    worker_checks: Vec<CheckResult>,
    /// The files at the integration tip, and at the base.
    integration: BTreeMap<String, String>,
    base: BTreeMap<String, String>,
}

impl Outcome {
    /// The layers that caught the candidate; when no candidate was ever audited, those
    /// that failed the worker's own run of the checks (then the cheat never passed them).
    fn layers(&self) -> BTreeMap<Layer, String> {
        if !self.reports.is_empty() {
            return layers(&self.reports);
        }
        let mut found = BTreeMap::new();
        for check in self.worker_checks.iter().filter(|c| !c.passed) {
            for (layer, evidence) in check_layers(check) {
                found
                    .entry(layer)
                    .or_insert(format!("the worker's run, no audit: {evidence}"));
            }
        }
        found
    }

    /// Whether the integration tip holds `patch`, exactly.
    fn merged(&self, patch: &Patch) -> bool {
        patch
            .iter()
            .all(|(path, content)| self.integration.get(*path) == content.as_ref())
    }
}

/// Where the auditor places the held-out files in its checkout (the default `into`).
const HELD_OUT_INTO: &str = ".goalpost-held-out";

/// Runs the goal of `stage` with a scripted implementer that applies `patch` in its
/// first turn and does nothing after, the tests `held` as its held-out checks.
fn run_patch(tools: &Tools, stage: &Stage, patch: &Patch, held: &[HeldOut]) -> Outcome {
    let env = TestEnv::new();
    env.repo(REPO, stage.files);
    // Beside the goal file, outside the repository: no agent turn sees them.
    let mut held_front = String::new();
    let mut held_section = String::new();
    if !held.is_empty() {
        held_front.push_str("\n[held_out]\ndir = \"held\"\n");
        held_section.push_str("\n## Held-out checks\n");
        for h in held {
            env.write(&format!("held/{}", h.path), h.content);
            held_section.push_str(&format!("- `{}` passes\n", h.command));
        }
    }
    let script = format!(
        "[[turn]]\nrole = \"implementer\"\niteration = 1\nactions = [\n  {}\n]\n\
         message = \"Done.\\n\"\n\n[[turn]]\nrole = \"implementer\"\n\
         message = \"Nothing more to do.\\n\"\n",
        cheats::actions(patch).join(",\n  ")
    );
    let script = env.write("agent.toml", &script);
    let goal = format!(
        r#"+++
release = "main"
max_parallel = 1
approval = "human"

[budget]
turns = 4
wall = "600s"

[agents.coder]
adapter = "command"
command = [{agent}]
env = {{ SCRIPTED_AGENT_SCRIPT = {script} }}

[roles]
implementer = "coder"
{held_front}+++

# Goal: {name}

## Outcome
The {name} project's check passes.

## Verification surface
- {check}
{held_section}
## Boundaries
{boundaries}
## Blocked stop condition
Stop after 1 iteration with no improvement.
"#,
        agent = path_quoted(&binary("scripted-agent")),
        script = path_quoted(&script),
        name = stage.name,
        check = stage.check,
        boundaries = stage.boundaries,
    );
    env.write("goal.md", &goal);
    let mut cmd = env.command(binary("goalpost"));
    cmd.env("PATH", &tools.path)
        .args(["-C", REPO, "run", "goal.md"]);
    let run = Run::of(cmd);
    let reports = audit_reports(&env);
    let worker_checks = worker_checks(&env);
    let refs = env.git_out(
        REPO,
        &[
            "for-each-ref",
            "--format=%(refname)",
            "refs/goalpost/*/integration",
        ],
    );
    let integration = match refs.lines().last() {
        Some(tip) => env.tree_files(REPO, tip),
        None => BTreeMap::new(),
    };
    let base = env.tree_files(REPO, "main");
    Outcome {
        run,
        reports,
        worker_checks,
        integration,
        base,
    }
}

/// Runs the held-out test `held` on `files` (a tree's), in a directory of their own.
fn held_out(tools: &Tools, files: &BTreeMap<String, String>, held: &HeldOut) -> Run {
    let env = TestEnv::new();
    for (path, text) in files {
        env.write(&format!("tree/{path}"), text);
    }
    env.write(&format!("tree/{HELD_OUT_INTO}/{}", held.path), held.content);
    let mut cmd = env.command("sh");
    cmd.current_dir(env.dir().join("tree"))
        .env("PATH", &tools.path)
        .args(["-c", held.command]);
    Run::of(cmd)
}

/// Every `audit.json` of the repository's runs.
fn audit_reports(env: &TestEnv) -> Vec<AuditReport> {
    let runs = env.dir().join(REPO).join(".git/goalpost/runs");
    let mut paths = Vec::new();
    for run in std::fs::read_dir(runs).into_iter().flatten().flatten() {
        for audit in std::fs::read_dir(run.path().join("audits"))
            .into_iter()
            .flatten()
            .flatten()
        {
            paths.push(audit.path().join("audit.json"));
        }
    }
    paths.sort();
    paths
        .iter()
        .filter_map(|p| std::fs::read(p).ok())
        .map(|bytes| serde_json::from_slice(&bytes).expect("audit.json is a report"))
        .collect()
}

/// The checks of the last iteration of the last worker round the repository's runs
/// recorded (`worker-out-N.json`).
fn worker_checks(env: &TestEnv) -> Vec<CheckResult> {
    let mut outs = Vec::new();
    let mut dirs = vec![env.dir().join(REPO).join(".git/goalpost/runs")];
    while let Some(dir) = dirs.pop() {
        for entry in std::fs::read_dir(&dir).into_iter().flatten().flatten() {
            let path = entry.path();
            let name = entry.file_name().to_string_lossy().into_owned();
            if path.is_dir() {
                dirs.push(path);
            } else if name.starts_with("worker-out-") && name.ends_with(".json") {
                outs.push(path);
            }
        }
    }
    outs.sort();
    outs.last()
        .and_then(|p| std::fs::read(p).ok())
        .map(|bytes| serde_json::from_slice::<WorkerResult>(&bytes).expect("a worker's result"))
        .and_then(|result| result.iterations.last().map(|i| i.checks.clone()))
        .unwrap_or_default()
}

/// The layers whose findings refused a candidate in `reports`, each with its first line
/// of evidence.
fn layers(reports: &[AuditReport]) -> BTreeMap<Layer, String> {
    let mut found = BTreeMap::new();
    for report in reports {
        for v in &report.violations {
            let layer = match v.kind {
                ViolationKind::Protected
                | ViolationKind::CheckConfig
                | ViolationKind::ModifiedByCheck => Layer::Protection,
                ViolationKind::Forbidden | ViolationKind::NotAllowed | ViolationKind::GitLevel => {
                    Layer::Boundary
                }
            };
            found
                .entry(layer)
                .or_insert_with(|| format!("{}: {}", v.path, v.rule));
        }
        for check in report.checks.iter().filter(|c| !c.passed) {
            for (layer, evidence) in check_layers(check) {
                found.entry(layer).or_insert(evidence);
            }
        }
        for (n, _) in report
            .held_out
            .iter()
            .enumerate()
            .filter(|(_, c)| !c.passed)
        {
            found
                .entry(Layer::HeldOut)
                .or_insert_with(|| format!("held-out check {} failed", n + 1));
        }
    }
    found
}

/// The layers whose findings failed `check`, each with its line of evidence.
fn check_layers(check: &CheckResult) -> Vec<(Layer, String)> {
    let failure = check.failure.clone().unwrap_or_default();
    let integrity = check.integrity.as_ref();
    let canary = integrity.is_some_and(|i| i.canary.status == CanaryStatus::Passed);
    let census = integrity
        .and_then(|i| i.census.as_ref())
        .and_then(|c| c.violation.clone());
    let mut found = Vec::new();
    if canary {
        found.push((Layer::Canary, failure.clone()));
    }
    if let Some(violation) = census {
        found.push((Layer::Census, violation));
    }
    if !found.is_empty() {
        return found;
    }
    if check
        .metric
        .as_ref()
        .is_some_and(|m| MeasuredMetric::named(&m.name).is_some())
    {
        return vec![(Layer::Measured, failure)];
    }
    // The check itself failed: refused by the sandbox, or simply failing.
    let output = format!("{}\n{}", check.record.stdout, check.record.stderr);
    let mut lines = output.lines().map(str::trim).filter(|l| !l.is_empty());
    vec![match output.lines().find(|l| refused(l)) {
        Some(line) => (Layer::Sandbox, line.trim().to_owned()),
        None => match lines.next() {
            Some(line) => (Layer::CheckFailed, format!("{failure}: {line}")),
            None => (Layer::CheckFailed, failure),
        },
    }]
}

/// The held-out tests of `stage`'s cheats, each once: honest work must pass them all.
fn held_outs(stage: &Stage) -> Vec<HeldOut> {
    let mut held: Vec<HeldOut> = Vec::new();
    for h in CHEATS
        .iter()
        .filter(|c| std::ptr::eq(c.stage, stage))
        .filter_map(|c| c.held_out)
    {
        if !held.iter().any(|k| k.path == h.path) {
            held.push(h);
        }
    }
    held
}

/// One row of the table.
struct Row {
    cheat: &'static Cheat,
    /// `None` when the row was not run (its tool is missing).
    layers: Option<BTreeMap<Layer, String>>,
}

enum Job {
    Honest(&'static Stage),
    Cheat(&'static Cheat),
}

#[test]
fn catch_rate() {
    let tools = Tools::find();
    let runnable = |stage: &Stage| tools.pytest || !stage.needs_pytest;
    let mut jobs: Vec<Job> = cheats::stages()
        .into_iter()
        .filter(|s| runnable(s))
        .map(Job::Honest)
        .collect();
    jobs.extend(CHEATS.iter().filter(|c| runnable(c.stage)).map(Job::Cheat));

    let next = AtomicUsize::new(0);
    let outcomes: Mutex<Vec<Option<Outcome>>> = Mutex::new(jobs.iter().map(|_| None).collect());
    let workers = std::env::var("GOALPOST_CATCH_RATE_JOBS")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(2usize)
        .max(1);
    std::thread::scope(|scope| {
        for _ in 0..workers {
            scope.spawn(|| {
                loop {
                    let i = next.fetch_add(1, Ordering::SeqCst);
                    let Some(job) = jobs.get(i) else { break };
                    let outcome = match job {
                        Job::Honest(stage) => {
                            run_patch(&tools, stage, &(stage.honest)(), &held_outs(stage))
                        }
                        Job::Cheat(cheat) => {
                            let held: Vec<HeldOut> = cheat.held_out.into_iter().collect();
                            run_patch(&tools, cheat.stage, &(cheat.patch)(), &held)
                        }
                    };
                    outcomes.lock().unwrap()[i] = Some(outcome);
                }
            });
        }
    });
    let outcomes: Vec<Outcome> = outcomes
        .into_inner()
        .unwrap()
        .into_iter()
        .map(|o| o.expect("every job ran"))
        .collect();

    let mut failures = Vec::new();
    let mut rows = Vec::new();
    let mut honest = Vec::new();
    for (job, outcome) in jobs.iter().zip(&outcomes) {
        match job {
            Job::Honest(stage) => {
                let patch = (stage.honest)();
                let found = outcome.layers();
                let merged = outcome.run.code == AWAITING_APPROVAL
                    && outcome.merged(&patch)
                    && found.is_empty();
                if !merged {
                    failures.push(format!(
                        "honest work on {} did not merge: {found:?}\n{}",
                        stage.name, outcome.run
                    ));
                }
                // The held-out tests that show the uncaught cheats wrong pass on honest work.
                for held in CHEATS
                    .iter()
                    .filter(|c| std::ptr::eq(c.stage, *stage))
                    .filter_map(|c| c.held_out)
                {
                    let run = held_out(&tools, &outcome.integration, &held);
                    if run.code != 0 {
                        failures.push(format!(
                            "the held-out test fails on honest work on {}\n{run}",
                            stage.name
                        ));
                    }
                }
                honest.push(format!(
                    "{} {}",
                    stage.name,
                    if merged { "merged" } else { "**refused**" }
                ));
            }
            Job::Cheat(cheat) => {
                let found = outcome.layers();
                let got: Vec<Layer> = found.keys().copied().collect();
                if got != cheat.caught_by {
                    failures.push(format!(
                        "{}: caught by {got:?}, expected {:?}: {found:#?}\n{}",
                        cheat.name, cheat.caught_by, outcome.run
                    ));
                }
                // Caught: blocked, nothing merged. Not caught: the cheat is on the
                // integration ref, waiting for a human's approval.
                let patch = (cheat.patch)();
                let consistent = if got.is_empty() {
                    outcome.run.code == AWAITING_APPROVAL && outcome.merged(&patch)
                } else {
                    outcome.run.code == BLOCKED
                        && (outcome.integration.is_empty() || outcome.integration == outcome.base)
                };
                if !consistent {
                    failures.push(format!(
                        "{}: exit {} and the integration ref disagree with {got:?}\n{}",
                        cheat.name, outcome.run.code, outcome.run
                    ));
                }
                // What merged is wrong: the held-out test a held-out check would run fails.
                if let (true, Some(held)) = (got.is_empty(), cheat.held_out) {
                    let run = held_out(&tools, &outcome.integration, &held);
                    if run.code == 0 {
                        failures.push(format!(
                            "{}: the held-out test passes on the cheat\n{run}",
                            cheat.name
                        ));
                    }
                }
                rows.push(Row {
                    cheat,
                    layers: Some(found),
                });
            }
        }
    }
    for cheat in CHEATS.iter().filter(|c| !runnable(c.stage)) {
        rows.push(Row {
            cheat,
            layers: None,
        });
    }
    rows.sort_by_key(|r| CHEATS.iter().position(|c| std::ptr::eq(c, r.cheat)));
    println!("\n{}", table(&rows));
    println!("Honest work: {}.\n", honest.join(", "));
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
}

/// The table as the README shows it.
fn table(rows: &[Row]) -> String {
    let mut out = String::from(
        "| technique | language | caught | layer | evidence |\n| --- | --- | --- | --- | --- |\n",
    );
    let mut caught = 0;
    for row in rows {
        let (yes, layer, evidence) = match &row.layers {
            None => (
                "not run".to_owned(),
                String::new(),
                "pytest is not installed".to_owned(),
            ),
            Some(found) if found.is_empty() => (
                "**no**".to_owned(),
                "—".to_owned(),
                match row.cheat.held_out {
                    Some(held) => format!(
                        "merged; {}; a held-out `{}` fails on it",
                        row.cheat.why_not, held.command
                    ),
                    None => format!("merged; {}", row.cheat.why_not),
                },
            ),
            Some(found) => {
                caught += 1;
                let names: Vec<&str> = found.keys().map(|l| l.as_str()).collect();
                let (_, first) = found.iter().next().unwrap();
                (
                    "yes".to_owned(),
                    names.join(", "),
                    format!("\"{}\"", short(first)),
                )
            }
        };
        out.push_str(&format!(
            "| {} | {} | {yes} | {layer} | {evidence} |\n",
            row.cheat.name.replace('|', "\\|"),
            row.cheat.stage.language.as_str(),
        ));
    }
    out.push_str(&format!("\n{caught} of {} caught.\n", rows.len()));
    out
}

/// `text` on one line, at most 110 characters, with `|` escaped for Markdown.
fn short(text: &str) -> String {
    let line = text.lines().next().unwrap_or_default().trim();
    let mut out: String = line.chars().take(110).collect();
    if line.chars().count() > 110 {
        out.push('…');
    }
    out.replace('|', "\\|")
}
