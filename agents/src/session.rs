//! An agent's private state in one attempt: the directory its CLI keeps its config home
//! in, lent the user's login, and the session an implementer continues from one iteration
//! to the next.
//!
//! Everything lives under the attempt's state dir (`<private>/state/agents/<agent>/`), so no
//! session leaks into another attempt or into the user's own CLI configuration.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use goalpost_shared::protocol::Usage;
use serde::{Deserialize, Serialize};

use crate::TurnRequest;
use crate::cli::CliTurn;

/// The file, in an agent's state dir, naming the session to continue.
const SESSION_FILE: &str = "session.json";

/// A CLI's session: its id, and the usage the CLI last reported for it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct Session {
    pub id: String,
    pub totals: Usage,
}

/// The state dir of agent `name` for the turn `request` belongs to: `<state>/agents/<name>`,
/// where `<state>` is the attempt's state directory named by `GOALPOST_STATE_DIR`, else
/// (a turn of no attempt, such as a best-of-n selection) `goalpost-state` in the turn's
/// `TMPDIR`: the places a confined agent may write besides its worktree.
pub(crate) fn state_dir(request: &TurnRequest<'_>, name: &str) -> PathBuf {
    let var = |key: &str| {
        request
            .env
            .get(std::ffi::OsStr::new(key))
            .map(PathBuf::from)
    };
    let state = var("GOALPOST_STATE_DIR")
        .or_else(|| var("TMPDIR").map(|tmp| tmp.join("goalpost-state")))
        .unwrap_or_else(|| {
            // Prompt files live in `<private>/prompts/`.
            request
                .prompt_file
                .parent()
                .and_then(Path::parent)
                .unwrap_or(request.cwd)
                .join("state")
        });
    state.join("agents").join(safe_name(name))
}

/// An agent's name as one path component.
fn safe_name(name: &str) -> String {
    name.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                c
            } else {
                '_'
            }
        })
        .collect()
}

/// The session to continue, if an earlier turn left one.
pub(crate) fn load(dir: &Path) -> Option<Session> {
    let text = fs::read_to_string(dir.join(SESSION_FILE)).ok()?;
    serde_json::from_str(&text).ok()
}

pub(crate) fn save(dir: &Path, session: &Session) -> io::Result<()> {
    fs::create_dir_all(dir)?;
    let text = serde_json::to_string_pretty(session).map_err(io::Error::other)?;
    let tmp = dir.join(format!("{SESSION_FILE}.tmp"));
    fs::write(&tmp, text)?;
    fs::rename(tmp, dir.join(SESSION_FILE))
}

/// Drops the session: the next turn starts a fresh one.
pub(crate) fn forget(dir: &Path) {
    let _ = fs::remove_file(dir.join(SESSION_FILE));
}

/// Links `from` at `to` (or copies it where links are not possible), replacing `to`.
/// Used to lend an attempt's private CLI home the user's login, read-only by intent.
pub(crate) fn lend(from: &Path, to: &Path) -> io::Result<()> {
    if !from.is_file() {
        return Ok(());
    }
    let _ = fs::remove_file(to);
    if std::os::unix::fs::symlink(from, to).is_err() {
        fs::copy(from, to)?;
    }
    Ok(())
}

/// The user's own directory for a CLI: the variable `var` of the agent's environment, or
/// `$HOME/<default>`.
pub(crate) fn user_dir(turn: &CliTurn<'_>, var: &str, default: &str) -> Option<PathBuf> {
    if let Some(dir) = turn.env(var) {
        return Some(PathBuf::from(dir));
    }
    turn.env("HOME").map(|home| Path::new(home).join(default))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_session_is_kept_and_forgotten() {
        let dir = tempfile::tempdir().unwrap();
        let state = dir.path().join("agents/coder");
        assert_eq!(load(&state), None);
        let session = Session {
            id: "abc".into(),
            totals: Usage {
                tokens_in: 5,
                ..Usage::default()
            },
        };
        save(&state, &session).unwrap();
        assert_eq!(load(&state), Some(session));
        forget(&state);
        assert_eq!(load(&state), None);
    }

    #[test]
    fn the_state_dir_is_where_a_confined_agent_may_write() {
        let mut request = TurnRequest {
            role: goalpost_shared::protocol::Role::Reviewer,
            iteration: 0,
            prompt: "",
            cwd: Path::new("/w"),
            env: Default::default(),
            prompt_file: PathBuf::from("/p/prompts/select.md"),
            timeout: std::time::Duration::from_secs(1),
            cancel: None,
            tree: None,
            confine: None,
            verdict_schema: None,
        };
        assert_eq!(state_dir(&request, "c"), Path::new("/p/state/agents/c"));
        request.env.insert("TMPDIR".into(), "/p/tmp".into());
        assert_eq!(
            state_dir(&request, "c"),
            Path::new("/p/tmp/goalpost-state/agents/c")
        );
        request
            .env
            .insert("GOALPOST_STATE_DIR".into(), "/p/state".into());
        assert_eq!(state_dir(&request, "c"), Path::new("/p/state/agents/c"));
    }

    #[test]
    fn agent_names_are_one_path_component() {
        assert_eq!(safe_name("../x y"), "___x_y");
    }
}
