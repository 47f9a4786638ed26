//! What a person sees of a run: the README's first command from the root of a clone,
//! `status` following an attempt while its agent is still at work, and `run`'s live block
//! on a terminal.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::Path;

use goalpost_fixtures::repo::CALC_SUB;
use goalpost_tests::browser::output_dir;
use goalpost_tests::durable::{DEADLINE, wait_for};
use goalpost_tests::terminal::{Terminal, tmux_installed};
use goalpost_tests::{Run, TestEnv, binary, calc_env, path_quoted, quoted, repo_root};

/// The first command block of the README, as a newcomer copies it.
fn first_readme_command() -> String {
    let readme = std::fs::read_to_string(repo_root().join("README.md")).unwrap();
    let block = readme
        .split("```sh\n")
        .nth(1)
        .and_then(|rest| rest.split("```").next())
        .expect("the README has a sh block");
    block.trim().to_owned()
}

#[test]
fn the_readmes_first_command_runs_the_demo_from_the_root_of_a_clone() {
    // The command is written for the default target directory; the build half is what
    // `cargo build --workspace` before the tests already did.
    assert_eq!(
        first_readme_command(),
        "cargo build && target/debug/goalpost demo"
    );
    let literal = repo_root().join("target/debug/goalpost");
    let program = if std::env::var_os("CARGO_TARGET_DIR").is_none() && literal.is_file() {
        Path::new("target/debug/goalpost").to_path_buf()
    } else {
        binary("goalpost")
    };
    let env = TestEnv::new();
    // The demo goes to the system temp dir: this test's.
    let mut cmd = env.command(&program);
    cmd.current_dir(repo_root())
        .env("TMPDIR", env.dir())
        .arg("demo");
    let run = Run::of(cmd);
    run.assert_code(0)
        .assert_stdout_has("outcome of each phase:");
    for id in ["sub", "mul", "speed", "docs"] {
        assert!(
            run.stdout
                .lines()
                .any(|l| l.starts_with(&format!("  {id:<6} merged "))),
            "no outcome line for {id}\n{run}"
        );
    }
    let demo = run
        .stdout
        .lines()
        .find_map(|l| l.strip_prefix("demo repository: "))
        .expect("the demo says where it is");
    assert!(
        Path::new(demo).starts_with(env.dir()),
        "{demo} is not in the temp dir"
    );
    // Nothing was made in the clone itself.
    let status = std::process::Command::new("git")
        .args(["status", "--porcelain", "--untracked-files=all"])
        .current_dir(repo_root())
        .output()
        .unwrap();
    let dirty = String::from_utf8_lossy(&status.stdout);
    assert!(
        !dirty.lines().any(|l| l.contains("goalpost-demo")),
        "{dirty}"
    );
}

/// The calc project and a goal whose implementer writes a wrong `sub` in iteration 1 and,
/// in iteration 2, waits for the file it returns (the release) before writing the right
/// one. Each turn reports its tokens.
fn gated_goal() -> (TestEnv, std::path::PathBuf) {
    let env = calc_env();
    let release = env.dir().join("release-iteration-2");
    let sub = env.write("sub.sh", CALC_SUB);
    // Iteration 1 writes a wrong `sub`; iteration 2 waits until the test has seen it at
    // work, then writes the right one. Each turn reports its tokens.
    let script = r#"
if [ "$GOALPOST_ITERATION" = 1 ]; then
  printf 'sub() { echo 0; }\n' > ops/sub.sh
else
  n=0
  while [ ! -e "$RELEASE" ]; do
    n=$((n + 1)); [ "$n" -gt 6000 ] && exit 1
    sleep 0.02
  done
  cp "$SUB" ops/sub.sh
fi
echo 'USAGE: tokens_in=500 tokens_out=20'
"#;
    env.write(
        "goal.md",
        &format!(
            "+++\nrelease = \"main\"\n\n[agents.coder]\nadapter = \"command\"\ncommand = [\"sh\", \"-c\", {}]\nenv = {{ RELEASE = {}, SUB = {} }}\n\n[roles]\nimplementer = \"coder\"\n+++\n\n# Goal: calc subtracts\n\n## Outcome\n`sh calc.sh sub 5 3` prints 2.\n\n## Verification surface\n- `sh calc.sh sub 5 3 | grep -qx 2`\n\n## Boundaries\n- Allowed paths: ops/\n",
            quoted(script),
            quoted(release.to_str().unwrap()),
            quoted(sub.to_str().unwrap()),
        ),
    );
    (env, release)
}

