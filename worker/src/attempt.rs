//! One round of one attempt: implementer turn → harvest → verification → reviewer turn,
//! repeated until there is a candidate, the attempt is blocked, or a budget is crossed.
//! Every stop says why; no turn starts after a budget is crossed, and a round never
//! continues on the strength of turns that changed nothing.

use std::collections::BTreeMap;
use std::ffi::OsString;
use std::fs;
use std::io::Write as _;
use std::path::{Path, PathBuf};

use goalpost_agents::{self as agents, Turn, TurnRequest};
use goalpost_shared::check;
use goalpost_shared::confine::{self, ConfineError, Confinement, GitLinks};
use goalpost_shared::git::{GitError, Quarantine, Repo};
use goalpost_shared::protocol::{
    AgentSpec, AttemptOutcome, CheckResult, Feedback, IterationRecord, PROGRESS_FILE, Role,
    STOP_FILE, TurnRecord, Verdict, WorkerEvent, WorkerInput, WorkerResult,
};
use goalpost_shared::setup::{self, SetupRecord};

use crate::budget::Meter;
use crate::harvest::Lineage;
use crate::outcome::{self, Evidence};
use crate::progress::Progress;
use crate::prompt::{self, ImplementerTurn, Review, ReviewerTurn};
use crate::stop::Stop;

/// Bytes of `git diff base..head` a reviewer gets.
const DIFF_CAP: usize = 200 * 1024;
/// Bytes of each output stream kept from a check.
const CHECK_OUTPUT_CAP: usize = 64 * 1024;
/// Empty turns in a row that block the attempt.
const EMPTY_TURN_LIMIT: u32 = 2;

