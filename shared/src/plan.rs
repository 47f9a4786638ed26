//! A plan: one goal file's contract, settings (front matter) and phases, as the rest of
//! goalpost sees it after parsing and validation.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::contract::{Contract, Spanned};

/// The id of the phase a plan without `## Phases` gets.
pub const IMPLICIT_PHASE: &str = "goal";

/// Attempts a phase may ask for.
pub const MAX_ATTEMPTS: u32 = 16;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Plan {
    /// The goal file, as given.
    pub path: PathBuf,
    /// The text of the first `# ` heading, if any ("Goal: ..." kept as written).
    pub title: Option<Spanned<String>>,
    pub settings: Settings,
    /// The plan-level contract (what every phase inherits and the whole-goal checks).
    pub contract: Contract,
    /// At least one phase: a plan without `## Phases` has one implicit phase.
    pub phases: Vec<Phase>,
    /// True when `phases` holds only the implicit phase.
    pub implicit_phase: bool,
}

impl Plan {
    pub fn phase(&self, id: &str) -> Option<&Phase> {
        self.phases.iter().find(|p| p.id.value == id)
    }
}

/// Front-matter settings, with defaults filled in.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Settings {
    /// The release branch; `None` means the branch checked out when the run starts.
    pub release: Option<Spanned<String>>,
    pub max_parallel: Spanned<u32>,
    /// Limits per attempt.
    pub budget: Budget,
    /// Limits for the whole run; unset fields mean the sum over the run's attempts.
    pub run_budget: Budget,
    pub agents: BTreeMap<String, AgentDef>,
    pub roles: Roles,
    pub approval: Spanned<Approval>,
    /// Prices per million tokens, by model name, for adapters whose CLI reports no cost.
    pub prices: BTreeMap<String, Price>,
    /// Whether checks may use the network (`network = "none"`: they may not).
    #[serde(default)]
    pub network: Spanned<Network>,
    /// The plan's setup commands (`setup`, `setup_timeout`); a phase's `Setup:` line
    /// replaces the commands.
    #[serde(default)]
    pub setup: crate::contract::Setup,
    /// Where the held-out checks' files are and what a failing one tells the implementer
    /// (`[held_out]`).
    #[serde(default)]
    pub held_out: HeldOut,
    /// `audit_skill`: the prompt file the auditor agent works by, instead of the one
    /// goalpost ships; as written, relative to the goal file's directory unless absolute.
    #[serde(default)]
    pub audit_skill: Option<Spanned<String>>,
}

/// `[held_out]`: the held-out checks' files, kept outside the repository, and how much of
/// a failing held-out check reaches the implementer.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct HeldOut {
    /// The directory of the files (`dir`), as written: relative to the goal file's
    /// directory unless absolute.
    pub dir: Option<Spanned<String>>,
    /// Where the files are placed in the audit's checkout (`into`), relative to its root;
    /// [`DEFAULT_HELD_OUT_INTO`] when unset.
    pub into: Option<Spanned<String>>,
    pub feedback: Spanned<HeldOutFeedback>,
}

/// Where the held-out files go in an audit's checkout when `into` is unset.
pub const DEFAULT_HELD_OUT_INTO: &str = ".goalpost-held-out";

/// What the implementer is told of a failing held-out check.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum HeldOutFeedback {
    /// Only "held-out check N failed": no command, no output.
    #[default]
    Hidden,
    /// The check and its output, like any other check.
    Full,
}

impl HeldOut {
    /// Where the files are placed in an audit's checkout, relative to its root.
    pub fn into_path(&self) -> &str {
        self.into
            .as_ref()
            .map_or(DEFAULT_HELD_OUT_INTO, |i| i.value.as_str())
    }
}

impl Plan {
    /// The held-out checks' directory, resolved against the goal file's directory; `None`
    /// when the front matter names none.
    pub fn held_out_dir(&self) -> Option<PathBuf> {
        self.beside(self.settings.held_out.dir.as_ref()?)
    }

    /// The auditor agent's skill file named by `audit_skill`, resolved against the goal
    /// file's directory; `None` when the front matter names none (the shipped one is used).
    pub fn audit_skill_path(&self) -> Option<PathBuf> {
        self.beside(self.settings.audit_skill.as_ref()?)
    }

