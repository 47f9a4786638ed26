//! Reading a goal file: Markdown with optional `+++` TOML front matter, into a validated
//! [`Plan`](crate::plan::Plan), or every error found, each with its file:line:col.
//!
//! The path the text takes: [`front_matter`] splits off and reads the TOML settings,
//! [`markdown`] finds the headings and the blocks under them, [`sections`] turns the
//! plan's headings into contract parts (with [`checks`] for the line-level syntax),
//! [`phases`] reads `## Phases` and lays each phase over the plan's contract, and
//! [`validate`] checks what needs the whole plan in view.

pub(crate) mod checks;
mod front_matter;
mod markdown;
mod phases;
mod sections;
mod settings;
mod validate;

use std::fmt;
use std::path::{Path, PathBuf};

use serde::Serialize;

use crate::plan::Plan;

pub use checks::{CheckError, parse_check, parse_no_progress_limit};
pub use settings::parse_wall_time;

/// One problem in a goal file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Diagnostic {
    pub file: PathBuf,
    /// 1-based; 0 when the problem has no line (an unreadable file).
    pub line: u32,
    /// 1-based; 0 when unknown.
    pub col: u32,
    /// What is wrong.
    pub message: String,
    /// What was expected instead.
    pub expected: String,
}

impl fmt::Display for Diagnostic {
    /// `FILE:LINE:COL: what is wrong; what was expected`
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}:{}:{}: {}; {}",
            self.file.display(),
            self.line,
            self.col,
            self.message,
            self.expected
        )
    }
}

/// All the problems found in one goal file, in file order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Diagnostics(pub Vec<Diagnostic>);

impl fmt::Display for Diagnostics {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for d in &self.0 {
            writeln!(f, "{d}")?;
        }
        Ok(())
    }
}

impl std::error::Error for Diagnostics {}

/// Reads, parses and validates the goal file at `path`.
pub fn load(path: &Path) -> Result<Plan, Diagnostics> {
    let text = std::fs::read_to_string(path).map_err(|e| {
        Diagnostics(vec![Diagnostic {
            file: path.to_path_buf(),
            line: 0,
            col: 0,
            message: format!("cannot read the goal file: {e}"),
            expected: "a readable UTF-8 Markdown file".into(),
        }])
    })?;
    parse(path, &text)
}

/// Parses and validates goal-file `text`; `path` is used for messages and `Plan::path`.
///
/// ```
/// use std::path::Path;
///
/// let text = "# Goal: greet\n\n## Outcome\nIt greets.\n\n## Verification\n- `./greet.sh` passes\n";
/// let plan = goalpost_shared::goal::parse(Path::new("goal.md"), text).unwrap();
/// assert_eq!(plan.phases[0].id.value, "goal");
///
/// let errors = goalpost_shared::goal::parse(Path::new("goal.md"), "# Goal: nothing\n").unwrap_err();
/// assert_eq!(
///     errors.0[0].to_string(),
///     "goal.md:1:1: the goal file has no Outcome; an `## Outcome` section saying what must be true when the work is done"
/// );
/// ```
pub fn parse(path: &Path, text: &str) -> Result<Plan, Diagnostics> {
    let mut sink = Sink {
        file: path.to_path_buf(),
        diags: vec![],
    };
    let src = markdown::Source::new(text);
    let fm = front_matter::read(&src, &mut sink);
    let nodes = markdown::parse(&src, fm.body_start);
    let doc = sections::read(&nodes, &mut sink);
    let facts = validate::Facts {
        front_matter_readable: fm.readable,
        verification_at: doc.verification_at,
        outcome_written: doc.outcome_written,
    };
    let plan = phases::build(path, fm.settings, doc, &mut sink);
    validate::plan(&plan, &facts, &mut sink);
    sink.finish(plan)
}

/// Collects diagnostics while the whole file is read, so every problem is reported.
#[derive(Debug)]
pub(crate) struct Sink {
    file: PathBuf,
    diags: Vec<Diagnostic>,
}

impl Sink {
    pub fn error(
        &mut self,
        line: u32,
        col: u32,
        message: impl Into<String>,
        expected: impl Into<String>,
    ) {
        self.diags.push(Diagnostic {
            file: self.file.clone(),
            line,
            col,
            message: message.into(),
            expected: expected.into(),
        });
    }

    fn finish(mut self, plan: Plan) -> Result<Plan, Diagnostics> {
        if self.diags.is_empty() {
            return Ok(plan);
        }
        // Stable: problems found at the same place keep the order they were found in.
        self.diags.sort_by_key(|d| (d.line, d.col));
        self.diags.dedup();
        Err(Diagnostics(self.diags))
    }
}

/// `did you mean "x"?` for the known word closest to `word`, if one is close enough.
pub(crate) fn suggest<'a>(word: &str, known: impl IntoIterator<Item = &'a str>) -> Option<&'a str> {
    known
        .into_iter()
        .map(|k| {
            (
                strsim::damerau_levenshtein(&word.to_lowercase(), &k.to_lowercase()),
                k,
            )
        })
        .filter(|(d, k)| *d < word.chars().count() && *d <= 1.max(k.len() / 3))
        .min_by_key(|(d, _)| *d)
        .map(|(_, k)| k)
}

/// What was expected instead of the unknown `word`: the closest known word if one is
/// close (`did you mean "x"?`), else the list of known words.
pub(crate) fn expected_word(word: &str, known: &[&str]) -> String {
    match suggest(word, known.iter().copied()) {
        Some(k) => format!("did you mean \"{k}\"?"),
        None => format!("one of {}", one_of(known.iter().copied())),
    }
}

/// `"a", "b" or "c"`.
pub(crate) fn one_of<'a>(words: impl IntoIterator<Item = &'a str>) -> String {
    let words: Vec<String> = words.into_iter().map(|w| format!("\"{w}\"")).collect();
    match words.split_last() {
        None => String::new(),
        Some((last, [])) => last.clone(),
        Some((last, rest)) => format!("{} or {last}", rest.join(", ")),
    }
}
