//! Verification integrity: whether a check can still fail (its canary) and whether it
//! still runs the tests it ran at the base (its census). The goal file's settings for
//! both are written in the check's own item (`Canary: off`, `Canary: \`COMMAND\``,
//! `Canary: PATH`, `Census: off`); the auditor's findings travel in
//! [`crate::protocol::CheckResult::integrity`], so the verification cache keeps them with
//! the check they belong to.

use serde::{Deserialize, Serialize};

use crate::contract::Check;
use crate::goal::CheckError;
use crate::goal::checks::code_span;

/// How a check's canary is made.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", content = "value", rename_all = "snake_case")]
pub enum CanarySetting {
    /// The auditor's own failing test, placed where the check's runner collects it.
    Builtin,
    /// No canary for this check (`Canary: off`).
    Off,
    /// A command run in the audit's checkout that adds a failing test (`Canary: \`cmd\``).
    Command(String),
    /// The auditor's failing test written at this path (`Canary: tests/canary.rs`), in the
    /// language its extension names.
    File(String),
}

impl CanarySetting {
    /// The setting as the goal file writes it, for the verification cache's key.
    pub fn as_key(&self) -> String {
        match self {
            CanarySetting::Builtin => "builtin".to_owned(),
            CanarySetting::Off => "off".to_owned(),
            CanarySetting::Command(c) => format!("command {c}"),
            CanarySetting::File(f) => format!("file {f}"),
        }
    }
}

/// A check's integrity settings from its item.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Settings {
    pub canary: CanarySetting,
    /// Whether the check's test census is compared with the base's.
    pub census: bool,
    /// Globs of paths whose change allows fewer tests or more skipped (`Census: allow
    /// tests/old_api.rs, tests/legacy/`): a candidate that changes one of them may.
    pub census_allow: Vec<String>,
}

impl Default for Settings {
    fn default() -> Settings {
        Settings {
            canary: CanarySetting::Builtin,
            census: true,
            census_allow: Vec::new(),
        }
    }
}

const CANARY_EXPECTED: &str = "`Canary: off`, `Canary: `COMMAND`` (a command that adds a failing test) or `Canary: PATH` \
     (where the auditor writes its failing test)";
const CENSUS_EXPECTED: &str =
    "`Census: off` or `Census: allow GLOB, GLOB` (paths whose change allows fewer tests)";

/// Reads `Canary:` and `Census:` from a verification item (after its command).
///
/// ```
/// use goalpost_shared::integrity::{CanarySetting, settings};
/// let s = settings("`cargo test` passes; Canary: off").unwrap();
/// assert_eq!(s.canary, CanarySetting::Off);
/// let s = settings("`make test` passes. Canary: `cp ci/fail.py tests/`").unwrap();
/// assert_eq!(s.canary, CanarySetting::Command("cp ci/fail.py tests/".into()));
/// assert!(settings("`make test` Canary: maybe?").is_err());
/// ```
pub fn settings(text: &str) -> Result<Settings, CheckError> {
    let rest = code_span(text).map_or(text, |(_, after)| after);
    let mut found = Settings::default();
    if let Some(value) = value_of(rest, "canary:") {
        found.canary = canary_value(value)?;
    }
    if let Some(value) = value_of(rest, "census:") {
        let word = first_word(value);
        match word.to_ascii_lowercase().as_str() {
            "off" | "none" => found.census = false,
            "allow" => found.census_allow = census_allow(&value[word.len()..])?,
            _ => {
                return Err(CheckError {
                    message: format!("unknown census setting \"{word}\""),
                    expected: CENSUS_EXPECTED.into(),
                });
            }
        }
    }
    Ok(found)
}

impl Check {
    /// The check's integrity settings; an item the parser refused has the defaults.
    pub fn integrity(&self) -> Settings {
        settings(&self.text.value).unwrap_or_default()
    }
}

