//! What the orchestrator, the worker and the auditor say to each other. Each side reads
//! and writes these as JSON files, so the three stay separate processes that share no
//! code path, only this vocabulary.

use std::collections::BTreeMap;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use crate::contract::Contract;
use crate::plan::{Adapter, Budget, HeldOutFeedback, Price};

/// An agent as the worker starts it: everything resolved, nothing looked up later.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AgentSpec {
    pub name: String,
    pub adapter: Adapter,
    /// For `command`: the argv. For the others: the executable (and leading arguments).
    pub command: Vec<String>,
    pub args: Vec<String>,
    pub model: Option<String>,
    /// Environment added to the allow-listed one.
    pub env: BTreeMap<String, String>,
    /// The goal file's price for the agent's model, for turns whose CLI reports no cost.
    #[serde(default)]
    pub price: Option<Price>,
}

/// Why a worker round was started with feedback.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Feedback {
    /// The auditor recommended `revise`; its Markdown report is the feedback.
    Audit { report_markdown: String },
    /// The candidate conflicted with the integration tip. The worktree holds the merge
    /// of the new base and the old candidate, with conflict markers in `paths`.
    Conflict {
        paths: Vec<String>,
        previous_candidate: String,
    },
}

/// A file of this name in a worker's `private_dir` asks it to stop at the next safe
/// boundary: the running turn finishes and is harvested, no turn starts after it.
pub const STOP_FILE: &str = "stop";

/// The file, in a worker's `private_dir`, where it reports its round as it goes: one
/// [`WorkerEvent`] as JSON a line, appended, never rewritten. Agents cannot write there
/// (their confinement leaves them the `tmp` and `state` folders of `private_dir` only);
/// what it says is shown as progress, never used to decide anything.
pub const PROGRESS_FILE: &str = "progress.jsonl";

/// The folder of a worker's `private_dir` where goalpost keeps its own index of the
/// attempt's worktree and stages a harvest's objects (see
/// [`crate::git::WorktreeView`]); no agent can write there. The orchestrator's dirty
/// scans of that worktree read the same index.
pub const HARVEST_DIR: &str = "harvest";

/// What a worker reports while its round goes on (see [`PROGRESS_FILE`]).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum WorkerEvent {
    /// An agent's turn starts.
    TurnStarted { iteration: u32, role: Role },
    /// It ended: `usage` is the turn's own, `round_usage` all the round has used so far.
    TurnFinished {
        iteration: u32,
        role: Role,
        usage: Usage,
        round_usage: Usage,
        error: Option<String>,
    },
    /// The iteration's machine checks ran.
    ChecksFinished {
        iteration: u32,
        passed: u32,
        failed: u32,
    },
}

/// The worker's whole input: one attempt (or one more round of it).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WorkerInput {
    pub run_id: String,
    pub phase: String,
    pub phase_title: String,
    /// 1-based attempt number within the phase.
    pub attempt: u32,
    /// The plan's title, for prompts.
    pub plan_title: String,
    /// The repository's common git dir. The worker's own git commands open the repository
    /// from here, never through the worktree's `.git` file, which an agent can rewrite.
    pub repo: PathBuf,
    /// The attempt's worktree: the agents' cwd. Detached HEAD at `base` on the first round.
    pub worktree: PathBuf,
    /// The phase's base commit (integration tip when the phase became ready, or the new
    /// tip after a conflict).
    pub base: String,
    /// The ref the worker moves to every harvested commit (`refs/goalpost/<run>/<phase>/<n>`).
    pub attempt_ref: String,
    /// The commit the attempt ref holds now, if any (a continued attempt).
    pub resume_from: Option<String>,
    /// Iteration number of the first implementer turn of this round (1-based).
    pub first_iteration: u32,
    /// The phase's effective contract, without its held-out checks.
    pub contract: Contract,
    /// How many held-out checks the audit runs: the agents are told they exist, never
    /// what they are.
    #[serde(default)]
    pub held_out_checks: u32,
    pub implementer: AgentSpec,
    pub reviewer: Option<AgentSpec>,
    /// What is left of the attempt's budget.
    pub budget: Budget,
    /// Iterations without progress before the attempt is blocked.
    pub no_progress_limit: u32,
    /// Implementer iterations this round may use at most.
    pub max_iterations: u32,
    pub feedback: Option<Feedback>,
    /// A directory of the attempt's own: prompt files, agent logs, temp dir.
    pub private_dir: PathBuf,
    /// Names of environment variables passed through to agents and checks.
    pub env_allow: Vec<String>,
    /// Extra environment for agents only (never for the auditor).
    pub agent_env: BTreeMap<String, String>,
    /// Run agents and checks without Landlock (`goalpost run --unconfined`); by default
    /// they may write only in the worktree, its git metadata and the attempt's temp and
    /// state directories and object quarantine (see [`crate::confine`]).
    #[serde(default)]
    pub unconfined: bool,
    /// What the sandboxes of its agent turns and checks hide, and their temp dirs' size.
    #[serde(default)]
    pub sandbox: SandboxSpec,
}

