//! The plan's headings as contract parts: `## Outcome`, `## Verification surface`,
//! `## Constraints`, `## Boundaries`, `## Iteration policy`, `## Blocked stop condition`,
//! `## Phases`; any other heading is kept as context. Phase sub-sections reuse [`Parts`].

use super::Sink;
use super::checks::{key_line, parse_check, parse_no_progress_limit, split_list};
use super::markdown::{Block, BlockKind, Heading, Line, Node, section_end};
use super::phases::{self, PhaseDraft};
use crate::contract::{Check, Contract, Section, Spanned, StopCondition};

/// The contract parts a heading (or a phase's `Key:` line) can hold.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Part {
    Outcome,
    Verification,
    HeldOut,
    Constraints,
    Boundaries,
    IterationPolicy,
    Blocked,
    Phases,
}

/// Which part a heading names, matched case-insensitively; `None` for context.
pub(crate) fn part_of(heading: &str) -> Option<Part> {
    let norm: Vec<String> = heading
        .trim()
        .trim_end_matches(':')
        .split_whitespace()
        .map(str::to_lowercase)
        .collect();
    let part = match norm.join(" ").as_str() {
        "outcome" | "outcomes" | "goal outcome" => Part::Outcome,
        "verification" | "verification surface" | "verification checks" | "checks" => {
            Part::Verification
        }
        "held-out checks" | "held out checks" | "held-out" | "held-out verification" => {
            Part::HeldOut
        }
        "constraints" | "constraint" => Part::Constraints,
        "boundaries" | "boundary" => Part::Boundaries,
        "iteration policy" | "iteration" => Part::IterationPolicy,
        "blocked stop condition" | "stop condition" | "blocked" | "when blocked" => Part::Blocked,
        "phases" => Part::Phases,
        _ => return None,
    };
    Some(part)
}

/// Contract parts as written in one place (the plan, or one phase): `None` or empty means
/// "not written here".
#[derive(Debug, Clone, Default)]
pub(crate) struct Parts {
    pub outcome: Option<Spanned<String>>,
    pub verification: Option<Vec<Check>>,
    pub held_out: Vec<Check>,
    pub constraints: Vec<Spanned<String>>,
    pub allowed: Option<Vec<Spanned<String>>>,
    pub forbidden: Vec<Spanned<String>>,
    pub protected: Vec<Spanned<String>>,
    pub iteration_policy: Option<Spanned<String>>,
    pub blocked: Option<StopCondition>,
    pub context: Vec<Section>,
}

impl Parts {
    /// Fills `part` from the blocks under its heading at `at`.
    pub fn fill(&mut self, part: Part, at: &Heading, blocks: &[Block], sink: &mut Sink) {
        let name = at.text.trim();
        match part {
            Part::Outcome => {
                self.outcome = joined(blocks, "\n\n");
                if self.outcome.is_none() {
                    sink.error(
                        at.line,
                        at.col,
                        format!("the \"{name}\" section is empty"),
                        "a sentence saying what must be true when the work is done",
                    );
                }
            }
            Part::Verification => {
                let checks = self.verification.get_or_insert_with(Vec::new);
                checks.extend(items(blocks, sink));
            }
            Part::HeldOut => self.held_out.extend(items(blocks, sink)),
            Part::Constraints => {
                self.constraints.extend(
                    blocks
                        .iter()
                        .filter_map(|b| joined(std::slice::from_ref(b), "\n")),
                );
            }
            Part::Boundaries => {
                for line in blocks.iter().flat_map(|b| &b.lines) {
                    if !self.boundary_line(line) {
                        sink.error(
                            line.line,
                            line.col,
                            format!("unrecognized boundary line \"{}\"", line.text),
                            "`Allowed paths:`, `Forbidden paths:` or `Protected paths:` followed by comma-separated globs",
                        );
                    }
                }
            }
            Part::IterationPolicy => self.iteration_policy = joined(blocks, "\n\n"),
            Part::Blocked => self.blocked = joined(blocks, "\n\n").map(stop_condition),
            Part::Phases => {}
        }
    }

    /// Reads an `Allowed paths:` / `Forbidden paths:` / `Protected paths:` line; false if
    /// the line is none of those.
    pub fn boundary_line(&mut self, line: &Line) -> bool {
        let Some((key, value, offset)) = key_line(&line.text) else {
            return false;
        };
        let col = line.col + u32::try_from(offset).unwrap_or(0);
        let globs = split_list(value, line.line, col);
        match key.as_str() {
            "allowed paths" | "allowed" => self.allowed.get_or_insert_with(Vec::new).extend(globs),
            "forbidden paths" | "forbidden" => self.forbidden.extend(globs),
            "protected paths" | "protected" => self.protected.extend(globs),
            _ => return false,
        }
        true
    }
}

/// A stop condition with its no-progress limit read from the text.
pub(crate) fn stop_condition(text: Spanned<String>) -> StopCondition {
    let no_progress_limit = parse_no_progress_limit(&text.value);
    StopCondition {
        text,
        no_progress_limit,
    }
}

