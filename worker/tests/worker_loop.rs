//! Drives the real `goalpost-worker` binary on a temp repository and worktree, with `sh -c`
//! scripts as the implementer and reviewer agents.

// Helpers outside `#[test]` functions panic on setup failures too: this is test code.
#![allow(clippy::unwrap_used)]

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use goalpost_fixtures::repo::hermetic_command;
use goalpost_shared::contract::{Check, CheckKind, Contract, Spanned};
use goalpost_shared::plan::{Adapter, Budget, WallTime};
use goalpost_shared::protocol::{
    AgentSpec, AttemptOutcome, Feedback, PROGRESS_FILE, Verdict, WorkerEvent, WorkerInput,
    WorkerResult,
};
use tempfile::TempDir;

const ATTEMPT_REF: &str = "refs/goalpost/r1/p1/1";

/// A temp repository with one commit, a detached worktree at it, and a private dir.
struct Fixture {
    _tmp: TempDir,
    root: PathBuf,
    repo: PathBuf,
    worktree: PathBuf,
    base: String,
}

impl Fixture {
    fn new() -> Fixture {
        Fixture::with_files(&[])
    }

    /// A fixture whose base commit also holds `files` (those under `tools/` executable).
    fn with_files(files: &[(&str, &str)]) -> Fixture {
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path().canonicalize().unwrap();
        let repo = root.join("repo");
        fs::create_dir_all(&repo).unwrap();
        fs::create_dir_all(root.join("home")).unwrap();
        let mut f = Fixture {
            _tmp: tmp,
            worktree: root.join("wt"),
            repo,
            root,
            base: String::new(),
        };
        f.git(&f.repo, &["init", "-q", "-b", "main"]);
        fs::write(f.repo.join("README"), "hello\n").unwrap();
        for (path, content) in files {
            let path = f.repo.join(path);
            fs::create_dir_all(path.parent().unwrap()).unwrap();
            fs::write(&path, content).unwrap();
            if path.starts_with(f.repo.join("tools")) {
                use std::os::unix::fs::PermissionsExt;
                fs::set_permissions(&path, fs::Permissions::from_mode(0o755)).unwrap();
            }
        }
        f.git(&f.repo, &["add", "."]);
        f.git(&f.repo, &["commit", "-q", "-m", "base"]);
        f.base = f.git(&f.repo, &["rev-parse", "HEAD"]).trim().to_owned();
        let wt = f.worktree.to_str().unwrap().to_owned();
        f.git(
            &f.repo,
            &["worktree", "add", "-q", "--detach", &wt, &f.base.clone()],
        );
        f
    }

    fn hermetic_env(&self, cmd: &mut Command) {
        hermetic_command(cmd, &self.root.join("home"));
    }

