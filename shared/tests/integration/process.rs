//! The process door against real children (`sh -c ...`): isolation, output caps, and
//! that nothing a child starts outlives it.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::ffi::OsString;
use std::fs;
use std::path::Path;
use std::thread;
use std::time::{Duration, Instant};

use goalpost_shared::process::{
    self, CancelToken, Command, Outcome, ProcessError, Signal, env_allowlist,
};

const PATIENCE: Duration = Duration::from_secs(30);

fn sh(script: &str, cwd: &Path) -> Command {
    Command::new("sh", cwd)
        .args(["-c", script])
        .envs(env_allowlist(&["PATH"]))
}

fn run(cmd: &Command) -> Outcome {
    process::run(cmd, None)
        .unwrap_or_else(|e| panic!("{} in {}: {e}", cmd.command_line(), cmd.cwd.display()))
}

/// Whether `pid` is a live process (a zombie waiting to be reaped counts as dead).
fn alive(pid: u32) -> bool {
    match fs::read_to_string(format!("/proc/{pid}/stat")) {
        // The state follows the parenthesised command name.
        Ok(stat) => {
            !matches!(stat.rsplit(')').next().map(str::trim_start), Some(s) if s.starts_with(['Z', 'X']))
        }
        Err(_) => false,
    }
}

fn wait_until(what: &str, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + PATIENCE;
    while !done() {
        assert!(Instant::now() < deadline, "gave up waiting for {what}");
        thread::sleep(Duration::from_millis(10));
    }
}

fn first_line_pid(outcome: &Outcome) -> u32 {
    let text = outcome.stdout.text_lossy();
    text.lines()
        .next()
        .and_then(|l| l.trim().parse().ok())
        .unwrap_or_else(|| panic!("no pid in {outcome:?}"))
}

#[test]
fn exit_codes_and_signals_are_reported() {
    let dir = tempfile::tempdir().unwrap();
    let ok = run(&sh("echo out; echo err >&2", dir.path()));
    assert!(ok.success(), "{ok:?}");
    assert_eq!(ok.status.code, Some(0));
    assert_eq!(ok.stdout.text_lossy(), "out\n");
    assert_eq!(ok.stderr.text_lossy(), "err\n");
    assert!(!ok.timed_out && !ok.cancelled && !ok.pipes_abandoned);

    let failed = run(&sh("exit 7", dir.path()));
    assert_eq!((failed.status.code, failed.status.signal), (Some(7), None));
    assert!(!failed.success());

    let killed = run(&sh("kill -9 $$", dir.path()));
    assert_eq!((killed.status.code, killed.status.signal), (None, Some(9)));
    assert_eq!(killed.status.to_string(), "killed by signal 9 (SIGKILL)");
}

#[test]
fn runs_in_the_given_directory() {
    let dir = tempfile::tempdir().unwrap();
    let out = run(&sh("pwd -P", dir.path()));
    assert_eq!(
        out.stdout.text_lossy().trim_end(),
        dir.path().canonicalize().unwrap().to_str().unwrap()
    );
}

#[test]
fn stdin_bytes_reach_the_child() {
    let dir = tempfile::tempdir().unwrap();
    let out = run(&sh("cat", dir.path()).stdin_bytes("the prompt\nline two\n"));
    assert_eq!(out.stdout.text_lossy(), "the prompt\nline two\n");

    let unread = run(&sh("true", dir.path()).stdin_bytes(vec![b'x'; 4 << 20]));
    assert!(unread.success(), "{unread:?}");

    let closed = run(&sh("wc -c", dir.path()));
    assert_eq!(
        closed.stdout.text_lossy().trim(),
        "0",
        "stdin is /dev/null by default"
    );
}

#[test]
fn the_environment_is_exactly_the_given_one() {
    let dir = tempfile::tempdir().unwrap();
    let (parent_only, _) = std::env::vars_os()
        .find(|(k, _)| k != "PATH")
        .expect("the test runner has some variable besides PATH");
    let cmd = Command::new("env", dir.path())
        .envs(env_allowlist(&["PATH", "GOALPOST_SURELY_UNSET_VARIABLE"]))
        .env("GOALPOST_ROLE", "implementer");
    let out = run(&cmd);
    let mut keys: Vec<String> = out
        .stdout
        .text_lossy()
        .lines()
        .map(|l| l.split('=').next().unwrap().to_owned())
        .collect();
    keys.sort();
    assert_eq!(keys, ["GOALPOST_ROLE", "PATH"], "{out:?}");
    assert!(!keys.contains(&parent_only.to_string_lossy().into_owned()));
    let path = std::env::var("PATH").unwrap();
    assert!(out.stdout.text_lossy().contains(&format!("PATH={path}\n")));
}