/// The globs after `Census: allow`, up to the end of the item or a `;`.
fn census_allow(value: &str) -> Result<Vec<String>, CheckError> {
    let end = value.find(';').unwrap_or(value.len());
    let value = &value[..end];
    let end = value
        .to_ascii_lowercase()
        .find("canary:")
        .unwrap_or(value.len());
    let globs: Vec<String> = value[..end]
        .split(',')
        .map(|g| g.trim().trim_end_matches('.').trim_matches('`').to_owned())
        .filter(|g| !g.is_empty())
        .collect();
    if globs.is_empty() {
        return Err(CheckError {
            message: "no paths after `Census: allow`".into(),
            expected: CENSUS_EXPECTED.into(),
        });
    }
    for glob in &globs {
        crate::boundary::validate_pattern(glob).map_err(|why| CheckError {
            message: format!("bad census path `{glob}`: {why}"),
            expected: CENSUS_EXPECTED.into(),
        })?;
    }
    Ok(globs)
}

/// What follows `key` (lower case, with its colon) in `text`, matched case-insensitively
/// at the start of a word.
fn value_of<'t>(text: &'t str, key: &str) -> Option<&'t str> {
    let lower = text.to_ascii_lowercase();
    let mut from = 0;
    while let Some(i) = lower[from..].find(key) {
        let at = from + i;
        if lower[..at]
            .chars()
            .next_back()
            .is_none_or(|c| !c.is_alphanumeric())
        {
            return Some(text[at + key.len()..].trim_start());
        }
        from = at + key.len();
    }
    None
}

fn first_word(value: &str) -> &str {
    let word = value.split_whitespace().next().unwrap_or("");
    word.trim_end_matches(['.', ',', ';', ')'])
}

fn canary_value(value: &str) -> Result<CanarySetting, CheckError> {
    if value.starts_with('`') {
        return match code_span(value) {
            Some((command, _)) if !command.is_empty() => {
                Ok(CanarySetting::Command(command.to_owned()))
            }
            _ => Err(CheckError {
                message: "empty or unclosed canary command".into(),
                expected: CANARY_EXPECTED.into(),
            }),
        };
    }
    let word = first_word(value);
    match word.to_ascii_lowercase().as_str() {
        "off" | "none" => Ok(CanarySetting::Off),
        "" => Err(CheckError {
            message: "no canary after `Canary:`".into(),
            expected: CANARY_EXPECTED.into(),
        }),
        _ if plain_relative(word) => Ok(CanarySetting::File(word.to_owned())),
        _ => Err(CheckError {
            message: format!("canary \"{word}\" is neither `off`, a command nor a relative path"),
            expected: CANARY_EXPECTED.into(),
        }),
    }
}

/// A relative path without `..`, with an extension the auditor writes a test in.
fn plain_relative(path: &str) -> bool {
    !path.starts_with('/')
        && !path.split('/').any(|c| c == ".." || c.is_empty())
        && [".rs", ".py", ".js", ".mjs", ".cjs", ".go"]
            .iter()
            .any(|ext| path.ends_with(ext))
}

/// What the auditor found about one machine check's canary.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CanaryOutcome {
    pub status: CanaryStatus,
    /// What was done and seen, in a sentence ("added tests/goalpost_canary.rs; the check
    /// failed: exit status 101").
    pub detail: String,
    /// The files the canary added, relative to the checkout.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub planted: Vec<String>,
    /// The re-run's exit code, when it ran.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exit_code: Option<i32>,
    #[serde(default)]
    pub duration_ms: u64,
    /// The tail of the re-run's output.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub output: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CanaryStatus {
    /// The check failed with the canary added, as it must.
    Failed,
    /// The check passed with a failing test added: it cannot fail.
    Passed,
    /// The goal file switched the canary off.
    Off,
    /// No canary could be added (no known runner, or the command names its tests).
    NotRun,
    /// The check itself failed, so there was nothing to prove.
    NotNeeded,
}

