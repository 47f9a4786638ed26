//! Whole runs of the release `goalpost` binary on generated repositories, each against
//! its baseline in the same run:
//!
//! - P2, orchestration overhead per phase: a chain of 100 phases (20 with `--quick`)
//!   whose agent writes one file and whose check is `true`, on a 5,000-file repository
//!   (1,000), against a shell loop doing what comparable tools do per phase: `git
//!   worktree add`, the agent, commit, `git merge --ff-only`, `git worktree remove`.
//!   Prints `p2_goalpost_s`, `p2_shell_s` (per phase) and `p2_ratio`.
//! - P3, makespan of 64 independent phases (32) whose agents sleep 1 s with
//!   `max_parallel = 16`, against the ideal: phases × 1 s / 16. Prints `p3_makespan_s`,
//!   `p3_ideal_s`, `p3_ratio`.
//! - The same two runs with `--unconfined` (no sandbox, no Landlock), to show what the
//!   sandbox costs of each: `p2_unconfined_s` (per phase) and `p3_unconfined_s`.
//! - P5, peak resident memory of the `goalpost` process during P3's run (16 attempts in
//!   flight), from `VmHWM` in `/proc/<pid>/status`. Prints `p5_peak_rss_mb`.

#![allow(clippy::expect_used, clippy::unwrap_used)]

mod common;

use std::fmt::Write as _;
use std::fs;
use std::path::Path;
use std::time::{Duration, Instant};

use common::{Scratch, binary, figure, quick, secs, time};

const AGENT: &str = r#"#!/bin/sh
mkdir -p out
echo "$GOALPOST_PHASE" > "out/$GOALPOST_PHASE.txt"
if [ "${BENCH_SLEEP:-0}" != 0 ]; then sleep "$BENCH_SLEEP"; fi
echo "wrote out/$GOALPOST_PHASE.txt"
"#;

fn main() {
    let quick = quick();
    let (phases, files) = if quick { (20, 1_000) } else { (100, 5_000) };
    let goalpost = time_goalpost_chain(phases, files, Confined::Yes);
    let unconfined = time_goalpost_chain(phases, files, Confined::No);
    let shell = time_shell_chain(phases, files);
    let per = |d: Duration| d / phases as u32;
    println!(
        "P2: {phases}-phase chain on a {files}-file repository: goalpost {} s per phase, \
         shell loop {} s per phase",
        secs(per(goalpost)),
        secs(per(shell))
    );
    figure("p2_goalpost_s", secs(per(goalpost)));
    figure("p2_shell_s", secs(per(shell)));
    figure("p2_unconfined_s", secs(per(unconfined)));
    figure(
        "p2_ratio",
        format!("{:.3}", goalpost.as_secs_f64() / shell.as_secs_f64()),
    );

    let independent = if quick { 32 } else { 64 };
    let (makespan, peak_kb) = time_parallel(independent, 16, Confined::Yes);
    let (unconfined, _) = time_parallel(independent, 16, Confined::No);
    let ideal = Duration::from_secs(independent as u64 / 16);
    println!(
        "P3: {independent} independent phases, agents sleep 1 s, max_parallel = 16: \
         makespan {} s, ideal {} s; P5: peak RSS of goalpost {:.1} MB",
        secs(makespan),
        secs(ideal),
        peak_kb as f64 / 1024.0
    );
    figure("p3_makespan_s", secs(makespan));
    figure("p3_ideal_s", secs(ideal));
    figure("p3_unconfined_s", secs(unconfined));
    figure(
        "p3_ratio",
        format!("{:.3}", makespan.as_secs_f64() / ideal.as_secs_f64()),
    );
    figure("p5_peak_rss_mb", format!("{:.1}", peak_kb as f64 / 1024.0));
}

/// A goal file: `phases` phases, each depending on the one before when `chain`.
fn plan(agent: &Path, phases: usize, chain: bool, max_parallel: usize, sleep: u32) -> String {
    let mut text = format!(
        r#"+++
release = "main"
max_parallel = {max_parallel}

[agents.bot]
adapter = "command"
command = ["/bin/sh", "{}"]
env = {{ BENCH_SLEEP = "{sleep}" }}

[roles]
implementer = "bot"
+++

# Goal: every phase writes its file

## Outcome
Each phase writes out/<phase>.txt.

## Verification surface
- `true` passes

## Boundaries
- Allowed paths: out/

## Phases
"#,
        agent.display()
    );
    for i in 1..=phases {
        let _ = write!(text, "\n### p{i:03}: phase {i}\n");
        if chain && i > 1 {
            let _ = writeln!(text, "Depends on: p{:03}", i - 1);
        }
    }
    text
}