#[test]
fn the_program_is_looked_up_on_the_childs_path() {
    let dir = tempfile::tempdir().unwrap();
    let bin = dir.path().join("bin");
    fs::create_dir(&bin).unwrap();
    fs::write(
        bin.join("hello-tool"),
        "#!/bin/sh\necho from the child PATH\n",
    )
    .unwrap();
    use std::os::unix::fs::PermissionsExt;
    fs::set_permissions(bin.join("hello-tool"), fs::Permissions::from_mode(0o755)).unwrap();

    let cmd = Command::new("hello-tool", dir.path()).env("PATH", &bin);
    assert_eq!(run(&cmd).stdout.text_lossy(), "from the child PATH\n");

    let relative = Command::new("./bin/hello-tool", dir.path());
    assert_eq!(run(&relative).stdout.text_lossy(), "from the child PATH\n");
}

#[test]
fn a_missing_program_is_not_found_on_the_path_searched() {
    let dir = tempfile::tempdir().unwrap();
    let cmd = Command::new("goalpost-no-such-program", dir.path()).env("PATH", "/nowhere:/usr/bin");
    match process::run(&cmd, None) {
        Err(ProcessError::NotFound {
            program,
            searched_path,
            cwd,
        }) => {
            assert_eq!(program, "goalpost-no-such-program");
            assert_eq!(searched_path, "/nowhere:/usr/bin");
            assert_eq!(cwd, dir.path());
        }
        other => panic!("expected NotFound, got {other:?}"),
    }
    // `sh` exists for goalpost, but not on an empty PATH.
    let no_path = Command::new("sh", dir.path());
    let err = process::run(&no_path, None).unwrap_err();
    assert!(matches!(err, ProcessError::NotFound { .. }), "{err}");
    assert!(err.to_string().contains("`sh` not found"), "{err}");
}

#[test]
fn a_file_without_execute_permission_is_reported() {
    let dir = tempfile::tempdir().unwrap();
    fs::write(dir.path().join("tool"), "#!/bin/sh\n").unwrap();
    let cmd = Command::new("tool", dir.path()).env("PATH", dir.path());
    let err = process::run(&cmd, None).unwrap_err();
    assert!(
        matches!(&err, ProcessError::PermissionDenied { path, .. } if path == &dir.path().join("tool")),
        "{err}"
    );
}

#[test]
fn a_missing_working_directory_is_reported() {
    let dir = tempfile::tempdir().unwrap();
    let err = process::run(&sh("true", &dir.path().join("gone")), None).unwrap_err();
    assert!(matches!(err, ProcessError::Cwd { .. }), "{err}");
    assert!(
        process::run(
            &Command {
                argv: Vec::new(),
                ..sh("", dir.path())
            },
            None
        )
        .is_err()
    );
}

#[test]
fn fifty_megabytes_of_output_are_counted_but_not_kept() {
    let dir = tempfile::tempdir().unwrap();
    let cap = 64 * 1024;
    let cmd = sh(
        "head -c 50000000 /dev/zero; head -c 3000000 /dev/zero >&2; echo end",
        dir.path(),
    )
    .output_cap(cap);
    let out = run(&cmd);
    assert!(out.success(), "{out:?}");
    assert_eq!(out.stdout.total, 50_000_004);
    assert!(out.stdout.truncated);
    assert_eq!(out.stdout.bytes.len(), cap);
    assert!(
        out.stdout.tail(4).ends_with("end\n"),
        "the tail is the stream's real end"
    );
    assert_eq!(out.stderr.total, 3_000_000);
    assert!(out.stderr.truncated);
    assert_eq!(out.stderr.bytes.len(), cap);
}

#[test]
fn a_timeout_ends_the_group_with_sigterm() {
    let dir = tempfile::tempdir().unwrap();
    let started = Instant::now();
    let out = run(&sh("sleep 1000", dir.path()).timeout(Duration::from_millis(200)));
    assert!(out.timed_out && !out.success(), "{out:?}");
    assert_eq!(out.status.signal, Some(15), "{out:?}");
    assert!(started.elapsed() < PATIENCE);
}

#[test]
fn a_child_ignoring_sigterm_is_killed_after_the_grace_period() {
    let dir = tempfile::tempdir().unwrap();
    let grace = Duration::from_millis(300);
    let cmd = sh("trap '' TERM; echo $$; sleep 1000", dir.path())
        .timeout(Duration::from_secs(1))
        .grace(grace);
    let started = Instant::now();
    let out = run(&cmd);
    assert!(out.timed_out, "{out:?}");
    assert_eq!(out.status.signal, Some(9), "{out:?}");
    assert!(out.duration >= Duration::from_secs(1) + grace, "{out:?}");
    assert!(started.elapsed() < PATIENCE);
}