/// What can stop a round before it produced a result.
#[derive(Debug, thiserror::Error)]
pub enum AttemptError {
    #[error(transparent)]
    Git(#[from] GitError),
    #[error("cannot create {}: {source}", path.display())]
    PrivateDir {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot confine the attempt's agents and checks: {0}")]
    Confine(#[from] ConfineError),
}

impl AttemptError {
    /// Whether the input itself is wrong (no repository at the worktree, a base or
    /// previous candidate that names no commit), as opposed to a failure on the way.
    pub fn is_bad_input(&self) -> bool {
        matches!(
            self,
            AttemptError::Git(GitError::NotARepository { .. } | GitError::UnknownRevision { .. })
        )
    }
}

/// Runs one round of the attempt described by `input`. Setup failures (no repository,
/// unknown base, unwritable private dir) are errors; once the first turn could start,
/// every ending is a [`WorkerResult`], a failure of the worker's own included.
pub fn run(input: &WorkerInput, stop: &Stop) -> Result<WorkerResult, AttemptError> {
    let tmpdir = input.private_dir.join("tmp");
    // Each role's own state (its CLI home, its session): writable to its turns alone.
    let state_dir = input.private_dir.join("state");
    let implementer_state = state_dir.join(Role::Implementer.as_str());
    let reviewer_state = state_dir.join(Role::Reviewer.as_str());
    // The checks' own temp dir: writable to them (a build or a test runner needs one),
    // and not the agents', so nothing an agent leaves in its temp dir is in the checks' way.
    let check_tmp = input.private_dir.join("check-tmp");
    let prompts = input.private_dir.join("prompts");
    for dir in [
        &tmpdir,
        &implementer_state,
        &reviewer_state,
        &check_tmp,
        &prompts,
    ] {
        fs::create_dir_all(dir).map_err(|source| AttemptError::PrivateDir {
            path: dir.clone(),
            source,
        })?;
    }
    let mut lineage = Lineage::open(input)?;
    // The agents' and checks' own object directory: what their git writes stays here,
    // and goes with the round; the harvest alone brings objects into the repository.
    let objects = input.private_dir.join("objects");
    let quarantine = Quarantine::create(&objects).map_err(|source| AttemptError::PrivateDir {
        path: objects.clone(),
        source,
    })?;
    // The run's package cache of the attempts: their setup, turns and checks share it.
    let cache = input.sandbox.package_cache.clone();
    if let Some(dir) = &cache {
        fs::create_dir_all(dir).map_err(|source| AttemptError::PrivateDir {
            path: dir.clone(),
            source,
        })?;
    }
    let (confine, review_confine, check_confine) =
        match confinement(input, lineage.repo(), quarantine.dir())? {
            Some(rules) => {
                let rules = match &cache {
                    Some(dir) => rules.with_writable(dir)?,
                    None => rules,
                };
                let spec = &input.sandbox;
                let turn = |state: &Path| -> Result<Confinement, ConfineError> {
                    rules
                        .clone()
                        .with_writable(state)?
                        .showing(&prompts)
                        .with_scratch(&tmpdir, spec.tmp_bytes())
                };
                let (implement, review) = (turn(&implementer_state)?, turn(&reviewer_state)?);
                let check = rules
                    .with_scratch(&check_tmp, spec.tmp_bytes())?
                    .offline(spec.offline_checks);
                (Some(implement), Some(review), Some(check))
            }
            None => (None, None, None),
        };
    // Unconfined, the agents' git writes where it likes anyway: into the repository's
    // store, as a user's git would, not into a quarantine that goes with the round.
    let git_env: Vec<(OsString, OsString)> = match &confine {
        Some(_) => quarantine.env(lineage.repo()).into(),
        None => Vec::new(),
    };
    let mut check_env = agents::allowed_env(&input.env_allow);
    check_env.insert("TMPDIR".into(), check_tmp.into_os_string());
    check_env.extend(git_env.iter().cloned());
    if let Some(dir) = &cache {
        check_env.extend(setup::cache_env(dir));
    }
    let links = GitLinks::read(&input.worktree).ok();
    if let Some(Feedback::Conflict {
        previous_candidate, ..
    }) = &input.feedback
    {
        lineage.start_conflict_merge(previous_candidate)?;
    }
    let mut round = Round {
        input,
        stop,
        tmpdir,
        state_dir,
        check_env,
        confine,
        review_confine,
        check_confine,
        links,
        quarantine,
        git_env,
        over_cap: None,
        lineage,
        meter: Meter::new(input.budget.clone()),
        progress: Progress::default(),
        iterations: Vec::new(),
    };
    let setup = round.setup();
    let outcome = match setup.as_ref().and_then(|(_, stop)| stop.clone()) {
        Some(stop) => stop,
        None => round
            .run()
            .unwrap_or_else(|err| outcome::round_failed(&err)),
    };
    if let Err(err) = round.quarantine.remove() {
        tracing::warn!("cannot remove {}: {err}", round.quarantine.dir().display());
    }
    Ok(WorkerResult {
        outcome,
        head: round.lineage.ref_value().map(|c| c.to_string()),
        usage: round.meter.usage(),
        iterations: round.iterations,
        setup: setup.map(|(record, _)| record),
    })
}

/// What the attempt's agents and checks share: they may write in the worktree, its git
/// metadata and the object quarantine, and do not see goalpost's state or its other
/// worktrees (what they may write there stays visible); `None` when unconfined. A kernel
/// that cannot confine is an error here, before any agent starts.
fn confinement(
    input: &WorkerInput,
    repo: &Repo,
    quarantine: &Path,
) -> Result<Option<Confinement>, ConfineError> {
    if input.unconfined {
        return Ok(None);
    }
    confine::probe()?;
    Confinement::for_worktree(repo, &input.worktree, &[quarantine])
        .map(|rules| Some(rules.hiding(&input.sandbox.hidden)))
}

struct Round<'a> {
    input: &'a WorkerInput,
    stop: &'a Stop,
    tmpdir: PathBuf,
    /// The agents' state, one directory per role (`GOALPOST_STATE_DIR` is the role's):
    /// the implementer's kept across turns, the reviewer's made anew for each turn.
    state_dir: PathBuf,
    /// The checks' environment: the allow-list, with a temp dir of their own.
    check_env: BTreeMap<OsString, OsString>,
    /// The sandbox of the agents' turns: the shared rules, their state dir, their prompt
    /// files read-only and a temp dir of their own; `None` when the run is unconfined.
    /// The implementer's turns may write its state dir, the reviewer's turns only theirs.
    confine: Option<Confinement>,
    review_confine: Option<Confinement>,
    /// The sandbox of the checks: the shared rules and a temp dir of their own, offline
    /// with `network = "none"`; `None` when the run is unconfined.
    check_confine: Option<Confinement>,
    /// The worktree's git links as the round found them (see [`GitLinks`]).
    links: Option<GitLinks>,
    /// Where the agents' and checks' git writes objects.
    quarantine: Quarantine,
    /// The environment that points their git there.
    git_env: Vec<(OsString, OsString)>,
    /// What the quarantine held when it was found over its cap.
    over_cap: Option<u64>,
    lineage: Lineage,
    meter: Meter,
    progress: Progress,
    iterations: Vec<IterationRecord>,
}

/// What the next implementer prompt carries over from earlier iterations.
#[derive(Default)]
struct Carry {
    checks: Vec<CheckResult>,
    reviewer_notes: Option<String>,
    last_turn_note: Option<String>,
    empty_turns: u32,
    /// The latest non-empty claims, for a candidate whose last message listed none.
    claims: Vec<String>,
}

impl Carry {
    fn evidence(&self) -> Evidence<'_> {
        Evidence {
            checks: &self.checks,
            reviewer_notes: self.reviewer_notes.as_deref(),
            empty_turns: self.empty_turns,
        }
    }
}

impl Round<'_> {
    fn run(&mut self) -> Result<AttemptOutcome, GitError> {
        let input = self.input;
        let mut carry = Carry::default();
        let end = input.first_iteration.saturating_add(input.max_iterations);
        for iteration in input.first_iteration..end {
            if let Some(outcome) = self.stopped() {
                return Ok(outcome);
            }
            if let Some(crossed) = self.meter.crossed_before_iteration() {
                return Ok(outcome::budget_limited(crossed));
            }
            self.meter.start_iteration();
            let (outcome, record) = self.iteration(iteration, &mut carry)?;
            self.iterations.push(record);
            if let Some(outcome) = outcome {
                return Ok(outcome);
            }
        }
        // The round's iterations are the budget's when it sets one: running out of them
        // is reaching that budget, not being blocked.
        if let Some(crossed) = self.meter.crossed_before_iteration() {
            return Ok(outcome::budget_limited(crossed));
        }
        Ok(outcome::out_of_iterations(
            input.max_iterations,
            &carry.evidence(),
        ))
    }