    fn git(&self, cwd: &Path, args: &[&str]) -> String {
        let mut cmd = Command::new("git");
        cmd.args(args).current_dir(cwd);
        self.hermetic_env(&mut cmd);
        let out = cmd.output().unwrap();
        assert!(
            out.status.success(),
            "git {args:?} in {} failed ({}):\nstdout:\n{}\nstderr:\n{}",
            cwd.display(),
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    }

    fn private_dir(&self) -> PathBuf {
        self.root.join("private")
    }

    fn prompt(&self, name: &str) -> Option<String> {
        fs::read_to_string(self.private_dir().join("prompts").join(name)).ok()
    }

    fn input(&self, implementer: &str, reviewer: Option<&str>, checks: &[&str]) -> WorkerInput {
        WorkerInput {
            run_id: "r1".into(),
            phase: "p1".into(),
            phase_title: "Write the file".into(),
            attempt: 1,
            plan_title: "Goal: a file".into(),
            repo: self.repo.join(".git"),
            worktree: self.worktree.clone(),
            base: self.base.clone(),
            attempt_ref: ATTEMPT_REF.into(),
            resume_from: None,
            first_iteration: 1,
            held_out_checks: 0,
            contract: Contract {
                outcome: Some(Spanned::new("`file` exists.".into(), 3, 1)),
                verification: checks
                    .iter()
                    .map(|c| Check {
                        text: Spanned::new(format!("`{c}`"), 5, 3),
                        kind: CheckKind::Machine {
                            command: (*c).into(),
                            metric: None,
                        },
                    })
                    .collect(),
                ..Contract::default()
            },
            implementer: sh_agent("impl", implementer),
            reviewer: reviewer.map(|r| sh_agent("rev", r)),
            budget: Budget::default(),
            no_progress_limit: 3,
            max_iterations: 10,
            feedback: None,
            private_dir: self.private_dir(),
            env_allow: vec!["PATH".into(), "HOME".into()],
            agent_env: BTreeMap::from([("FROM_RUN".into(), "run-env".into())]),
            unconfined: false,
            sandbox: Default::default(),
        }
    }

    /// Runs the worker binary on `input`; returns how it ended and where its output goes.
    fn run_raw(&self, input: &WorkerInput) -> (std::process::Output, PathBuf) {
        let in_path = self.root.join("in.json");
        let out_path = self.root.join("out.json");
        fs::write(&in_path, serde_json::to_vec_pretty(input).unwrap()).unwrap();
        let _ = fs::remove_file(&out_path);
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_goalpost-worker"));
        cmd.arg("--input")
            .arg(&in_path)
            .arg("--output")
            .arg(&out_path);
        self.hermetic_env(&mut cmd);
        cmd.env("SECRET_NOT_ALLOWED", "leak")
            .env("GOALPOST_LOG", "debug");
        (cmd.output().unwrap(), out_path)
    }

    /// Runs the worker binary on `input` and returns its result.
    fn run(&self, input: &WorkerInput) -> WorkerResult {
        let (out, out_path) = self.run_raw(input);
        assert!(
            out.status.success(),
            "goalpost-worker failed ({}):\nstdout:\n{}\nstderr:\n{}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        let text = fs::read_to_string(&out_path).unwrap();
        serde_json::from_str(&text).unwrap()
    }

    fn ref_target(&self) -> String {
        self.git(&self.repo, &["rev-parse", ATTEMPT_REF])
            .trim()
            .to_owned()
    }
}

fn sh_agent(name: &str, script: &str) -> AgentSpec {
    AgentSpec {
        name: name.into(),
        adapter: Adapter::Command,
        command: vec!["sh".into(), "-c".into()],
        args: vec![script.into()],
        model: None,
        env: BTreeMap::from([("FROM_AGENT".into(), "agent-env".into())]),
        price: None,
    }
}

const APPROVE: &str = "echo 'Looks fine.'; echo 'VERDICT: approve'";

#[test]
fn candidate_on_the_attempt_ref_with_claims() {
    let f = Fixture::new();
    let implementer = r#"
        cat > "$GOALPOST_STATE_DIR/stdin"
        cp "$GOALPOST_PROMPT_FILE" "$GOALPOST_STATE_DIR/prompt-file"
        env > "$GOALPOST_STATE_DIR/env"
        echo hi > file
        printf 'Done.\nClaims:\n- file written\n- README untouched\n'
    "#;
    let input = f.input(implementer, Some(APPROVE), &["test -f file"]);
    let result = f.run(&input);

    let AttemptOutcome::Candidate { commit, claims } = &result.outcome else {
        panic!("expected a candidate, got {:?}", result.outcome);
    };
    assert_eq!(claims, &["file written", "README untouched"]);
    assert_eq!(&f.ref_target(), commit);
    assert_eq!(result.head.as_deref(), Some(commit.as_str()));
    assert_eq!(f.git(&f.repo, &["show", &format!("{commit}:file")]), "hi\n");
    assert_eq!(
        f.git(&f.repo, &["rev-parse", &format!("{commit}^")]).trim(),
        f.base
    );
    // No branch moved.
    assert_eq!(f.git(&f.repo, &["rev-parse", "main"]).trim(), f.base);

    assert_eq!(result.iterations.len(), 1);
    let it = &result.iterations[0];
    assert_eq!(it.commit.as_deref(), Some(commit.as_str()));
    assert!(it.checks.iter().all(|c| c.passed) && it.checks.len() == 1);
    assert_eq!(
        it.reviewer.as_ref().and_then(|r| r.verdict),
        Some(Verdict::Approve)
    );
    assert_eq!(result.usage.turns, 2);

    // The prompt reached the agent on stdin and in the prompt file, and the agent saw the
    // allow-listed environment plus goalpost's variables, nothing else of the worker's.
    // (Kept in the agent's state dir: its temp dir is a file system of the turn's own.)
    let tmp = f.private_dir().join("tmp");
    let kept = f.private_dir().join("state/implementer");
    let stdin = fs::read_to_string(kept.join("stdin")).unwrap();
    assert_eq!(stdin, fs::read_to_string(kept.join("prompt-file")).unwrap());
    assert_eq!(Some(stdin.clone()), f.prompt("implementer-1.md"));
    assert!(stdin.contains("`test -f file` must exit 0"));
    let env = fs::read_to_string(kept.join("env")).unwrap();
    for line in [
        "GOALPOST_ROLE=implementer",
        "GOALPOST_PHASE=p1",
        "GOALPOST_ATTEMPT=1",
        "GOALPOST_ITERATION=1",
        "GOALPOST_RUN=r1",
        "FROM_RUN=run-env",
        "FROM_AGENT=agent-env",
        &format!("TMPDIR={}", tmp.display()),
    ] {
        assert!(env.lines().any(|l| l == line), "missing {line} in:\n{env}");
    }
    assert!(!env.contains("SECRET_NOT_ALLOWED"));
    assert!(!env.contains("GIT_CONFIG_GLOBAL"));
}

#[test]
fn reviewer_notes_reach_the_next_implementer_prompt() {
    let f = Fixture::new();
    let implementer = r#"echo "$GOALPOST_ITERATION" >> file; printf 'Claims:\n- step %s\n' "$GOALPOST_ITERATION""#;
    let reviewer = r#"
        if [ "$GOALPOST_ITERATION" = 1 ]; then
            echo 'Please also mention the unicorn.'
            echo 'VERDICT: changes'
        else
            echo 'VERDICT: approve'
        fi
    "#;
    let result = f.run(&f.input(implementer, Some(reviewer), &["test -f file"]));
    let AttemptOutcome::Candidate { claims, commit } = &result.outcome else {
        panic!("expected a candidate, got {:?}", result.outcome);
    };
    assert_eq!(claims, &["step 2"]);
    assert_eq!(result.iterations.len(), 2);
    assert_eq!(
        f.git(&f.repo, &["show", &format!("{commit}:file")]),
        "1\n2\n"
    );
    // Two harvests, one on top of the other.
    let first = result.iterations[0].commit.clone().unwrap();
    assert_eq!(
        f.git(&f.repo, &["rev-parse", &format!("{commit}^")]).trim(),
        first
    );

    let first_prompt = f.prompt("implementer-1.md").unwrap();
    let second_prompt = f.prompt("implementer-2.md").unwrap();
    assert!(!first_prompt.contains("unicorn"));
    assert!(second_prompt.contains("## Reviewer notes"));
    assert!(second_prompt.contains("Please also mention the unicorn."));
    assert!(!second_prompt.contains("VERDICT: changes"));
    // The reviewer saw the diff.
    let review_prompt = f.prompt("reviewer-1.md").unwrap();
    assert!(review_prompt.contains("+1"), "{review_prompt}");
}

#[test]
fn no_progress_blocks_after_the_limit() {
    let f = Fixture::new();
    let implementer = r#"echo "$GOALPOST_ITERATION" >> file; echo 'Claims:'; echo '- tried'"#;
    let mut input = f.input(implementer, None, &["test -f never-there"]);
    input.no_progress_limit = 2;
    let result = f.run(&input);
    let AttemptOutcome::Blocked { reason, needs } = &result.outcome else {
        panic!("expected blocked, got {:?}", result.outcome);
    };
    // Nothing ever passes: the agent is stopped after exactly the limit.
    assert_eq!(result.iterations.len(), 2, "{reason}");
    assert!(
        reason.starts_with("no progress in 2 iterations"),
        "{reason}"
    );
    assert!(reason.contains("test -f never-there"), "{reason}");
    assert!(needs.contains("test -f never-there"), "{needs}");
    let progress: Vec<bool> = result.iterations.iter().map(|i| i.progress).collect();
    assert_eq!(progress, [false, false]);
    // Every harvest is on the attempt ref.
    assert_eq!(
        result.head.as_deref(),
        result.iterations[1].commit.as_deref()
    );
    assert_eq!(result.head.clone().unwrap(), f.ref_target());
}

#[test]
fn two_empty_turns_block() {
    let f = Fixture::new();
    let result = f.run(&f.input("echo 'nothing to do'", Some(APPROVE), &["true"]));
    let AttemptOutcome::Blocked { reason, .. } = &result.outcome else {
        panic!("expected blocked, got {:?}", result.outcome);
    };
    assert!(reason.contains("made no change in 2 turns"), "{reason}");
    assert_eq!(result.iterations.len(), 2);
    // Empty turns are neither verified nor reviewed, and move no ref.
    assert!(
        result
            .iterations
            .iter()
            .all(|i| i.reviewer.is_none() && i.commit.is_none())
    );
    assert_eq!(result.head, None);
    assert!(
        f.prompt("implementer-2.md")
            .unwrap()
            .contains("changed no file")
    );
}

#[test]
fn turns_budget_stops_before_the_next_turn() {
    let f = Fixture::new();
    let implementer = r#"echo "$GOALPOST_ITERATION" >> file"#;
    let reviewer = "echo 'More.'; echo 'VERDICT: changes'";
    let mut input = f.input(implementer, Some(reviewer), &["true"]);
    input.budget.turns = Some(Spanned::new(3, 1, 1));
    let result = f.run(&input);
    assert_eq!(
        result.outcome,
        AttemptOutcome::BudgetLimited {
            budget: "turns".into(),
            limit: "3".into(),
            used: "3".into()
        }
    );
    assert_eq!(result.usage.turns, 3);
    assert_eq!(result.iterations.len(), 2);
    assert!(result.iterations[1].reviewer.is_none());
    assert!(f.prompt("reviewer-1.md").is_some());
    assert!(f.prompt("implementer-2.md").is_some());
    assert!(
        f.prompt("reviewer-2.md").is_none(),
        "a turn started after the budget"
    );
    assert!(
        f.prompt("implementer-3.md").is_none(),
        "a turn started after the budget"
    );
    // The last harvest is on the ref all the same.
    assert_eq!(result.head.clone().unwrap(), f.ref_target());
}

#[test]
fn token_usage_lines_count_against_the_budget() {
    let f = Fixture::new();
    let implementer = r#"echo "$GOALPOST_ITERATION" >> file; echo 'USAGE: tokens_in=600 tokens_out=0 tool_calls=2'"#;
    let mut input = f.input(implementer, None, &["false"]);
    input.budget.tokens = Some(Spanned::new(1000, 1, 1));
    let result = f.run(&input);
    assert_eq!(
        result.outcome,
        AttemptOutcome::BudgetLimited {
            budget: "tokens".into(),
            limit: "1000".into(),
            used: "1200".into()
        }
    );
    assert_eq!(result.iterations.len(), 2);
    assert_eq!(result.usage.tool_calls, 4);
}

#[test]
fn a_turn_whose_agent_reports_no_cost_is_priced_from_the_goal_files_price_table() {
    let f = Fixture::new();
    let implementer = r#"echo done > file; echo 'USAGE: tokens_in=2000000 tokens_cached=1000000 tokens_out=500000'"#;
    let mut input = f.input(implementer, None, &["test -f file"]);
    input.implementer.price = Some(goalpost_shared::plan::Price {
        input_per_mtok: 1.0,
        output_per_mtok: 4.0,
        cached_per_mtok: 0.1,
    });
    let result = f.run(&input);
    assert!(
        matches!(result.outcome, AttemptOutcome::Candidate { .. }),
        "{:?}",
        result.outcome
    );
    // 1M fresh input at $1, 1M cached at $0.10, 0.5M output at $4.
    assert!(
        (result.usage.cost_usd - 3.1).abs() < 1e-9,
        "{}",
        result.usage.cost_usd
    );
    assert!((result.iterations[0].implementer.usage.cost_usd - 3.1).abs() < 1e-9);
}

#[test]
fn a_check_that_cannot_run_blocks_at_once() {
    let f = Fixture::new();
    let result = f.run(&f.input("echo x > file", None, &["no-such-tool --check"]));
    let AttemptOutcome::Blocked { needs, .. } = &result.outcome else {
        panic!("expected blocked, got {:?}", result.outcome);
    };
    assert_eq!(needs, "a runnable `no-such-tool --check`");
    assert_eq!(result.iterations.len(), 1);
}

#[test]
fn a_missing_agent_blocks_at_once() {
    let f = Fixture::new();
    let mut input = f.input("true", None, &["true"]);
    input.implementer.command = vec!["no-such-agent-binary".into()];
    input.implementer.args.clear();
    let result = f.run(&input);
    let AttemptOutcome::Blocked { reason, needs } = &result.outcome else {
        panic!("expected blocked, got {:?}", result.outcome);
    };
    assert!(reason.contains("no-such-agent-binary"), "{reason}");
    assert!(needs.contains("impl"), "{needs}");
    assert_eq!(result.iterations.len(), 1);
}

#[test]
fn conflict_round_starts_from_the_merge_and_keeps_both_parents() {
    let f = Fixture::new();
    // The previous candidate changed README one way...
    f.git(&f.worktree, &["checkout", "-q", "--detach", &f.base]);
    fs::write(f.worktree.join("README"), "candidate\n").unwrap();
    f.git(&f.worktree, &["commit", "-q", "-am", "candidate"]);
    let previous = f.git(&f.worktree, &["rev-parse", "HEAD"]).trim().to_owned();
    f.git(&f.repo, &["update-ref", ATTEMPT_REF, &previous]);
    // ...and the new base another.
    fs::write(f.repo.join("README"), "new base\n").unwrap();
    f.git(&f.repo, &["commit", "-q", "-am", "new base"]);
    let new_base = f.git(&f.repo, &["rev-parse", "HEAD"]).trim().to_owned();

    let implementer = r#"
        grep -q '^<<<<<<<' README && printf 'new base\ncandidate\n' > README
        printf 'Claims:\n- conflict resolved\n'
    "#;
    let mut input = f.input(implementer, None, &["! grep -q '<<<<<<<' README"]);
    input.base = new_base.clone();
    input.resume_from = Some(previous.clone());
    input.first_iteration = 4;
    input.feedback = Some(Feedback::Conflict {
        paths: vec!["README".into()],
        previous_candidate: previous.clone(),
    });
    let result = f.run(&input);
    let AttemptOutcome::Candidate { commit, .. } = &result.outcome else {
        panic!("expected a candidate, got {:?}", result.outcome);
    };
    assert_eq!(result.iterations[0].iteration, 4);
    assert_eq!(
        f.git(&f.repo, &["show", "--no-patch", "--format=%P", commit])
            .trim(),
        format!("{new_base} {previous}")
    );
    assert_eq!(
        f.git(&f.repo, &["show", &format!("{commit}:README")]),
        "new base\ncandidate\n"
    );
    assert_eq!(&f.ref_target(), commit);
    assert!(
        f.prompt("implementer-4.md")
            .unwrap()
            .contains("resolve the conflict markers in:\n- README")
    );
}

#[test]
fn a_relative_agent_command_runs_from_the_worktree() {
    let script =
        "#!/bin/sh\necho from-script > file\nprintf 'Claims:\\n- ran %s\\n' \"$GOALPOST_ROLE\"\n";
    let f = Fixture::with_files(&[("tools/agent.sh", script)]);
    let mut input = f.input("unused", None, &["grep -q from-script file"]);
    input.implementer.command = vec!["./tools/agent.sh".into()];
    input.implementer.args.clear();
    let result = f.run(&input);
    assert_eq!(
        result.outcome,
        AttemptOutcome::Candidate {
            commit: f.ref_target(),
            claims: vec!["ran implementer".into()]
        }
    );
}

#[test]
fn a_blocked_verdict_blocks_with_the_reviewer_reason_and_needs() {
    let f = Fixture::new();
    let reviewer = "echo 'The spec contradicts itself.'; echo 'NEEDS: a decision on section 2'; echo 'VERDICT: blocked'";
    let result = f.run(&f.input("echo x > file", Some(reviewer), &["true"]));
    assert_eq!(
        result.outcome,
        AttemptOutcome::Blocked {
            reason: "The spec contradicts itself.".into(),
            needs: "a decision on section 2".into()
        }
    );
    assert_eq!(result.iterations.len(), 1);
}

#[test]
fn a_missing_worktree_is_bad_input_and_writes_nothing() {
    let f = Fixture::new();
    let mut input = f.input("true", None, &["true"]);
    input.worktree = f.root.join("no-such-worktree");
    let (out, out_path) = f.run_raw(&input);
    assert_eq!(
        out.status.code(),
        Some(2),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(!out_path.exists());
    assert!(out.stdout.is_empty());
}

#[test]
fn a_turn_is_cut_at_the_wall_budget_and_no_turn_follows() {
    let f = Fixture::new();
    let mut input = f.input("echo started > file; sleep 30", Some(APPROVE), &["true"]);
    input.budget.wall = Some(Spanned::new(
        WallTime {
            text: "2s".into(),
            duration: Duration::from_secs(2),
        },
        1,
        1,
    ));
    let started = Instant::now();
    let result = f.run(&input);
    assert!(started.elapsed() < Duration::from_secs(20));
    let AttemptOutcome::BudgetLimited { budget, limit, .. } = &result.outcome else {
        panic!("expected a budget stop, got {:?}", result.outcome);
    };
    assert_eq!((budget.as_str(), limit.as_str()), ("wall", "2s"));
    assert_eq!(result.iterations.len(), 1);
    let it = &result.iterations[0];
    assert!(it.implementer.record.timed_out);
    assert!(
        it.implementer
            .error
            .as_deref()
            .unwrap_or("")
            .contains("timed out")
    );
    // What the agent wrote before it was stopped is harvested, not lost.
    let commit = it.commit.clone().expect("the partial work is harvested");
    assert_eq!(
        f.git(&f.repo, &["show", &format!("{commit}:file")]),
        "started\n"
    );
    assert!(
        it.reviewer.is_none(),
        "no reviewer turn after the wall budget"
    );
}

#[test]
fn sigterm_ends_the_running_turn_harvests_and_writes_the_result() {
    let f = Fixture::new();
    let implementer = r#"echo $$ > "$GOALPOST_STATE_DIR/agent.pid"; echo started > file; sleep 60"#;
    let input = f.input(implementer, Some(APPROVE), &["true"]);
    let in_path = f.root.join("in.json");
    let out_path = f.root.join("out.json");
    fs::write(&in_path, serde_json::to_vec_pretty(&input).unwrap()).unwrap();
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_goalpost-worker"));
    cmd.arg("--input")
        .arg(&in_path)
        .arg("--output")
        .arg(&out_path)
        .stderr(std::process::Stdio::piped());
    f.hermetic_env(&mut cmd);
    let worker = cmd.spawn().unwrap();

    // Wait (with a deadline) until the agent is running, then stop the worker.
    let pid_file = f.private_dir().join("state/implementer").join("agent.pid");
    let deadline = Instant::now() + Duration::from_secs(20);
    while !(pid_file.exists() && f.worktree.join("file").exists()) {
        assert!(Instant::now() < deadline, "the agent never started");
        std::thread::sleep(Duration::from_millis(20));
    }
    let stopped_at = Instant::now();
    let kill = Command::new("kill")
        .args(["-TERM", &worker.id().to_string()])
        .status()
        .unwrap();
    assert!(kill.success());
    let out = worker.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stopped_at.elapsed() < Duration::from_secs(15));

    let result: WorkerResult = serde_json::from_slice(&fs::read(&out_path).unwrap()).unwrap();
    let AttemptOutcome::Stopped { reason } = &result.outcome else {
        panic!("expected a stop, got {:?}", result.outcome);
    };
    assert!(reason.starts_with("stopped by SIGTERM"), "{reason}");
    assert_eq!(result.iterations.len(), 1);
    let commit = result.iterations[0].commit.clone().unwrap();
    assert_eq!(f.ref_target(), commit);
    assert!(result.iterations[0].reviewer.is_none());
    assert!(f.prompt("reviewer-1.md").is_none());
    // The agent did not outlive the worker. The pid it wrote is its pid in the turn's own
    // PID namespace, so it is found by the temp dir in its environment instead.
    let marker = format!("TMPDIR={}", f.private_dir().join("tmp").display()).into_bytes();
    let carries = |pid: &str| {
        fs::read(format!("/proc/{pid}/environ"))
            .is_ok_and(|env| env.split(|&b| b == 0).any(|var| var == marker.as_slice()))
            && fs::read_to_string(format!("/proc/{pid}/stat"))
                .is_ok_and(|stat| !stat.contains(") Z "))
    };
    let deadline = Instant::now() + Duration::from_secs(5);
    let left = loop {
        let left: Vec<String> = fs::read_dir("/proc")
            .unwrap()
            .flatten()
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .filter(|name| name.parse::<u32>().is_ok() && carries(name))
            .collect();
        if left.is_empty() || Instant::now() >= deadline {
            break left;
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(left.is_empty(), "agent {left:?} still runs");
}

#[test]
fn a_round_without_resume_from_builds_on_the_attempt_ref() {
    let f = Fixture::new();
    let implementer = r#"echo "$GOALPOST_ITERATION" >> file"#;
    let mut input = f.input(implementer, None, &["test -f file"]);
    let first = f.run(&input);
    let AttemptOutcome::Candidate { commit: first, .. } = first.outcome else {
        panic!("expected a candidate, got {:?}", first.outcome);
    };
    // The same round again, as after a crash: no resume_from, the ref already set.
    input.first_iteration = 2;
    let second = f.run(&input);
    let AttemptOutcome::Candidate { commit, .. } = &second.outcome else {
        panic!("expected a candidate, got {:?}", second.outcome);
    };
    assert_eq!(
        f.git(&f.repo, &["rev-parse", &format!("{commit}^")]).trim(),
        first
    );
    assert_eq!(
        f.git(&f.repo, &["show", &format!("{commit}:file")]),
        "1\n2\n"
    );
}

#[test]
fn a_failed_review_approves_nothing() {
    let f = Fixture::new();
    let implementer = r#"echo "$GOALPOST_ITERATION" >> file"#;
    let reviewer = "echo 'VERDICT: approve'; echo 'crashed' >&2; exit 3";
    let mut input = f.input(implementer, Some(reviewer), &["true"]);
    input.no_progress_limit = 1;
    let result = f.run(&input);
    let AttemptOutcome::Blocked { reason, .. } = &result.outcome else {
        panic!("expected blocked, got {:?}", result.outcome);
    };
    assert!(reason.starts_with("no progress in 1 iteration"), "{reason}");
    assert_eq!(result.iterations.len(), 2);
    let review = result.iterations[0].reviewer.as_ref().unwrap();
    assert_eq!(review.verdict, None);
    let error = review.error.as_deref().unwrap();
    assert!(
        error.contains("exit code 3") && error.contains("crashed"),
        "{error}"
    );
}

#[test]
fn the_round_reports_each_turn_and_check_as_it_happens() {
    let f = Fixture::new();
    let implementer = r#"echo "$GOALPOST_ITERATION" >> file; echo 'USAGE: tokens_in=600 tokens_out=40 tool_calls=2'"#;
    let mut input = f.input(implementer, Some(APPROVE), &["true", "false"]);
    input.max_iterations = 2;
    let result = f.run(&input);
    let text = fs::read_to_string(f.private_dir().join(PROGRESS_FILE)).unwrap();
    let events: Vec<WorkerEvent> = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    // Per iteration: the implementer's turn, its checks, the reviewer's turn.
    let kinds: Vec<String> = events
        .iter()
        .map(|e| match e {
            WorkerEvent::TurnStarted { iteration, role } => {
                format!("{iteration} {} started", role.as_str())
            }
            WorkerEvent::TurnFinished {
                iteration, role, ..
            } => {
                format!("{iteration} {} finished", role.as_str())
            }
            WorkerEvent::ChecksFinished {
                iteration,
                passed,
                failed,
            } => format!("{iteration} checks {passed} passed {failed} failed"),
        })
        .collect();
    assert_eq!(
        kinds,
        [
            "1 implementer started",
            "1 implementer finished",
            "1 checks 1 passed 1 failed",
            "1 reviewer started",
            "1 reviewer finished",
            "2 implementer started",
            "2 implementer finished",
            "2 checks 1 passed 1 failed",
            "2 reviewer started",
            "2 reviewer finished",
        ]
    );
    // What the round used so far grows turn by turn and ends at the round's usage.
    let so_far: Vec<u64> = events
        .iter()
        .filter_map(|e| match e {
            WorkerEvent::TurnFinished { round_usage, .. } => Some(round_usage.tokens_in),
            _ => None,
        })
        .collect();
    assert_eq!(so_far, [600, 600, 1200, 1200]);
    assert_eq!(result.usage.tokens_in, 1200);
}

#[test]
fn a_negative_cost_reported_by_an_agent_pays_nothing_back_and_the_turn_says_so() {
    let f = Fixture::new();
    let implementer = r#"echo hi > file; echo 'USAGE: tokens_in=10 cost_usd=-100'"#;
    let mut input = f.input(implementer, None, &["test -f file"]);
    input.budget.cost_usd = Some(Spanned::new(0.5, 1, 1));
    let result = f.run(&input);
    assert_eq!(result.usage.cost_usd, 0.0);
    assert_eq!(result.usage.tokens_in, 10);
    let error = result.iterations[0]
        .implementer
        .error
        .clone()
        .unwrap_or_default();
    assert!(
        error.contains("the agent reported usage no turn can have: cost_usd -100"),
        "{error}"
    );
}

#[test]
fn the_workers_checks_get_a_writable_temp_dir_of_their_own() {
    let f = Fixture::new();
    let implementer = r#"echo hi > file; echo agent > "$TMPDIR/left-by-the-agent""#;
    // A test runner's temp file, and proof that the agents' temp dir is not this one.
    let check = r#"t=$(mktemp) && echo ok > "$t" && test ! -e "$(dirname "$t")/left-by-the-agent""#;
    let input = f.input(implementer, None, &[check]);
    let result = f.run(&input);
    let checks = &result.iterations[0].checks;
    assert!(checks[0].passed, "{:?}", checks[0].record);
    assert!(
        matches!(result.outcome, AttemptOutcome::Candidate { .. }),
        "{:?}",
        result.outcome
    );
}
