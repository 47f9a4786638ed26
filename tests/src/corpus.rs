//! The adversarial corpus's stage: a small repository whose goal file lets a scripted
//! agent try one escape per run, and the means to tell afterwards what got through: a
//! byte snapshot of the repository's refs, `HEAD`, config, `packed-refs` and hooks, the
//! attempt's private temp dir (where an agent leaves its evidence), the audit reports and
//! the integration tip.
//!
//! Every run waits for human approval (`approval = "human"`), so the release branch never
//! moves: the snapshot before and after must be identical, whatever the agent did.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::{Run, TestEnv, binary};

/// The repository's directory under the test's directory.
pub const REPO: &str = "proj";

/// A second worktree of the repository, as a user might keep one; no agent may touch it.
pub const SIBLING: &str = "sibling";

/// The repository at base: `app.sh` (allowed), `tests/check.sh` (protected: the check),
/// `vendor/lib.sh` (forbidden) and `docs/readme.md` (allowed).
pub const FILES: &[(&str, &str)] = &[
    ("app.sh", "#!/bin/sh\necho hello\n"),
    (
        "tests/check.sh",
        "#!/bin/sh\n# The app must print exactly `hello`, on stdout and stderr together.\n\
         out=$(sh app.sh 2>&1)\n\
         [ \"$out\" = hello ] || { echo \"app.sh printed: $out\"; exit 1; }\n",
    ),
    ("vendor/lib.sh", "# vendored; never edited here\n"),
    ("docs/readme.md", "# proj\n"),
];

/// A test's repository, with a sibling worktree and nothing else.
#[derive(Debug)]
pub struct Corpus {
    pub env: TestEnv,
}

impl Default for Corpus {
    fn default() -> Self {
        Self::new()
    }
}

impl Corpus {
    pub fn new() -> Corpus {
        let env = TestEnv::new();
        env.repo(REPO, FILES);
        let sibling = env.dir().join(SIBLING);
        env.git(
            REPO,
            &[
                "worktree",
                "add",
                "-q",
                "--detach",
                sibling.to_str().unwrap(),
            ],
        );
        Corpus { env }
    }

    pub fn repo(&self) -> PathBuf {
        self.env.dir().join(REPO)
    }

    pub fn sibling(&self) -> PathBuf {
        self.env.dir().join(SIBLING)
    }

    /// A path in `/tmp` itself, outside every temp dir goalpost makes, unique to this test.
    pub fn system_tmp_path(&self) -> PathBuf {
        let name = self.env.dir().file_name().unwrap().to_string_lossy();
        Path::new("/tmp").join(format!("{name}-escape"))
    }

