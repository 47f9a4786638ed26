//! `## Phases`: each `### <id>: <title>` with its `Depends on:`, `Attempts:`, `Select:`
//! and contract lines or `####` sub-sections, and how a phase's contract is laid over the
//! plan's.

use std::path::Path;

use super::checks::{key_line, split_list};
use super::markdown::{Block, BlockKind, Heading, Line, Node, section_end};
use super::sections::{self, Doc, Part, Parts, check, context_section, part_of, stop_condition};
use super::{Sink, suggest};
use crate::contract::{Contract, Section, Spanned};
use crate::plan::{IMPLICIT_PHASE, MAX_ATTEMPTS, Phase, Plan, Selection, Settings};

const PHASE_KEYS: &[&str] = &[
    "Depends on",
    "Attempts",
    "Select",
    "Setup",
    "Outcome",
    "Verification",
    "Held-out checks",
    "Constraints",
    "Allowed paths",
    "Forbidden paths",
    "Protected paths",
    "Iteration policy",
    "Blocked stop condition",
];

const ATTEMPTS_EXPECTED: &str =
    "`Attempts: N` or `Attempts: N (agent, agent, ...)` with N from 1 to 16";
const SELECT_EXPECTED: &str =
    "\"first\", \"best METRIC\" (a metric one of the phase's checks reports) or \"review\"";

/// A phase as written, before the plan's contract is laid under it.
#[derive(Debug)]
pub(crate) struct PhaseDraft {
    pub id: Spanned<String>,
    pub title: String,
    pub depends_on: Vec<Spanned<String>>,
    pub attempts: Option<Spanned<u32>>,
    pub attempt_agents: Vec<Spanned<String>>,
    pub select: Option<Spanned<Selection>>,
    /// The phase's own setup commands (`Setup:`), replacing the plan's.
    pub setup: Option<Vec<Spanned<String>>>,
    pub parts: Parts,
}

/// Reads the phases among the nodes under `## Phases`.
pub(crate) fn read(nodes: &[Node], sink: &mut Sink) -> Vec<PhaseDraft> {
    let mut out: Vec<PhaseDraft> = vec![];
    let mut i = 0;
    while i < nodes.len() {
        let node = &nodes[i];
        let Some(h) = &node.heading else {
            i += 1;
            continue;
        };
        let end = section_end(nodes, i, h.level);
        let children = &nodes[i + 1..end];
        if h.level == 3 {
            let mut draft = new_draft(h, sink);
            lines(&mut draft, h, &node.blocks, sink);
            out.push(draft);
            i += 1;
            continue;
        }
        // A sub-section of the current phase.
        if let Some(draft) = out.last_mut() {
            match part_of(&h.text).filter(|p| *p != Part::Phases) {
                Some(part) => {
                    let mut blocks = node.blocks.clone();
                    blocks.extend(children.iter().flat_map(|c| c.blocks.iter().cloned()));
                    draft.parts.fill(part, h, &blocks, sink);
                }
                None => draft.parts.context.extend(context_section(node, children)),
            }
        }
        i = end;
    }
    out
}

fn new_draft(h: &Heading, sink: &mut Sink) -> PhaseDraft {
    let (id, title) = match h.text.split_once(':') {
        Some((id, title)) => (id.trim(), title.trim()),
        None => (h.text.trim(), ""),
    };
    let id = id.trim_matches('`');
    let valid = !id.is_empty()
        && id
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c));
    if !valid {
        sink.error(
            h.line,
            h.col,
            format!("phase heading \"{}\" has no valid id", h.text),
            "`### <id>: <title>` with an id of letters, digits, `-`, `_` or `.`",
        );
    }
    PhaseDraft {
        id: Spanned::new(id.to_string(), h.line, h.col),
        title: title.to_string(),
        depends_on: vec![],
        attempts: None,
        attempt_agents: vec![],
        select: None,
        setup: None,
        parts: Parts::default(),
    }
}