/// The checks of a verification section: its list items, or each paragraph when it has
/// no list.
fn items(blocks: &[Block], sink: &mut Sink) -> Vec<Check> {
    let has_items = blocks.iter().any(|b| b.kind == BlockKind::Item);
    blocks
        .iter()
        .filter(|b| !has_items || b.kind == BlockKind::Item)
        .filter_map(|b| check(&b.lines, sink))
        .collect()
}

/// One verification item from its lines; `None` if there is none.
pub(crate) fn check(lines: &[Line], sink: &mut Sink) -> Option<Check> {
    let first = lines.first()?;
    let text: Vec<&str> = lines.iter().map(|l| l.text.as_str()).collect();
    let text = text.join(" ");
    match parse_check(&text) {
        Ok(kind) => {
            if let (Err(e), crate::contract::CheckKind::Machine { .. }) =
                (crate::integrity::settings(&text), &kind)
            {
                sink.error(first.line, first.col, e.message, e.expected);
            }
            Some(Check {
                text: Spanned::new(text, first.line, first.col),
                kind,
            })
        }
        Err(e) => {
            sink.error(first.line, first.col, e.message, e.expected);
            // Kept as a machine check without its metric, so the error above is not
            // followed by a "no machine check" that only repeats it.
            let command = super::checks::code_span(&text).map(|(c, _)| c.to_string())?;
            Some(Check {
                text: Spanned::new(text, first.line, first.col),
                kind: crate::contract::CheckKind::Machine {
                    command,
                    metric: None,
                },
            })
        }
    }
}

/// The blocks' text, blocks separated by `sep`, at the first block's position.
fn joined(blocks: &[Block], sep: &str) -> Option<Spanned<String>> {
    let first = blocks.iter().find_map(|b| b.lines.first())?;
    let parts: Vec<String> = blocks
        .iter()
        .map(Block::text)
        .filter(|t| !t.is_empty())
        .collect();
    Some(Spanned::new(parts.join(sep), first.line, first.col))
}

/// A context section: the heading and the raw text under it and its sub-headings.
pub(crate) fn context_section(head: &Node, children: &[Node]) -> Option<Section> {
    let h = head.heading.as_ref()?;
    let mut body = head.body.clone();
    for c in children {
        if let Some(ch) = &c.heading {
            body.push_str(&format!(
                "\n\n{} {}\n\n{}",
                "#".repeat(ch.level.into()),
                ch.text,
                c.body
            ));
        }
    }
    Some(Section {
        heading: Spanned::new(h.text.clone(), h.line, h.col),
        body: body.trim().to_string(),
    })
}

/// The plan as written, before phases are laid over its contract.
#[derive(Debug, Default)]
pub(crate) struct Doc {
    pub title: Option<Spanned<String>>,
    pub parts: Parts,
    /// Where `## Verification` is, for a plan-level "no machine check" error.
    pub verification_at: Option<(u32, u32)>,
    /// True when the plan has an `## Outcome` heading (an empty one is reported there).
    pub outcome_written: bool,
    /// `Some` when the file has a `## Phases` heading.
    pub phases: Option<(Heading, Vec<PhaseDraft>)>,
}

pub(crate) fn read(nodes: &[Node], sink: &mut Sink) -> Doc {
    let mut doc = Doc::default();
    let mut i = 0;
    while i < nodes.len() {
        let node = &nodes[i];
        let Some(h) = &node.heading else {
            i += 1;
            continue;
        };
        let end = section_end(nodes, i, h.level);
        let children = &nodes[i + 1..end];
        if h.level == 1 && doc.title.is_none() {
            doc.title = Some(Spanned::new(h.text.clone(), h.line, h.col));
            i += 1;
            continue;
        }
        match part_of(&h.text) {
            Some(Part::Phases) => {
                doc.phases = Some((h.clone(), phases::read(children, sink)));
            }
            Some(part) => {
                if part == Part::Verification {
                    doc.verification_at = Some((h.line, h.col));
                }
                doc.outcome_written |= part == Part::Outcome;
                // Sub-headings of a contract part add to it.
                let mut blocks = node.blocks.clone();
                blocks.extend(children.iter().flat_map(|c| c.blocks.iter().cloned()));
                doc.parts.fill(part, h, &blocks, sink);
            }
            None => doc.parts.context.extend(context_section(node, children)),
        }
        i = end;
    }
    doc
}

/// The plan-level contract from what the plan wrote.
pub(crate) fn contract(parts: &Parts) -> Contract {
    let p = parts.clone();
    Contract {
        outcome: p.outcome,
        verification: p.verification.unwrap_or_default(),
        constraints: p.constraints,
        boundaries: crate::contract::Boundaries {
            allowed: p.allowed.unwrap_or_default(),
            forbidden: p.forbidden,
            protected: p.protected,
        },
        iteration_policy: p.iteration_policy,
        blocked: p.blocked,
        context: p.context,
        setup: crate::contract::Setup::default(),
        held_out: p.held_out,
    }
}