/// How the orchestrator wants every sandbox of a worker, an auditor or a selection made,
/// beyond where it may write (see [`crate::confine::Confinement`]).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct SandboxSpec {
    /// Directories no agent turn or check sees: goalpost's state dir (its store, locks,
    /// prompts, inputs and results) and the root of goalpost's worktrees (the other
    /// attempts' and the audits'). What a child may write inside them stays visible.
    pub hidden: Vec<PathBuf>,
    /// The size cap of each turn's and each check's temp dir, in bytes; 0 for
    /// [`crate::confine::DEFAULT_SCRATCH_BYTES`].
    pub tmp_bytes: u64,
    /// Checks run with no network but a loopback device of their own (`network = "none"`).
    pub offline_checks: bool,
    /// The run's package cache of the attempts, writable to their setup, turns and checks
    /// (see [`crate::setup::cache_env`]); audits never get it, each has its own.
    #[serde(default)]
    pub package_cache: Option<PathBuf>,
}

impl SandboxSpec {
    /// The temp dirs' size cap in bytes.
    pub fn tmp_bytes(&self) -> u64 {
        if self.tmp_bytes == 0 {
            crate::confine::DEFAULT_SCRATCH_BYTES
        } else {
            self.tmp_bytes
        }
    }
}

/// One command goalpost ran, as evidence.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CommandRecord {
    pub argv: Vec<String>,
    pub cwd: PathBuf,
    pub exit_code: Option<i32>,
    pub signal: Option<i32>,
    pub duration_ms: u64,
    /// Output, capped.
    pub stdout: String,
    pub stderr: String,
    pub truncated: bool,
    pub timed_out: bool,
    /// The git tree id the command ran on, when it ran in a worktree.
    pub tree: Option<String>,
    /// What goalpost measured of the run, where the command could not reach.
    #[serde(default, skip_serializing_if = "Measured::is_empty")]
    pub measured: Measured,
}

/// What goalpost measured of a command from outside it: the kernel's count of its CPU
/// time and memory, and the output the sandbox cut off when the command exited.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Measured {
    /// User and system CPU time of the command and the processes it waited for.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cpu_ms: Option<u64>,
    /// The peak resident memory of the largest of them, in KiB.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_rss_kb: Option<u64>,
    /// Bytes of output the command's processes wrote after it had exited, which were not
    /// read (only a confined command's are cut off and counted).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub late_bytes: u64,
}

impl Measured {
    pub fn is_empty(&self) -> bool {
        *self == Measured::default()
    }
}

fn is_zero(n: &u64) -> bool {
    *n == 0
}

impl CommandRecord {
    /// The record of `argv` in `cwd` before it ran (or when it never does): no exit
    /// status, no output, no time.
    pub fn not_run(argv: Vec<String>, cwd: PathBuf) -> CommandRecord {
        CommandRecord {
            argv,
            cwd,
            exit_code: None,
            signal: None,
            duration_ms: 0,
            stdout: String::new(),
            stderr: String::new(),
            truncated: false,
            timed_out: false,
            tree: None,
            measured: Measured::default(),
        }
    }

