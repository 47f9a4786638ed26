//! How goal-file text becomes the model: phases inheriting and overriding the plan's
//! contract, headings matched case-insensitively, context kept, front-matter values and
//! defaults, metrics, the no-progress limit, and boundary globs.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::Path;

use goalpost_shared::contract::{CheckKind, MetricOp};
use goalpost_shared::goal::{self, Diagnostic};
use goalpost_shared::plan::{Adapter, Approval, IMPLICIT_PHASE, Network, Plan, Selection};

fn parse(text: &str) -> Plan {
    goal::parse(Path::new("goal.md"), text).unwrap_or_else(|e| panic!("{e}"))
}

fn errors(text: &str) -> Vec<String> {
    match goal::parse(Path::new("goal.md"), text) {
        Ok(_) => panic!("expected errors"),
        Err(d) => d.0.iter().map(Diagnostic::to_string).collect(),
    }
}

fn values(v: &[goalpost_shared::contract::Spanned<String>]) -> Vec<&str> {
    v.iter().map(|s| s.value.as_str()).collect()
}

const PHASED: &str = "\
# Goal: inheritance

## Outcome
The whole thing works.

## Verification
- `cargo test` passes
- `./bench.sh` reports `rps` at least 1000

## Constraints
- No new dependencies.

## Boundaries
- Allowed paths: src/**
- Forbidden paths: vendor/
- Protected paths: tests/golden/**

## Iteration policy
Run the tests after each change.

## Blocked stop condition
Stop after 2 iterations with no improvement.

## Notes for agents
Prefer small commits.

## Phases

### plain: Inherits everything

### lines: Overrides with lines
Outcome: the parser handles comments
and blank lines.
Verification: `cargo test parser`
Allowed paths: src/parser/**
Forbidden paths: src/legacy/**
Protected paths: tests/parser/fixtures/**
Constraints: keep the parser allocation-free

Some words of context for this phase.

### list: Verification as a list
Verification:
- `cargo test list`
- `cargo clippy`
- The docs read well

### sub: Sub-sections
#### Outcome
Sub-section outcome.

#### Verification surface
- `cargo test sub`

#### Blocked stop condition
Stop after three rounds without progress.

#### Iteration Policy
Bench after every change.

#### Design notes
Use a trie.

### fast: Best of three
Attempts: 3
Select: best rps
Verification: `cargo test fast`
";

#[test]
fn phases_inherit_the_plans_contract() {
    let plan = parse(PHASED);
    let p = plan.phase("plain").unwrap();
    assert_eq!(p.contract, plan.contract);
    assert_eq!(
        p.contract.outcome.as_ref().unwrap().value,
        "The whole thing works."
    );
    assert_eq!(p.contract.verification.len(), 2);
    assert_eq!(p.contract.context[0].heading.value, "Notes for agents");
    assert_eq!(p.contract.context[0].body, "Prefer small commits.");
}

#[test]
fn phase_lines_override_and_extend() {
    let plan = parse(PHASED);
    let c = &plan.phase("lines").unwrap().contract;
    let outcome = c.outcome.as_ref().unwrap();
    assert_eq!(
        outcome.value,
        "the parser handles comments\nand blank lines."
    );
    assert_eq!((outcome.line, outcome.col), (32, 10));
    assert_eq!(c.verification.len(), 1);
    assert_eq!(c.verification[0].command(), Some("cargo test parser"));
    // Allowed paths replace the plan's; forbidden and protected add to them.
    assert_eq!(values(&c.boundaries.allowed), ["src/parser/**"]);
    assert_eq!(
        values(&c.boundaries.forbidden),
        ["vendor/", "src/legacy/**"]
    );
    assert_eq!(
        values(&c.boundaries.protected),
        ["tests/golden/**", "tests/parser/fixtures/**"]
    );
    assert_eq!(
        values(&c.constraints),
        ["No new dependencies.", "keep the parser allocation-free"]
    );
    assert_eq!(c.iteration_policy, plan.contract.iteration_policy);
    let own = c
        .context
        .iter()
        .find(|s| s.heading.value.starts_with("lines"))
        .unwrap();
    assert_eq!(own.body, "Some words of context for this phase.");
}

#[test]
fn verification_list_after_a_bare_key_line() {
    let plan = parse(PHASED);
    let c = &plan.phase("list").unwrap().contract;
    let kinds: Vec<Option<&str>> = c.verification.iter().map(|c| c.command()).collect();
    assert_eq!(kinds, [Some("cargo test list"), Some("cargo clippy"), None]);
}

#[test]
fn phase_sub_sections_override() {
    let plan = parse(PHASED);
    let c = &plan.phase("sub").unwrap().contract;
    assert_eq!(c.outcome.as_ref().unwrap().value, "Sub-section outcome.");
    assert_eq!(c.verification[0].command(), Some("cargo test sub"));
    let blocked = c.blocked.as_ref().unwrap();
    assert_eq!(blocked.no_progress_limit, Some(3));
    assert_eq!(
        c.iteration_policy.as_ref().unwrap().value,
        "Bench after every change."
    );
    assert!(
        c.context
            .iter()
            .any(|s| s.heading.value == "Design notes" && s.body == "Use a trie.")
    );
    // Not overridden: the plan's.
    assert_eq!(
        plan.contract.blocked.as_ref().unwrap().no_progress_limit,
        Some(2)
    );
}

#[test]
fn best_of_n_keeps_the_plan_check_that_reports_its_metric() {
    let plan = parse(PHASED);
    let p = plan.phase("fast").unwrap();
    assert_eq!(p.attempts.value, 3);
    assert!(p.attempt_agents.is_empty());
    assert_eq!(
        p.select.value,
        Selection::Best {
            metric: "rps".into()
        }
    );
    let commands: Vec<&str> = p
        .contract
        .verification
        .iter()
        .filter_map(|c| c.command())
        .collect();
    assert_eq!(commands, ["cargo test fast", "./bench.sh"]);
}

#[test]
fn defaults_without_front_matter_or_phase_lines() {
    let plan = parse(PHASED);
    assert_eq!(plan.settings.max_parallel.value, 4);
    assert_eq!(plan.settings.approval.value, Approval::Auto);
    let p = plan.phase("plain").unwrap();
    assert_eq!((p.attempts.value, &p.select.value), (1, &Selection::First));
    assert!(p.depends_on.is_empty());
}

#[test]
fn implicit_phase_for_a_plan_without_phases() {
    let plan = parse("# Goal: One thing\n\n## Outcome\nDone.\n\n## Verification\n- `true`\n");
    assert!(plan.implicit_phase);
    let p = &plan.phases[0];
    assert_eq!(
        (p.id.value.as_str(), p.title.as_str()),
        (IMPLICIT_PHASE, "One thing")
    );
    assert_eq!(p.contract, plan.contract);
}

#[test]
fn headings_match_case_insensitively_and_unknown_ones_are_context() {
    let plan = parse(
        "# Title\n\n## OUTCOME\nDone.\n\n## verification surface:\n- `make check`\n\n\
         ## Blocked Stop Condition\nStop after 4 consecutive tries with no progress.\n\n\
         ## Background\nWhy this matters.\n\n### History\nLong.\n",
    );
    let c = &plan.contract;
    assert_eq!(c.outcome.as_ref().unwrap().value, "Done.");
    assert_eq!(c.verification[0].command(), Some("make check"));
    assert_eq!(c.blocked.as_ref().unwrap().no_progress_limit, Some(4));
    assert_eq!(c.context.len(), 1);
    assert_eq!(c.context[0].heading.value, "Background");
    assert_eq!(
        c.context[0].body,
        "Why this matters.\n\n### History\n\nLong."
    );
}

#[test]
fn metric_expectations() {
    let plan = parse(
        "# T\n\n## Outcome\nFast.\n\n## Verification\n\
         - `./a.sh` reports `p95_ms` below 80\n\
         - `./b.sh` reports `hits` above 0.5\n\
         - `./c.sh` reports `size_kb` at most 512\n\
         - `./d.sh` reports `score` at least -1.5\n\
         - `./e.sh` passes\n",
    );
    let got: Vec<_> = plan
        .contract
        .verification
        .iter()
        .map(|c| c.metric().map(|m| (m.name.clone(), m.op, m.target)))
        .collect();
    assert_eq!(
        got,
        [
            Some(("p95_ms".to_string(), MetricOp::Below, 80.0)),
            Some(("hits".to_string(), MetricOp::Above, 0.5)),
            Some(("size_kb".to_string(), MetricOp::AtMost, 512.0)),
            Some(("score".to_string(), MetricOp::AtLeast, -1.5)),
            None,
        ]
    );
    assert!(MetricOp::Below.holds(79.9, 80.0) && !MetricOp::Below.holds(80.0, 80.0));
}

#[test]
fn no_progress_limits_from_the_stop_condition() {
    let limit = goal::parse_no_progress_limit;
    assert_eq!(
        limit("Stop after 2 iterations with no improvement"),
        Some(2)
    );
    assert_eq!(
        limit(
            "Stop when the benchmark cannot run, or after 3 consecutive experiments with no\nimprovement."
        ),
        Some(3)
    );
    assert_eq!(
        limit("After five attempts without improvement, stop."),
        Some(5)
    );
    assert_eq!(limit("Stop when a check cannot run at all."), None);
}

#[test]
fn check_kinds() {
    assert_eq!(goal::parse_check("The page loads"), Ok(CheckKind::Human));
    assert!(matches!(
        goal::parse_check("`npm test` passes"),
        Ok(CheckKind::Machine { metric: None, .. })
    ));
    assert!(goal::parse_check("`x` reports `y` under 3").is_err());
}

#[test]
fn front_matter_values() {
    let plan = parse(
        "+++\nrelease = \"release/2.0\"\nmax_parallel = 2\napproval = \"human\"\n\n\
         [budget]\nturns = 5\nwall = \"1h30m\"\ntokens_in = 100\ntokens_out = 50\n\
         tokens_cached = 10\ncost_usd = 2.5\ntool_calls = 40\niterations = 3\n\n\
         [run_budget]\ncost_usd = 20\nwall = \"6h\"\n\n\
         [agents.bot]\nadapter = \"command\"\ncommand = \"python3 agent.py\"\nmodel = \"m1\"\n\
         env = { MODE = \"fast\" }\n\n[agents.cc]\nadapter = \"claude\"\n\n\
         [roles]\nimplementer = \"bot\"\nreviewer = \"cc\"\nauditor = \"cc\"\n\n\
         [prices.m1]\ninput_per_mtok = 1.0\noutput_per_mtok = 4\n+++\n\
         # T\n\n## Outcome\nDone.\n\n## Verification\n- `true`\n",
    );
    let s = &plan.settings;
    assert_eq!(s.release.as_ref().unwrap().value, "release/2.0");
    assert_eq!(s.max_parallel.value, 2);
    assert_eq!(s.approval.value, Approval::Human);
    let b = &s.budget;
    assert_eq!(b.turns.as_ref().unwrap().value, 5);
    assert_eq!(b.wall.as_ref().unwrap().value.duration.as_secs(), 5400);
    assert_eq!(b.tokens_in.as_ref().unwrap().value, 100);
    assert_eq!(b.tokens_out.as_ref().unwrap().value, 50);
    assert_eq!(b.tokens_cached.as_ref().unwrap().value, 10);
    assert_eq!(b.cost_usd.as_ref().unwrap().value, 2.5);
    assert_eq!(b.tool_calls.as_ref().unwrap().value, 40);
    assert_eq!(b.iterations.as_ref().unwrap().value, 3);
    assert_eq!(s.run_budget.cost_usd.as_ref().unwrap().value, 20.0);
    assert_eq!(s.run_budget.wall.as_ref().unwrap().value.text, "6h");
    let bot = &s.agents["bot"];
    assert_eq!(bot.adapter.value, Adapter::Command);
    assert_eq!(bot.command, ["python3", "agent.py"]);
    assert_eq!(bot.model.as_deref(), Some("m1"));
    assert_eq!(bot.env["MODE"], "fast");
    assert_eq!(s.agents["cc"].adapter.value, Adapter::Claude);
    assert_eq!(s.roles.auditor.as_ref().unwrap().value, "cc");
    let price = &s.prices["m1"];
    assert_eq!(
        (
            price.input_per_mtok,
            price.output_per_mtok,
            price.cached_per_mtok
        ),
        (1.0, 4.0, 1.0)
    );
}

#[test]
fn diagnostics_name_file_line_col_and_what_was_expected() {
    let errs = errors(
        "+++\n[budget]\nturns = 0\nwall = 30\n+++\n# T\n\n## Outcome\nx\n\n## Verification\n- `t`\n",
    );
    assert_eq!(
        errs,
        [
            "goal.md:3:9: \"budget.turns\" must be at least 1; a whole number of at least 1",
            "goal.md:4:8: invalid wall time 30 for \"budget.wall\"; a duration in quotes such as \"90s\", \"30m\", \"2h\" or \"1h30m\"",
        ]
    );
}

#[test]
fn phase_line_typos_are_caught() {
    let errs = errors(
        "# T\n\n## Outcome\nx\n\n## Verification\n- `t`\n\n## Phases\n\n### a: A\nDepend on: b\n\n### b: B\n",
    );
    assert_eq!(
        errs,
        ["goal.md:12:1: unknown phase line \"Depend on:\"; did you mean \"Depends on:\"?"]
    );
}

#[test]
fn boundary_globs_match_like_gitignore() {
    let plan = parse(
        "# T\n\n## Outcome\nx\n\n## Verification\n- `t`\n\n## Boundaries\n\
         - Allowed paths: src/**, *.md\n- Forbidden paths: migrations/, Cargo.lock\n\
         - Protected paths: tests/golden/**\n",
    );
    let rules = plan.contract.boundaries.compile().unwrap();
    assert!(rules.may_change("src/a/b.rs"));
    assert!(rules.may_change("docs/guide.md"));
    assert!(!rules.is_allowed("bench/x.rs"));
    assert!(rules.is_forbidden("migrations/001.sql"));
    assert!(rules.is_forbidden("src/db/migrations/001.sql"));
    assert!(rules.is_forbidden("Cargo.lock") && rules.is_forbidden("sub/Cargo.lock"));
    assert!(!rules.may_change("src/migrations/x.rs"));
    assert!(rules.is_protected("tests/golden/out.txt"));
    assert!(!rules.is_protected("tests/other.rs"));
}

#[test]
fn a_line_after_an_inline_check_is_context() {
    let plan = parse(
        "# T\n\n## Outcome\nx\n\n## Phases\n\n### a: A\nVerification: `make a`\nRun it twice.\n",
    );
    let c = &plan.phase("a").unwrap().contract;
    assert_eq!(c.verification.len(), 1);
    assert_eq!(c.context[0].body, "Run it twice.");
}

#[test]
fn canary_and_census_settings_are_read_from_a_checks_item() {
    use goalpost_shared::integrity::CanarySetting;
    let plan = parse(
        "# T\n\n## Outcome\nx\n\n## Verification\n- `cargo test` passes\n  Canary: off\n\
         - `make test` passes; Canary: `cp ci/canary.py tests/`; Census: off\n\
         - `pytest` passes. Canary: tests/test_canary.py\n\
         - `go test ./...` passes\n",
    );
    let settings: Vec<_> = plan
        .contract
        .verification
        .iter()
        .map(|c| {
            let s = c.integrity();
            (s.canary, s.census)
        })
        .collect();
    assert_eq!(
        settings,
        [
            (CanarySetting::Off, true),
            (
                CanarySetting::Command("cp ci/canary.py tests/".to_owned()),
                false
            ),
            (CanarySetting::File("tests/test_canary.py".to_owned()), true),
            (CanarySetting::Builtin, true),
        ]
    );
    let errs = errors(
        "# T\n\n## Outcome\nx\n\n## Verification\n- `t` passes\n- `u` passes\n  Canary: sometimes\n\
         - `v` passes; Census: partly\n",
    );
    assert_eq!(
        errs,
        [
            "goal.md:8:3: canary \"sometimes\" is neither `off`, a command nor a relative path; \
             `Canary: off`, `Canary: `COMMAND`` (a command that adds a failing test) or \
             `Canary: PATH` (where the auditor writes its failing test)",
            "goal.md:10:3: unknown census setting \"partly\"; `Census: off` or \
             `Census: allow GLOB, GLOB` (paths whose change allows fewer tests)",
        ]
    );
}

#[test]
fn the_sandbox_settings_network_and_the_temp_dir_cap() {
    let plan = parse(
        "+++\nnetwork = \"none\"\n\n[budget]\ntmp_mb = 64\n+++\n\
         # T\n\n## Outcome\nDone.\n\n## Verification\n- `true`\n",
    );
    assert_eq!(plan.settings.network.value, Network::None);
    assert_eq!(plan.settings.network.line, 2);
    assert_eq!(plan.settings.budget.tmp_mb.as_ref().unwrap().value, 64);
    assert_eq!(parse(PHASED).settings.network.value, Network::Open);

    let errs = errors(
        "+++\nnetwork = \"off\"\n\n[run_budget]\ntmp_mb = 64\n+++\n\
         # T\n\n## Outcome\nx\n\n## Verification\n- `t`\n",
    );
    assert_eq!(
        errs,
        [
            "goal.md:2:11: unknown network \"off\"; \"open\" (checks use the machine's network, the default) or \"none\" (each check runs with only a loopback device of its own)",
            "goal.md:5:10: \"run_budget.tmp_mb\" caps nothing: the cap is per attempt, turn and check; put `tmp_mb` in `[budget]`",
        ]
    );
}

const SETUP_BODY: &str = "
# Goal: setup

## Outcome
It builds.

## Verification surface
- `npm test` passes

## Phases

### plain: Takes the plan's setup

### own: Its own setup
Setup: `npm ci`, `npm run build`

### bare: No setup
Setup: none
";

#[test]
fn setup_commands_from_the_front_matter_and_phase_lines() {
    let plan = parse(&format!(
        "+++\nsetup = [\"npm ci --offline\"]\nsetup_timeout = \"5m\"\n+++\n{SETUP_BODY}"
    ));
    let commands = |id: &str| {
        let setup = &plan.phase(id).unwrap().contract.setup;
        (values(&setup.commands), setup.timeout_secs)
    };
    assert_eq!(commands("plain"), (vec!["npm ci --offline"], 300));
    assert_eq!(commands("own"), (vec!["npm ci", "npm run build"], 300));
    assert_eq!(commands("bare"), (vec![], 300));
    let first = &plan.contract.setup.commands[0];
    assert_eq!((first.line, first.col), (2, 10));
    let own = &plan.phase("own").unwrap().contract.setup.commands;
    assert_eq!((own[1].line, own[1].col), (19, 19));
}

#[test]
fn without_setup_there_is_none_and_the_default_time_limit() {
    let plan = parse(
        SETUP_BODY
            .replace("Setup: `npm ci`, `npm run build`", "")
            .as_str(),
    );
    let setup = &plan.phase("plain").unwrap().contract.setup;
    assert!(setup.commands.is_empty());
    assert_eq!(
        setup.timeout_secs,
        goalpost_shared::contract::DEFAULT_SETUP_TIMEOUT_SECS
    );
}

#[test]
fn bad_setup_values_are_errors_at_their_line() {
    let errs = errors(&format!(
        "+++\nsetup = \"npm ci\"\nsetup_timeout = \"ten minutes\"\n+++\n{SETUP_BODY}"
    ));
    assert!(
        errs.iter()
            .any(|e| e.starts_with("goal.md:2:9: ") && e.contains("\"setup\" is a string")),
        "{errs:?}"
    );
    assert!(
        errs.iter().any(|e| e.starts_with("goal.md:3:17: ")
            && e.contains("invalid setup_timeout \"ten minutes\"")),
        "{errs:?}"
    );
    let errs = errors(&format!(
        "+++\nsetup = [\"npm ci\", 3, \" \"]\n+++\n{SETUP_BODY}"
    ));
    assert!(
        errs.iter()
            .any(|e| e.starts_with("goal.md:2:20: ") && e.contains("a setup command is an integer")),
        "{errs:?}"
    );
    assert!(
        errs.iter()
            .any(|e| e.starts_with("goal.md:2:23: ") && e.contains("an empty setup command")),
        "{errs:?}"
    );
    let errs = errors(&SETUP_BODY.replace("Setup: none", "Setup: npm ci"));
    assert!(
        errs.iter()
            .any(|e| e.starts_with("goal.md:18:8: ")
                && e.contains("\"Setup: npm ci\" names no command")),
        "{errs:?}"
    );
}

const HELD_OUT_BODY: &str = "\
# Goal: held out

## Outcome
Sorting works.

## Verification surface
- `python3 -m unittest discover -s tests` passes

## Held-out checks
- `python3 -m unittest discover -s .goalpost-held-out` passes

## Phases

### plain: Takes the plan's held-out checks

### more: Adds one
Held-out checks: `sh .goalpost-held-out/speed.sh` passes
";

#[test]
fn held_out_checks_and_their_settings_are_read() {
    let plan = parse(&format!(
        "+++\n[held_out]\ndir = \"../hidden\"\ninto = \"tests/held\"\nfeedback = \"full\"\n+++\n{HELD_OUT_BODY}"
    ));
    let held = |id: &str| -> Vec<String> {
        plan.phase(id)
            .unwrap()
            .contract
            .held_out
            .iter()
            .map(|c| c.command().unwrap().to_string())
            .collect()
    };
    assert_eq!(
        held("plain"),
        ["python3 -m unittest discover -s .goalpost-held-out"]
    );
    assert_eq!(
        held("more"),
        [
            "python3 -m unittest discover -s .goalpost-held-out",
            "sh .goalpost-held-out/speed.sh"
        ]
    );
    // They are not verification checks the agents see.
    let plain = &plan.phase("plain").unwrap().contract;
    assert_eq!(plain.verification.len(), 1);
    assert!(plain.without_held_out().held_out.is_empty());
    let h = &plan.settings.held_out;
    assert_eq!(h.into_path(), "tests/held");
    assert_eq!(
        h.feedback.value,
        goalpost_shared::plan::HeldOutFeedback::Full
    );
    assert_eq!(plan.held_out_dir().unwrap(), Path::new("../hidden"));
    let more = &plan.phase("more").unwrap().contract.held_out[1];
    assert_eq!((more.text.line, more.text.col), (23, 18));
}

#[test]
fn held_out_defaults_hide_the_feedback_and_place_the_files_in_their_own_folder() {
    let plan = parse(HELD_OUT_BODY);
    let h = &plan.settings.held_out;
    assert_eq!(h.into_path(), ".goalpost-held-out");
    assert_eq!(
        h.feedback.value,
        goalpost_shared::plan::HeldOutFeedback::Hidden
    );
    assert!(plan.held_out_dir().is_none());
}

#[test]
fn bad_held_out_settings_are_errors_at_their_line() {
    let errs = errors(&format!(
        "+++\n[held_out]\ndir = \"\"\ninto = \"../outside\"\nfeedback = \"some\"\ncolour = 1\n+++\n{HELD_OUT_BODY}"
    ));
    for (at, what) in [
        ("goal.md:3:7: ", "an empty held_out.dir"),
        (
            "goal.md:4:8: ",
            "held_out.into \"../outside\" is not a path inside the checkout",
        ),
        ("goal.md:5:12: ", "unknown held_out.feedback \"some\""),
        ("goal.md:6:1: ", "colour"),
    ] {
        assert!(
            errs.iter().any(|e| e.starts_with(at) && e.contains(what)),
            "{at}{what} not in {errs:?}"
        );
    }
    let errs = errors(&format!(
        "+++\n[held_out]\ninto = \".git/x\"\n+++\n{HELD_OUT_BODY}"
    ));
    assert!(
        errs.iter().any(|e| e.starts_with("goal.md:3:8: ")),
        "{errs:?}"
    );
    let errs = errors(&HELD_OUT_BODY.replace(
        "`sh .goalpost-held-out/speed.sh` passes",
        "the output reads well",
    ));
    assert!(
        errs.iter().any(|e| e.starts_with("goal.md:17:18: ")
            && e.contains("held-out check \"the output reads well\" has no command")),
        "{errs:?}"
    );
    let no_checks = HELD_OUT_BODY
        .replace(
            "## Held-out checks\n- `python3 -m unittest discover -s .goalpost-held-out` passes\n",
            "",
        )
        .replace(
            "Held-out checks: `sh .goalpost-held-out/speed.sh` passes\n",
            "",
        );
    let errs = errors(&format!(
        "+++\n[held_out]\ndir = \"../hidden\"\n+++\n{no_checks}"
    ));
    assert!(
        errs.iter()
            .any(|e| e.starts_with("goal.md:3:7: ") && e.contains("no held-out check runs")),
        "{errs:?}"
    );
}
