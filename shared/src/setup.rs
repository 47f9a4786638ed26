//! A checkout made ready for its checks: the contract's setup commands (installing the
//! project's dependencies) run in order in the checkout's root, confined like the checks,
//! and the package caches they write to.
//!
//! The worker runs the setup before the first turn of every round, in the attempt's
//! worktree; the auditor runs it in every audit checkout before the checks, on the
//! candidate's own tree (its lockfile, its manifest). A setup that fails is not a failing
//! check: the worker stops the attempt as blocked and the audit says `revise`, each with
//! the setup's output.

use std::collections::BTreeMap;
use std::ffi::OsString;
use std::path::Path;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use crate::check::run_check;
use crate::confine::Confinement;
use crate::contract::{Check, CheckKind, Setup};
use crate::protocol::CommandRecord;

/// What a setup did: every command that ran, as evidence, and why it failed, if it did.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct SetupRecord {
    pub commands: Vec<CommandRecord>,
    /// The command that failed and how ("`npm ci` failed: exit status 1").
    pub failure: Option<String>,
}

impl SetupRecord {
    pub fn failed(&self) -> bool {
        self.failure.is_some()
    }

    /// The last lines of the failed command's output, for a stop report or an audit
    /// summary.
    pub fn output_tail(&self, lines: usize) -> String {
        let Some(last) = self.commands.last() else {
            return String::new();
        };
        let text = format!("{}{}", last.stdout, last.stderr);
        let all: Vec<&str> = text.lines().filter(|l| !l.trim().is_empty()).collect();
        all[all.len().saturating_sub(lines)..].join("\n")
    }
}

/// Runs `setup`'s commands in `cwd` with exactly `env`, one after the other, all of them
/// within the setup's time limit; the first that fails ends it. Keeps at most
/// `output_cap` bytes of each output stream.
pub fn run_setup(
    setup: &Setup,
    cwd: &Path,
    env: &BTreeMap<OsString, OsString>,
    output_cap: usize,
    confine: Option<&Confinement>,
) -> SetupRecord {
    let mut record = SetupRecord::default();
    let limit = Duration::from_secs(setup.timeout_secs.max(1));
    let started = Instant::now();
    for cmd in &setup.commands {
        let left = limit.saturating_sub(started.elapsed());
        let check = Check {
            text: cmd.clone(),
            kind: CheckKind::Machine {
                command: cmd.value.clone(),
                metric: None,
            },
        };
        let result = run_check(
            &check,
            cwd,
            env,
            left.max(Duration::from_millis(1)),
            output_cap,
            confine,
        );
        record.commands.push(result.record);
        if let Some(why) = result.failure {
            let why = if why.starts_with("timed out") {
                format!(
                    "timed out: the setup may take {}s (`setup_timeout`)",
                    setup.timeout_secs
                )
            } else {
                why
            };
            record.failure = Some(format!("`{}` failed: {why}", cmd.value));
            break;
        }
    }
    record
}

/// The environment that points the package managers' writes at `cache`, a writable
/// directory of the run's attempts or of one audit: npm, pip, uv, Go's module and build
/// caches, and `GOALPOST_CACHE` itself for anything else (`CARGO_HOME` is left as it
/// is: cargo finds its toolchain and the user's registry there).
pub fn cache_env(cache: &Path) -> Vec<(OsString, OsString)> {
    let at = |sub: &str| cache.join(sub).into_os_string();
    vec![
        ("GOALPOST_CACHE".into(), cache.as_os_str().to_owned()),
        ("npm_config_cache".into(), at("npm")),
        ("PIP_CACHE_DIR".into(), at("pip")),
        ("UV_CACHE_DIR".into(), at("uv")),
        ("GOMODCACHE".into(), at("go-mod")),
        ("GOCACHE".into(), at("go-build")),
        // Go makes its module cache read-only, which would keep the run's cleanup from
        // removing it.
        ("GOFLAGS".into(), "-modcacherw".into()),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::contract::Spanned;
    use crate::process;

    fn setup(commands: &[&str], timeout_secs: u64) -> Setup {
        Setup {
            commands: commands
                .iter()
                .map(|c| Spanned::new((*c).to_owned(), 2, 10))
                .collect(),
            timeout_secs,
        }
    }

    #[test]
    fn commands_run_in_order_and_the_first_failure_ends_the_setup() {
        let dir = tempfile::tempdir().expect("temp dir");
        let env = process::env_allowlist(&["PATH"]);
        let s = setup(
            &["echo one > a", "cat a; echo broken >&2; exit 3", "touch c"],
            60,
        );
        let record = run_setup(&s, dir.path(), &env, 4096, None);
        assert_eq!(record.commands.len(), 2);
        assert_eq!(
            record.failure.as_deref(),
            Some("`cat a; echo broken >&2; exit 3` failed: exit status 3")
        );
        assert_eq!(record.output_tail(5), "one\nbroken");
        assert!(!dir.path().join("c").exists());
    }

    #[test]
    fn the_time_limit_covers_all_the_commands() {
        let dir = tempfile::tempdir().expect("temp dir");
        let env = process::env_allowlist(&["PATH"]);
        let s = setup(&["true", "exec sleep 30"], 1);
        let record = run_setup(&s, dir.path(), &env, 4096, None);
        let failure = record.failure.expect("timed out");
        assert!(failure.contains("timed out"), "{failure}");
        assert!(failure.contains("setup_timeout"), "{failure}");
    }
}