#[test]
fn status_shows_a_running_attempts_iteration_and_usage_while_its_agent_works() {
    let (env, release) = gated_goal();
    let mut running = env.spawn_goalpost(["-C", "calc", "run", "goal.md"], &[]);

    let live = wait_for("the attempt at work in iteration 2", DEADLINE, || {
        if let Some(run) = running.finished() {
            panic!("the run ended before iteration 2 was seen\n{run}");
        }
        let status = env.goalpost(["-C", "calc", "status", "--json"]);
        if status.code != 0 {
            return None;
        }
        let json = status.json();
        let live = json["live"].get(0)?.clone();
        (live["iteration"] == 2 && live["turn_running"] == true).then_some((json, live))
    });
    let (json, live) = live;
    assert_eq!(live["phase_id"], "goal");
    assert_eq!(live["n"], 1);
    assert_eq!(live["role"], "implementer");
    // Iteration 1's turn is counted while the round that ran it is still going on...
    assert_eq!(live["usage"]["tokens_in"], 500, "{live}");
    assert_eq!(live["usage"]["tokens_out"], 20, "{live}");
    assert_eq!(live["checks"], serde_json::json!([0, 1]), "{live}");
    // ...where the recorded rounds know nothing of it yet.
    assert_eq!(json["attempts"][0]["state"], "running");
    assert_eq!(json["attempts"][0]["usage"]["tokens_in"], 0);
    let text = env.goalpost(["-C", "calc", "status"]);
    text.assert_code(0).assert_stdout_has(
        "goal #1  iteration 2, implementer turn running; used 520 tokens, $0.0000",
    );
    text.assert_stdout_has("checks: 0 passed, 1 failed");

    std::fs::write(&release, "go\n").unwrap();
    let done = running.wait();
    done.assert_code(0);
    let after = env.goalpost(["-C", "calc", "status", "--json"]).json();
    assert_eq!(after["live"], serde_json::json!([]), "{after}");
    assert_eq!(after["attempts"][0]["usage"]["tokens_in"], 1000);
    assert_eq!(after["attempts"][0]["state"], "merged");
}

#[test]
fn status_watch_follows_the_run_from_another_terminal_until_it_ends() {
    let (env, release) = gated_goal();
    let mut running = env.spawn_goalpost(["-C", "calc", "run", "goal.md"], &[]);
    // The run holds the repository once its first round is under way.
    wait_for("the run's first round", DEADLINE, || {
        if let Some(run) = running.finished() {
            panic!("the run ended early\n{run}");
        }
        running
            .stdout_so_far()
            .contains("round 1 from iteration 1")
            .then_some(())
    });
    let watch = env.spawn_goalpost(["-C", "calc", "status", "--watch"], &[]);
    wait_for("the watch to print the status", DEADLINE, || {
        watch.stdout_so_far().contains("at work now:").then_some(())
    });
    std::fs::write(&release, "go\n").unwrap();
    running.wait().assert_code(0);
    let watched = watch.wait();
    watched.assert_code(0);
    // After the status it printed at the start: what happened next, as `run` prints it.
    let after = watched.stdout.split("at work now:").nth(1).unwrap();
    for line in [
        "phase goal: attempt 1 proposes ",
        "phase goal: attempt 1 audit says merge",
        "phase goal: merged attempt 1 at ",
        "whole goal: audit says merge",
        "run ended: complete",
    ] {
        assert!(after.contains(line), "no `{line}` in\n{watched}");
    }
}

