//! Reading a goal file: Markdown with optional `+++` TOML front matter, into a validated
//! [`Plan`](crate::plan::Plan), or every error found, each with its file:line:col.

use std::fmt;
use std::path::{Path, PathBuf};

use serde::Serialize;

use crate::plan::Plan;

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
pub fn parse(path: &Path, text: &str) -> Result<Plan, Diagnostics> {
    let _ = (path, text);
    Err(Diagnostics(vec![]))
}
