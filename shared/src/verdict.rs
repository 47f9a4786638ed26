//! The auditor agent's part of an audit (`roles.auditor`): what it is given
//! ([`AuditAgentSpec`]), the structured verdict it must answer with ([`AgentVerdict`], whose
//! JSON schema is [`SCHEMA`]) and what the audit records of it ([`AgentAudit`]).
//!
//! The verdict can only make an audit stricter: the machine audit's `merge` may become
//! `revise` or `abandon`, never the reverse. A verdict that is missing, malformed or
//! bought over budget counts as none: the audit fails closed.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::protocol::{AgentSpec, Recommendation, Usage};

/// The audit skill goalpost ships (`shared/src/audit_skill.md`): what the auditor agent is
/// told to do, before the audit's facts. A goal file's `audit_skill` replaces it.
pub const SKILL: &str = include_str!("audit_skill.md");

/// Where [`SKILL`] came from, as reports name it.
pub const SHIPPED_SKILL: &str = "goalpost's own";

/// The verdict's JSON schema, given to CLIs that take one (codex's `--output-schema`,
/// claude's `--json-schema`) and quoted in the auditor agent's prompt. Every property is
/// required and no other is allowed, as strict structured output wants.
pub const SCHEMA: &str = r#"{
  "type": "object",
  "additionalProperties": false,
  "required": ["recommendation", "summary", "claims", "checks", "findings"],
  "properties": {
    "recommendation": { "type": "string", "enum": ["merge", "revise", "abandon"] },
    "summary": { "type": "string" },
    "claims": {
      "type": "array",
      "items": {
        "type": "object",
        "additionalProperties": false,
        "required": ["n", "status", "evidence"],
        "properties": {
          "n": { "type": "integer" },
          "status": { "type": "string", "enum": ["verified", "refuted", "unverifiable"] },
          "evidence": { "type": "string" }
        }
      }
    },
    "checks": {
      "type": "array",
      "items": {
        "type": "object",
        "additionalProperties": false,
        "required": ["n", "status", "evidence"],
        "properties": {
          "n": { "type": "integer" },
          "status": { "type": "string", "enum": ["pass", "fail"] },
          "evidence": { "type": "string" }
        }
      }
    },
    "findings": {
      "type": "array",
      "items": {
        "type": "object",
        "additionalProperties": false,
        "required": ["file", "line", "text"],
        "properties": {
          "file": { "type": "string" },
          "line": { "type": ["integer", "null"] },
          "text": { "type": "string" }
        }
      }
    }
  }
}"#;

/// The auditor agent of an audit, as the auditor starts it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AuditAgentSpec {
    pub agent: AgentSpec,
    /// The audit skill: the prompt the agent works by.
    pub skill: String,
    /// Where the skill came from: a path, or "goalpost's own".
    pub skill_source: String,
    /// The user's variables its CLI needs (`HOME`, `PATH`, ...), as goalpost saw them;
    /// nothing of any attempt's.
    pub env: BTreeMap<String, String>,
    /// How long one turn of it may take.
    pub timeout_secs: u64,
    /// Tokens in + out it may spend in this audit; `None`: no limit.
    #[serde(default)]
    pub tokens: Option<u64>,
    /// Dollars it may spend in this audit; `None`: no limit.
    #[serde(default)]
    pub cost_usd: Option<f64>,
}

/// What the auditor agent answered.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AgentVerdict {
    pub recommendation: Recommendation,
    pub summary: String,
    /// Its judgement of each of the implementer's claims, by number (1-based).
    pub claims: Vec<ClaimVerdict>,
    /// Its judgement of each human-language check, by number (1-based).
    pub checks: Vec<CheckVerdict>,
    pub findings: Vec<Finding>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClaimVerdict {
    pub n: u32,
    pub status: ClaimJudgement,
    /// What it quotes for its judgement.
    pub evidence: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ClaimJudgement {
    Verified,
    Refuted,
    Unverifiable,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CheckVerdict {
    pub n: u32,
    pub status: CheckJudgement,
    pub evidence: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CheckJudgement {
    Pass,
    Fail,
}

/// Something it found, at a place in the candidate.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Finding {
    pub file: String,
    pub line: Option<u32>,
    pub text: String,
}

/// The auditor agent's part of an audit, as `audit.json` records it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AgentAudit {
    /// The agent's name in the goal file.
    pub agent: String,
    pub skill_source: String,
    /// Its verdict, when one counted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub verdict: Option<AgentVerdict>,
    /// Why no verdict counted: every try's reason, in order (a verdict that does not
    /// parse, a failed turn, a spent budget). Empty when one counted.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub failures: Vec<String>,
    /// Its turns in this audit (a second when the first gave no verdict).
    pub turns: u32,
    pub usage: Usage,
    /// The human-language checks it judged, by text, with its verdict: what the report
    /// shows as verified or failed.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub judged_checks: Vec<JudgedCheck>,
}

/// A human-language check with the auditor agent's judgement of it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct JudgedCheck {
    pub check: String,
    pub status: CheckJudgement,
    pub evidence: String,
}