/// Prepares a scratch repository with the agent and the goal file outside it.
fn prepare(files: usize, plan_text: impl FnOnce(&Path) -> String) -> Scratch {
    let scratch = Scratch::new();
    scratch.generate(files);
    let agent = scratch.path("agent.sh");
    fs::write(&agent, AGENT).unwrap();
    fs::write(scratch.path("goal.md"), plan_text(&agent)).unwrap();
    scratch
}

/// Whether a run confines its agents and checks (the default) or passes `--unconfined`.
#[derive(Clone, Copy, PartialEq)]
enum Confined {
    Yes,
    No,
}

fn run_goalpost(scratch: &Scratch, confined: Confined) -> std::process::Child {
    let mut cmd = scratch.command(binary("goalpost"), scratch.dir.path());
    cmd.args(["run", "goal.md", "-C", "repo"]);
    if confined == Confined::No {
        cmd.arg("--unconfined");
    }
    cmd.stdout(fs::File::create(scratch.path("goalpost.out")).unwrap())
        .stderr(fs::File::create(scratch.path("goalpost.err")).unwrap())
        .spawn()
        .expect("goalpost starts")
}

fn time_goalpost_chain(phases: usize, files: usize, confined: Confined) -> Duration {
    let scratch = prepare(files, |agent| plan(agent, phases, true, 4, 0));
    let (t, status) = time(|| run_goalpost(&scratch, confined).wait().unwrap());
    assert!(
        status.success(),
        "goalpost run (chain): {status}\n{}",
        tail(&scratch)
    );
    let landed = fs::read_dir(scratch.repo().join("out")).unwrap().count();
    assert_eq!(landed, phases, "every phase landed on main");
    t
}

fn time_shell_chain(phases: usize, files: usize) -> Duration {
    let scratch = prepare(files, |_| String::new());
    let script = format!(
        r#"set -e
for i in $(seq 1 {phases}); do
    p=$(printf 'p%03d' "$i")
    git worktree add -q --detach ../wt/shell HEAD
    (cd ../wt/shell && GOALPOST_PHASE=$p sh ../../agent.sh >/dev/null && true \
        && git add -A && git commit -q -m "$p")
    git merge -q --ff-only "$(git -C ../wt/shell rev-parse HEAD)"
    git worktree remove ../wt/shell
done
"#
    );
    let (t, out) = time(|| {
        scratch
            .command("bash", &scratch.repo())
            .args(["-c", &script])
            .output()
            .unwrap()
    });
    common::check(&out, "the shell loop");
    let landed = fs::read_dir(scratch.repo().join("out")).unwrap().count();
    assert_eq!(landed, phases);
    t
}

/// The makespan of `phases` independent phases and the goalpost process's peak RSS in KiB.
fn time_parallel(phases: usize, max_parallel: usize, confined: Confined) -> (Duration, u64) {
    let scratch = prepare(200, |agent| plan(agent, phases, false, max_parallel, 1));
    let start = Instant::now();
    let mut child = run_goalpost(&scratch, confined);
    let status_file = format!("/proc/{}/status", child.id());
    let mut peak_kb = 0;
    let status = loop {
        if let Ok(status) = fs::read_to_string(&status_file)
            && let Some(kb) = status
                .lines()
                .find_map(|l| l.strip_prefix("VmHWM:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        {
            peak_kb = peak_kb.max(kb);
        }
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let makespan = start.elapsed();
    assert!(
        status.success(),
        "goalpost run (parallel): {status}\n{}",
        tail(&scratch)
    );
    let landed = fs::read_dir(scratch.repo().join("out")).unwrap().count();
    assert_eq!(landed, phases);
    (makespan, peak_kb)
}

/// The end of what the last `goalpost run` printed, for a failure message.
fn tail(scratch: &Scratch) -> String {
    let mut text = String::new();
    for name in ["goalpost.out", "goalpost.err"] {
        let all = fs::read_to_string(scratch.path(name)).unwrap_or_default();
        let lines: Vec<&str> = all.lines().collect();
        for line in &lines[lines.len().saturating_sub(15)..] {
            text.push_str(line);
            text.push('\n');
        }
    }
    text
}
