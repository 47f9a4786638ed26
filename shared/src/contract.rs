//! The goal contract: what must be true when the work is done, as typed values that keep
//! the goal-file line each one came from.

use std::fmt::Write as _;

use serde::{Deserialize, Serialize};

/// A value together with where it was written in the goal file (1-based line and column).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Spanned<T> {
    pub value: T,
    pub line: u32,
    pub col: u32,
}

impl<T> Spanned<T> {
    pub fn new(value: T, line: u32, col: u32) -> Self {
        Self { value, line, col }
    }
}

/// The six parts of a goal contract. A phase's contract is the plan's with the phase's own
/// parts laid over it.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Contract {
    /// What must be true when the work is done.
    pub outcome: Option<Spanned<String>>,
    /// The verification surface: machine checks and human-language checks.
    pub verification: Vec<Check>,
    pub constraints: Vec<Spanned<String>>,
    pub boundaries: Boundaries,
    pub iteration_policy: Option<Spanned<String>>,
    pub blocked: Option<StopCondition>,
    /// Sections the contract does not know, kept as context for agents.
    pub context: Vec<Section>,
    /// What makes a fresh checkout ready for the checks (installing dependencies); run
    /// before the first turn of every worker round and before every audit's checks.
    #[serde(default)]
    pub setup: Setup,
    /// Checks only the auditor runs (`## Held-out checks`): no implementer, reviewer or
    /// selection agent is told what they are, and their files (the front matter's
    /// `[held_out] dir`) are visible to no agent turn and no other check.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub held_out: Vec<Check>,
}

impl Contract {
    /// The contract as the agents may see it: without the held-out checks.
    pub fn without_held_out(&self) -> Contract {
        Contract {
            held_out: Vec::new(),
            ..self.clone()
        }
    }

    /// The contract's six parts and its context sections, as the Markdown an agent's
    /// prompt shows (the held-out checks are never shown).
    pub fn write_markdown(&self, out: &mut String) {
        let contract = self;
        out.push_str("## Goal contract\n\n");
        if let Some(outcome) = &contract.outcome {
            let _ = writeln!(out, "### Outcome\n\n{}\n", outcome.value.trim());
        }
        if !contract.verification.is_empty() {
            out.push_str("### Verification\n\n");
            for check in &contract.verification {
                match &check.kind {
                    CheckKind::Machine { command, metric } => {
                        let _ = write!(out, "- `{command}` must exit 0");
                        if let Some(m) = metric {
                            let _ = write!(
                                out,
                                " and report `{}` {} {}",
                                m.name,
                                m.op.as_str(),
                                m.target
                            );
                        }
                        out.push('\n');
                    }
                    CheckKind::Human => {
                        let _ =
                            writeln!(out, "- {} (checked by a person)", check.text.value.trim());
                    }
                }
            }
            out.push('\n');
        }
        if !contract.constraints.is_empty() {
            out.push_str("### Constraints\n\n");
            for c in &contract.constraints {
                let _ = writeln!(out, "- {}", c.value.trim());
            }
            out.push('\n');
        }
        let b = &contract.boundaries;
        if !(b.allowed.is_empty() && b.forbidden.is_empty() && b.protected.is_empty()) {
            out.push_str("### Boundaries\n\n");
            let globs = |list: &[Spanned<String>]| {
                list.iter()
                    .map(|g| format!("`{}`", g.value))
                    .collect::<Vec<_>>()
                    .join(", ")
            };
            if !b.allowed.is_empty() {
                let _ = writeln!(
                    out,
                    "- Allowed paths (change nothing else): {}",
                    globs(&b.allowed)
                );
            }
            if !b.forbidden.is_empty() {
                let _ = writeln!(out, "- Forbidden paths: {}", globs(&b.forbidden));
            }
            if !b.protected.is_empty() {
                let _ = writeln!(
                    out,
                    "- Protected paths (must not change at all): {}",
                    globs(&b.protected)
                );
            }
            out.push('\n');
        }
        if let Some(policy) = &contract.iteration_policy {
            let _ = writeln!(out, "### Iteration policy\n\n{}\n", policy.value.trim());
        }
        if let Some(blocked) = &contract.blocked {
            let _ = writeln!(
                out,
                "### Blocked stop condition\n\n{}\n",
                blocked.text.value.trim()
            );
        }
        for section in &contract.context {
            let _ = writeln!(
                out,
                "### {}\n\n{}\n",
                section.heading.value.trim(),
                section.body.trim()
            );
        }
    }
}

/// The setup commands of a plan or phase (`setup` and `setup_timeout` in the front
/// matter, `Setup:` in a phase) and their time limit.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Setup {
    /// Shell commands (`/bin/sh -c`), run in order in the checkout's root; the first
    /// that fails ends the setup.
    pub commands: Vec<Spanned<String>>,
    /// The time all the commands together may take.
    pub timeout_secs: u64,
}

/// The setup's time limit when the goal file sets no `setup_timeout`.
pub const DEFAULT_SETUP_TIMEOUT_SECS: u64 = 600;