    /// `dir` as written in the front matter, resolved against the goal file's directory.
    fn beside(&self, dir: &Spanned<String>) -> Option<PathBuf> {
        let path = std::path::Path::new(&dir.value);
        if path.is_absolute() {
            return Some(path.to_path_buf());
        }
        Some(
            self.path
                .parent()
                .map_or(path.to_path_buf(), |p| p.join(path)),
        )
    }
}

pub const DEFAULT_MAX_PARALLEL: u32 = 4;

impl Settings {
    /// The implementer's agent name: the `implementer` role, or the only agent defined.
    pub fn implementer(&self) -> Option<&str> {
        if let Some(r) = &self.roles.implementer {
            return Some(&r.value);
        }
        let mut names = self.agents.keys();
        match (names.next(), names.next()) {
            (Some(only), None) => Some(only),
            _ => None,
        }
    }
}

impl Default for Settings {
    /// The settings of a goal file without front matter. Defaults sit at line 0.
    fn default() -> Self {
        Settings {
            release: None,
            max_parallel: Spanned::new(DEFAULT_MAX_PARALLEL, 0, 0),
            budget: Budget::default(),
            run_budget: Budget::default(),
            agents: BTreeMap::new(),
            roles: Roles::default(),
            approval: Spanned::new(Approval::Auto, 0, 0),
            prices: BTreeMap::new(),
            network: Spanned::new(Network::Open, 0, 0),
            setup: crate::contract::Setup::default(),
            held_out: HeldOut::default(),
            audit_skill: None,
        }
    }
}

/// Hard limits. `None` means no limit of that kind.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Budget {
    pub turns: Option<Spanned<u32>>,
    /// Wall time, written like "30m", "90s", "2h".
    pub wall: Option<Spanned<WallTime>>,
    /// Tokens in + out (cached input included in "in").
    pub tokens: Option<Spanned<u64>>,
    pub tokens_in: Option<Spanned<u64>>,
    pub tokens_out: Option<Spanned<u64>>,
    pub tokens_cached: Option<Spanned<u64>>,
    pub cost_usd: Option<Spanned<f64>>,
    pub tool_calls: Option<Spanned<u64>>,
    /// Implementer iterations of one attempt.
    pub iterations: Option<Spanned<u32>>,
    /// The size cap of the temp dir of each agent turn and each check, in MiB (see
    /// [`crate::confine::DEFAULT_SCRATCH_BYTES`] for the default). Not a spend: it is
    /// the same in every round.
    #[serde(default)]
    pub tmp_mb: Option<Spanned<u64>>,
    /// MiB of git objects one attempt may hold in its object quarantine, and one harvest
    /// may import into the repository; [`DEFAULT_OBJECTS_MB`] when not set.
    #[serde(default)]
    pub objects_mb: Option<Spanned<u64>>,
    /// `[budget.audit]` / `[run_budget.audit]`: what the auditor agent may spend, per
    /// audit or over the whole run.
    #[serde(default)]
    pub audit: AuditBudget,
}

/// The auditor agent's limits. Spent beyond them, an audit's verdict does not count: the
/// audit fails closed.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct AuditBudget {
    /// Tokens in + out.
    pub tokens: Option<Spanned<u64>>,
    pub cost_usd: Option<Spanned<f64>>,
    /// How long one audit's agent may work ("10m"); per audit only.
    pub wall: Option<Spanned<WallTime>>,
}

/// The cap on an attempt's git objects when the goal file's `[budget]` sets no
/// `objects_mb`: far above what source changes need, far below what fills a disk.
pub const DEFAULT_OBJECTS_MB: u64 = 1024;

impl Budget {
    /// The cap on an attempt's git objects, in bytes (`objects_mb`, or the default).
    pub fn objects_bytes(&self) -> u64 {
        self.objects_mb
            .as_ref()
            .map_or(DEFAULT_OBJECTS_MB, |s| s.value)
            .saturating_mul(1024 * 1024)
    }
}

/// A duration as written in the goal file.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WallTime {
    pub text: String,
    #[serde(with = "secs")]
    pub duration: Duration,
}