    pub fn succeeded(&self) -> bool {
        self.exit_code == Some(0) && !self.timed_out
    }
}

/// A machine check's result.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CheckResult {
    /// The check as written in the goal file.
    pub check: String,
    pub line: u32,
    pub command: String,
    pub record: CommandRecord,
    /// The metric named by the check, read from the output.
    pub metric: Option<MetricReading>,
    pub passed: bool,
    /// Why it failed, in a few words ("exit status 1", "p95_ms=91 is not below 80", ...).
    pub failure: Option<String>,
    /// The auditor's canary and test census for this check (see [`crate::integrity`]);
    /// absent from the worker's informational runs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub integrity: Option<crate::integrity::CheckIntegrity>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MetricReading {
    pub name: String,
    pub value: Option<f64>,
    pub target: f64,
    pub op: crate::contract::MetricOp,
}

/// Tokens, cost and activity of one or more turns.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Usage {
    pub tokens_in: u64,
    pub tokens_out: u64,
    pub tokens_cached: u64,
    pub cost_usd: f64,
    pub turns: u32,
    pub tool_calls: u64,
    pub wall_ms: u64,
}

impl Usage {
    pub fn add(&mut self, other: &Usage) {
        self.tokens_in += other.tokens_in;
        self.tokens_out += other.tokens_out;
        self.tokens_cached += other.tokens_cached;
        self.cost_usd += other.cost_usd;
        self.turns += other.turns;
        self.tool_calls += other.tool_calls;
        self.wall_ms += other.wall_ms;
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    Implementer,
    Reviewer,
    Auditor,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Implementer => "implementer",
            Role::Reviewer => "reviewer",
            Role::Auditor => "auditor",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Verdict {
    Approve,
    Changes,
    Blocked,
}

/// One agent turn, as recorded.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TurnRecord {
    pub role: Role,
    pub iteration: u32,
    pub agent: String,
    pub record: CommandRecord,
    pub usage: Usage,
    /// The agent's final message.
    pub message: String,
    /// Reviewer only.
    pub verdict: Option<Verdict>,
    /// Set when the turn failed (non-zero exit, timeout, unreadable output).
    pub error: Option<String>,
    /// The shell commands the agent ran, as its CLI reported them.
    #[serde(default)]
    pub commands: Vec<String>,
}

/// One implementer → harvest → checks → reviewer cycle.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct IterationRecord {
    pub iteration: u32,
    pub implementer: TurnRecord,
    /// The harvested commit; `None` when the turn changed nothing.
    pub commit: Option<String>,
    pub tree: String,
    pub checks: Vec<CheckResult>,
    pub reviewer: Option<TurnRecord>,
    /// The implementer's claims (bullets under `Claims:`).
    pub claims: Vec<String>,
    pub progress: bool,
}

/// How a worker round ended.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum AttemptOutcome {
    /// Checks green and reviewer approved (or no reviewer): ready for the audit.
    Candidate { commit: String, claims: Vec<String> },
    /// The attempt cannot go on; `needs` is the input that would unblock it.
    Blocked { reason: String, needs: String },
    /// A budget was crossed; `budget` names it (`turns`, `wall`, `tokens`, ...).
    BudgetLimited {
        budget: String,
        limit: String,
        used: String,
    },
    /// The worker was asked to stop (stop file, pause, signal); its work so far is on the
    /// attempt ref and the attempt can go on in a later round.
    Stopped { reason: String },
}

/// The worker's output file.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WorkerResult {
    pub outcome: AttemptOutcome,
    /// The attempt ref's commit at the end of the round (the last harvest), if any.
    pub head: Option<String>,
    pub iterations: Vec<IterationRecord>,
    pub usage: Usage,
    /// The round's setup commands, run before its first turn; `None` when the contract
    /// has none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub setup: Option<crate::setup::SetupRecord>,
}