impl Default for Setup {
    fn default() -> Self {
        Setup {
            commands: Vec::new(),
            timeout_secs: DEFAULT_SETUP_TIMEOUT_SECS,
        }
    }
}

/// A heading of the goal file that is not one of the contract's parts.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Section {
    pub heading: Spanned<String>,
    pub body: String,
}

/// One item of the verification surface.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Check {
    /// The item as written, without its list marker.
    pub text: Spanned<String>,
    pub kind: CheckKind,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum CheckKind {
    /// A command in backticks: passes when it exits 0 (and meets its metric, if any).
    Machine {
        command: String,
        metric: Option<MetricExpectation>,
    },
    /// A check written in words: never counted as passed by a machine.
    Human,
}

impl Check {
    /// The command of a machine check.
    pub fn command(&self) -> Option<&str> {
        match &self.kind {
            CheckKind::Machine { command, .. } => Some(command),
            CheckKind::Human => None,
        }
    }

    pub fn metric(&self) -> Option<&MetricExpectation> {
        match &self.kind {
            CheckKind::Machine { metric, .. } => metric.as_ref(),
            CheckKind::Human => None,
        }
    }
}

/// "`cmd` reports `NAME` below|above|at most|at least N".
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MetricExpectation {
    pub name: String,
    pub op: MetricOp,
    pub target: f64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MetricOp {
    Below,
    Above,
    AtMost,
    AtLeast,
}

impl MetricOp {
    /// Whether `value` meets the expectation `op target`.
    pub fn holds(self, value: f64, target: f64) -> bool {
        match self {
            MetricOp::Below => value < target,
            MetricOp::Above => value > target,
            MetricOp::AtMost => value <= target,
            MetricOp::AtLeast => value >= target,
        }
    }

    /// True when smaller values are better (below / at most).
    pub fn lower_is_better(self) -> bool {
        matches!(self, MetricOp::Below | MetricOp::AtMost)
    }

    pub fn as_str(self) -> &'static str {
        match self {
            MetricOp::Below => "below",
            MetricOp::Above => "above",
            MetricOp::AtMost => "at most",
            MetricOp::AtLeast => "at least",
        }
    }
}

/// Path rules. Allowed empty means everything not forbidden.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Boundaries {
    pub allowed: Vec<Spanned<String>>,
    pub forbidden: Vec<Spanned<String>>,
    /// Must not change at all: verification assets, fixtures of the test suite.
    pub protected: Vec<Spanned<String>>,
}

/// The blocked stop condition.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StopCondition {
    pub text: Spanned<String>,
    /// "N consecutive ... no improvement": iterations without progress before blocking.
    pub no_progress_limit: Option<u32>,
}

/// Compiles one boundary glob. Globs are gitignore-like and relative to the repository's
/// root: `dir/` means everything under `dir`, a glob without a `/` (other than a trailing
/// one) matches at any depth, and `*` does not cross a `/` (`**` does).
pub fn compile_glob(pattern: &str) -> Result<globset::Glob, globset::Error> {
    let p = pattern.trim();
    let p = p.strip_prefix("./").unwrap_or(p);
    let anchored = p.starts_with('/');
    let p = p.trim_start_matches('/');
    let mut glob = if p.ends_with('/') {
        format!("{p}**")
    } else {
        p.to_string()
    };
    if !anchored && !p.trim_end_matches('/').contains('/') {
        glob = format!("**/{glob}");
    }
    globset::GlobBuilder::new(&glob)
        .literal_separator(true)
        .build()
}

/// [`Boundaries`] compiled for matching repository-relative paths.
#[derive(Debug, Clone)]
pub struct PathRules {
    allowed: Option<globset::GlobSet>,
    forbidden: globset::GlobSet,
    protected: globset::GlobSet,
}

impl Boundaries {
    /// Compiles the globs; the goal-file parser has already reported any invalid one.
    pub fn compile(&self) -> Result<PathRules, globset::Error> {
        let set = |globs: &[Spanned<String>]| -> Result<globset::GlobSet, globset::Error> {
            let mut b = globset::GlobSetBuilder::new();
            for g in globs {
                b.add(compile_glob(&g.value)?);
            }
            b.build()
        };
        Ok(PathRules {
            allowed: if self.allowed.is_empty() {
                None
            } else {
                Some(set(&self.allowed)?)
            },
            forbidden: set(&self.forbidden)?,
            protected: set(&self.protected)?,
        })
    }
}

impl PathRules {
    /// Whether the work may change `path`: allowed (or no allow-list), not forbidden and
    /// not protected.
    pub fn may_change(&self, path: &str) -> bool {
        self.allowed.as_ref().is_none_or(|a| a.is_match(path))
            && !self.forbidden.is_match(path)
            && !self.protected.is_match(path)
    }

    pub fn is_forbidden(&self, path: &str) -> bool {
        self.forbidden.is_match(path)
    }

    pub fn is_protected(&self, path: &str) -> bool {
        self.protected.is_match(path)
    }

    /// False when an allow-list exists and `path` is not on it.
    pub fn is_allowed(&self, path: &str) -> bool {
        self.allowed.as_ref().is_none_or(|a| a.is_match(path))
    }
}