mod secs {
    use serde::{Deserialize, Deserializer, Serializer};
    use std::time::Duration;
    pub fn serialize<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_f64(d.as_secs_f64())
    }
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        let v = f64::deserialize(d)?;
        Duration::try_from_secs_f64(v).map_err(serde::de::Error::custom)
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Price {
    pub input_per_mtok: f64,
    pub output_per_mtok: f64,
    pub cached_per_mtok: f64,
}

/// A named agent: an adapter and how to start it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AgentDef {
    pub name: Spanned<String>,
    pub adapter: Spanned<Adapter>,
    /// For `command`: the argv to run. For the others: an optional replacement for the
    /// CLI's executable (argv[0] and any leading arguments).
    pub command: Vec<String>,
    /// Extra arguments appended to the adapter's command line.
    pub args: Vec<String>,
    /// Model name, for adapters that take one and for the price table.
    pub model: Option<String>,
    /// Extra environment for the agent's process.
    pub env: BTreeMap<String, String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Adapter {
    Codex,
    Claude,
    Gemini,
    Opencode,
    Aider,
    Command,
}

impl Adapter {
    pub const ALL: [Adapter; 6] = [
        Adapter::Codex,
        Adapter::Claude,
        Adapter::Gemini,
        Adapter::Opencode,
        Adapter::Aider,
        Adapter::Command,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Adapter::Codex => "codex",
            Adapter::Claude => "claude",
            Adapter::Gemini => "gemini",
            Adapter::Opencode => "opencode",
            Adapter::Aider => "aider",
            Adapter::Command => "command",
        }
    }

    pub fn from_name(name: &str) -> Option<Adapter> {
        Adapter::ALL.into_iter().find(|a| a.as_str() == name)
    }

    /// The command that installs the CLI this adapter drives; `None` for `command`, whose
    /// program is the user's own.
    pub fn install_command(self) -> Option<&'static str> {
        match self {
            Adapter::Codex => Some("npm install -g @openai/codex"),
            Adapter::Claude => Some("npm install -g @anthropic-ai/claude-code"),
            Adapter::Gemini => Some("npm install -g @google/gemini-cli"),
            Adapter::Opencode => Some("npm install -g opencode-ai"),
            Adapter::Aider => Some("python -m pip install aider-install && aider-install"),
            Adapter::Command => None,
        }
    }
}

/// Which agent plays which role. `None` means no agent for that role: no reviewer turn,
/// no auditor agent (the machine audit always runs).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Roles {
    pub implementer: Option<Spanned<String>>,
    pub reviewer: Option<Spanned<String>>,
    pub auditor: Option<Spanned<String>>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Approval {
    /// The release branch moves as soon as the whole-goal checks pass.
    Auto,
    /// The run stops before the release move until `goalpost approve`.
    Human,
}

/// What network the checks have (`network` in the front matter). Agent turns always
/// have the network: they talk to their model's API.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Network {
    /// The machine's network, as goalpost has it.
    #[default]
    Open,
    /// None: each check gets a network of its own with only a loopback device.
    None,
}

/// One unit of the plan.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Phase {
    pub id: Spanned<String>,
    pub title: String,
    pub depends_on: Vec<Spanned<String>>,
    /// Number of attempts (best-of-n); 1 unless `Attempts:` says otherwise.
    pub attempts: Spanned<u32>,
    /// Agents named in `Attempts: N (a, b)`; empty means the implementer role's agent.
    /// Listed fewer times than `attempts`, they repeat in order.
    pub attempt_agents: Vec<Spanned<String>>,
    pub select: Spanned<Selection>,
    /// The effective contract: the plan's, with this phase's overrides laid over it.
    pub contract: Contract,
}

impl Phase {
    /// The agent name of attempt `n` (0-based), given the implementer role's default.
    pub fn agent_for_attempt<'a>(&'a self, n: usize, default: &'a str) -> &'a str {
        if self.attempt_agents.is_empty() {
            default
        } else {
            &self.attempt_agents[n % self.attempt_agents.len()].value
        }
    }
}

/// How the winner among a phase's attempts is chosen.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "policy", rename_all = "snake_case")]
pub enum Selection {
    First,
    Best { metric: String },
    Review,
}
