//! What the benchmarks share: generated repositories (git fast-import, so a 20,000-file
//! repository takes a second, not a minute), a hermetic environment for every git and
//! goalpost command, the release binaries, and medians.
//!
//! Every benchmark prints its figures as `NAME=value` lines for `bench/run.sh`, which
//! reads the last occurrence of each name. `--quick` (or `GOALPOST_BENCH_QUICK=1`) uses
//! smaller sizes for a smoke run.

#![allow(dead_code, clippy::expect_used, clippy::unwrap_used)]

use std::fmt::Write as _;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

/// Whether this is a smoke run with smaller sizes.
pub fn quick() -> bool {
    std::env::args().any(|a| a == "--quick")
        || std::env::var("GOALPOST_BENCH_QUICK").is_ok_and(|v| v == "1")
}

/// Where the benchmarks generate their repositories: `GOALPOST_BENCH_TMP`, else
/// `/dev/shm` when it is there (a tmpfs: the figures are git's and goalpost's work, not
/// the disk's), else the system temp dir.
pub fn bench_tmp() -> PathBuf {
    if let Some(dir) = std::env::var_os("GOALPOST_BENCH_TMP") {
        return PathBuf::from(dir);
    }
    let shm = Path::new("/dev/shm");
    let writable = shm.is_dir()
        && tempfile::Builder::new()
            .prefix("goalpost-bench-probe-")
            .tempdir_in(shm)
            .is_ok();
    if writable {
        shm.to_path_buf()
    } else {
        std::env::temp_dir()
    }
}

/// A scratch directory with a home, a place for worktrees and one repository.
pub struct Scratch {
    pub dir: tempfile::TempDir,
}

impl Scratch {
    pub fn new() -> Scratch {
        let dir = tempfile::Builder::new()
            .prefix("goalpost-bench-")
            .tempdir_in(bench_tmp())
            .expect("a temp dir");
        for sub in ["home", "wt", "repo"] {
            std::fs::create_dir_all(dir.path().join(sub)).expect("mkdir");
        }
        Scratch { dir }
    }

    pub fn path(&self, rel: &str) -> PathBuf {
        self.dir.path().join(rel)
    }

    pub fn repo(&self) -> PathBuf {
        self.path("repo")
    }

    /// The environment of every command: nothing of the caller's but `PATH`, a home of
    /// its own, no global git configuration, fixed identities, goalpost's worktrees here.
    pub fn env(&self) -> Vec<(String, String)> {
        let mut env = goalpost_fixtures::repo::hermetic_env(&self.path("home"));
        if std::env::var("PATH").is_err() {
            env.push(("PATH".into(), "/usr/bin:/bin".into()));
        }
        env.push((
            "GOALPOST_WORKTREES".into(),
            self.path("wt").display().to_string(),
        ));
        env
    }

    pub fn command(&self, program: impl AsRef<std::ffi::OsStr>, cwd: &Path) -> Command {
        let mut cmd = Command::new(program);
        cmd.current_dir(cwd).env_clear().envs(self.env());
        cmd
    }

    /// Runs git in `cwd`; panics with its output when it fails.
    pub fn git(&self, cwd: &Path, args: &[&str]) -> String {
        let out = self.command("git", cwd).args(args).output().expect("git");
        check(&out, &format!("git {}", args.join(" ")));
        String::from_utf8_lossy(&out.stdout).trim().to_owned()
    }

    /// Fills the repository: a first commit of `files` small files in directories of 100,
    /// and a second that changes every 400th of them (50 of 20,000) and adds one. Returns
    /// both commits; `main` is at the second and checked out.
    pub fn generate(&self, files: usize) -> (String, String) {
        let repo = self.repo();
        self.git(&repo, &["init", "-q", "-b", "main"]);
        let mut stream = String::new();
        let data = |out: &mut String, text: &str| {
            let _ = write!(out, "data {}\n{text}\n", text.len());
        };
        let _ = writeln!(stream, "commit refs/heads/main\nmark :1");
        let _ = writeln!(
            stream,
            "committer Bench <bench@example.invalid> 1700000000 +0000"
        );
        data(&mut stream, "generated");
        for i in 0..files {
            let _ = writeln!(stream, "M 100644 inline {}", file_name(i));
            data(&mut stream, &file_text(i, 0));
        }
        let _ = writeln!(stream, "commit refs/heads/main\nmark :2");
        let _ = writeln!(
            stream,
            "committer Bench <bench@example.invalid> 1700000100 +0000"
        );
        data(&mut stream, "next");
        let _ = writeln!(stream, "from :1");
        for i in (0..files).step_by(400) {
            let _ = writeln!(stream, "M 100644 inline {}", file_name(i));
            data(&mut stream, &file_text(i, 1));
        }
        let _ = writeln!(stream, "M 100644 inline NEWS.txt");
        data(&mut stream, "news\n");
        let mut child = self
            .command("git", &repo)
            .args(["fast-import", "--quiet"])
            .stdin(Stdio::piped())
            .spawn()
            .expect("git fast-import");
        child
            .stdin
            .take()
            .expect("stdin")
            .write_all(stream.as_bytes())
            .expect("the import stream");
        let status = child.wait().expect("fast-import ends");
        assert!(status.success(), "git fast-import failed");
        self.git(&repo, &["reset", "-q", "--hard", "main"]);
        let first = self.git(&repo, &["rev-parse", "main~1"]);
        let second = self.git(&repo, &["rev-parse", "main"]);
        (first, second)
    }
}

fn file_name(i: usize) -> String {
    format!("src/d{:03}/f{:05}.txt", i / 100, i)
}

fn file_text(i: usize, version: u32) -> String {
    format!("file {i} version {version}\n{}\n", "x".repeat(60 + i % 40))
}

pub fn check(out: &Output, what: &str) {
    assert!(
        out.status.success(),
        "{what} failed ({}):\n{}{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// The directory of the goalpost binaries to measure instead of this build's.
pub const BIN_DIR_VAR: &str = "GOALPOST_BENCH_BIN_DIR";

/// A release binary of the workspace (`goalpost`, `goalpost-worker`, ...), next to this
/// benchmark's own directory (`bench/run.sh` builds them first), or in [`BIN_DIR_VAR`].
pub fn binary(name: &str) -> PathBuf {
    let exe = std::env::current_exe().expect("own path");
    let mut dir = exe.parent().map(Path::to_path_buf).unwrap_or_default();
    if dir.ends_with("deps") {
        dir.pop();
    }
    // Another build's binaries (an older commit's `target/release`), to measure two
    // builds side by side with the same benchmark.
    if let Some(other) = std::env::var_os(BIN_DIR_VAR) {
        dir = PathBuf::from(other);
    }
    let path = dir.join(name);
    assert!(
        path.is_file(),
        "{} is missing: run `cargo build --release --workspace` (bench/run.sh does)",
        path.display()
    );
    path
}

/// Times `f`.
pub fn time<T>(f: impl FnOnce() -> T) -> (Duration, T) {
    let start = Instant::now();
    let value = f();
    (start.elapsed(), value)
}

pub fn median(samples: &[Duration]) -> Duration {
    let mut sorted = samples.to_vec();
    sorted.sort();
    sorted[sorted.len() / 2]
}

pub fn secs(d: Duration) -> String {
    format!("{:.4}", d.as_secs_f64())
}

/// Prints a figure for `bench/run.sh`.
pub fn figure(name: &str, value: impl std::fmt::Display) {
    println!("{name}={value}");
}
