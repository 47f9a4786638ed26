//! Checks that need the whole plan in view: outcomes and machine checks per phase, phase
//! ids and dependencies (unknown, self, cycles), agents, the release branch, globs and
//! selection metrics.

use std::collections::BTreeMap;

use super::{Sink, expected_word, one_of};
use crate::contract::{CheckKind, compile_glob};
use crate::dag::find_cycle;
use crate::plan::{Phase, Plan, Selection};

/// What the parse knew that the plan does not carry.
#[derive(Debug, Default)]
pub(crate) struct Facts {
    /// False when the front matter could not be read: agent names are not checked then.
    pub front_matter_readable: bool,
    /// Where `## Verification` is, for the implicit phase's "no machine check".
    pub verification_at: Option<(u32, u32)>,
    /// The plan has an `## Outcome` heading; if it is empty, that was reported already.
    pub outcome_written: bool,
}

pub(crate) fn plan(plan: &Plan, facts: &Facts, sink: &mut Sink) {
    contracts(plan, facts, sink);
    ids_and_dependencies(plan, sink);
    if facts.front_matter_readable {
        agents(plan, sink);
    }
    release(plan, sink);
}

/// A held-out check is run by the auditor alone, so it needs a command: one without is an
/// error where it is written (once, though every phase carries the plan's).
fn held_out(plan: &Plan, sink: &mut Sink) {
    let any = plan.phases.iter().any(|p| !p.contract.held_out.is_empty());
    if let (Some(dir), false) = (&plan.settings.held_out.dir, any) {
        sink.error(
            dir.line,
            dir.col,
            format!("held_out.dir \"{}\" is given but no held-out check runs", dir.value),
            "a `## Held-out checks` section with a command in backticks that uses the files, or no `[held_out]` table",
        );
    }
    let mut seen = std::collections::BTreeSet::new();
    let checks = plan.phases.iter().flat_map(|p| &p.contract.held_out);
    for c in checks.chain(&plan.contract.held_out) {
        if !matches!(c.kind, CheckKind::Machine { .. }) && seen.insert((c.text.line, c.text.col)) {
            sink.error(
                c.text.line,
                c.text.col,
                format!("held-out check \"{}\" has no command", c.text.value),
                "a command in backticks that the auditor runs, such as \"- `python3 -m unittest discover -s .goalpost-held-out` passes\"",
            );
        }
    }
}

fn contracts(plan: &Plan, facts: &Facts, sink: &mut Sink) {
    held_out(plan, sink);
    for p in &plan.phases {
        let (line, col) = if plan.implicit_phase {
            (1, 1)
        } else {
            (p.id.line, p.id.col)
        };
        if p.contract
            .outcome
            .as_ref()
            .is_none_or(|o| o.value.trim().is_empty())
            && !facts.outcome_written
        {
            if plan.implicit_phase {
                sink.error(
                    line,
                    col,
                    "the goal file has no Outcome",
                    "an `## Outcome` section saying what must be true when the work is done",
                );
            } else {
                sink.error(
                    line,
                    col,
                    format!("phase \"{}\" has no outcome", p.id.value),
                    "an `Outcome:` line in the phase, or an `## Outcome` section for the plan",
                );
            }
        }
        let has_machine = p
            .contract
            .verification
            .iter()
            .any(|c| matches!(c.kind, CheckKind::Machine { .. }));
        if !has_machine {
            let (line, col) = match (plan.implicit_phase, facts.verification_at) {
                (true, Some(at)) => at,
                _ => (line, col),
            };
            let whose = if plan.implicit_phase {
                "the goal has".to_string()
            } else {
                format!("phase \"{}\" has", p.id.value)
            };
            sink.error(
                line,
                col,
                format!("{whose} no machine check"),
                "a verification item with a command in backticks, such as \"- `cargo test` passes\" (in the phase or the plan)",
            );
        }
        if let Selection::Best { metric } = &p.select.value
            && !p
                .contract
                .verification
                .iter()
                .any(|c| c.metric().is_some_and(|m| &m.name == metric))
        {
            sink.error(
                p.select.line,
                p.select.col,
                format!("phase \"{}\" selects the best \"{metric}\" but no check reports it", p.id.value),
                format!("a check \"`CMD` reports `{metric}` below|above|at most|at least N\" in the phase or the plan"),
            );
        }
        let b = &p.contract.boundaries;
        for g in b.allowed.iter().chain(&b.forbidden).chain(&b.protected) {
            if let Err(e) = compile_glob(&g.value) {
                let why = e.kind().to_string();
                sink.error(
                    g.line,
                    g.col,
                    format!("invalid glob \"{}\": {why}", g.value),
                    "a glob such as `src/**`, `*.rs` or `docs/`",
                );
            }
        }
    }
}