/// The `Key: value` lines of a phase, before any sub-section.
fn lines(d: &mut PhaseDraft, h: &Heading, blocks: &[Block], sink: &mut Sink) {
    // A value that later lines of the same paragraph continue.
    let mut continued: Option<Part>;
    // A `Verification:` or `Constraints:` line with no value takes the list after it.
    let mut list_for: Option<Part> = None;
    let mut context: Vec<String> = vec![];
    for block in blocks {
        if block.kind == BlockKind::Item
            && let Some(part) = list_for
        {
            if part == Part::Verification {
                let checks = d.parts.verification.get_or_insert_with(Vec::new);
                checks.extend(check(&block.lines, sink));
            } else if part == Part::HeldOut {
                d.parts.held_out.extend(check(&block.lines, sink));
            } else if let Some(first) = block.lines.first() {
                d.parts
                    .constraints
                    .push(Spanned::new(block.text(), first.line, first.col));
            }
            continue;
        }
        list_for = None;
        continued = None;
        for line in &block.lines {
            if d.parts.boundary_line(line) {
                continued = None;
                continue;
            }
            if let Some((key, value, offset)) = key_line(&line.text) {
                let col = line.col + u32::try_from(offset).unwrap_or(0);
                if let Some(part) = key_value(d, &key, value, line, col, sink) {
                    continued = part.filter(|p| {
                        matches!(
                            p,
                            Part::Outcome
                                | Part::Constraints
                                | Part::IterationPolicy
                                | Part::Blocked
                        )
                    });
                    list_for = part.filter(|p| {
                        value.is_empty()
                            && matches!(p, Part::Verification | Part::HeldOut | Part::Constraints)
                    });
                    continue;
                }
                if let Some(known) = suggest(&key, PHASE_KEYS.iter().copied()) {
                    sink.error(
                        line.line,
                        line.col,
                        format!(
                            "unknown phase line \"{}:\"",
                            &line.text[..line.text.find(':').unwrap_or(0)]
                        ),
                        format!("did you mean \"{known}:\"?"),
                    );
                    continue;
                }
            }
            if let Some(part) = continued {
                append(&mut d.parts, part, &line.text);
            } else {
                context.push(line.text.clone());
            }
        }
    }
    if !context.is_empty() {
        d.parts.context.insert(
            0,
            Section {
                heading: Spanned::new(h.text.clone(), h.line, h.col),
                body: context.join("\n"),
            },
        );
    }
}

/// Handles one known phase key; `None` if `key` is not one. The part returned (if any) is
/// what following lines continue.
fn key_value(
    d: &mut PhaseDraft,
    key: &str,
    value: &str,
    line: &Line,
    col: u32,
    sink: &mut Sink,
) -> Option<Option<Part>> {
    let at = |v: String| Spanned::new(v, line.line, col);
    match key {
        "depends on" | "depends" | "dependencies" => {
            let deps = split_list(value, line.line, col);
            d.depends_on.extend(
                deps.into_iter()
                    .filter(|s| !matches!(s.value.as_str(), "none" | "-")),
            );
            return Some(None);
        }
        "attempts" => {
            attempts(d, value, line, col, sink);
            return Some(None);
        }
        "select" | "selection" => {
            d.select = select(value, line, col, sink);
            return Some(None);
        }
        "setup" => {
            d.setup = setup(value, line, col, sink);
            return Some(None);
        }
        _ => {}
    }
    let part = part_of(key).filter(|p| !matches!(p, Part::Phases | Part::Boundaries))?;
    match part {
        Part::Outcome if value.is_empty() => sink.error(
            line.line,
            line.col,
            "empty \"Outcome:\" line",
            "a sentence after `Outcome:` saying what must be true when the phase is done",
        ),
        Part::Outcome => d.parts.outcome = Some(at(value.to_string())),
        Part::Verification if !value.is_empty() => {
            let item = Line {
                text: value.to_string(),
                line: line.line,
                col,
            };
            let checks = d.parts.verification.get_or_insert_with(Vec::new);
            checks.extend(check(&[item], sink));
        }
        Part::HeldOut if !value.is_empty() => {
            let item = Line {
                text: value.to_string(),
                line: line.line,
                col,
            };
            d.parts.held_out.extend(check(&[item], sink));
        }
        Part::Constraints if !value.is_empty() => d.parts.constraints.push(at(value.to_string())),
        Part::IterationPolicy => d.parts.iteration_policy = Some(at(value.to_string())),
        Part::Blocked => d.parts.blocked = Some(stop_condition(at(value.to_string()))),
        _ => {}
    }
    Some(Some(part))
}

