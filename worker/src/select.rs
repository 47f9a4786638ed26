//! `goalpost-worker --select`: one reviewer turn that compares a phase's audited
//! candidates side by side and names the winner on a `WINNER: N` line. The orchestrator
//! only accepts a winner that passed its audit; this module only asks and reads.

use std::fmt::Write as _;
use std::fs;
use std::path::Path;
use std::time::Duration;

use goalpost_agents::{self as agents, TurnRequest};
use goalpost_shared::confine::{self, Confinement};
use goalpost_shared::protocol::{Role, SelectInput, SelectResult};

use crate::prompt;

/// The environment variable value of `GOALPOST_ATTEMPT` in a selection turn: it belongs
/// to no attempt.
pub const SELECT_ATTEMPT: &str = "0";

/// Runs the selection turn.
pub fn run(input: &SelectInput) -> std::io::Result<SelectResult> {
    let tmpdir = input.private_dir.join("tmp");
    let state = input.private_dir.join("state");
    let prompts = input.private_dir.join("prompts");
    for dir in [&tmpdir, &state, &prompts] {
        fs::create_dir_all(dir)?;
    }
    let confine = confinement(input, &tmpdir, &state, &prompts)?;
    let mut env = agents::allowed_env(&input.env_allow);
    env.insert("TMPDIR".into(), tmpdir.into());
    // The agent's CLI home, made before the turn: not in the temp dir, which the turn's
    // sandbox starts empty.
    env.insert("GOALPOST_STATE_DIR".into(), state.into());
    for (key, value) in &input.reviewer.env {
        env.insert(key.into(), value.into());
    }
    for (key, value) in [
        ("GOALPOST_ROLE", Role::Reviewer.as_str()),
        ("GOALPOST_PHASE", input.phase.as_str()),
        ("GOALPOST_ATTEMPT", SELECT_ATTEMPT),
        ("GOALPOST_ITERATION", "0"),
        ("GOALPOST_RUN", input.run_id.as_str()),
        ("GOALPOST_SELECT", "1"),
    ] {
        env.insert(key.into(), value.into());
    }
    let text = prompt_text(input);
    let request = TurnRequest {
        role: Role::Reviewer,
        iteration: 0,
        prompt: &text,
        cwd: &input.private_dir,
        env,
        prompt_file: input.private_dir.join("prompts").join("select.md"),
        timeout: Duration::from_secs(input.timeout_secs.max(1)),
        cancel: None,
        tree: None,
        confine: confine.as_ref(),
        verdict_schema: None,
    };
    let turn = agents::run_turn(&input.reviewer, &request);
    let message = turn.record.message.clone();
    Ok(SelectResult {
        winner: parse_winner(&message),
        notes: message
            .lines()
            .filter(|l| parse_winner(l).is_none())
            .collect::<Vec<_>>()
            .join("\n"),
        turn: turn.record,
    })
}

/// The selection turn may write only in its state directory and a temp dir of its own,
/// reads its prompt, and sees nothing else of goalpost's (its cwd holds the worker's own
/// input and output); `None` when the run is unconfined.
fn confinement(
    input: &SelectInput,
    tmpdir: &Path,
    state: &Path,
    prompts: &Path,
) -> std::io::Result<Option<Confinement>> {
    if input.unconfined {
        return Ok(None);
    }
    confine::probe()
        .and_then(|_| Confinement::default().with_writable(state))
        .map(|rules| rules.hiding(&input.sandbox.hidden).showing(prompts))
        .and_then(|rules| rules.with_scratch(tmpdir, input.sandbox.tmp_bytes()))
        .map(Some)
        .map_err(std::io::Error::other)
}

fn prompt_text(input: &SelectInput) -> String {
    let mut p = String::new();
    let _ = writeln!(
        p,
        "# Choose the best attempt of phase `{}`: {}\n",
        input.phase, input.phase_title
    );
    if let Some(outcome) = &input.contract.outcome {
        let _ = writeln!(p, "The phase's outcome: {}\n", outcome.value);
    }
    let _ = writeln!(
        p,
        "Every candidate below passed its independent audit. Compare them side by side: the \
         diff, the evidence and the metric. Name the one that should be merged on a line of \
         its own, `WINNER: N` (N being its attempt number), and say why in a few lines.\n"
    );
    for c in &input.candidates {
        let _ = writeln!(
            p,
            "## Attempt {} ({}), commit {}\n",
            c.attempt, c.agent, c.commit
        );
        let _ = writeln!(p, "Audit: {}", c.audit_summary);
        if let Some(m) = c.metric {
            let _ = writeln!(p, "Metric: {m}");
        }
        for e in &c.evidence {
            let _ = writeln!(p, "- {e}");
        }
        let _ = writeln!(p, "\n```diff\n{}\n```\n", prompt::tail(&c.diff, 16 * 1024));
    }
    p
}

/// The attempt number of the last `WINNER: N` line (`WINNER: attempt 2` and `#2` too).
pub fn parse_winner(message: &str) -> Option<u32> {
    message.lines().rev().find_map(|line| {
        let rest = line.trim().strip_prefix("WINNER:")?;
        let digits: String = rest
            .trim()
            .trim_start_matches("attempt")
            .trim()
            .trim_start_matches('#')
            .chars()
            .take_while(char::is_ascii_digit)
            .collect();
        digits.parse().ok()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_last_winner_line_counts() {
        assert_eq!(parse_winner("WINNER: 2\nbecause"), Some(2));
        assert_eq!(parse_winner("WINNER: 1\nWINNER: attempt 3"), Some(3));
        assert_eq!(parse_winner("  WINNER: #4"), Some(4));
        assert_eq!(parse_winner("The winner is 2"), None);
        assert_eq!(parse_winner("WINNER: none"), None);
    }
}
