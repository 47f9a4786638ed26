//! A pseudo-terminal for the tests: a command run in a detached tmux session of a tmux
//! server of the test's own, whose screen the test reads with `capture-pane` while the
//! command runs and after it exited. The server ends when the value is dropped.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::TestEnv;

/// The name of the session a [`Terminal`] runs its command in.
const SESSION: &str = "goalpost-test";

/// A command running on a terminal of `cols` x `rows`, in the test's hermetic environment.
#[derive(Debug)]
pub struct Terminal {
    socket: PathBuf,
    home: PathBuf,
    command: String,
    /// Where the shell writes the command's exit status.
    exit_file: PathBuf,
}

/// Whether tmux is installed; `false` after saying loudly why the test is skipped (a
/// failure under `CI=true`, where `.ci/run` installs it).
pub fn tmux_installed() -> bool {
    let found = Command::new("tmux")
        .arg("-V")
        .output()
        .is_ok_and(|o| o.status.success());
    if !found {
        let why = "tmux is not installed: apt-get install tmux (`.ci/run` does)";
        if std::env::var("CI").is_ok_and(|v| v == "true") {
            panic!("{why}");
        }
        eprintln!("\n*** SKIPPED: {why} ***\n");
    }
    found
}

/// `arg` quoted for `sh`.
fn sh_quoted(arg: &str) -> String {
    format!("'{}'", arg.replace('\'', r"'\''"))
}

impl Terminal {
    /// Starts `program args` in the test's directory on a new terminal of `cols` columns
    /// and `rows` rows. A shell runs it and, once it exited, writes its exit status to a
    /// file and waits on the terminal, so the last screen stays to be read.
    pub fn start(env: &TestEnv, cols: u16, rows: u16, program: &Path, args: &[&str]) -> Terminal {
        let socket = env.dir().join("tmux.sock");
        let config = env.write("tmux.conf", "set -g status off\nset -g history-limit 0\n");
        let exit_file = env.dir().join("terminal.exit");
        let command = std::iter::once(program.to_str().expect("test paths are UTF-8"))
            .chain(args.iter().copied())
            .map(sh_quoted)
            .collect::<Vec<_>>()
            .join(" ");
        let shell = format!(
            "{command}; echo $? > {}; read -r _",
            sh_quoted(exit_file.to_str().expect("test paths are UTF-8"))
        );
        let term = Terminal {
            socket,
            home: env.home(),
            command: command.clone(),
            exit_file,
        };
        let mut tmux = env.command("tmux");
        tmux.arg("-S")
            .arg(&term.socket)
            .arg("-f")
            .arg(&config)
            .args(["new-session", "-d", "-s", SESSION])
            .args(["-x", &cols.to_string(), "-y", &rows.to_string()])
            .arg("-c")
            .arg(env.dir())
            .args(["sh", "-c", &shell]);
        let out = tmux.output().unwrap();
        assert!(
            out.status.success(),
            "cannot start `{command}` in tmux: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        term
    }

    fn tmux(&self, args: &[&str]) -> String {
        let mut cmd = Command::new("tmux");
        goalpost_fixtures::repo::hermetic_command(&mut cmd, &self.home);
        let out = cmd.arg("-S").arg(&self.socket).args(args).output().unwrap();
        assert!(
            out.status.success(),
            "tmux {} failed for `{}`: {}",
            args.join(" "),
            self.command,
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// The screen as it is now: its rows, without the empty ones at the bottom.
    pub fn screen(&self) -> String {
        let screen = self.tmux(&["capture-pane", "-p", "-t", SESSION]);
        format!("{}\n", screen.trim_end())
    }

    /// The command's exit status once it exited; `None` while it runs.
    pub fn exit_status(&self) -> Option<i32> {
        let line = crate::durable::line_in(&self.exit_file)?;
        Some(line.parse().unwrap_or(-1))
    }

    /// The command line running on the terminal, for failure messages.
    pub fn command(&self) -> &str {
        &self.command
    }
}

impl Drop for Terminal {
    fn drop(&mut self) {
        let _ = Command::new("tmux")
            .arg("-S")
            .arg(&self.socket)
            .arg("kill-server")
            .output();
    }
}
