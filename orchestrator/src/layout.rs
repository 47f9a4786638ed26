//! Where a run keeps its files: the state store and reports in the repository's common
//! git dir, attempt and audit worktrees outside the user's working tree.

use std::path::{Path, PathBuf};

use goalpost_shared::plan::{Network, Plan};
use goalpost_shared::protocol::SandboxSpec;

/// The paths of one repository's goalpost files.
#[derive(Debug, Clone)]
pub struct Layout {
    /// `<common git dir>/goalpost`
    pub state_dir: PathBuf,
    /// Root of every worktree goalpost makes for this repository.
    pub worktree_root: PathBuf,
}

impl Layout {
    /// `common_dir` is the repository's common git dir; `workdir` its main working tree.
    ///
    /// Worktrees live outside the repository so that tools walking up from a worktree
    /// (cargo looking for a workspace root, npm for a package.json) never find the user's
    /// own checkout: `$GOALPOST_WORKTREES`, else `$XDG_DATA_HOME/goalpost/worktrees`, else
    /// `~/.local/share/goalpost/worktrees`, then `<repo name>-<hash of its git dir>`.
    pub fn new(common_dir: &Path, workdir: &Path) -> Layout {
        let state_dir = common_dir.join("goalpost");
        let base = std::env::var_os("GOALPOST_WORKTREES")
            .map(PathBuf::from)
            .or_else(|| {
                std::env::var_os("XDG_DATA_HOME")
                    .map(|d| PathBuf::from(d).join("goalpost").join("worktrees"))
            })
            .or_else(|| {
                std::env::var_os("HOME").map(|h| {
                    PathBuf::from(h)
                        .join(".local")
                        .join("share")
                        .join("goalpost")
                        .join("worktrees")
                })
            })
            .unwrap_or_else(|| std::env::temp_dir().join("goalpost-worktrees"));
        let name = workdir
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_else(|| "repo".into());
        let worktree_root = base.join(format!("{name}-{:08x}", fnv1a(common_dir)));
        Layout {
            state_dir,
            worktree_root,
        }
    }

    /// The sandbox every agent turn and check of a run of `plan` gets: goalpost's state,
    /// its worktrees and the held-out checks' files hidden (a child still sees what it may
    /// write inside them), the
    /// temp dirs capped at the plan's `tmp_mb`, and the checks offline with
    /// `network = "none"`.
    pub fn sandbox(&self, plan: &Plan) -> SandboxSpec {
        SandboxSpec {
            hidden: [self.state_dir.clone(), self.worktree_root.clone()]
                .into_iter()
                .chain(crate::audit::held_out_dir(plan))
                .collect(),
            tmp_bytes: plan
                .settings
                .budget
                .tmp_mb
                .as_ref()
                .map_or(0, |mb| mb.value.saturating_mul(1 << 20)),
            offline_checks: plan.settings.network.value == Network::None,
            package_cache: None,
        }
    }

    pub fn store(&self) -> PathBuf {
        self.state_dir.join("state.db")
    }

    pub fn run_dir(&self, run: &str) -> PathBuf {
        self.state_dir.join("runs").join(run)
    }

    /// The implementer's worktree of one attempt.
    pub fn attempt_worktree(&self, run: &str, phase: &str, n: u32) -> PathBuf {
        self.worktree_root.join(run).join(format!("{phase}.{n}"))
    }

    /// The attempt's private directory: prompts, agent logs, temp dir. Never given to the
    /// auditor.
    pub fn attempt_dir(&self, run: &str, phase: &str, n: u32) -> PathBuf {
        self.run_dir(run)
            .join("attempts")
            .join(format!("{phase}.{n}"))
    }

    /// A fresh worktree for audit number `k` of the run.
    pub fn audit_worktree(&self, run: &str, label: &str, k: u32) -> PathBuf {
        self.worktree_root
            .join(run)
            .join(format!("audit-{label}-{k}"))
    }

    pub fn audit_dir(&self, run: &str, label: &str, k: u32) -> PathBuf {
        self.run_dir(run)
            .join("audits")
            .join(format!("{label}-{k}"))
    }

    pub fn stop_report(&self, run: &str) -> PathBuf {
        self.run_dir(run).join("report.md")
    }
}

/// The ref of a run's integration tip.
pub fn integration_ref(run: &str) -> String {
    format!("refs/goalpost/{run}/integration")
}

/// The ref of one attempt.
pub fn attempt_ref(run: &str, phase: &str, n: u32) -> String {
    format!("refs/goalpost/{run}/{phase}/{n}")
}

fn fnv1a(path: &Path) -> u32 {
    let mut h: u32 = 0x811c_9dc5;
    for b in path.as_os_str().as_encoded_bytes() {
        h ^= u32::from(*b);
        h = h.wrapping_mul(0x0100_0193);
    }
    h
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn worktrees_are_outside_the_repository() {
        let l = Layout::new(Path::new("/r/repo/.git"), Path::new("/r/repo"));
        let wt = l.attempt_worktree("r1", "lexer", 2);
        assert!(!wt.starts_with("/r/repo"), "{}", wt.display());
        assert!(wt.ends_with("r1/lexer.2"));
        assert_eq!(l.store(), Path::new("/r/repo/.git/goalpost/state.db"));
    }

    #[test]
    fn refs_are_namespaced_by_run() {
        assert_eq!(integration_ref("r1"), "refs/goalpost/r1/integration");
        assert_eq!(attempt_ref("r1", "lexer", 3), "refs/goalpost/r1/lexer/3");
    }
}
