//! Starting the auditor: a separate process with a cleared environment plus an
//! allow-list, its own fresh worktree, and only the contract, the two commits and the
//! claims as input.

use std::ffi::OsString;
use std::path::Path;

use goalpost_shared::process;
use goalpost_shared::protocol::{AuditInput, AuditReport};

use crate::attempt::{PARENT_PID_VAR, parent_pid, sibling_binary};

/// All the auditor and the checks it runs inherit from goalpost's environment.
pub const AUDITOR_ENV_ALLOW: &[&str] = &["PATH", "LANG", "LC_ALL", "TZ"];

/// Per-check timeout of an audit when the plan sets no wall budget.
pub const DEFAULT_CHECK_TIMEOUT_SECS: u64 = 30 * 60;

/// Runs the auditor on `input` and reads its report.
pub fn run_auditor(input: &AuditInput) -> Result<AuditReport, String> {
    let dir = &input.report_dir;
    std::fs::create_dir_all(dir).map_err(|e| format!("creating {}: {e}", dir.display()))?;
    let in_path = dir.join("audit-input.json");
    let json = serde_json::to_vec_pretty(input).map_err(|e| e.to_string())?;
    std::fs::write(&in_path, json).map_err(|e| format!("writing {}: {e}", in_path.display()))?;
    let bin = sibling_binary("goalpost-auditor", "GOALPOST_AUDITOR_BIN");
    let cwd = input.repo.clone();
    let cmd = process::Command::new(bin.as_os_str(), cwd)
        .arg("--input")
        .arg(in_path.as_os_str())
        .envs(auditor_env())
        .output_cap(256 * 1024);
    let outcome = process::run(&cmd, None).map_err(|e| format!("starting the auditor: {e}"))?;
    let log = dir.join("auditor.log");
    let _ = std::fs::write(&log, outcome.stderr.text_lossy());
    if !outcome.success() {
        return Err(format!(
            "the auditor exited with {}: {}",
            outcome.status,
            outcome.stderr.tail(2000)
        ));
    }
    read_report(dir)
}

fn auditor_env() -> std::collections::BTreeMap<OsString, OsString> {
    let mut env = process::env_allowlist(AUDITOR_ENV_ALLOW);
    env.insert(OsString::from(PARENT_PID_VAR), parent_pid());
    env
}

pub fn read_report(dir: &Path) -> Result<AuditReport, String> {
    let path = dir.join("audit.json");
    let bytes = std::fs::read(&path)
        .map_err(|e| format!("reading the audit report {}: {e}", path.display()))?;
    serde_json::from_slice(&bytes)
        .map_err(|e| format!("the audit report {} is not valid: {e}", path.display()))
}
