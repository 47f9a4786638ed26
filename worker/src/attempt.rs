//! One round of one attempt: implementer turn → harvest → verification → reviewer turn,
//! repeated until there is a candidate, the attempt is blocked, or a budget is crossed.
//! Every stop says why; no turn starts after a budget is crossed, and a round never
//! continues on the strength of turns that changed nothing.

use std::fs;
use std::path::PathBuf;

use goalpost_shared::check;
use goalpost_shared::git::GitError;
use goalpost_shared::protocol::{
    AgentSpec, AttemptOutcome, CheckResult, Feedback, IterationRecord, Role, TurnRecord, Verdict,
    WorkerInput, WorkerResult,
};

use crate::adapter::{self, Turn, TurnRequest};
use crate::budget::{Crossed, Meter};
use crate::harvest::Lineage;
use crate::progress::{Progress, failing};
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
    fs::create_dir_all(&tmpdir).map_err(|source| AttemptError::PrivateDir {
        path: tmpdir.clone(),
        source,
    })?;
    let mut lineage = Lineage::open(input)?;
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
        lineage,
        meter: Meter::new(input.budget.clone()),
        progress: Progress::default(),
        iterations: Vec::new(),
    };
    let outcome = round.run().unwrap_or_else(|err| AttemptOutcome::Blocked {
        reason: format!("goalpost-worker failed: {err}"),
        needs: "a look at the worker's failure; the work harvested so far is on the attempt ref"
            .to_owned(),
    });
    Ok(WorkerResult {
        outcome,
        head: round.lineage.ref_value().map(|c| c.to_string()),
        usage: round.meter.usage(),
        iterations: round.iterations,
    })
}

