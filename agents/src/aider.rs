//! The `aider` adapter: `aider --message-file FILE`, one message and exit.
//!
//! Command line: `aider --message-file PROMPT_FILE --yes-always --no-pretty --no-stream
//! --no-git --no-check-update --analytics-disable --no-show-model-warnings
//! --no-suggest-shell-commands --no-detect-urls --map-tokens 0 --input-history-file
//! STATE/input.history --chat-history-file STATE/chat.history.md [--model MODEL] ARGS...`.
//! goalpost harvests, so aider leaves git alone (it would commit, add to `.gitignore` and
//! write the repository's config, which a confined agent may not), and nothing of aider's
//! own is left in the worktree to be harvested: its histories go to the attempt's state
//! dir and it keeps no repository map (whose cache would be a directory in the worktree). `HOME` is a
//! directory of the attempt's own with the user's `~/.aider.conf.yml` and `~/.env` copied
//! in. It keeps no session between turns.
//!
//! Output: text. Each model call prints `Tokens: 2.3k sent, 1.1k cache hit, 70 received.
//! Cost: $0.0012 message, $0.0034 session.`; the turn's usage is the sum over those lines
//! (aider rounds counts of a thousand or more to a tenth of a thousand), and every other
//! line is the final message.

use std::ffi::OsString;
use std::fs;

use goalpost_shared::protocol::AgentSpec;

use crate::argv::{Launch, model_args};
use crate::cli::{Cli, CliTurn, Parsed};
use crate::session::user_dir;

#[derive(Debug)]
pub(crate) struct Aider;

impl Cli for Aider {
    fn program(&self) -> &'static str {
        "aider"
    }

    fn args(&self, spec: &AgentSpec, launch: &Launch<'_>) -> Vec<String> {
        let mut args = vec![
            "--message-file".to_owned(),
            launch.prompt_file.to_string_lossy().into_owned(),
        ];
        args.extend(
            [
                "--yes-always",
                "--no-pretty",
                "--no-stream",
                "--no-git",
                "--no-check-update",
                "--analytics-disable",
                "--no-show-model-warnings",
                "--no-suggest-shell-commands",
                "--no-detect-urls",
                "--map-tokens",
                "0",
            ]
            .map(str::to_owned),
        );
        let state = |file: &str| launch.state_dir.join(file).to_string_lossy().into_owned();
        args.extend([
            "--input-history-file".to_owned(),
            state("input.history"),
            "--chat-history-file".to_owned(),
            state("chat.history.md"),
        ]);
        args.extend(model_args(spec, "--model"));
        args.extend(spec.args.iter().cloned());
        args
    }

    fn prepare(&self, turn: &CliTurn<'_>) -> std::io::Result<Vec<(String, OsString)>> {
        let home = turn.state_dir.join("aider-home");
        fs::create_dir_all(&home)?;
        if let Some(user) = user_dir(turn, "HOME", "") {
            for file in [".aider.conf.yml", ".env"] {
                if user.join(file).is_file() && !home.join(file).exists() {
                    fs::copy(user.join(file), home.join(file))?;
                }
            }
        }
        Ok(vec![("HOME".to_owned(), home.into_os_string())])
    }

    fn parse(&self, stdout: &str) -> Parsed {
        parse(stdout)
    }
}

/// `2.3k` → 2300, `1,234` → 1234.
fn amount(word: &str) -> Option<u64> {
    let word = word.replace(',', "");
    let (number, scale) = match word.strip_suffix('k') {
        Some(n) => (n, 1000.0),
        None => match word.strip_suffix('M') {
            Some(n) => (n, 1_000_000.0),
            None => (word.as_str(), 1.0),
        },
    };
    let value: f64 = number.parse().ok()?;
    Some((value * scale).round() as u64)
}

pub(crate) fn parse(stdout: &str) -> Parsed {
    let mut p = Parsed::default();
    let mut message = Vec::new();
    for line in stdout.lines() {
        let Some(rest) = line.trim().strip_prefix("Tokens:") else {
            message.push(line);
            continue;
        };
        let (tokens, cost) = rest.split_once("Cost:").unwrap_or((rest, ""));
        for piece in tokens.split(", ").map(str::trim) {
            let mut words = piece.splitn(2, ' ');
            let (Some(n), Some(what)) = (words.next().and_then(amount), words.next()) else {
                continue;
            };
            let what = what.trim_end_matches('.');
            match what {
                "sent" => p.usage.tokens_in += n,
                "received" => p.usage.tokens_out += n,
                "cache hit" => p.usage.tokens_cached += n,
                _ => {}
            }
        }
        if let Some(dollars) = cost
            .split(',')
            .find(|c| c.contains("message"))
            .and_then(|c| c.trim().strip_prefix('$'))
            .and_then(|c| c.split_whitespace().next())
            .and_then(|c| c.parse::<f64>().ok())
        {
            p.usage.cost_usd += dollars;
        }
    }
    let text = message.join("\n").trim().to_owned();
    p.last_text = text.clone();
    if !text.is_empty() {
        p.result = Some(text);
    }
    p
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn usage_lines_are_summed() {
        let out = "Applied edit to calc.sh\n\
                   Tokens: 2.3k sent, 1.1k cache hit, 70 received. Cost: $0.0012 message, $0.0012 session.\n\
                   Done.\n\
                   Tokens: 1,200 sent, 30 received. Cost: $0.0030 message, $0.0042 session.\n";
        let p = parse(out);
        assert_eq!(
            (p.usage.tokens_in, p.usage.tokens_cached, p.usage.tokens_out),
            (3500, 1100, 100)
        );
        assert!((p.usage.cost_usd - 0.0042).abs() < 1e-12);
        assert_eq!(p.result.as_deref(), Some("Applied edit to calc.sh\nDone."));
        assert_eq!(parse("").result, None);
    }
}