fn ids_and_dependencies(plan: &Plan, sink: &mut Sink) {
    let mut index: BTreeMap<&str, usize> = BTreeMap::new();
    for (i, p) in plan.phases.iter().enumerate() {
        if let Some(&first) = index.get(p.id.value.as_str()) {
            sink.error(
                p.id.line,
                p.id.col,
                format!("duplicate phase id \"{}\"", p.id.value),
                format!(
                    "a unique id; \"{}\" is already used on line {}",
                    p.id.value, plan.phases[first].id.line
                ),
            );
        } else {
            index.insert(&p.id.value, i);
        }
    }
    let ids: Vec<&str> = index.keys().copied().collect();
    let mut edges = vec![];
    for (i, p) in plan.phases.iter().enumerate() {
        for dep in &p.depends_on {
            if dep.value == p.id.value {
                sink.error(
                    dep.line,
                    dep.col,
                    format!("phase \"{}\" depends on itself", p.id.value),
                    "dependencies on other phases only",
                );
            } else if let Some(&j) = index.get(dep.value.as_str()) {
                edges.push((j, i));
            } else {
                sink.error(
                    dep.line,
                    dep.col,
                    format!(
                        "phase \"{}\" depends on unknown phase \"{}\"",
                        p.id.value, dep.value
                    ),
                    expected_word(&dep.value, &ids),
                );
            }
        }
    }
    if let Some(cycle) = find_cycle(plan.phases.len(), &edges) {
        report_cycle(&plan.phases, &cycle, sink);
    }
}

/// Reports a cycle as "a -> b -> c -> a" (each phase depends on the next), starting from
/// the phase written first, at that phase's heading.
fn report_cycle(phases: &[Phase], cycle: &[usize], sink: &mut Sink) {
    // `find_cycle` follows dependency -> dependent; turn it into "depends on" order.
    let mut order: Vec<usize> = cycle.iter().rev().copied().collect();
    if let Some(start) = order
        .iter()
        .enumerate()
        .min_by_key(|(_, i)| **i)
        .map(|(k, _)| k)
    {
        order.rotate_left(start);
    }
    let Some(&first) = order.first() else {
        return;
    };
    let mut names: Vec<&str> = order.iter().map(|&i| phases[i].id.value.as_str()).collect();
    names.push(&phases[first].id.value);
    let p = &phases[first];
    sink.error(
        p.id.line,
        p.id.col,
        format!(
            "dependency cycle: {} (each depends on the next)",
            names.join(" -> ")
        ),
        "dependencies that never lead back to the phase itself",
    );
}

fn agents(plan: &Plan, sink: &mut Sink) {
    let s = &plan.settings;
    let known: Vec<&str> = s.agents.keys().map(String::as_str).collect();
    let expected = |name: &str| {
        if known.is_empty() {
            format!("an `[agents.{name}]` table in the front matter")
        } else {
            match super::suggest(name, known.iter().copied()) {
                Some(k) => format!("did you mean \"{k}\"?"),
                None => format!(
                    "one of the defined agents {}, or an `[agents.{name}]` table",
                    one_of(known.iter().copied())
                ),
            }
        }
    };
    let roles = [
        ("implementer", &s.roles.implementer),
        ("reviewer", &s.roles.reviewer),
        ("auditor", &s.roles.auditor),
    ];
    for (role, name) in roles {
        if let Some(n) = name
            && !s.agents.contains_key(&n.value)
        {
            sink.error(
                n.line,
                n.col,
                format!(
                    "the {role} role names agent \"{}\", which is not defined",
                    n.value
                ),
                expected(&n.value),
            );
        }
    }
    for p in &plan.phases {
        if p.attempt_agents.is_empty() && s.agents.len() > 1 && s.implementer().is_none() {
            let (line, col) = if plan.implicit_phase {
                (1, 1)
            } else {
                (p.id.line, p.id.col)
            };
            let whose = if plan.implicit_phase {
                "the goal".to_string()
            } else {
                format!("phase \"{}\"", p.id.value)
            };
            sink.error(
                line,
                col,
                format!("{whose} names no agent and no implementer role is set, with {} agents defined", s.agents.len()),
                "`implementer = \"NAME\"` under `[roles]`, or `Attempts: N (agent, ...)` in the phase",
            );
        }
        if p.select.value == Selection::Review && s.roles.reviewer.is_none() {
            sink.error(
                p.select.line,
                p.select.col,
                format!("phase \"{}\" selects by review but no reviewer is set", p.id.value),
                "`reviewer = \"NAME\"` under `[roles]` in the front matter, or `Select: first` or `Select: best METRIC`",
            );
        }
        for n in &p.attempt_agents {
            if !s.agents.contains_key(&n.value) {
                sink.error(
                    n.line,
                    n.col,
                    format!(
                        "phase \"{}\" names agent \"{}\", which is not defined",
                        p.id.value, n.value
                    ),
                    expected(&n.value),
                );
            }
        }
    }
}

fn release(plan: &Plan, sink: &mut Sink) {
    if let Some(r) = &plan.settings.release
        && !git2::Reference::is_valid_name(&format!("refs/heads/{}", r.value))
    {
        sink.error(
            r.line,
            r.col,
            format!("invalid release branch name \"{}\"", r.value),
            "a git branch name such as \"main\" or \"release/1.2\"",
        );
    }
}
