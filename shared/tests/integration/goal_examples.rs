//! The example goal files in `fixtures/plans/` parse, and their model reads as expected.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::{Path, PathBuf};

use goalpost_shared::contract::{CheckKind, MetricOp};
use goalpost_shared::goal;
use goalpost_shared::plan::{Adapter, IMPLICIT_PHASE, Plan, Selection};

fn load(name: &str) -> Plan {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../fixtures/plans")
        .join(name);
    let mut plan = goal::load(&path).unwrap_or_else(|e| panic!("{name} does not parse:\n{e}"));
    // Snapshots must not depend on where the repository is.
    plan.path = PathBuf::from(name);
    plan
}

#[test]
fn phased_plan_model() {
    let plan = load("phased-plan.md");
    assert!(!plan.implicit_phase);
    let s = &plan.settings;
    assert_eq!(s.release.as_ref().unwrap().value, "main");
    assert_eq!((s.max_parallel.value, s.max_parallel.line), (3, 3));
    assert_eq!(s.budget.turns.as_ref().unwrap().value, 12);
    assert_eq!(s.budget.tokens.as_ref().unwrap().value, 600_000);
    assert_eq!(
        s.budget.wall.as_ref().unwrap().value.duration.as_secs(),
        1800
    );
    assert_eq!(s.agents["codex"].adapter.value, Adapter::Codex);
    assert_eq!(s.agents["claude"].args, ["--model", "sonnet"]);
    assert_eq!(s.agents["local"].command, ["./tools/agent.sh"]);
    assert_eq!(s.roles.implementer.as_ref().unwrap().value, "codex");
    assert_eq!(s.roles.reviewer.as_ref().unwrap().value, "claude");
    assert!(s.roles.auditor.is_none());

    let ids: Vec<&str> = plan.phases.iter().map(|p| p.id.value.as_str()).collect();
    assert_eq!(ids, ["lexer", "schema", "parser", "errors"]);
    let parser = plan.phase("parser").unwrap();
    assert_eq!(parser.title, "Build the config from tokens");
    let deps: Vec<&str> = parser.depends_on.iter().map(|d| d.value.as_str()).collect();
    assert_eq!(deps, ["lexer", "schema"]);
    assert_eq!(parser.attempts.value, 3);
    let agents: Vec<&str> = parser
        .attempt_agents
        .iter()
        .map(|a| a.value.as_str())
        .collect();
    assert_eq!(agents, ["codex", "claude", "local"]);
    assert_eq!(parser.agent_for_attempt(4, "codex"), "claude");
    assert_eq!(
        parser.select.value,
        Selection::Best {
            metric: "parse_us".into()
        }
    );
    // Its own check, plus the plan's check that reports the metric it selects by.
    let commands: Vec<&str> = parser
        .contract
        .verification
        .iter()
        .filter_map(|c| c.command())
        .collect();
    assert_eq!(commands, ["cargo test parser", "./bench/config.sh"]);
    let m = parser.contract.verification[1].metric().unwrap();
    assert_eq!(
        (m.name.as_str(), m.op, m.target),
        ("parse_us", MetricOp::AtMost, 40.0)
    );

    let lexer = plan.phase("lexer").unwrap();
    assert_eq!(
        lexer.contract.outcome.as_ref().unwrap().value,
        "a lexer for the TOML subset with byte offsets on every token."
    );
    let allowed: Vec<&str> = lexer
        .contract
        .boundaries
        .allowed
        .iter()
        .map(|g| g.value.as_str())
        .collect();
    assert_eq!(allowed, ["src/config/lexer.rs", "tests/lexer.rs"]);
    // Protected and forbidden paths are the plan's.
    assert_eq!(lexer.contract.boundaries.protected.len(), 2);
    assert_eq!(lexer.contract.boundaries.forbidden[0].value, ".github/**");

    let errors = plan.phase("errors").unwrap();
    assert_eq!(errors.contract.outcome, plan.contract.outcome);
    assert_eq!(
        (errors.attempts.value, &errors.select.value),
        (1, &Selection::First)
    );
    assert_eq!(
        plan.contract.blocked.as_ref().unwrap().no_progress_limit,
        Some(2)
    );
}

#[test]
fn single_goal_model() {
    let plan = load("single-goal.md");
    assert!(plan.implicit_phase);
    assert_eq!(plan.phases.len(), 1);
    let p = &plan.phases[0];
    assert_eq!(p.id.value, IMPLICIT_PHASE);
    assert_eq!(p.title, "Cut the search endpoint's p95 latency under 80 ms");
    assert_eq!(p.contract, plan.contract);
    assert_eq!((p.attempts.value, &p.select.value), (1, &Selection::First));

    let s = &plan.settings;
    assert_eq!(s.max_parallel.value, 4);
    assert!(s.release.is_none() && s.agents.is_empty());

    let c = &plan.contract;
    assert_eq!(c.verification.len(), 3);
    assert!(matches!(c.verification[2].kind, CheckKind::Human));
    let m = c.verification[0].metric().unwrap();
    assert_eq!(
        (m.name.as_str(), m.op, m.target),
        ("p95_ms", MetricOp::Below, 80.0)
    );
    assert_eq!(
        (c.verification[0].text.line, c.verification[0].text.col),
        (8, 3)
    );
    assert_eq!(c.constraints.len(), 3);
    assert_eq!(c.blocked.as_ref().unwrap().no_progress_limit, Some(3));
    let forbidden: Vec<&str> = c
        .boundaries
        .forbidden
        .iter()
        .map(|g| g.value.as_str())
        .collect();
    assert_eq!(forbidden, ["migrations/", "billing/", "Cargo.lock"]);
}

#[test]
fn single_goal_model_snapshot() {
    insta::assert_json_snapshot!(load("single-goal.md"));
}

#[test]
fn phased_plan_model_snapshot() {
    insta::assert_json_snapshot!(load("phased-plan.md"));
}

#[test]
fn readme_example_parses() {
    let readme =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("../README.md"))
            .expect("read README.md");
    let start = readme
        .find("```markdown\n")
        .expect("README has a goal-file example")
        + 12;
    let len = readme[start..].find("\n```\n").expect("the example ends");
    let plan = goal::parse(Path::new("README.md"), &readme[start..start + len + 1])
        .unwrap_or_else(|e| panic!("the README's example does not parse:\n{e}"));
    assert_eq!(plan.phases.len(), 2);
    assert_eq!(plan.settings.prices["gpt-5.5"].cached_per_mtok, 0.125);
    assert_eq!(
        plan.settings.run_budget.cost_usd.as_ref().unwrap().value,
        40.0
    );
}