    /// Writes the scripted agent's `script` and a goal file whose one phase (`goal`) that
    /// agent implements alone, with a per-attempt `wall` budget; returns the goal's name.
    pub fn write_goal(&self, script: &str, wall: &str) -> &'static str {
        self.write_goal_with(script, wall, "")
    }

    /// [`Corpus::write_goal`], with the agent started as `sh -c WRAPPER AGENT` when
    /// `wrapper` is not empty (`exec "$0"` runs the agent).
    pub fn write_goal_with(&self, script: &str, wall: &str, wrapper: &str) -> &'static str {
        let script_path = self.env.write("agent.toml", script);
        let scripted = toml_path(&binary("scripted-agent"));
        let agent = if wrapper.is_empty() {
            scripted
        } else {
            format!("\"sh\", \"-c\", {}, {scripted}", toml_str(wrapper))
        };
        let text = format!(
            r#"+++
release = "main"
max_parallel = 1
approval = "human"

[budget]
turns = 4
wall = "{wall}"

[agents.coder]
adapter = "command"
command = [{agent}]
env = {{ SCRIPTED_AGENT_SCRIPT = {script} }}

[roles]
implementer = "coder"
+++

# Goal: proj says hello

## Outcome
`sh app.sh` prints hello; the docs say so.

## Verification surface
- `sh tests/check.sh` passes

## Boundaries
- Allowed paths: app.sh, docs/, ops/
- Forbidden paths: vendor/
- Protected paths: tests/

## Blocked stop condition
Stop after 1 iteration with no improvement.
"#,
            script = toml_path(&script_path),
        );
        self.env.write("goal.md", &text);
        "goal.md"
    }

    /// `goalpost ARGS -C proj` with `env` added to the hermetic environment.
    pub fn goalpost(&self, args: &[&str], env: &[(&str, &str)]) -> Run {
        let mut cmd = self.env.command(binary("goalpost"));
        cmd.args(args).args(["-C", REPO]);
        for (key, value) in env {
            cmd.env(key, value);
        }
        Run::of(cmd)
    }

    /// The repository's run directories (`.git/goalpost/runs/<id>`).
    fn run_dirs(&self) -> Vec<PathBuf> {
        let runs = self.repo().join(".git/goalpost/runs");
        let mut dirs: Vec<PathBuf> = std::fs::read_dir(runs)
            .map(|entries| entries.flatten().map(|e| e.path()).collect())
            .unwrap_or_default();
        dirs.sort();
        dirs
    }

    /// The private temp dir of the first attempt of the last run (the agent's `TMPDIR`).
    pub fn attempt_tmp(&self) -> PathBuf {
        let run = self.run_dirs().pop().expect("a run directory");
        run.join("attempts/goal.1/tmp")
    }

    /// The implementer's state dir of the first attempt of the last run (`GOALPOST_STATE_DIR`), where
    /// a scripted agent keeps what the test reads after the run: its temp dir is a file
    /// system of the turn's own, gone when the turn ends.
    pub fn attempt_state(&self) -> PathBuf {
        let run = self.run_dirs().pop().expect("a run directory");
        run.join("attempts/goal.1/state/implementer")
    }

    /// A file the agent left in its state dir, or "" when there is none.
    pub fn evidence(&self, name: &str) -> String {
        std::fs::read_to_string(self.attempt_state().join(name)).unwrap_or_default()
    }

    /// Every audit report (`audit.json`) of every run, concatenated.
    pub fn audit_reports(&self) -> String {
        let mut out = String::new();
        for run in self.run_dirs() {
            let Ok(audits) = std::fs::read_dir(run.join("audits")) else {
                continue;
            };
            let mut dirs: Vec<PathBuf> = audits.flatten().map(|e| e.path()).collect();
            dirs.sort();
            for dir in dirs {
                if let Ok(text) = std::fs::read_to_string(dir.join("audit.json")) {
                    out.push_str(&text);
                    out.push('\n');
                }
            }
        }
        out
    }

    /// Every audit report of every run, parsed.
    pub fn audit_jsons(&self) -> Vec<serde_json::Value> {
        let mut out = Vec::new();
        for run in self.run_dirs() {
            let Ok(audits) = std::fs::read_dir(run.join("audits")) else {
                continue;
            };
            for dir in audits.flatten() {
                if let Ok(text) = std::fs::read_to_string(dir.path().join("audit.json")) {
                    out.push(serde_json::from_str(&text).expect("audit.json is JSON"));
                }
            }
        }
        out
    }

    /// The files at the tip of the last run's integration ref.
    pub fn integration_files(&self) -> BTreeMap<String, String> {
        let refs = self.env.git_out(
            REPO,
            &[
                "for-each-ref",
                "--format=%(refname)",
                "refs/goalpost/*/integration",
            ],
        );
        let last = refs.lines().last().expect("an integration ref").to_owned();
        self.env.tree_files(REPO, &last)
    }

    /// The release branch's files.
    pub fn release_files(&self) -> BTreeMap<String, String> {
        self.env.tree_files(REPO, "main")
    }
}

/// What no agent and no check may change: every ref but goalpost's own, `HEAD`, the
/// config, `packed-refs` and the hooks of the repository, byte for byte, and the files of
/// the main working tree and of the sibling worktree.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Snapshot {
    pub refs: String,
    pub files: BTreeMap<String, Vec<u8>>,
}