    /// Runs the contract's setup commands in the worktree before the round's first turn,
    /// confined and with the checks' environment; `None` when the contract has none. The
    /// outcome beside the record stops the round: the setup failed, or it left files git
    /// does not ignore, which the harvest would take for the agent's work.
    fn setup(&mut self) -> Option<(SetupRecord, Option<AttemptOutcome>)> {
        let setup = &self.input.contract.setup;
        if setup.commands.is_empty() {
            return None;
        }
        let before = self.lineage.pending_paths().unwrap_or_default();
        let mut record = setup::run_setup(
            setup,
            self.lineage.worktree(),
            &self.check_env,
            CHECK_OUTPUT_CAP,
            self.check_confine.as_ref(),
        );
        self.restore_links();
        self.check_quarantine();
        let tree = self.lineage.head_tree().ok().map(|t| t.to_string());
        for command in &mut record.commands {
            command.tree = tree.clone();
        }
        if record.failed() {
            let stop = outcome::setup_failed(&record);
            return Some((record, Some(stop)));
        }
        let left: Vec<String> = self
            .lineage
            .pending_paths()
            .unwrap_or_default()
            .into_iter()
            .filter(|p| !before.contains(p))
            .collect();
        let stop = (!left.is_empty()).then(|| outcome::setup_left_files(&left));
        Some((record, stop))
    }

