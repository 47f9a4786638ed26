//! Helpers for the durable-run tests: a `goalpost` process the test can kill, interrupt or
//! wait for; events awaited with a deadline; and what `/proc` says about processes (who is
//! whose parent, who is still alive, who belongs to a killed orchestrator).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::ffi::OsStr;
use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use crate::{Run, TestEnv, binary};

/// How long a test waits for anything a run should do within a second or two.
pub const DEADLINE: Duration = Duration::from_secs(90);

/// Polls `probe` until it gives a value; panics, naming `what`, after `deadline`.
pub fn wait_for<T>(what: &str, deadline: Duration, mut probe: impl FnMut() -> Option<T>) -> T {
    let start = Instant::now();
    loop {
        if let Some(v) = probe() {
            return v;
        }
        assert!(
            start.elapsed() < deadline,
            "gave up after {deadline:?} waiting for {what}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// The content of `path` once it exists and ends with a newline (written whole).
pub fn line_in(path: &Path) -> Option<String> {
    std::fs::read_to_string(path)
        .ok()
        .filter(|t| t.ends_with('\n'))
        .map(|t| t.trim().to_owned())
}

/// A `goalpost` process started in the background; its output goes to files so it never
/// blocks on a full pipe.
#[derive(Debug)]
pub struct Running {
    child: Child,
    command: String,
    cwd: PathBuf,
    stdout: PathBuf,
    stderr: PathBuf,
}

impl TestEnv {
    /// Starts `goalpost args` in the background with the hermetic environment plus `env`.
    pub fn spawn_goalpost<I, S>(&self, args: I, env: &[(&str, &OsStr)]) -> Running
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        let mut cmd = self.command(binary("goalpost"));
        cmd.args(args);
        for (k, v) in env {
            cmd.env(k, v);
        }
        let command = format!(
            "{} {}",
            cmd.get_program().to_string_lossy(),
            cmd.get_args()
                .map(|a| a.to_string_lossy())
                .collect::<Vec<_>>()
                .join(" ")
        );
        let n = std::fs::read_dir(self.dir())
            .map(|d| d.count())
            .unwrap_or_default();
        let stdout = self.dir().join(format!("bg-{n}.stdout"));
        let stderr = self.dir().join(format!("bg-{n}.stderr"));
        cmd.stdin(Stdio::null())
            .stdout(File::create(&stdout).unwrap())
            .stderr(File::create(&stderr).unwrap());
        let child = cmd
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start `{command}`: {e}"));
        Running {
            child,
            command,
            cwd: self.dir().to_path_buf(),
            stdout,
            stderr,
        }
    }
}

impl Running {
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// What it has printed on stdout so far.
    pub fn stdout_so_far(&self) -> String {
        std::fs::read_to_string(&self.stdout).unwrap_or_default()
    }

    /// What it did, once it has exited (`None` while it runs).
    pub fn finished(&mut self) -> Option<Run> {
        let status = self.child.try_wait().unwrap()?;
        Some(self.run_with(status.code().unwrap_or(-1)))
    }

    fn run_with(&self, code: i32) -> Run {
        Run {
            command: self.command.clone(),
            cwd: self.cwd.clone(),
            code,
            stdout: std::fs::read_to_string(&self.stdout).unwrap_or_default(),
            stderr: std::fs::read_to_string(&self.stderr).unwrap_or_default(),
        }
    }

    /// Waits for it to exit, within [`DEADLINE`].
    pub fn wait(mut self) -> Run {
        let what = format!("`{}` to exit", self.command);
        wait_for(&what, DEADLINE, || self.finished())
    }

    /// Waits until `path` holds a whole line (returned as `Ok`) or the process exits
    /// (`Err` with what it did), within [`DEADLINE`].
    pub fn line_or_exit(&mut self, path: &Path) -> Result<String, Run> {
        let what = format!("{} or the exit of `{}`", path.display(), self.command);
        wait_for(&what, DEADLINE, || match line_in(path) {
            Some(line) => Some(Ok(line)),
            None => self.finished().map(Err),
        })
    }

    /// Waits until `path` exists; panics, showing what the process did, if it exits first.
    pub fn await_file(&mut self, path: &Path) {
        let what = format!("{} while `{}` runs", path.display(), self.command);
        let exited = wait_for(&what, DEADLINE, || {
            if path.exists() {
                Some(None)
            } else {
                self.finished().map(Some)
            }
        });
        if let Some(run) = exited {
            panic!("exited before {} appeared\n{run}", path.display());
        }
    }

    /// SIGKILL, then reaps it; returns what it printed.
    pub fn kill(mut self) -> Run {
        let _ = self.child.kill();
        let status = self.child.wait().unwrap();
        self.run_with(status.code().unwrap_or(-1))
    }
}

impl Drop for Running {
    /// A test that failed half-way leaves no goalpost running behind it.
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// Sends SIGKILL to `pid`.
pub fn kill9(pid: u32) {
    let status = std::process::Command::new("kill")
        .args(["-KILL", &pid.to_string()])
        .status()
        .unwrap();
    assert!(status.success(), "kill -KILL {pid} failed");
}

/// The fields of `/proc/PID/stat` after the command name: state, ppid, ...
fn stat_fields(pid: u32) -> Option<Vec<String>> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let after = &stat[stat.rfind(')')? + 1..];
    Some(after.split_whitespace().map(str::to_owned).collect())
}

/// Whether `pid` runs: it exists and is not a zombie waiting to be reaped.
pub fn alive(pid: u32) -> bool {
    stat_fields(pid).is_some_and(|f| f.first().is_some_and(|s| s != "Z" && s != "X"))
}

pub fn parent_of(pid: u32) -> Option<u32> {
    stat_fields(pid)?.get(1)?.parse().ok()
}

/// The command name of `pid` (at most 15 bytes, as the kernel keeps it).
pub fn comm(pid: u32) -> Option<String> {
    std::fs::read_to_string(format!("/proc/{pid}/comm"))
        .ok()
        .map(|c| c.trim().to_owned())
}

/// The nearest ancestor of `pid` running the program `name`.
pub fn ancestor_named(pid: u32, name: &str) -> Option<u32> {
    let kept: String = name.chars().take(15).collect();
    let mut at = parent_of(pid)?;
    while at > 1 {
        if comm(at).is_some_and(|c| c == kept) {
            return Some(at);
        }
        at = parent_of(at)?;
    }
    None
}

/// Live processes whose environment holds `KEY=VALUE` (the workers and auditors of one
/// orchestrator carry its pid in `GOALPOST_PARENT_PID`).
pub fn processes_with_env(key: &str, value: &str) -> Vec<u32> {
    let needle = format!("{key}={value}");
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
        .filter(|&pid| {
            std::fs::read(format!("/proc/{pid}/environ"))
                .is_ok_and(|env| env.split(|&b| b == 0).any(|var| var == needle.as_bytes()))
        })
        .filter(|&pid| alive(pid))
        .collect()
}

/// Waits until no worker or auditor started by the orchestrator `pid` runs any more:
/// they follow their orchestrator's death, harvesting what their agent wrote.
pub fn await_orphans_gone(pid: u32) {
    let value = pid.to_string();
    wait_for(
        &format!("the workers and auditors of the killed goalpost {pid} to exit"),
        DEADLINE,
        || {
            processes_with_env("GOALPOST_PARENT_PID", &value)
                .is_empty()
                .then_some(())
        },
    );
}

/// A small deterministic generator (xorshift64*), for choosing crash points from a seed.
#[derive(Debug, Clone)]
pub struct XorShift(u64);

impl XorShift {
    pub fn new(seed: u64) -> Self {
        // Zero is xorshift's fixed point; any other start works.
        XorShift(seed ^ 0x9e37_79b9_7f4a_7c15)
    }

    pub fn next_u64(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    /// `1..=n` in an order that depends only on the seed.
    pub fn shuffled(&mut self, n: u32) -> Vec<u32> {
        let mut v: Vec<u32> = (1..=n).collect();
        for i in (1..v.len()).rev() {
            let j = (self.next_u64() % (i as u64 + 1)) as usize;
            v.swap(i, j);
        }
        v
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_seed_gives_the_same_order_every_time() {
        let a = XorShift::new(7).shuffled(40);
        let b = XorShift::new(7).shuffled(40);
        assert_eq!(a, b);
        assert_ne!(a, XorShift::new(8).shuffled(40));
        let mut sorted = a.clone();
        sorted.sort_unstable();
        assert_eq!(sorted, (1..=40).collect::<Vec<_>>());
    }

    #[test]
    fn this_process_is_alive_and_its_parent_is_known() {
        let me = std::process::id();
        assert!(alive(me));
        assert!(parent_of(me).is_some());
        assert!(!alive(4_194_999));
    }
}