struct Round<'a> {
    input: &'a WorkerInput,
    stop: &'a Stop,
    tmpdir: PathBuf,
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
                return Ok(budget_limited(crossed));
            }
            self.meter.start_iteration();
            if let Some(outcome) = self.iteration(iteration, &mut carry)? {
                return Ok(outcome);
            }
        }
        let (detail, needs) = self.stuck(&carry);
        Ok(AttemptOutcome::Blocked {
            reason: format!(
                "no candidate after {} iteration{} of this round: {detail}",
                input.max_iterations,
                if input.max_iterations == 1 { "" } else { "s" }
            ),
            needs,
        })
    }

    /// One iteration; `Some` when it ends the round.
    fn iteration(
        &mut self,
        iteration: u32,
        carry: &mut Carry,
    ) -> Result<Option<AttemptOutcome>, GitError> {
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
        let commit = self
            .lineage
            .harvest(&harvest_message(input, iteration, &claims))?;
        let tree = self.lineage.head_tree()?.to_string();
        let mut record = IterationRecord {
            iteration,
            implementer: turn.record,
            commit: commit.map(|c| c.to_string()),
            tree: tree.clone(),
            checks: Vec::new(),
            reviewer: None,
            claims: claims.clone(),
            progress: false,
        };

        if let Some(outcome) = self.stopped() {
            // Harvested above; verification and review wait for the next round.
            self.iterations.push(record);
            return Ok(Some(outcome));
        }
        if let Some(why) = turn.unavailable {
            self.iterations.push(record);
            return Ok(Some(AttemptOutcome::Blocked {
                reason: why,
                needs: format!(
                    "a runnable implementer agent (`{}`)",
                    input.implementer.name
                ),
            }));
        }

        let error = record.implementer.error.clone();
        if commit.is_none() && record.implementer.usage.tool_calls == 0 {
            // An empty turn: nothing to verify or review, and no progress.
            carry.empty_turns += 1;
            self.progress.observe_nothing();
            let mut note = "Your last turn changed no file.".to_owned();
            if let Some(error) = &error {
                note.push_str(&format!(" It failed: {error}"));
            }
            carry.last_turn_note = Some(note);
            self.iterations.push(record);
            if carry.empty_turns >= EMPTY_TURN_LIMIT {
                return Ok(Some(AttemptOutcome::Blocked {
                    reason: format!(
                        "the implementer made no change in {} turns in a row{}",
                        carry.empty_turns,
                        error
                            .map(|e| format!(" (last turn: {e})"))
                            .unwrap_or_default()
                    ),
                    needs: "an implementer that changes the worktree, or a clearer contract"
                        .to_owned(),
                }));
            }
            return Ok(self.no_progress_stop(carry));
        }
        carry.empty_turns = 0;
        carry.last_turn_note = error.map(|e| format!("Your last turn ended with an error: {e}"));

        // Verification, informational: the auditor's run is the one that counts.
        let mut checks = check::run_checks(
            &input.contract,
            self.lineage.worktree(),
            &adapter::allowed_env(&input.env_allow),
            self.meter.timeout(),
            CHECK_OUTPUT_CAP,
        );
        for c in &mut checks {
            c.record.tree = Some(tree.clone());
        }
        record.checks = checks.clone();
        record.progress = self.progress.observe(commit.is_some(), &checks);
        carry.checks = checks;
        if let Some(broken) = record.checks.iter().find(|c| check::cannot_run(c)) {
            let outcome = AttemptOutcome::Blocked {
                reason: format!(
                    "the check `{}` cannot run: {}",
                    broken.command,
                    broken.failure.as_deref().unwrap_or("exit status 126/127")
                ),
                needs: format!("a runnable `{}`", broken.command),
            };
            self.iterations.push(record);
            return Ok(Some(outcome));
        }
        let green = record.checks.iter().all(|c| c.passed);

        let review = match &input.reviewer {
            None => None,
            Some(spec) => {
                if let Some(outcome) = self.stopped() {
                    self.iterations.push(record);
                    return Ok(Some(outcome));
                }
                if let Some(crossed) = self.meter.crossed() {
                    self.iterations.push(record);
                    return Ok(Some(budget_limited(crossed)));
                }
                let (turn, review) = self.review(spec, iteration, &record, &tree)?;
                let unavailable = turn.unavailable.clone();
                record.reviewer = Some(turn.record);
                if let Some(why) = unavailable {
                    self.iterations.push(record);
                    return Ok(Some(AttemptOutcome::Blocked {
                        reason: why,
                        needs: format!("a runnable reviewer agent (`{}`)", spec.name),
                    }));
                }
                review
            }
        };
        self.iterations.push(record);

        // Without a reviewer the checks decide; a reviewer whose turn failed approves nothing.
        let approved = match (&input.reviewer, &review) {
            (None, _) => true,
            (Some(_), Some(review)) => review.verdict == Verdict::Approve,
            (Some(_), None) => false,
        };
        if green && approved {
            let commit = self.lineage.ensure_ref()?;
            let claims = if claims.is_empty() {
                carry.claims.clone()
            } else {
                claims
            };
            return Ok(Some(AttemptOutcome::Candidate {
                commit: commit.to_string(),
                claims,
            }));
        }
        if let Some(review) = &review
            && review.verdict == Verdict::Blocked
        {
            return Ok(Some(AttemptOutcome::Blocked {
                reason: non_empty(&review.notes, "the reviewer blocked the attempt"),
                needs: review
                    .needs
                    .clone()
                    .unwrap_or_else(|| "input on the reviewer's blocker".to_owned()),
            }));
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
        tree: &str,
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
        let mut turn = self.turn(spec, Role::Reviewer, iteration, &prompt, tree.to_owned());
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
        let request = TurnRequest {
            role,
            iteration,
            prompt,
            cwd: &input.worktree,
            env: adapter::agent_env(input, spec, role, iteration, &self.tmpdir),
            prompt_file: input
                .private_dir
                .join("prompts")
                .join(format!("{}-{iteration}.md", role.as_str())),
            timeout: self.meter.timeout(),
            cancel: Some(self.stop.token()),
            tree: Some(tree),
        };
        let turn = adapter::for_spec(spec).run_turn(&request);
        self.meter.record(&turn.record.usage);
        log_turn(&turn.record);
        turn
    }

    /// The outcome of a round the worker was told to stop.
    fn stopped(&self) -> Option<AttemptOutcome> {
        let why = self.stop.requested()?;
        Some(AttemptOutcome::Blocked {
            reason: format!(
                "stopped by {why}; the work so far is harvested on {}",
                self.input.attempt_ref
            ),
            needs: "the run resumed".to_owned(),
        })
    }

    /// Blocks the attempt when the no-progress limit is reached.
    fn no_progress_stop(&self, carry: &Carry) -> Option<AttemptOutcome> {
        if !self.progress.exhausted(self.input.no_progress_limit) {
            return None;
        }
        let (detail, needs) = self.stuck(carry);
        Some(AttemptOutcome::Blocked {
            reason: format!(
                "no progress in {} iterations: {detail}",
                self.progress.streak()
            ),
            needs,
        })
    }

    /// Where the attempt is stuck, and what input would help, from the latest evidence.
    fn stuck(&self, carry: &Carry) -> (String, String) {
        let failing_checks: Vec<&str> = carry
            .checks
            .iter()
            .filter(|c| !c.passed)
            .map(|c| c.command.as_str())
            .collect();
        if !failing_checks.is_empty() {
            let list = failing_checks
                .iter()
                .map(|c| format!("`{c}`"))
                .collect::<Vec<_>>()
                .join(", ");
            return (
                format!(
                    "{} of {} checks still fail ({list})",
                    failing(&carry.checks),
                    carry.checks.len()
                ),
                format!("help with the failing checks, or a revised contract: {list}"),
            );
        }
        if let Some(notes) = &carry.reviewer_notes {
            let first = notes.lines().find(|l| !l.trim().is_empty()).unwrap_or("");
            return (
                "the checks pass but the reviewer still asks for changes".to_owned(),
                format!("a decision on the reviewer's notes: {}", first.trim()),
            );
        }
        if carry.empty_turns > 0 {
            return (
                "the implementer's last turn changed nothing".to_owned(),
                "a different approach or a revised contract".to_owned(),
            );
        }
        (
            "no iteration beat the best result so far".to_owned(),
            "a different approach or a revised contract".to_owned(),
        )
    }
}

fn budget_limited(crossed: Crossed) -> AttemptOutcome {
    AttemptOutcome::BudgetLimited {
        budget: crossed.budget.to_owned(),
        limit: crossed.limit,
        used: crossed.used,
    }
}

fn non_empty(text: &str, fallback: &str) -> String {
    if text.trim().is_empty() {
        fallback.to_owned()
    } else {
        text.trim().to_owned()
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
