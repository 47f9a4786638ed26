//! What the agents are told and what is read back from them: the implementer's and the
//! reviewer's prompts, built from the contract and the last iteration's evidence, and the
//! implementer's claims and the reviewer's verdict, parsed from their final messages.

use std::fmt::Write as _;

use goalpost_shared::protocol::{CheckResult, Feedback, Verdict, WorkerInput};

/// Bytes of a failing check's output quoted in a prompt (its tail: where errors are).
const OUTPUT_TAIL: usize = 2_000;

/// What the implementer's prompt is built from, besides the input.
#[derive(Debug, Default)]
pub struct ImplementerTurn<'a> {
    pub iteration: u32,
    /// The last verification run of this round, if any.
    pub last_checks: &'a [CheckResult],
    /// The reviewer's notes from the last `changes` verdict.
    pub reviewer_notes: Option<&'a str>,
    /// Something the implementer should know about its own last turn (it changed nothing,
    /// or it failed).
    pub last_turn_note: Option<&'a str>,
}

/// The implementer's prompt for one turn.
pub fn implementer(input: &WorkerInput, turn: &ImplementerTurn<'_>) -> String {
    let mut out = String::new();
    heading(&mut out, input, "implementer", turn.iteration);
    out.push_str(
        "You are the implementer. Change the code in the current directory so that the goal \
         contract below holds.\n\n",
    );
    input.contract.write_markdown(&mut out);
    held_out(&mut out, input.held_out_checks);

    match &input.feedback {
        Some(Feedback::Audit { report_markdown }) => {
            out.push_str("## Audit feedback\n\n");
            out.push_str(
                "An independent audit of your previous candidate recommended revising it. \
                 Its report:\n\n",
            );
            out.push_str(report_markdown.trim_end());
            out.push_str("\n\n");
        }
        Some(Feedback::Conflict { paths, .. }) => {
            out.push_str("## Merge conflict\n\n");
            out.push_str(
                "Your previous candidate conflicted with the new base. The worktree holds the \
                 merge of the new base and your previous candidate; resolve the conflict \
                 markers in:\n",
            );
            for path in paths {
                let _ = writeln!(out, "- {path}");
            }
            out.push('\n');
        }
        None => {}
    }

    if !turn.last_checks.is_empty() {
        out.push_str("## Last verification\n\n");
        checks(&mut out, turn.last_checks);
    }
    if let Some(notes) = turn.reviewer_notes.filter(|n| !n.trim().is_empty()) {
        out.push_str("## Reviewer notes\n\nThe reviewer asked for changes:\n\n");
        out.push_str(notes.trim_end());
        out.push_str("\n\n");
    }
    if let Some(note) = turn.last_turn_note {
        out.push_str("## Your last turn\n\n");
        out.push_str(note.trim_end());
        out.push_str("\n\n");
    }

    out.push_str(
        "## Instructions\n\n\
         - Work only in the current directory.\n\
         - Do not commit, branch or touch git refs: goalpost commits your changes after \
         your turn.\n\
         - Do not change protected paths or the verification commands.\n\
         - End your final message with a `Claims:` line followed by a bulleted list of what \
         you claim is now true (one claim per bullet).\n",
    );
    out
}

/// What the reviewer's prompt is built from, besides the input.
#[derive(Debug)]
pub struct ReviewerTurn<'a> {
    pub iteration: u32,
    /// `git diff base..head`, possibly cut.
    pub diff: &'a str,
    pub diff_truncated: bool,
    pub checks: &'a [CheckResult],
    pub claims: &'a [String],
}