fn append(parts: &mut Parts, part: Part, text: &str) {
    let target = match part {
        Part::Outcome => parts.outcome.as_mut(),
        Part::IterationPolicy => parts.iteration_policy.as_mut(),
        Part::Constraints => parts.constraints.last_mut(),
        Part::Blocked => {
            if let Some(b) = parts.blocked.as_mut() {
                b.text.value.push('\n');
                b.text.value.push_str(text);
                b.no_progress_limit = super::checks::parse_no_progress_limit(&b.text.value);
            }
            None
        }
        _ => None,
    };
    if let Some(t) = target {
        if !t.value.is_empty() {
            t.value.push('\n');
        }
        t.value.push_str(text);
    }
}

fn attempts(d: &mut PhaseDraft, value: &str, line: &Line, col: u32, sink: &mut Sink) {
    let digits = value.len() - value.trim_start_matches(|c: char| c.is_ascii_digit()).len();
    let rest = value[digits..].trim();
    let agents = rest.strip_prefix('(').and_then(|r| r.strip_suffix(')'));
    if digits == 0 || !(rest.is_empty() || agents.is_some()) {
        sink.error(
            line.line,
            col,
            format!("malformed \"Attempts: {value}\""),
            ATTEMPTS_EXPECTED,
        );
        return;
    }
    let n = value[..digits].parse::<u32>().unwrap_or(u32::MAX);
    if n == 0 || n > MAX_ATTEMPTS {
        let shown = &value[..digits];
        sink.error(
            line.line,
            col,
            format!("Attempts: {shown} is out of range"),
            format!("a number of attempts from 1 to {MAX_ATTEMPTS}"),
        );
    }
    d.attempts = Some(Spanned::new(n.clamp(1, MAX_ATTEMPTS), line.line, col));
    if let Some(list) = agents {
        // The list starts after the digits, the spaces and the `(`.
        let open = value.find('(').unwrap_or(0) + 1;
        let list_col = col + u32::try_from(value[..open].chars().count()).unwrap_or(0);
        d.attempt_agents = split_list(list, line.line, list_col);
    }
}

/// `Setup: \`cmd\`, \`cmd\`` (each command in backticks) or `Setup: none`.
fn setup(value: &str, line: &Line, col: u32, sink: &mut Sink) -> Option<Vec<Spanned<String>>> {
    if value.trim().eq_ignore_ascii_case("none") {
        return Some(Vec::new());
    }
    let mut commands = Vec::new();
    let mut rest = value;
    let mut offset = 0;
    while let Some(open) = rest.find('`') {
        let Some(len) = rest[open + 1..].find('`') else {
            break;
        };
        let cmd = rest[open + 1..open + 1 + len].trim();
        let at = offset + open + 1;
        let cmd_col = col + u32::try_from(value[..at].chars().count()).unwrap_or(0);
        if !cmd.is_empty() {
            commands.push(Spanned::new(cmd.to_string(), line.line, cmd_col));
        }
        offset = at + len + 1;
        rest = &value[offset..];
    }
    if commands.is_empty() {
        sink.error(
            line.line,
            col,
            format!("\"Setup: {value}\" names no command"),
            "`Setup:` and each command in backticks (\"Setup: `npm ci`\"), or `Setup: none`",
        );
        return None;
    }
    Some(commands)
}

fn select(value: &str, line: &Line, col: u32, sink: &mut Sink) -> Option<Spanned<Selection>> {
    let v = value.trim().trim_matches('`');
    let lower = v.to_ascii_lowercase();
    let policy = match lower.split_whitespace().next().unwrap_or("") {
        "first" if lower == "first" => Selection::First,
        "review" if lower == "review" => Selection::Review,
        "best" => {
            let metric = v[4..].trim().trim_matches('`').trim();
            if metric.is_empty() || metric.contains(char::is_whitespace) {
                sink.error(
                    line.line,
                    col,
                    format!("\"Select: {value}\" names no single metric"),
                    "`Select: best METRIC`, METRIC being a name a check of the phase reports",
                );
                return None;
            }
            Selection::Best {
                metric: metric.to_string(),
            }
        }
        _ => {
            sink.error(
                line.line,
                col,
                format!("unknown selection policy \"{v}\""),
                SELECT_EXPECTED,
            );
            return None;
        }
    };
    Some(Spanned::new(policy, line.line, col))
}

