//! Helpers for the end-to-end tests: hermetic environments, real git repositories, and the
//! paths of goalpost's built binaries.
//!
//! Every command runs with a cleared environment: the fixtures' hermetic one
//! ([`goalpost_fixtures::repo::hermetic_env`]: `HOME` in the test's temp dir,
//! `GIT_CONFIG_GLOBAL=/dev/null`, no system git config, `LC_ALL=C`, a fixed author and
//! committer and their dates), and `GOALPOST_WORKTREES` in the test's temp dir, so a test
//! sees the same thing on every machine and can check that no worktree is left behind.
#![allow(clippy::unwrap_used, clippy::expect_used)]

pub mod browser;
pub mod cheats;
pub mod corpus;
pub mod dashboard;
pub mod durable;
pub mod terminal;

use std::collections::BTreeMap;
use std::ffi::OsStr;
use std::fmt;
use std::path::{Path, PathBuf};
use std::process::Command;

use goalpost_fixtures::repo::hermetic_command;
use tempfile::TempDir;

/// The repository's root directory.
pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("the tests crate lives in the repository")
        .to_path_buf()
}

/// A goal file of `fixtures/plans/`.
pub fn fixture_plan(name: &str) -> PathBuf {
    repo_root().join("fixtures/plans").join(name)
}

/// The built binary `name` (`goalpost`, `goalpost-worker`, ...) in the target directory this
/// test was built into.
pub fn binary(name: &str) -> PathBuf {
    let exe = std::env::current_exe().expect("the test binary knows its path");
    // target/debug/deps/<test>-<hash> -> target/debug/<name>
    let mut dir = exe.parent().map(Path::to_path_buf).unwrap_or_default();
    if dir.ends_with("deps") {
        dir.pop();
    }
    let path = dir.join(format!("{name}{}", std::env::consts::EXE_SUFFIX));
    assert!(
        path.is_file(),
        "{} is missing: run `cargo build --workspace` first",
        path.display()
    );
    path
}

/// A temp dir with a home of its own; commands started from it see only what it sets.
#[derive(Debug)]
pub struct TestEnv {
    tmp: TempDir,
}

impl Default for TestEnv {
    fn default() -> Self {
        Self::new()
    }
}

impl TestEnv {
    pub fn new() -> Self {
        let tmp = tempfile::Builder::new()
            .prefix("goalpost-test-")
            .tempdir()
            .expect("create a temp dir");
        std::fs::create_dir_all(tmp.path().join("home")).expect("create the test's HOME");
        TestEnv { tmp }
    }

    /// The test's working directory.
    pub fn dir(&self) -> &Path {
        self.tmp.path()
    }

    pub fn home(&self) -> PathBuf {
        self.dir().join("home")
    }

    /// Where goalpost makes its worktrees in this test (`GOALPOST_WORKTREES`).
    pub fn worktrees(&self) -> PathBuf {
        self.dir().join("worktrees")
    }

    /// Every file left under [`TestEnv::worktrees`], as paths relative to it.
    pub fn leftover_worktree_files(&self) -> Vec<PathBuf> {
        fn walk(dir: &Path, root: &Path, out: &mut Vec<PathBuf>) {
            let Ok(entries) = std::fs::read_dir(dir) else {
                return;
            };
            for entry in entries.flatten() {
                let path = entry.path();
                out.push(path.strip_prefix(root).unwrap_or(&path).to_path_buf());
                if entry.file_type().is_ok_and(|t| t.is_dir()) {
                    walk(&path, root, out);
                }
            }
        }
        let mut out = Vec::new();
        walk(&self.worktrees(), &self.worktrees(), &mut out);
        out
    }

