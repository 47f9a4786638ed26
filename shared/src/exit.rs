//! The exit codes every goalpost binary uses; the README's table lists the same.

/// A process exit code with a documented meaning.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum ExitCode {
    /// The run (or command) completed: every phase merged, the release branch moved.
    Complete = 0,
    /// goalpost itself failed (a bug, an I/O error it could not attribute to the input).
    Internal = 1,
    /// Bad input: the goal file, the command line, or the repository's state.
    BadInput = 2,
    /// The run stopped blocked: a phase could not be completed; the stop report says why.
    Blocked = 3,
    /// The run stopped at a budget limit.
    BudgetLimited = 4,
    /// The run was paused (or waits for human approval) and can be resumed.
    Paused = 5,
}

impl ExitCode {
    pub fn code(self) -> u8 {
        self as u8
    }
}

impl From<ExitCode> for std::process::ExitCode {
    fn from(c: ExitCode) -> Self {
        std::process::ExitCode::from(c.code())
    }
}