impl CanaryStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            CanaryStatus::Failed => "failed as it must",
            CanaryStatus::Passed => "**passed**",
            CanaryStatus::Off => "off",
            CanaryStatus::NotRun => "not run",
            CanaryStatus::NotNeeded => "not needed (the check failed)",
        }
    }
}

/// How many tests one run of a check ran: `ran` counts the tests that were executed
/// (passed or failed), `skipped` those skipped or ignored.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Census {
    pub ran: u64,
    pub passed: u64,
    pub failed: u64,
    pub skipped: u64,
    /// The output was cut in its middle and the runner prints a summary per test binary
    /// (`cargo test`) or a line per test (`go test -v`): some of them may be missing.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub partial: bool,
}

/// A check's census on the candidate against the base's.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CensusComparison {
    /// The runners whose summaries were read ("cargo test", "unittest").
    pub runners: Vec<String>,
    /// `None` when the output had no summary of those runners.
    pub candidate: Option<Census>,
    pub base: Option<Census>,
    /// Where the base's census came from when it was not run again (an audit's report
    /// directory).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub base_from: Option<String>,
    /// The violation, when the candidate runs fewer tests or skips more than the base.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub violation: Option<String>,
    /// What would have been the violation, when `Census: allow` allows it, and why.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub allowed: Option<String>,
}

/// Everything the auditor found about a check's integrity.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CheckIntegrity {
    pub canary: CanaryOutcome,
    /// `None` when no runner the census reads was recognised, or the goal file switched
    /// the census off.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub census: Option<CensusComparison>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn settings_default_to_a_builtin_canary_and_a_census() {
        let s = settings("`cargo test` passes").unwrap();
        assert_eq!(s.canary, CanarySetting::Builtin);
        assert!(s.census);
    }

    #[test]
    fn every_canary_form_is_read() {
        let canary = |t: &str| settings(t).map(|s| s.canary);
        assert_eq!(canary("`x` passes canary: OFF"), Ok(CanarySetting::Off));
        assert_eq!(canary("`x` Canary: none."), Ok(CanarySetting::Off));
        assert_eq!(
            canary("`x` Canary: crates/core/tests/canary.rs"),
            Ok(CanarySetting::File("crates/core/tests/canary.rs".into()))
        );
        assert_eq!(
            canary("`x` Canary: `sh ci/plant.sh` then more words"),
            Ok(CanarySetting::Command("sh ci/plant.sh".into()))
        );
        // The command itself may mention the word.
        assert_eq!(
            canary("`grep canary: log` passes"),
            Ok(CanarySetting::Builtin)
        );
        assert_eq!(
            canary("`x` canary: ../outside.rs").unwrap_err().message,
            "canary \"../outside.rs\" is neither `off`, a command nor a relative path"
        );
        assert_eq!(
            canary("`x` Canary:").unwrap_err().message,
            "no canary after `Canary:`"
        );
        assert!(canary("`x` Canary: `").is_err());
        assert!(canary("`x` Canary: notes.txt").is_err());
    }

    #[test]
    fn the_census_may_allow_fewer_tests_for_named_paths() {
        let s = settings("`x` passes; Census: allow tests/old.rs, `tests/legacy/`; Canary: off")
            .unwrap();
        assert_eq!(s.census_allow, ["tests/old.rs", "tests/legacy/"]);
        assert_eq!(s.canary, CanarySetting::Off);
        assert!(s.census);
        assert_eq!(
            settings("`x` Census: allow").unwrap_err().message,
            "no paths after `Census: allow`"
        );
    }

    #[test]
    fn the_census_can_be_switched_off_and_nothing_else() {
        assert!(!settings("`x` passes; Census: off").unwrap().census);
        assert_eq!(
            settings("`x` Census: fewer").unwrap_err().message,
            "unknown census setting \"fewer\""
        );
        // A word ending in "census" is not the key.
        assert!(settings("`x` precensus: yes").unwrap().census);
    }
}