/// The plan: settings, the plan's contract, and each phase with its contract laid over
/// the plan's (or the implicit phase when there is no `## Phases`).
pub(crate) fn build(path: &Path, settings: Settings, doc: Doc, sink: &mut Sink) -> Plan {
    let mut contract = sections::contract(&doc.parts);
    contract.setup = settings.setup.clone();
    let drafts = match doc.phases {
        Some((h, drafts)) if drafts.is_empty() => {
            sink.error(
                h.line,
                h.col,
                "the Phases section has no phases",
                "`### <id>: <title>` headings under `## Phases`, or no `## Phases` at all",
            );
            vec![]
        }
        Some((_, drafts)) => drafts,
        None => vec![],
    };
    let implicit_phase = drafts.is_empty();
    let phases = if implicit_phase {
        vec![implicit(&doc.title, &contract)]
    } else {
        drafts.into_iter().map(|d| phase(d, &contract)).collect()
    };
    Plan {
        path: path.to_path_buf(),
        title: doc.title,
        settings,
        contract,
        phases,
        implicit_phase,
    }
}

fn implicit(title: &Option<Spanned<String>>, contract: &Contract) -> Phase {
    let (line, col) = title.as_ref().map_or((1, 1), |t| (t.line, t.col));
    let text = title.as_ref().map_or(IMPLICIT_PHASE, |t| t.value.as_str());
    let text = text.strip_prefix("Goal:").unwrap_or(text).trim();
    Phase {
        id: Spanned::new(IMPLICIT_PHASE.to_string(), line, col),
        title: text.to_string(),
        depends_on: vec![],
        attempts: Spanned::new(1, 0, 0),
        attempt_agents: vec![],
        select: Spanned::new(Selection::First, 0, 0),
        contract: contract.clone(),
    }
}

fn phase(d: PhaseDraft, plan: &Contract) -> Phase {
    let mut contract = overlay(plan, d.parts);
    if let Some(commands) = d.setup {
        contract.setup.commands = commands;
    }
    let select = d
        .select
        .unwrap_or_else(|| Spanned::new(Selection::First, 0, 0));
    // `Select: best M` needs M measured in every attempt: a phase whose own checks do not
    // report M keeps the plan's check that does.
    if let Selection::Best { metric } = &select.value {
        let reports = |c: &crate::contract::Check| c.metric().is_some_and(|m| &m.name == metric);
        if !contract.verification.iter().any(reports)
            && let Some(c) = plan.verification.iter().find(|c| reports(c))
        {
            contract.verification.push(c.clone());
        }
    }
    Phase {
        id: d.id,
        title: d.title,
        depends_on: d.depends_on,
        attempts: d.attempts.unwrap_or_else(|| Spanned::new(1, 0, 0)),
        attempt_agents: d.attempt_agents,
        select,
        contract,
    }
}

/// A phase's contract: its own parts over the plan's. Outcome, verification, allowed
/// paths, iteration policy and the stop condition replace the plan's; constraints,
/// held-out checks, forbidden and protected paths and context add to them, so a phase can narrow the
/// plan's protections but never loosen them.
pub(crate) fn overlay(plan: &Contract, own: Parts) -> Contract {
    let concat = |a: &[Spanned<String>], b: Vec<Spanned<String>>| {
        let mut v = a.to_vec();
        v.extend(b);
        v
    };
    let mut context = plan.context.clone();
    context.extend(own.context);
    Contract {
        outcome: own.outcome.or_else(|| plan.outcome.clone()),
        verification: own
            .verification
            .filter(|v| !v.is_empty())
            .unwrap_or_else(|| plan.verification.clone()),
        constraints: concat(&plan.constraints, own.constraints),
        boundaries: crate::contract::Boundaries {
            allowed: own
                .allowed
                .unwrap_or_else(|| plan.boundaries.allowed.clone()),
            forbidden: concat(&plan.boundaries.forbidden, own.forbidden),
            protected: concat(&plan.boundaries.protected, own.protected),
        },
        iteration_policy: own
            .iteration_policy
            .or_else(|| plan.iteration_policy.clone()),
        blocked: own.blocked.or_else(|| plan.blocked.clone()),
        context,
        setup: plan.setup.clone(),
        held_out: [plan.held_out.clone(), own.held_out].concat(),
    }
}