impl Snapshot {
    pub fn take(corpus: &Corpus) -> Snapshot {
        let refs = corpus
            .env
            .git_out(REPO, &["for-each-ref", "--format=%(refname) %(objectname)"])
            .lines()
            .filter(|line| !line.starts_with("refs/goalpost/"))
            .collect::<Vec<_>>()
            .join("\n");
        let git = corpus.repo().join(".git");
        let mut files = BTreeMap::new();
        for name in ["HEAD", "config", "packed-refs"] {
            if let Ok(bytes) = std::fs::read(git.join(name)) {
                files.insert(format!(".git/{name}"), bytes);
            }
        }
        collect(&git.join("hooks"), ".git/hooks", &mut files);
        for (label, dir) in [("main", corpus.repo()), ("sibling", corpus.sibling())] {
            for (rel, _) in FILES {
                if let Ok(bytes) = std::fs::read(dir.join(rel)) {
                    files.insert(format!("{label}:{rel}"), bytes);
                }
            }
        }
        Snapshot { refs, files }
    }
}

fn collect(dir: &Path, label: &str, out: &mut BTreeMap<String, Vec<u8>>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        let path = entry.path();
        if path.is_dir() {
            collect(&path, &format!("{label}/{name}"), out);
        } else if let Ok(bytes) = std::fs::read(&path) {
            out.insert(format!("{label}/{name}"), bytes);
        }
    }
}

/// A path as a TOML basic string.
pub fn toml_path(path: &Path) -> String {
    toml_str(path.to_str().expect("test paths are UTF-8"))
}

/// A string as a TOML basic string (JSON's escapes are TOML's).
pub fn toml_str(text: &str) -> String {
    serde_json::to_string(text).expect("a string serializes")
}

/// Whether process `pid` still runs (a zombie does not count).
pub fn alive(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        // The state follows the parenthesised command name.
        Ok(stat) => stat
            .rsplit_once(')')
            .and_then(|(_, rest)| rest.split_whitespace().next())
            .is_some_and(|state| state != "Z" && state != "X"),
        Err(_) => false,
    }
}

/// The number in `file`, written by an agent (`echo $$ > file`).
pub fn pid_in(file: &Path) -> Option<u32> {
    std::fs::read_to_string(file).ok()?.trim().parse().ok()
}

/// Waits up to `limit` for `pid` to be gone; whether it is.
pub fn gone_within(pid: u32, limit: Duration) -> bool {
    let end = std::time::Instant::now() + limit;
    while std::time::Instant::now() < end {
        if !alive(pid) {
            return true;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    !alive(pid)
}

/// The live processes (zombies aside) whose command line or environment holds `needle`.
/// A pid a turn writes down is its pid in the turn's own PID namespace and names nothing
/// outside it, so the tests find a turn's processes by what they carry instead.
pub fn processes_holding(needle: &[u8]) -> Vec<u32> {
    let own = std::process::id();
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    let holds = |bytes: &[u8]| bytes.windows(needle.len()).any(|w| w == needle);
    entries
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
        .filter(|&pid| pid != own && alive(pid))
        .filter(|pid| {
            ["cmdline", "environ"].iter().any(|file| {
                std::fs::read(format!("/proc/{pid}/{file}")).is_ok_and(|bytes| holds(&bytes))
            })
        })
        .collect()
}

/// Waits up to `limit` until no process holds `needle` (see [`processes_holding`]); the
/// ones still holding it.
pub fn holding_after(needle: &[u8], limit: Duration) -> Vec<u32> {
    let end = std::time::Instant::now() + limit;
    loop {
        let left = processes_holding(needle);
        if left.is_empty() || std::time::Instant::now() >= end {
            return left;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// What every process of a turn whose temp dir is `tmp` carries, unless it cleared its
/// environment: `TMPDIR=<tmp>`.
pub fn turn_marker(tmp: &Path) -> Vec<u8> {
    format!("TMPDIR={}", tmp.display()).into_bytes()
}

/// Whether `text` shows the kernel refusing an access: EACCES or EPERM as a shell, git or
/// coreutils print them, or EROFS, as the sandbox's read-only file system answers.
pub fn refused(text: &str) -> bool {
    text.contains("Permission denied")
        || text.contains("Operation not permitted")
        || text.contains("Read-only file system")
}