    /// One iteration: its record, and the round's outcome when it ends the round.
    fn iteration(
        &mut self,
        iteration: u32,
        carry: &mut Carry,
    ) -> Result<(Option<AttemptOutcome>, IterationRecord), GitError> {
        let input = self.input;
        let (mut record, unavailable) = self.implement(iteration, carry)?;
        if let Some(outcome) = self.stopped() {
            // Harvested already; verification and review wait for the next round.
            return Ok((Some(outcome), record));
        }
        if let Some(why) = unavailable {
            let name = &input.implementer.name;
            return Ok((
                Some(outcome::unavailable(why, Role::Implementer, name)),
                record,
            ));
        }
        let error = record.implementer.error.clone();
        // A round that goes on from earlier work (after a pause or a crash) verifies and
        // reviews that work even when its first turn has nothing to add.
        let resumed_work = iteration == input.first_iteration
            && input.feedback.is_none()
            && input.resume_from.is_some()
            && record.tree != self.lineage.base_tree()?.to_string();
        if record.commit.is_none() && record.implementer.usage.tool_calls == 0 && !resumed_work {
            // An empty turn: nothing to verify or review, and no progress.
            return Ok((self.empty_turn(carry, error), record));
        }
        carry.empty_turns = 0;
        carry.last_turn_note = error.map(|e| format!("Your last turn ended with an error: {e}"));

        self.verify(&mut record, carry);
        if let Some(broken) = record.checks.iter().find(|c| check::cannot_run(c)) {
            return Ok((Some(outcome::check_cannot_run(broken)), record));
        }

        let review = match &input.reviewer {
            None => None,
            Some(spec) => {
                if let Some(outcome) = self.stopped() {
                    return Ok((Some(outcome), record));
                }
                if let Some(crossed) = self.meter.crossed() {
                    return Ok((Some(outcome::budget_limited(crossed)), record));
                }
                let (turn, review) = self.review(spec, iteration, &record)?;
                record.reviewer = Some(turn.record);
                if let Some(why) = turn.unavailable {
                    return Ok((
                        Some(outcome::unavailable(why, Role::Reviewer, &spec.name)),
                        record,
                    ));
                }
                review
            }
        };
        let outcome = self.decide(&record, review, carry)?;
        Ok((outcome, record))
    }

    /// The implementer's turn and its harvest; also says if the agent cannot be started.
    fn implement(
        &mut self,
        iteration: u32,
        carry: &mut Carry,
    ) -> Result<(IterationRecord, Option<String>), GitError> {
        let input = self.input;
        let prompt = prompt::implementer(
            input,
            &ImplementerTurn {
                iteration,
                last_checks: &carry.checks,
                reviewer_notes: carry.reviewer_notes.as_deref(),
                last_turn_note: carry.last_turn_note.as_deref(),
            },
        );
        let tree_before = self.lineage.head_tree()?.to_string();
        let turn = self.turn(
            &input.implementer,
            Role::Implementer,
            iteration,
            &prompt,
            tree_before,
        );
        let claims = prompt::parse_claims(&turn.record.message);
        if !claims.is_empty() {
            carry.claims = claims.clone();
        }
        // Harvested even when the turn failed or was cut: no work is dropped.
        let commit = self
            .lineage
            .harvest(&harvest_message(input, iteration, &claims))?;
        let record = IterationRecord {
            iteration,
            implementer: turn.record,
            commit: commit.map(|c| c.to_string()),
            tree: self.lineage.head_tree()?.to_string(),
            checks: Vec::new(),
            reviewer: None,
            claims,
            progress: false,
        };
        Ok((record, turn.unavailable))
    }

    /// Counts an empty turn; two in a row, or the no-progress limit, end the round.
    fn empty_turn(&mut self, carry: &mut Carry, error: Option<String>) -> Option<AttemptOutcome> {
        carry.empty_turns += 1;
        self.progress.observe_nothing();
        let mut note = "Your last turn changed no file.".to_owned();
        if let Some(error) = &error {
            note.push_str(&format!(" It failed: {error}"));
        }
        carry.last_turn_note = Some(note);
        if carry.empty_turns >= EMPTY_TURN_LIMIT {
            return Some(outcome::no_change(carry.empty_turns, error.as_deref()));
        }
        self.no_progress_stop(carry)
    }

    /// Runs the contract's machine checks in the worktree with the allow-listed
    /// environment (never the agents' own). Informational: the auditor's run counts.
    fn verify(&mut self, record: &mut IterationRecord, carry: &mut Carry) {
        let mut checks = check::run_checks(
            &self.input.contract,
            self.lineage.worktree(),
            &self.check_env,
            self.meter.timeout(),
            CHECK_OUTPUT_CAP,
            self.check_confine.as_ref(),
        );
        self.restore_links();
        self.check_quarantine();
        for c in &mut checks {
            c.record.tree = Some(record.tree.clone());
        }
        record.progress = self.progress.observe(record.commit.is_some(), &checks);
        let passed = checks.iter().filter(|c| c.passed).count();
        self.report(&WorkerEvent::ChecksFinished {
            iteration: record.iteration,
            passed: count(passed),
            failed: count(checks.len() - passed),
        });
        record.checks = checks.clone();
        carry.checks = checks;
    }