/// The reviewer's prompt for one turn.
pub fn reviewer(input: &WorkerInput, turn: &ReviewerTurn<'_>) -> String {
    let mut out = String::new();
    heading(&mut out, input, "reviewer", turn.iteration);
    out.push_str(
        "You are the reviewer. Review the implementer's change against the goal contract \
         below. Do not change any files.\n\n",
    );
    input.contract.write_markdown(&mut out);

    out.push_str("## Change under review\n\n```diff\n");
    out.push_str(turn.diff.trim_end());
    out.push_str("\n```\n");
    if turn.diff_truncated {
        out.push_str("(the diff was cut; run `git diff` against the base to see all of it)\n");
    }
    out.push('\n');

    out.push_str("## Verification\n\n");
    if turn.checks.is_empty() {
        out.push_str("No machine checks ran.\n\n");
    } else {
        checks(&mut out, turn.checks);
    }

    if !turn.claims.is_empty() {
        out.push_str("## The implementer claims\n\n");
        for claim in turn.claims {
            let _ = writeln!(out, "- {claim}");
        }
        out.push('\n');
    }

    out.push_str(
        "## Instructions\n\n\
         End your final message with exactly one verdict line:\n\
         - `VERDICT: approve` when the change meets the contract;\n\
         - `VERDICT: changes` when it needs more work (your other lines are notes for the \
         implementer);\n\
         - `VERDICT: blocked` when the work cannot go on without outside input (say why, and \
         add a line `NEEDS: ...` naming the input that would unblock it).\n",
    );
    out
}

fn heading(out: &mut String, input: &WorkerInput, role: &str, iteration: u32) {
    let _ = writeln!(out, "# {}\n", input.plan_title.trim());
    let _ = writeln!(
        out,
        "Phase `{}`: {} (attempt {}, iteration {iteration}, {role})\n",
        input.phase,
        input.phase_title.trim(),
        input.attempt,
    );
}

/// That the audit runs checks the implementer cannot see, and what that means for it;
/// nothing of what they are.
fn held_out(out: &mut String, n: u32) {
    if n == 0 {
        return;
    }
    let _ = writeln!(
        out,
        "### Held-out checks

         The independent audit also runs {n} held-out check{} that you cannot see. They test          the same outcome with inputs of their own: a change that only satisfies the visible          tests (answers for their inputs, reading the tests, special cases) fails them.
",
        if n == 1 { "" } else { "s" }
    );
}

/// Checks as evidence: passing ones in a line each, failing ones with their output's tail.
fn checks(out: &mut String, results: &[CheckResult]) {
    let failing = results.iter().filter(|c| !c.passed).count();
    let _ = writeln!(
        out,
        "{} of {} machine checks pass.\n",
        results.len() - failing,
        results.len()
    );
    for c in results {
        if c.passed {
            let _ = writeln!(out, "- PASS `{}`", c.command);
            continue;
        }
        let why = c.failure.as_deref().unwrap_or("failed");
        let _ = writeln!(out, "- FAIL `{}`: {why}", c.command);
        let mut output = String::new();
        for stream in [&c.record.stdout, &c.record.stderr] {
            if !stream.trim().is_empty() {
                output.push_str(stream.trim_end());
                output.push('\n');
            }
        }
        if !output.is_empty() {
            let _ = writeln!(out, "\n  ```\n{}  ```", indent(tail(&output, OUTPUT_TAIL)));
        }
    }
    out.push('\n');
}

fn indent(text: &str) -> String {
    text.lines().map(|l| format!("  {l}\n")).collect()
}

/// The last `max` bytes of `text`, cut at a character boundary; turn records are cut
/// the same way.
pub use goalpost_agents::tail;

/// The implementer's claims: the list items under the last `Claims:` line of its message.
/// An item's indented continuation lines are joined to it; the list ends at the first line
/// that is neither an item, a continuation nor blank.
pub fn parse_claims(message: &str) -> Vec<String> {
    let lines: Vec<&str> = message.lines().collect();
    let Some(start) = lines.iter().rposition(|l| is_claims_heading(l)) else {
        return Vec::new();
    };
    let mut claims: Vec<String> = Vec::new();
    for line in &lines[start + 1..] {
        let trimmed = line.trim();
        if trimmed.is_empty() {
            continue;
        }
        if let Some(item) = list_item(trimmed) {
            if !item.is_empty() {
                claims.push(item.to_owned());
            }
        } else if line.starts_with([' ', '\t']) && !claims.is_empty() {
            if let Some(last) = claims.last_mut() {
                last.push(' ');
                last.push_str(trimmed);
            }
        } else {
            break;
        }
    }
    claims
}

