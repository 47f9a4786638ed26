//! The persisted states of a run, a phase and an attempt: each variant's name is spelt
//! once, beside it, and that spelling is what the database, JSON and text use.

use std::fmt;

use rusqlite::types::{FromSql, FromSqlError, FromSqlResult, ToSql, ToSqlOutput, ValueRef};
use serde::Serialize;

/// A name read back from the store (or from JSON) that no variant carries: a value this
/// version does not know, named with what it was meant to be.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown {kind} `{value}`")]
pub struct UnknownName {
    pub kind: &'static str,
    pub value: String,
}

/// Declares an enum whose variants are persisted by name. Each name is spelt once, here,
/// and that spelling is what the database (`ToSql`/`FromSql`), JSON (serde) and text
/// (`Display`) use.
macro_rules! persisted_names {
    (
        $(#[$meta:meta])*
        pub enum $name:ident ($kind:literal) {
            $($(#[$vmeta:meta])* $variant:ident => $text:literal,)+
        }
    ) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        pub enum $name {
            $($(#[$vmeta])* $variant,)+
        }

        impl $name {
            /// Every variant, in declaration order.
            pub const ALL: &'static [$name] = &[$($name::$variant,)+];

            /// The name the store and JSON use.
            pub fn as_str(self) -> &'static str {
                match self {
                    $($name::$variant => $text,)+
                }
            }
        }

        impl std::str::FromStr for $name {
            type Err = UnknownName;

            fn from_str(s: &str) -> std::result::Result<Self, UnknownName> {
                match s {
                    $($text => Ok($name::$variant),)+
                    _ => Err(UnknownName {
                        kind: $kind,
                        value: s.to_owned(),
                    }),
                }
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                // `pad`, not `write_str`: tables align states with `{:<10}`.
                f.pad(self.as_str())
            }
        }

        impl Serialize for $name {
            fn serialize<S: serde::Serializer>(
                &self,
                serializer: S,
            ) -> std::result::Result<S::Ok, S::Error> {
                serializer.serialize_str(self.as_str())
            }
        }

        impl<'de> serde::Deserialize<'de> for $name {
            fn deserialize<D: serde::Deserializer<'de>>(
                deserializer: D,
            ) -> std::result::Result<Self, D::Error> {
                let text = String::deserialize(deserializer)?;
                text.parse().map_err(serde::de::Error::custom)
            }
        }

        impl ToSql for $name {
            fn to_sql(&self) -> rusqlite::Result<ToSqlOutput<'_>> {
                Ok(ToSqlOutput::from(self.as_str()))
            }
        }

        impl FromSql for $name {
            fn column_result(value: ValueRef<'_>) -> FromSqlResult<Self> {
                value
                    .as_str()?
                    .parse()
                    .map_err(|e: UnknownName| FromSqlError::Other(Box::new(e)))
            }
        }
    };
}

persisted_names! {
    /// Where a run stands, as the store records it.
    pub enum RunState("run state") {
        /// Running, or interrupted by a crash: `resume` goes on.
        Active => "active",
        /// Stopped by a pause: `resume` goes on.
        Paused => "paused",
        /// Every phase merged and the release branch moved.
        Complete => "complete",
        /// Stopped short of the goal; the blocker says why.
        Blocked => "blocked",
        /// Stopped because a budget was spent; `resume --budget` goes on.
        BudgetLimited => "budget_limited",
        /// Passed the whole-goal audit and waits for `goalpost approve`.
        AwaitingApproval => "awaiting_approval",
        /// Its worktrees were removed by `goalpost clear`; its work stays on refs.
        Cleared => "cleared",
    }
}

persisted_names! {
    /// Where a phase stands, as the store records it (the scheduler keeps its own,
    /// in-memory view of it).
    pub enum PhaseStatus("phase state") {
        /// Not started: waits on its dependencies.
        Pending => "pending",
        /// Its attempts are at work, under audit or at the gate.
        Running => "running",
        /// An attempt of it landed on the integration ref.
        Merged => "merged",
        /// Every attempt stopped without landing.
        Blocked => "blocked",
        /// Every attempt stopped on a budget.
        BudgetLimited => "budget_limited",
    }
}

persisted_names! {
    /// Where an attempt stands, as the store records it (the scheduler keeps its own,
    /// in-memory view of it).
    pub enum AttemptStatus("attempt state") {
        /// A worker round is queued or running.
        Running => "running",
        /// Its candidate is under audit.
        Auditing => "auditing",
        /// Its candidate passed its audit and waits at the gate.
        Passed => "passed",
        /// At the gate. Nothing writes it today; `resume` reads it as `Passed`.
        Gating => "gating",
        /// Its candidate landed on the integration ref.
        Merged => "merged",
        /// Another attempt of its phase won; its work stays on its ref.
        Lost => "lost",
        /// Stopped without a candidate (blocked, or an audit said abandon).
        Blocked => "blocked",
        /// Stopped because its budget was spent.
        BudgetLimited => "budget_limited",
        /// Stopped short of an outcome (a pause, a killed worker, a failed audit run):
        /// `resume` goes on.
        Interrupted => "interrupted",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The names existing stores and `--json` readers hold: renaming one breaks them.
    #[test]
    fn the_persisted_names_are_the_ones_stores_already_hold() {
        let names = |all: &[&'static str]| all.join(" ");
        assert_eq!(
            names(&RunState::ALL.iter().map(|s| s.as_str()).collect::<Vec<_>>()),
            "active paused complete blocked budget_limited awaiting_approval cleared"
        );
        assert_eq!(
            names(
                &PhaseStatus::ALL
                    .iter()
                    .map(|s| s.as_str())
                    .collect::<Vec<_>>()
            ),
            "pending running merged blocked budget_limited"
        );
        assert_eq!(
            names(
                &AttemptStatus::ALL
                    .iter()
                    .map(|s| s.as_str())
                    .collect::<Vec<_>>()
            ),
            "running auditing passed gating merged lost blocked budget_limited interrupted"
        );
    }

    fn round_trips<T>(all: &[T])
    where
        T: Copy + PartialEq + fmt::Debug + fmt::Display + std::str::FromStr<Err = UnknownName>,
        T: Serialize + serde::de::DeserializeOwned,
    {
        for &state in all {
            let text = state.to_string();
            assert_eq!(text.parse::<T>(), Ok(state));
            let json = serde_json::to_string(&state).unwrap();
            assert_eq!(json, format!("\"{text}\""));
            assert_eq!(serde_json::from_str::<T>(&json).unwrap(), state);
        }
    }

    #[test]
    fn every_state_round_trips_through_its_name_and_json() {
        round_trips(RunState::ALL);
        round_trips(PhaseStatus::ALL);
        round_trips(AttemptStatus::ALL);
    }

    #[test]
    fn an_unknown_name_is_an_error_naming_it() {
        let err = "frobbed".parse::<AttemptStatus>().unwrap_err();
        assert_eq!(err.to_string(), "unknown attempt state `frobbed`");
        let err = serde_json::from_str::<RunState>("\"Active\"").unwrap_err();
        assert!(
            err.to_string().contains("unknown run state `Active`"),
            "{err}"
        );
        assert!("".parse::<PhaseStatus>().is_err());
    }

    #[test]
    fn a_state_pads_to_the_width_of_a_table_column() {
        assert_eq!(format!("[{:<10}]", AttemptStatus::Lost), "[lost      ]");
        assert_eq!(format!("[{:>8}]", PhaseStatus::Merged), "[  merged]");
    }
}