/// The auditor's whole input. Nothing of the implementer's transcript, environment,
/// worktree or logs is in here, by construction.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AuditInput {
    pub run_id: String,
    pub phase: String,
    /// The repository (any path inside it); the auditor makes its own worktree.
    pub repo: PathBuf,
    /// Where the auditor may make its fresh worktree (it must not exist yet).
    pub worktree: PathBuf,
    pub base: String,
    pub candidate: String,
    pub contract: Contract,
    /// Paths always protected besides the contract's (the plan file, goalpost's files).
    pub always_protected: Vec<String>,
    pub claims: Vec<String>,
    /// Where to write `audit.json` and `audit.md`.
    pub report_dir: PathBuf,
    /// Per-check timeout in seconds.
    pub check_timeout_secs: u64,
    /// Run the checks without Landlock (`goalpost run --unconfined`); by default they may
    /// write only in the audit's worktree, its git metadata and the audit's private home,
    /// temp directory and object quarantine.
    #[serde(default)]
    pub unconfined: bool,
    /// What the sandboxes of its agent turns and checks hide, and their temp dirs' size.
    #[serde(default)]
    pub sandbox: SandboxSpec,
    /// Where the contract's held-out checks find their files; `None` when it has none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub held_out: Option<HeldOutSpec>,
    /// The auditor agent (`roles.auditor`), run when the machine audit would merge.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub agent: Option<crate::verdict::AuditAgentSpec>,
}

/// The held-out checks' files as an audit gets them: copied from `dir` (which no agent
/// turn and no other check can see) into `into` of its checkout for the held-out checks
/// alone, read-only to them, and removed after.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HeldOutSpec {
    /// The files' directory; `None` when the checks need none.
    pub dir: Option<PathBuf>,
    /// Where they go in the checkout, relative to its root.
    pub into: String,
    /// What [`FEEDBACK_FILE`] says of a failing held-out check.
    pub feedback: HeldOutFeedback,
}

/// The report, in an audit's report directory, that an implementer sent back to revise is
/// given: `audit.md`, with the held-out checks told by number only unless the goal file
/// says `feedback = "full"`.
pub const FEEDBACK_FILE: &str = "feedback.md";

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Recommendation {
    Merge,
    Revise,
    Abandon,
}

