//! Starting the auditor: a separate process with a cleared environment plus an
//! allow-list, its own fresh worktree, and only the contract, the two commits and the
//! claims as input.

use std::ffi::OsString;
use std::path::{Path, PathBuf};

use goalpost_shared::contract::Contract;
use goalpost_shared::git::Oid;
use goalpost_shared::plan::Plan;
use goalpost_shared::protocol::{AuditInput, HeldOutSpec, SandboxSpec, Usage};
use goalpost_shared::verdict::{AuditAgentSpec, SHIPPED_SKILL, SKILL};

use crate::attempt::WORKER_ENV_ALLOW;
use crate::layout::Layout;

/// All the auditor and the checks it runs inherit from goalpost's environment, besides
/// the user's toolchain homes ([`toolchain_homes`]).
pub const AUDITOR_ENV_ALLOW: &[&str] = &["PATH", "LANG", "LC_ALL", "TZ"];

/// Where the user's Rust toolchain and cargo registry are: `CARGO_HOME` and `RUSTUP_HOME`
/// as set, or `~/.cargo` and `~/.rustup` when those exist. The audit's checks have a
/// private `HOME`, where rustup's `cargo` would find no toolchain; these, read-only in
/// their sandbox, let them build with the user's toolchain and downloaded crates.
pub fn toolchain_homes() -> Vec<(OsString, OsString)> {
    let home = std::env::var_os("HOME").map(PathBuf::from);
    [("CARGO_HOME", ".cargo"), ("RUSTUP_HOME", ".rustup")]
        .into_iter()
        .filter_map(|(var, dir)| {
            let path = std::env::var_os(var)
                .map(PathBuf::from)
                .or_else(|| home.as_ref().map(|h| h.join(dir)).filter(|p| p.is_dir()))?;
            Some((OsString::from(var), path.into_os_string()))
        })
        .collect()
}

/// Per-check timeout of an audit when the plan sets no wall budget.
pub const DEFAULT_CHECK_TIMEOUT_SECS: u64 = 30 * 60;

/// What every audit of one run is given alike, whoever starts it (the run loop, `approve`,
/// `goalpost audit`): the repository, what is always protected, how long a check may run,
/// and whether checks run confined.
#[derive(Debug, Clone)]
pub struct AuditSetup {
    pub run_id: String,
    pub workdir: PathBuf,
    /// Repository-relative paths protected in every audit: the plan file.
    pub always_protected: Vec<String>,
    pub check_timeout_secs: u64,
    pub unconfined: bool,
    pub sandbox: SandboxSpec,
    /// Where the held-out checks' files are and what a failing one tells the implementer;
    /// given to the audits whose contract has held-out checks.
    pub held_out: HeldOutSpec,
    /// The auditor agent (`roles.auditor`), with its per-audit budget.
    pub agent: Option<AuditAgentSpec>,
}

/// What one audit judges.
#[derive(Debug, Clone)]
pub struct AuditOf {
    pub phase: String,
    pub contract: Contract,
    pub base: Oid,
    pub candidate: Oid,
    pub claims: Vec<String>,
    /// The audit's own checkout, and where its report goes.
    pub worktree: PathBuf,
    pub report_dir: PathBuf,
}

impl AuditSetup {
    /// The setup of run `run_id` of `plan` on the repository at `workdir`, whose goal file
    /// is at `plan_path` (protected when it lies in the repository): a check may run as
    /// long as the per-attempt wall budget.
    pub fn for_run(
        run_id: &str,
        layout: &Layout,
        workdir: &Path,
        plan: &Plan,
        plan_path: &Path,
        unconfined: bool,
    ) -> Self {
        let always_protected = plan_in_repo(plan_path, workdir).into_iter().collect();
        Self::new(run_id, layout, workdir, plan, always_protected, unconfined)
    }

    /// As [`AuditSetup::for_run`], with the always protected paths given.
    pub fn new(
        run_id: &str,
        layout: &Layout,
        workdir: &Path,
        plan: &Plan,
        always_protected: Vec<String>,
        unconfined: bool,
    ) -> Self {
        AuditSetup {
            run_id: run_id.to_owned(),
            workdir: workdir.to_owned(),
            always_protected,
            check_timeout_secs: plan
                .settings
                .budget
                .wall
                .as_ref()
                .map(|w| w.value.duration.as_secs().max(1))
                .unwrap_or(DEFAULT_CHECK_TIMEOUT_SECS),
            unconfined,
            sandbox: layout.sandbox(plan),
            held_out: HeldOutSpec {
                dir: held_out_dir(plan),
                into: plan.settings.held_out.into_path().to_owned(),
                feedback: plan.settings.held_out.feedback.value,
            },
            agent: auditor_agent(plan),
        }
    }

    /// Leaves the auditor agent of every audit set up from here at most what the run's
    /// `[run_budget.audit]` leaves once `spent` is spent: nothing left, and the next audit's
    /// agent fails closed without a turn.
    pub fn with_run_audit_spent(mut self, plan: &Plan, spent: &Usage) -> Self {
        let run = &plan.settings.run_budget.audit;
        if let Some(agent) = &mut self.agent {
            if let Some(limit) = &run.tokens {
                let left = limit
                    .value
                    .saturating_sub(spent.tokens_in + spent.tokens_out);
                agent.tokens = Some(agent.tokens.map_or(left, |t| t.min(left)));
            }
            if let Some(limit) = &run.cost_usd {
                let left = (limit.value - spent.cost_usd).max(0.0);
                agent.cost_usd = Some(agent.cost_usd.map_or(left, |c| c.min(left)));
            }
        }
        self
    }