    /// Reads `rel` under the test's directory.
    pub fn read(&self, rel: &str) -> String {
        let path = self.dir().join(rel);
        std::fs::read_to_string(&path)
            .unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()))
    }

    /// Writes `text` to `rel` under the test's directory, creating parent directories.
    pub fn write(&self, rel: &str, text: &str) -> PathBuf {
        let path = self.dir().join(rel);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).expect("create parent dirs");
        }
        std::fs::write(&path, text).expect("write a test file");
        path
    }

    /// A command for `program` with the hermetic environment, run in the test's directory.
    pub fn command(&self, program: impl AsRef<OsStr>) -> Command {
        let mut cmd = Command::new(program);
        hermetic_command(&mut cmd, &self.home())
            .current_dir(self.dir())
            .env("GOALPOST_WORKTREES", self.worktrees());
        cmd
    }

    /// Runs `goalpost` with `args` and returns what it did.
    pub fn goalpost<I, S>(&self, args: I) -> Run
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        let mut cmd = self.command(binary("goalpost"));
        cmd.args(args);
        Run::of(cmd)
    }

    /// Runs `git` with `args` in `dir` (relative to the test's directory); panics on failure.
    pub fn git(&self, dir: &str, args: &[&str]) -> Run {
        let mut cmd = self.command("git");
        cmd.current_dir(self.dir().join(dir)).args(args);
        let run = Run::of(cmd);
        run.assert_code(0);
        run
    }

    /// The trimmed stdout of `git args` in `dir` (relative to the test's directory).
    pub fn git_out(&self, dir: &str, args: &[&str]) -> String {
        self.git(dir, args).stdout.trim().to_owned()
    }

    /// Every file of the tree of `rev` in the repository at `dir`: path -> content.
    pub fn tree_files(&self, dir: &str, rev: &str) -> BTreeMap<String, String> {
        let listing = self
            .git(dir, &["ls-tree", "-r", "-z", "--name-only", rev])
            .stdout;
        listing
            .split('\0')
            .filter(|p| !p.is_empty())
            .map(|path| {
                let content = self.git(dir, &["show", &format!("{rev}:{path}")]).stdout;
                (path.to_owned(), content)
            })
            .collect()
    }

    /// What a command could change in the repository at `dir`: every ref, `HEAD`, the
    /// working tree's status, the worktrees, and goalpost's files in the git dir.
    pub fn repo_state(&self, dir: &str) -> String {
        let goalpost_dir = self.dir().join(dir).join(".git/goalpost");
        format!(
            "refs:\n{}\nHEAD: {} at {}\nstatus:\n{}\nworktrees:\n{}\n.git/goalpost exists: {}\n",
            self.git(dir, &["for-each-ref", "--format=%(refname) %(objectname)"])
                .stdout,
            self.git_out(dir, &["symbolic-ref", "-q", "HEAD"]),
            self.git_out(dir, &["rev-parse", "HEAD"]),
            self.git(dir, &["status", "--porcelain", "--untracked-files=all"])
                .stdout,
            self.git(dir, &["worktree", "list", "--porcelain"]).stdout,
            goalpost_dir.exists(),
        )
    }

    /// Every `audit.json` of goalpost's runs in the repository at `dir`, in the order
    /// they were written.
    pub fn audit_reports(&self, dir: &str) -> Vec<serde_json::Value> {
        let mut found = Vec::new();
        let mut dirs = vec![self.dir().join(dir).join(".git/goalpost")];
        while let Some(dir) = dirs.pop() {
            for entry in std::fs::read_dir(&dir).into_iter().flatten().flatten() {
                let path = entry.path();
                if path.is_dir() {
                    dirs.push(path);
                } else if path.file_name().is_some_and(|n| n == "audit.json") {
                    found.push(path);
                }
            }
        }
        found.sort_by_key(|p| std::fs::metadata(p).and_then(|m| m.modified()).ok());
        found
            .iter()
            .map(|p| serde_json::from_str(&std::fs::read_to_string(p).unwrap()).unwrap())
            .collect()
    }

    /// A git repository at `dir` with one commit holding `files`, on branch `main`.
    pub fn repo(&self, dir: &str, files: &[(&str, &str)]) -> PathBuf {
        let root = self.dir().join(dir);
        std::fs::create_dir_all(&root).expect("create the repository dir");
        self.git(dir, &["init", "-q", "-b", "main"]);
        for (rel, text) in files {
            self.write(&format!("{dir}/{rel}"), text);
        }
        self.git(dir, &["add", "-A"]);
        self.git(dir, &["commit", "-q", "-m", "initial"]);
        root
    }
}