    /// Candidate, blocked, or on to the next iteration (`None`).
    fn decide(
        &mut self,
        record: &IterationRecord,
        review: Option<Review>,
        carry: &mut Carry,
    ) -> Result<Option<AttemptOutcome>, GitError> {
        let green = record.checks.iter().all(|c| c.passed);
        // Without a reviewer the checks decide; a reviewer whose turn failed approves nothing.
        let approved = match (&self.input.reviewer, &review) {
            (None, _) => true,
            (Some(_), Some(review)) => review.verdict == Verdict::Approve,
            (Some(_), None) => false,
        };
        if green && approved {
            let commit = self.lineage.ensure_ref()?;
            let claims = if record.claims.is_empty() {
                carry.claims.clone()
            } else {
                record.claims.clone()
            };
            return Ok(Some(AttemptOutcome::Candidate {
                commit: commit.to_string(),
                claims,
            }));
        }
        if let Some(review) = &review
            && review.verdict == Verdict::Blocked
        {
            return Ok(Some(outcome::reviewer_blocked(review)));
        }
        carry.reviewer_notes = review
            .filter(|r| r.verdict == Verdict::Changes)
            .map(|r| r.notes);
        Ok(self.no_progress_stop(carry))
    }

    /// The reviewer's turn on the diff and the verification. A turn that failed gives no
    /// verdict (`None`): it neither approves nor sends notes to the implementer.
    fn review(
        &mut self,
        spec: &AgentSpec,
        iteration: u32,
        record: &IterationRecord,
    ) -> Result<(Turn, Option<Review>), GitError> {
        let (diff, diff_truncated) = self.lineage.diff(DIFF_CAP)?;
        let prompt = prompt::reviewer(
            self.input,
            &ReviewerTurn {
                iteration,
                diff: &diff,
                diff_truncated,
                checks: &record.checks,
                claims: &record.claims,
            },
        );
        let mut turn = self.turn(
            spec,
            Role::Reviewer,
            iteration,
            &prompt,
            record.tree.clone(),
        );
        if self.lineage.is_dirty()? {
            // Reviewers are told not to edit; what one did anyway is left for the next
            // harvest (never dropped) and is not part of the candidate it may approve.
            tracing::warn!(iteration, "the reviewer changed the worktree");
        }
        if turn.record.error.is_some() {
            return Ok((turn, None));
        }
        let review = prompt::parse_verdict(&turn.record.message);
        turn.record.verdict = Some(review.verdict);
        Ok((turn, Some(review)))
    }

    fn turn(
        &mut self,
        spec: &AgentSpec,
        role: Role,
        iteration: u32,
        prompt: &str,
        tree: String,
    ) -> Turn {
        let input = self.input;
        let mut env = agents::agent_env(input, spec, role, iteration, &self.tmpdir);
        let state = self.state_dir.join(role.as_str());
        if role == Role::Reviewer {
            // Rebuilt from the user's own files before each review: nothing a turn left
            // in it (a config pointing the CLI elsewhere) reaches the next.
            let _ = fs::remove_dir_all(&state);
            if let Err(err) = fs::create_dir_all(&state) {
                tracing::warn!(
                    "cannot make the reviewer's state dir {}: {err}",
                    state.display()
                );
            }
        }
        env.insert("GOALPOST_STATE_DIR".into(), state.into());
        env.extend(self.git_env.iter().cloned());
        let request = TurnRequest {
            role,
            iteration,
            prompt,
            cwd: &input.worktree,
            env,
            prompt_file: input
                .private_dir
                .join("prompts")
                .join(format!("{}-{iteration}.md", role.as_str())),
            timeout: self.meter.timeout(),
            cancel: Some(self.stop.token()),
            tree: Some(tree),
            confine: match role {
                Role::Reviewer => self.review_confine.as_ref(),
                _ => self.confine.as_ref(),
            },
            verdict_schema: None,
        };
        self.report(&WorkerEvent::TurnStarted { iteration, role });
        let turn = agents::run_turn(spec, &request);
        self.restore_links();
        self.check_quarantine();
        self.meter.record(&turn.record.usage);
        log_turn(&turn.record);
        self.report(&WorkerEvent::TurnFinished {
            iteration,
            role,
            usage: turn.record.usage.clone(),
            round_usage: self.meter.usage(),
            error: turn.record.error.clone(),
        });
        turn
    }