    /// The auditor's input for `of`.
    pub fn input(&self, of: AuditOf) -> AuditInput {
        AuditInput {
            run_id: self.run_id.clone(),
            phase: of.phase,
            repo: self.workdir.clone(),
            worktree: of.worktree,
            base: of.base.to_string(),
            candidate: of.candidate.to_string(),
            held_out: (!of.contract.held_out.is_empty()).then(|| self.held_out.clone()),
            contract: of.contract,
            always_protected: self.always_protected.clone(),
            claims: of.claims,
            report_dir: of.report_dir,
            check_timeout_secs: self.check_timeout_secs,
            unconfined: self.unconfined,
            sandbox: self.sandbox.clone(),
            agent: self.agent.clone(),
        }
    }
}

/// How long the auditor agent's turn may take when `[budget.audit]` sets no `wall`.
pub const DEFAULT_AUDIT_AGENT_SECS: u64 = 15 * 60;

/// The auditor agent of `plan`'s audits: the agent `roles.auditor` names, the audit
/// skill (`audit_skill`, else goalpost's own), the user's environment its CLI needs (the
/// workers' allow-list, read from goalpost's own environment) and the `[budget.audit]`
/// limits. A skill file that cannot be read leaves the skill empty, and the agent fails
/// closed (`goalpost run` refuses such a goal file before it starts).
pub fn auditor_agent(plan: &Plan) -> Option<AuditAgentSpec> {
    let settings = &plan.settings;
    let name = settings.roles.auditor.as_ref()?;
    let def = settings.agents.get(&name.value)?;
    let (skill, skill_source) = match plan.audit_skill_path() {
        Some(path) => (
            std::fs::read_to_string(&path).unwrap_or_default(),
            path.display().to_string(),
        ),
        None => (SKILL.to_owned(), SHIPPED_SKILL.to_owned()),
    };
    let env = WORKER_ENV_ALLOW
        .iter()
        .filter(|name| **name != "TMPDIR")
        .filter_map(|name| Some(((*name).to_owned(), std::env::var(name).ok()?)))
        .collect();
    let budget = &settings.budget.audit;
    Some(AuditAgentSpec {
        agent: crate::attempt::agent_spec(def, &settings.prices),
        skill,
        skill_source,
        env,
        timeout_secs: budget.wall.as_ref().map_or(DEFAULT_AUDIT_AGENT_SECS, |w| {
            w.value.duration.as_secs().max(1)
        }),
        tokens: budget.tokens.as_ref().map(|t| t.value),
        cost_usd: budget.cost_usd.as_ref().map(|c| c.value),
    })
}

/// The held-out checks' directory of `plan`, with its links resolved (the auditor and the
/// sandbox do not share goalpost's working directory, and a sandbox hides real paths).
pub fn held_out_dir(plan: &Plan) -> Option<PathBuf> {
    let dir = plan.held_out_dir()?;
    Some(
        std::fs::canonicalize(&dir)
            .or_else(|_| std::path::absolute(&dir))
            .unwrap_or(dir),
    )
}

/// The goal file's path relative to the repository's working tree, when it lies inside it.
pub fn plan_in_repo(plan: &Path, workdir: &Path) -> Option<String> {
    let plan = std::fs::canonicalize(plan).ok()?;
    let workdir = std::fs::canonicalize(workdir).ok()?;
    plan.strip_prefix(&workdir)
        .ok()
        .map(|p| p.to_string_lossy().replace('\\', "/"))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    const GOAL: &str = "+++\n[budget]\nwall = \"90s\"\n+++\n# Goal: g\n\n## Outcome\nDone.\n\n## Verification surface\n- `true` passes\n";

    #[test]
    fn every_audit_of_a_run_protects_its_goal_file_when_it_lies_in_the_repository() {
        let tmp = tempfile::tempdir().unwrap();
        let repo = tmp.path().join("repo");
        std::fs::create_dir_all(repo.join("plans")).unwrap();
        let inside = repo.join("plans/goal.md");
        let outside = tmp.path().join("goal.md");
        for path in [&inside, &outside] {
            std::fs::write(path, GOAL).unwrap();
        }
        let plan = goalpost_shared::goal::parse(&inside, GOAL).unwrap();

        let layout = Layout::new(&repo.join(".git"), &repo);
        let setup = AuditSetup::for_run("r1", &layout, &repo, &plan, &inside, false);
        assert_eq!(setup.always_protected, ["plans/goal.md"]);
        assert_eq!(setup.check_timeout_secs, 90);
        let input = setup.input(AuditOf {
            phase: "p".into(),
            contract: plan.phases[0].contract.clone(),
            base: Oid::ZERO_SHA1,
            candidate: Oid::ZERO_SHA1,
            claims: vec!["tests pass".into()],
            worktree: tmp.path().join("wt"),
            report_dir: tmp.path().join("report"),
        });
        assert_eq!(input.always_protected, ["plans/goal.md"]);
        assert_eq!(input.check_timeout_secs, 90);
        assert_eq!(input.claims, ["tests pass"]);
        // Goalpost's state and worktrees are hidden from the checks.
        assert_eq!(
            input.sandbox.hidden,
            [layout.state_dir.clone(), layout.worktree_root.clone()]
        );
        assert!(!input.sandbox.offline_checks);

        let setup = AuditSetup::for_run("r1", &layout, &repo, &plan, &outside, true);
        assert!(setup.always_protected.is_empty());
        assert!(setup.unconfined);
    }
}