#[test]
fn run_progress_json_writes_every_event_as_a_json_line_on_stdout() {
    let env = calc_env();
    let sub = env.write("sub.sh", CALC_SUB);
    env.write(
        "goal.md",
        &format!(
            "+++\nrelease = \"main\"\n\n[agents.coder]\nadapter = \"command\"\ncommand = [\"sh\", \"-c\", {}]\n\n[roles]\nimplementer = \"coder\"\n+++\n\n# Goal: calc subtracts\n\n## Outcome\n`sh calc.sh sub 5 3` prints 2.\n\n## Verification surface\n- `sh calc.sh sub 5 3 | grep -qx 2`\n\n## Boundaries\n- Allowed paths: ops/\n",
            quoted(&format!("cp {} ops/sub.sh; echo 'USAGE: tokens_in=7 tokens_out=3'", sub.display())),
        ),
    );
    let run = env.goalpost(["-C", "calc", "run", "goal.md", "--progress", "json"]);
    run.assert_code(0);
    let events: Vec<serde_json::Value> = run
        .stdout
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{l:?}: {e}\n{run}")))
        .collect();
    let seqs: Vec<u64> = events.iter().map(|e| e["seq"].as_u64().unwrap()).collect();
    assert_eq!(seqs, (1..=events.len() as u64).collect::<Vec<_>>(), "{run}");
    assert!(events.iter().all(|e| e["at_ms"].as_i64().unwrap() > 0));
    let kinds: Vec<&str> = events.iter().map(|e| e["kind"].as_str().unwrap()).collect();
    assert_eq!(
        kinds,
        [
            "run_started",
            "phase_started",
            "attempt_round_started",
            "turn_started",
            "turn_finished",
            "checks_finished",
            "candidate_proposed",
            "audit_finished",
            "phase_merged",
            "audit_started",
            "audit_finished",
            "run_ended",
        ],
        "{run}"
    );
    let turn = &events[4];
    assert_eq!(turn["usage"]["tokens_in"], 7);
    assert_eq!(turn["attempt_usage"]["tokens_out"], 3);
    assert_eq!(events[9]["purpose"], "goal");
    assert_eq!(events[11]["state"], "complete");
    // The lines a person reads go to stderr, so stdout stays JSON.
    run.assert_stderr_has("run ").assert_stderr_has("report: ");
    // The event log in the store holds the same events.
    let status = env.goalpost(["-C", "calc", "status", "--json"]).json();
    assert_eq!(status["run"]["state"], "complete");
}

/// The calc project and a goal whose implementer waits, in its first turn, for a line on
/// the fifo it returns before it writes a right `sub`: the test holds the agent at work
/// for as long as it needs. Each attempt may take 4 turns and 10 minutes.
fn fifo_goal() -> (TestEnv, std::path::PathBuf) {
    let env = calc_env();
    let gate = env.dir().join("gate.fifo");
    let made = std::process::Command::new("mkfifo")
        .arg(&gate)
        .status()
        .unwrap();
    assert!(made.success(), "mkfifo {}", gate.display());
    let sub = env.write("sub.sh", CALC_SUB);
    let script =
        "read go < \"$GATE\"\ncp \"$SUB\" ops/sub.sh\necho 'USAGE: tokens_in=500 tokens_out=20'\n";
    env.write(
        "goal.md",
        &format!(
            "+++\nrelease = \"main\"\n\n[budget]\nturns = 4\nwall = \"10m\"\n\n[agents.coder]\nadapter = \"command\"\ncommand = [\"sh\", \"-c\", {}]\nenv = {{ GATE = {}, SUB = {} }}\n\n[roles]\nimplementer = \"coder\"\n+++\n\n# Goal: calc subtracts\n\n## Outcome\n`sh calc.sh sub 5 3` prints 2.\n\n## Verification surface\n- `sh calc.sh sub 5 3 | grep -qx 2`\n\n## Boundaries\n- Allowed paths: ops/\n",
            quoted(script),
            path_quoted(&gate),
            path_quoted(&sub),
        ),
    );
    (env, gate)
}

/// The lines of `screen` that are the live block's first: `run <id>  <state>  <time>`.
fn block_headers(screen: &str) -> Vec<&str> {
    screen
        .lines()
        .filter(|l| {
            l.strip_prefix("run ")
                .and_then(|rest| rest.split_once("  "))
                .is_some_and(|(id, _)| !id.contains(' ') && !id.ends_with(':'))
        })
        .collect()
}