    /// Appends `event` to the round's progress file ([`PROGRESS_FILE`]). Progress is for
    /// people watching: a failure to write it is logged and changes nothing else.
    fn report(&self, event: &WorkerEvent) {
        let path = self.input.private_dir.join(PROGRESS_FILE);
        let written = serde_json::to_string(event)
            .map_err(std::io::Error::other)
            .and_then(|mut line| {
                line.push('\n');
                let mut file = fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(&path)?;
                // One write of one line: readers never see half of it.
                file.write_all(line.as_bytes())
            });
        if let Err(err) = written {
            tracing::warn!("cannot report progress in {}: {err}", path.display());
        }
    }

    /// Puts back the worktree's git links if a turn or a check changed them, before the
    /// worker's own git commands (the harvest) follow them with all of its rights.
    fn restore_links(&self) {
        let Some(links) = &self.links else {
            return;
        };
        match links.restore() {
            Ok(put_back) if put_back.is_empty() => {}
            Ok(put_back) => tracing::warn!(
                ?put_back,
                "put back the worktree's git links, which a turn or a check had changed"
            ),
            Err(err) => tracing::warn!("cannot put back the worktree's git links: {err}"),
        }
    }

    /// Empties the object quarantine when it holds more than the attempt's cap, and
    /// remembers that for [`Round::stopped`]: the round stops at the next boundary.
    fn check_quarantine(&mut self) {
        let cap = self.input.budget.objects_bytes();
        let bytes = self.quarantine.size();
        if bytes <= cap {
            return;
        }
        tracing::warn!(bytes, cap, "the object quarantine is over its cap");
        if let Err(err) = self
            .quarantine
            .remove()
            .and_then(|()| Quarantine::create(self.quarantine.dir()).map(drop))
        {
            tracing::warn!("cannot empty {}: {err}", self.quarantine.dir().display());
        }
        self.over_cap.get_or_insert(bytes);
    }

    /// The outcome of a round the worker was told to stop: by a signal (the running turn
    /// was cut short), or by the stop file (checked between turns: a safe boundary).
    fn stopped(&self) -> Option<AttemptOutcome> {
        if let Some(bytes) = self.over_cap {
            return Some(outcome::objects_over_cap(
                bytes,
                self.input.budget.objects_bytes(),
            ));
        }
        let stop_file = self.input.private_dir.join(STOP_FILE);
        if let Ok(why) = fs::read_to_string(&stop_file) {
            return Some(AttemptOutcome::Stopped {
                reason: format!(
                    "stopped at a safe boundary ({}); the work so far is harvested on {}",
                    why.trim(),
                    self.input.attempt_ref
                ),
            });
        }
        let why = self.stop.requested()?;
        Some(outcome::stopped(why, &self.input.attempt_ref))
    }

    /// Blocks the attempt when the no-progress limit is reached.
    fn no_progress_stop(&self, carry: &Carry) -> Option<AttemptOutcome> {
        self.progress
            .exhausted(self.input.no_progress_limit)
            .then(|| outcome::no_progress(self.progress.streak(), &carry.evidence()))
    }
}

fn harvest_message(input: &WorkerInput, iteration: u32, claims: &[String]) -> String {
    let mut message = format!(
        "goalpost: {} attempt {} iteration {iteration}\n",
        input.phase, input.attempt
    );
    if !claims.is_empty() {
        message.push_str("\nClaims:\n");
        for claim in claims {
            message.push_str(&format!("- {claim}\n"));
        }
    }
    message
}

/// A count of checks as the progress file writes it.
fn count(n: usize) -> u32 {
    u32::try_from(n).unwrap_or(u32::MAX)
}

fn log_turn(record: &TurnRecord) {
    match &record.error {
        Some(error) => tracing::warn!(
            role = record.role.as_str(),
            iteration = record.iteration,
            "turn failed: {error}"
        ),
        None => tracing::info!(
            role = record.role.as_str(),
            iteration = record.iteration,
            duration_ms = record.record.duration_ms,
            "turn ended"
        ),
    }
}