fn is_claims_heading(line: &str) -> bool {
    let bare = line.trim().trim_start_matches('#').trim().replace("**", "");
    let bare = bare.trim();
    bare.eq_ignore_ascii_case("claims:") || bare.eq_ignore_ascii_case("claims")
}

/// The text of a list item (`- x`, `* x`, `+ x`, `1. x`, `1) x`), or `None`.
fn list_item(line: &str) -> Option<&str> {
    for marker in ["- ", "* ", "+ "] {
        if let Some(rest) = line.strip_prefix(marker) {
            return Some(rest.trim());
        }
    }
    let digits = line.len() - line.trim_start_matches(|c: char| c.is_ascii_digit()).len();
    if digits > 0 {
        let rest = &line[digits..];
        if let Some(rest) = rest.strip_prefix(". ").or_else(|| rest.strip_prefix(") ")) {
            return Some(rest.trim());
        }
    }
    None
}

/// A reviewer's final message, read.
#[derive(Debug, Clone, PartialEq)]
pub struct Review {
    pub verdict: Verdict,
    /// Every line but the verdict (and `NEEDS:`) lines.
    pub notes: String,
    /// What a `blocked` reviewer says would unblock the work (`NEEDS: ...`).
    pub needs: Option<String>,
    /// True when the message had no verdict line (the verdict is then `changes`).
    pub missing_verdict: bool,
}

/// Reads the last `VERDICT: approve|changes|blocked` line. A message without one counts
/// as `changes`, with a note saying so.
pub fn parse_verdict(message: &str) -> Review {
    let mut verdict = None;
    let mut needs = None;
    let mut notes = Vec::new();
    for line in message.lines() {
        if let Some(value) = labelled(line, "verdict") {
            let word = value
                .trim_matches(|c: char| !c.is_ascii_alphabetic())
                .to_ascii_lowercase();
            let parsed = match word.as_str() {
                "approve" | "approved" => Some(Verdict::Approve),
                "changes" | "request changes" | "changes requested" => Some(Verdict::Changes),
                "blocked" => Some(Verdict::Blocked),
                _ => None,
            };
            if parsed.is_some() {
                verdict = parsed;
                continue;
            }
        } else if let Some(value) = labelled(line, "needs") {
            needs = Some(value.trim().to_owned());
            continue;
        }
        notes.push(line);
    }
    let mut notes = notes.join("\n").trim().to_owned();
    let missing_verdict = verdict.is_none();
    if missing_verdict {
        if !notes.is_empty() {
            notes.push_str("\n\n");
        }
        notes.push_str(
            "(The reviewer's message had no `VERDICT:` line, so it counts as a request for \
             changes.)",
        );
    }
    Review {
        verdict: verdict.unwrap_or(Verdict::Changes),
        notes,
        needs: needs.filter(|n| !n.is_empty()),
        missing_verdict,
    }
}

/// The value of a `LABEL: value` line (label case-insensitive, Markdown emphasis allowed).
fn labelled<'a>(line: &'a str, label: &str) -> Option<&'a str> {
    let bare = line.trim().trim_start_matches(['*', '_', '#', ' ', '`']);
    let (head, rest) = bare.split_once(':')?;
    if !head
        .trim_end_matches(['*', '_'])
        .eq_ignore_ascii_case(label)
    {
        return None;
    }
    Some(rest.trim_matches(|c: char| c.is_whitespace() || c == '*' || c == '_' || c == '`'))
}

#[cfg(test)]
#[path = "prompt_tests.rs"]
mod tests;