/// A finished command: its exit code and both output streams.
#[derive(Debug)]
pub struct Run {
    pub command: String,
    pub cwd: PathBuf,
    /// The exit code, or -1 when a signal ended it.
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

impl Run {
    pub fn of(mut cmd: Command) -> Run {
        let command = format!(
            "{} {}",
            cmd.get_program().to_string_lossy(),
            cmd.get_args()
                .map(|a| a.to_string_lossy())
                .collect::<Vec<_>>()
                .join(" ")
        );
        let cwd = cmd
            .get_current_dir()
            .map(Path::to_path_buf)
            .unwrap_or_default();
        let out = cmd
            .output()
            .unwrap_or_else(|e| panic!("cannot start `{command}`: {e}"));
        Run {
            command,
            cwd,
            code: out.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        }
    }

    /// Panics, showing the command, its cwd and both streams, unless it exited with `code`.
    pub fn assert_code(&self, code: i32) -> &Run {
        assert_eq!(self.code, code, "unexpected exit code\n{self}");
        self
    }

    /// Stdout parsed as JSON; panics (showing everything) when it is not.
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.stdout)
            .unwrap_or_else(|e| panic!("stdout is not JSON: {e}\n{self}"))
    }

    /// Panics (showing everything) unless stderr contains `needle`.
    pub fn assert_stderr_has(&self, needle: &str) -> &Run {
        assert!(
            self.stderr.contains(needle),
            "stderr lacks {needle:?}\n{self}"
        );
        self
    }

    /// Panics (showing everything) unless stdout contains `needle`.
    pub fn assert_stdout_has(&self, needle: &str) -> &Run {
        assert!(
            self.stdout.contains(needle),
            "stdout lacks {needle:?}\n{self}"
        );
        self
    }
}

impl fmt::Display for Run {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "command: {}", self.command)?;
        writeln!(f, "cwd:     {}", self.cwd.display())?;
        writeln!(f, "exit:    {}", self.code)?;
        writeln!(f, "--- stdout ---\n{}", self.stdout)?;
        write!(f, "--- stderr ---\n{}", self.stderr)
    }
}

/// `text` as a TOML basic string (JSON's escapes are TOML's), for goal files and scripts
/// the tests write.
pub fn quoted(text: &str) -> String {
    serde_json::to_string(text).unwrap()
}

/// A path as a TOML basic string.
pub fn path_quoted(path: &Path) -> String {
    quoted(path.to_str().expect("test paths are UTF-8"))
}

/// A test whose directory holds the calc project (`fixtures/src/repo.rs`) at `calc/`, on
/// `main`.
pub fn calc_env() -> TestEnv {
    let env = TestEnv::new();
    goalpost_fixtures::repo::calc_project(env.dir().join("calc"), "main").unwrap();
    env
}

/// A file of the calc project as it is in its first commit.
pub fn calc_file(path: &str) -> &'static str {
    goalpost_fixtures::repo::CALC_FILES
        .iter()
        .find(|(p, _)| *p == path)
        .map(|(_, content)| *content)
        .expect("a calc project file")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn commands_see_only_the_hermetic_environment() {
        let env = TestEnv::new();
        let mut cmd = env.command("sh");
        cmd.args(["-c", "echo \"$HOME|$GIT_CONFIG_GLOBAL|${CARGO:-unset}\""]);
        let run = Run::of(cmd);
        run.assert_code(0);
        let home = env.home().display().to_string();
        assert_eq!(
            run.stdout.trim(),
            format!("{home}|/dev/null|unset"),
            "{run}"
        );
    }

    #[test]
    fn repositories_have_fixed_dates() {
        let env = TestEnv::new();
        env.repo("r", &[("a.txt", "a\n")]);
        let run = env.git("r", &["log", "-1", "--format=%an|%aI|%cI|%s"]);
        assert_eq!(
            run.stdout.trim(),
            "Fixture|2026-01-01T00:00:00Z|2026-01-01T00:00:00Z|initial"
        );
        let branch = env.git("r", &["branch", "--show-current"]);
        assert_eq!(branch.stdout.trim(), "main");
    }
}