#[test]
fn run_on_a_terminal_redraws_the_phases_iteration_and_budget_in_place_while_the_agent_works() {
    if !tmux_installed() {
        return;
    }
    let (env, gate) = fifo_goal();
    let term = Terminal::start(
        &env,
        120,
        40,
        &binary("goalpost"),
        &["-C", "calc", "run", "goal.md"],
    );
    let at_work = wait_for("the block to show the agent at work", DEADLINE, || {
        let screen = term.screen();
        if let Some(code) = term.exit_status() {
            panic!(
                "`{}` exited with {code} before its agent was seen at work\n{screen}",
                term.command()
            );
        }
        // The block drawn whole, down to its last line, with the turn running.
        (screen.contains("implementer turn running") && screen.contains("\nrun budget: "))
            .then_some(screen)
    });
    // The block, below the plain lines: the phase running, its attempt's agent in the
    // first iteration's implementer turn, the turn counted against the attempt's budget.
    let attempt = at_work
        .lines()
        .find(|l| l.trim_start().starts_with("#1 coder"))
        .unwrap_or_else(|| panic!("no line of attempt 1\n{at_work}"));
    for part in [
        "running",
        "iteration 1",
        "implementer turn running",
        "turns 1/4",
        "/10m",
        "tokens 0",
    ] {
        assert!(
            attempt.contains(part),
            "no `{part}` in {attempt:?}\n{at_work}"
        );
    }
    assert!(at_work.lines().any(|l| l == "  goal  running"), "{at_work}");
    assert!(at_work.contains("\naudits: none\n"), "{at_work}");
    assert!(at_work.contains("\ntrain: empty\n"), "{at_work}");
    assert!(
        at_work.contains("\nrun budget: turns 1  time "),
        "{at_work}"
    );
    assert_eq!(block_headers(&at_work).len(), 1, "{at_work}");
    assert!(
        block_headers(&at_work)[0].contains("  active  "),
        "{at_work}"
    );
    assert!(
        at_work.contains("phase goal: attempt 1 (coder) round 1 from iteration 1"),
        "{at_work}"
    );
    std::fs::create_dir_all(output_dir("progress")).unwrap();
    std::fs::write(output_dir("progress").join("at-work.txt"), &at_work).unwrap();
    // The README's capture is this one, taken again on request so that a test run leaves
    // the clone as it was.
    if std::env::var_os("GOALPOST_DOCS_SCREENSHOTS").is_some() {
        std::fs::create_dir_all(repo_root().join("docs")).unwrap();
        std::fs::write(repo_root().join("docs/progress.txt"), &at_work).unwrap();
    }

    // Opened for reading and writing, the fifo takes the line at once and holds it until
    // the agent reads it; it stays open until then.
    let mut release = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(&gate)
        .unwrap();
    std::io::Write::write_all(&mut release, b"go\n").unwrap();
    // Past the deadline, the screen says where the run stands (`wait_for` gives up later).
    let start = std::time::Instant::now();
    let code = wait_for("the run to end", DEADLINE + DEADLINE, || {
        let code = term.exit_status();
        assert!(
            code.is_some() || start.elapsed() < DEADLINE,
            "`{}` still runs after {DEADLINE:?}\n{}",
            term.command(),
            term.screen()
        );
        code
    });
    let done = term.screen();
    drop(release);
    std::fs::write(output_dir("progress").join("done.txt"), &done).unwrap();
    assert_eq!(code, 0, "`{}`\n{done}", term.command());
    // Drawn in place: one block on the screen, left in its last state above the summary,
    // and each line above it printed once.
    let headers = block_headers(&done);
    assert_eq!(headers.len(), 1, "{done}");
    assert!(headers[0].contains("  complete  "), "{done}");
    assert!(
        done.lines().any(|l| l.starts_with("  goal  merged at ")),
        "{done}"
    );
    let attempt = done
        .lines()
        .find(|l| l.trim_start().starts_with("#1 coder"))
        .unwrap_or_else(|| panic!("no line of attempt 1\n{done}"));
    assert!(attempt.contains("merged"), "{attempt:?}\n{done}");
    assert!(attempt.contains("turns 1/4"), "{attempt:?}\n{done}");
    assert!(attempt.contains("tokens 520"), "{attempt:?}\n{done}");
    for line in [
        "phase goal: started on ",
        "phase goal: attempt 1 proposes ",
        "phase goal: merged attempt 1 at ",
        "whole goal: audit says merge",
    ] {
        assert_eq!(
            done.lines().filter(|l| l.starts_with(line)).count(),
            1,
            "`{line}` is not printed once\n{done}"
        );
    }
    let summary = done
        .find("complete; main now holds every phase")
        .unwrap_or_else(|| panic!("no summary\n{done}"));
    assert!(done.find(headers[0]).unwrap() < summary, "{done}");
}

#[test]
fn the_readme_shows_the_terminal_progress_the_test_captured() {
    let capture = std::fs::read_to_string(repo_root().join("docs/progress.txt")).unwrap();
    let readme = std::fs::read_to_string(repo_root().join("README.md")).unwrap();
    assert!(
        readme.contains(&format!("```text\n{capture}```")),
        "the README's ```text block of the terminal progress is not docs/progress.txt"
    );
}