#[test]
fn a_background_grandchild_does_not_outlive_the_run() {
    let dir = tempfile::tempdir().unwrap();
    // The subshell exits at once; its `sleep` is orphaned but stays in the group.
    let out = run(&sh("(sleep 1000 & echo $!); echo hi", dir.path()));
    assert!(out.success(), "{out:?}");
    assert!(out.stdout.text_lossy().ends_with("hi\n"));
    assert!(!out.pipes_abandoned, "{out:?}");
    let grandchild = first_line_pid(&out);
    wait_until("the grandchild to die", || !alive(grandchild));
}

#[test]
fn a_daemon_holding_the_pipes_does_not_hang_the_run() {
    let dir = tempfile::tempdir().unwrap();
    // `setsid` leaves the group, so the group kill cannot reach it; it keeps stdout open.
    // The outer shell waits until the daemon has left the group before it exits.
    let script = "setsid sh -c 'echo $$ > daemon; exec sleep 1000' &
        while [ ! -s daemon ]; do sleep 0.01; done; cat daemon; echo hi";
    let cmd = sh(script, dir.path()).pipe_wait(Duration::from_millis(300));
    let started = Instant::now();
    let out = run(&cmd);
    let elapsed = started.elapsed();
    let daemon = first_line_pid(&out);
    // Clean up first, so a failed assertion leaves nothing behind. The daemon leads its own
    // group, which is what `kill_group` is for.
    process::kill_group(daemon, Duration::from_secs(5)).unwrap();
    assert!(out.success(), "{out:?}");
    assert!(out.pipes_abandoned, "{out:?}");
    assert!(out.stdout.text_lossy().ends_with("hi\n"), "{out:?}");
    assert!(elapsed < PATIENCE, "{elapsed:?}");
    wait_until("the daemon to die", || !alive(daemon));
}

#[test]
fn cancelling_from_another_thread_ends_the_run() {
    let dir = tempfile::tempdir().unwrap();
    let ready = dir.path().join("ready");
    let token = CancelToken::new();
    let canceller = {
        let token = token.clone();
        let ready = ready.clone();
        thread::spawn(move || {
            wait_until("the child to start", || ready.exists());
            token.cancel();
        })
    };
    let cmd = sh("touch ready; sleep 1000", dir.path()).grace(Duration::from_secs(5));
    let started = Instant::now();
    let out = process::run(&cmd, Some(&token)).unwrap();
    canceller.join().unwrap();
    assert!(out.cancelled && !out.timed_out && !out.success(), "{out:?}");
    assert_eq!(out.status.signal, Some(15), "{out:?}");
    assert!(started.elapsed() < PATIENCE);
    assert!(token.is_cancelled() && token.wait_timeout(Duration::ZERO));

    // A token cancelled before the run ends it as soon as it starts.
    let again = process::run(&cmd, Some(&token)).unwrap();
    assert!(again.cancelled, "{again:?}");
}

#[test]
fn an_uncancelled_token_changes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let token = CancelToken::new();
    let out = process::run(&sh("echo fine", dir.path()), Some(&token)).unwrap();
    assert!(out.success() && !out.cancelled, "{out:?}");
    assert!(!token.wait_timeout(Duration::from_millis(1)));
}

#[test]
fn kill_group_ends_a_running_child_by_its_pid() {
    let dir = tempfile::tempdir().unwrap();
    let script = "trap '' TERM; sleep 1000 & echo $! > bg; touch ready; sleep 1000";
    let running = process::spawn(&sh(script, dir.path())).unwrap();
    let pgid = running.pid();
    let waiter = thread::spawn(move || running.wait(None).unwrap());
    wait_until("the trap to be set", || dir.path().join("ready").exists());
    let background: u32 = fs::read_to_string(dir.path().join("bg"))
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    process::kill_group(pgid, Duration::from_millis(200)).unwrap();
    let out = waiter.join().unwrap();
    assert_eq!(out.status.signal, Some(9), "TERM was ignored: {out:?}");
    wait_until("the background sleep to die", || !alive(background));
    assert!(process::signal_group(0, Signal::Term).is_err());
}

#[test]
fn output_of_a_failed_spawn_names_program_and_cwd() {
    let dir = tempfile::tempdir().unwrap();
    let err = process::run(
        &Command::new("nope", dir.path()).env("PATH", OsString::from("/nonexistent")),
        None,
    )
    .unwrap_err();
    let message = err.to_string();
    assert!(
        message.contains("nope") && message.contains(dir.path().to_str().unwrap()),
        "{message}"
    );
}