impl Recommendation {
    pub fn as_str(self) -> &'static str {
        match self {
            Recommendation::Merge => "merge",
            Recommendation::Revise => "revise",
            Recommendation::Abandon => "abandon",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ViolationKind {
    /// Changed a path matching a forbidden glob.
    Forbidden,
    /// Changed a path outside the allowed globs.
    NotAllowed,
    /// Changed a protected path.
    Protected,
    /// A change git itself treats specially: `.gitmodules`, `.gitattributes`, a symlink
    /// out of the repository, a submodule.
    GitLevel,
    /// A check of the audit changed a protected file the auditor had written from the base.
    ModifiedByCheck,
    /// Changed a file that decides how a machine check runs (its runner's configuration,
    /// the recipe or script its command goes through) without an allowed path naming it.
    CheckConfig,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Violation {
    pub kind: ViolationKind,
    pub path: String,
    /// The glob or rule that was broken.
    pub rule: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ClaimStatus {
    Verified,
    /// The evidence contradicts it.
    Refuted,
    Unverifiable,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ClaimFinding {
    pub claim: String,
    pub status: ClaimStatus,
    /// Quoted (capped) evidence, or the evidence that would be needed.
    pub evidence: String,
}

/// The auditor's report (`audit.json`; `audit.md` is its rendering).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AuditReport {
    pub phase: String,
    pub base: String,
    pub candidate: String,
    /// The exact tree that was verified.
    pub tree: String,
    pub recommendation: Recommendation,
    /// One line on why.
    pub summary: String,
    pub checks: Vec<CheckResult>,
    /// Human-language checks: unverifiable by machine.
    pub unverified_checks: Vec<String>,
    pub violations: Vec<Violation>,
    pub claims: Vec<ClaimFinding>,
    pub changed_paths: Vec<String>,
    /// The verification cache's key of each machine check, and which checks were not run
    /// again because the same key already passed (see [`crate::cache`]).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub cache: Vec<CheckCacheNote>,
    /// The checks this audit ran on the base's tree for their test census, for the
    /// verification cache: a later audit against the same base reads the base's census
    /// from them instead of running it again.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub base_censuses: Vec<CachedCheck>,
    /// The contract's setup commands as they ran in the audit's checkout before its
    /// checks; `None` when there are none or no check had to run.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub setup: Option<crate::setup::SetupRecord>,
    /// The held-out checks, run after the others with the held-out files in place; never
    /// cached, never matched with claims, never a best-of-n metric.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub held_out: Vec<CheckResult>,
    /// The auditor agent's verdict and cost, when it ran.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub agent: Option<Box<crate::verdict::AgentAudit>>,
}

/// How the verification cache served one check of an audit.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CheckCacheNote {
    /// The check's position in [`AuditReport::checks`].
    pub check: usize,
    /// The check's key: tree, command, allowed environment and protected paths' tree.
    pub key: String,
    /// Set when the check was not run again: where its evidence was first recorded (the
    /// report directory of the audit that ran it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reused_from: Option<String>,
}

/// One check's evidence from an earlier audit, offered to an audit for reuse.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CachedCheck {
    pub key: String,
    pub result: CheckResult,
    /// The report directory of the audit that ran it.
    pub source: String,
}

/// A pool of worktrees the auditor may recycle its checkouts through, instead of adding
/// and removing one per audit.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PoolSpec {
    /// The pool's directory: only auditors ever write in it.
    pub dir: PathBuf,
    /// Idle worktrees kept at most.
    pub size: usize,
    /// gitignore-style patterns of untracked directories a recycled worktree keeps (build
    /// caches such as `target/`). The auditor keeps none, whatever this says: each of its
    /// checkouts ran a candidate's code.
    pub cache_dirs: Vec<String>,
}

/// File name, in an audit's `report_dir`, of the optional [`AuditReuse`] the orchestrator
/// writes next to the input.
pub const AUDIT_REUSE_FILE: &str = "audit-reuse.json";

/// What an audit may reuse besides its [`AuditInput`]: earlier evidence for the same
/// checks on the same tree, and a pool of checkouts. Without it the audit runs every check
/// in a fresh worktree.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct AuditReuse {
    #[serde(default)]
    pub cached_checks: Vec<CachedCheck>,
    #[serde(default)]
    pub pool: Option<PoolSpec>,
}

/// One audited candidate, as the reviewer choosing a phase's winner sees it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CandidateView {
    pub attempt: u32,
    pub agent: String,
    pub commit: String,
    /// The diff against the phase's base, capped.
    pub diff: String,
    /// The audit's one-line summary.
    pub audit_summary: String,
    /// One line per machine check of the audit: command, result, metric.
    pub evidence: Vec<String>,
    pub metric: Option<f64>,
}

/// Input of `goalpost-worker --select`: a reviewer turn that names a phase's winner
/// among candidates that all passed their audits (`Select: review`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SelectInput {
    pub run_id: String,
    pub phase: String,
    pub phase_title: String,
    pub contract: Contract,
    pub reviewer: AgentSpec,
    pub candidates: Vec<CandidateView>,
    /// The turn's cwd and private files (prompt, temp dir).
    pub private_dir: PathBuf,
    pub env_allow: Vec<String>,
    pub timeout_secs: u64,
    /// Run the turn without Landlock (`goalpost run --unconfined`); by default it may
    /// write only in its temp and state directories.
    #[serde(default)]
    pub unconfined: bool,
    /// What the sandboxes of its agent turns and checks hide, and their temp dirs' size.
    #[serde(default)]
    pub sandbox: SandboxSpec,
}

/// Output of `goalpost-worker --select`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SelectResult {
    /// The attempt the reviewer named on its `WINNER: N` line, if any.
    pub winner: Option<u32>,
    /// The rest of its message.
    pub notes: String,
    pub turn: TurnRecord,
}
