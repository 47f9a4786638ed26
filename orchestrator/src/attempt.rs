//! Starting one round of an attempt: the worker process, its input and its result.

use std::collections::BTreeMap;
use std::ffi::OsString;
use std::path::PathBuf;

use goalpost_shared::plan::{AgentDef, Plan, Price};
use goalpost_shared::protocol::AgentSpec;

/// Environment variables the worker, its agents and its checks may see, besides their own
/// `GOALPOST_*` variables and each agent's configured `env`.
pub const WORKER_ENV_ALLOW: &[&str] = &[
    "PATH",
    "HOME",
    "LANG",
    "LC_ALL",
    "LC_CTYPE",
    "TERM",
    "USER",
    "LOGNAME",
    "SHELL",
    "TZ",
    "TMPDIR",
    "RUST_LOG",
    "CARGO_HOME",
    "RUSTUP_HOME",
];

/// Tells the worker and the auditor which process to die with.
pub const PARENT_PID_VAR: &str = "GOALPOST_PARENT_PID";

pub fn parent_pid() -> OsString {
    OsString::from(std::process::id().to_string())
}

/// Implementer iterations one worker round may use when the plan sets no limit.
pub const DEFAULT_MAX_ITERATIONS: u32 = 8;

/// Iterations without progress before an attempt is blocked, unless the plan says.
pub const DEFAULT_NO_PROGRESS_LIMIT: u32 = 3;

/// The agent as the worker starts it, with the price of its model from `prices`: the
/// model is its `model`, or the value of a `--model`/`-m` argument.
pub fn agent_spec(def: &AgentDef, prices: &BTreeMap<String, Price>) -> AgentSpec {
    let model = def.model.clone().or_else(|| {
        def.args
            .windows(2)
            .find(|w| w[0] == "--model" || w[0] == "-m")
            .map(|w| w[1].clone())
            .or_else(|| {
                def.args
                    .iter()
                    .find_map(|a| a.strip_prefix("--model=").map(str::to_owned))
            })
    });
    AgentSpec {
        name: def.name.value.clone(),
        adapter: def.adapter.value,
        command: def.command.clone(),
        args: def.args.clone(),
        model: def.model.clone(),
        env: def.env.clone(),
        price: model.and_then(|m| prices.get(&m).cloned()),
    }
}

/// The path of a sibling binary of the running `goalpost` (`goalpost-worker`,
/// `goalpost-auditor`), or the one named by `override_var`.
pub fn sibling_binary(name: &str, override_var: &str) -> PathBuf {
    if let Some(p) = std::env::var_os(override_var) {
        return PathBuf::from(p);
    }
    std::env::current_exe()
        .ok()
        .and_then(|exe| exe.parent().map(|d| d.join(name)))
        .unwrap_or_else(|| PathBuf::from(name))
}

/// The name of the implementer agent of the plan: the `implementer` role, or the only
/// agent defined.
pub fn implementer_name(plan: &Plan) -> Option<&str> {
    if let Some(r) = &plan.settings.roles.implementer {
        return Some(&r.value);
    }
    let mut names = plan.settings.agents.keys();
    match (names.next(), names.next()) {
        (Some(only), None) => Some(only),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use goalpost_shared::contract::Spanned;
    use goalpost_shared::plan::{Adapter, AgentDef};

    fn def(model: Option<&str>, args: &[&str]) -> AgentDef {
        AgentDef {
            name: Spanned::new("a".into(), 1, 1),
            adapter: Spanned::new(Adapter::Codex, 1, 1),
            command: Vec::new(),
            args: args.iter().map(|a| (*a).to_owned()).collect(),
            model: model.map(str::to_owned),
            env: BTreeMap::new(),
        }
    }

    #[test]
    fn an_agent_gets_the_price_of_its_model_named_by_field_or_argument() {
        let price = |p: f64| Price {
            input_per_mtok: p,
            output_per_mtok: p,
            cached_per_mtok: p,
        };
        let prices = BTreeMap::from([
            ("gpt-5.5".to_owned(), price(1.0)),
            ("o9".to_owned(), price(2.0)),
        ]);
        assert_eq!(
            agent_spec(&def(Some("o9"), &[]), &prices).price,
            Some(price(2.0))
        );
        assert_eq!(
            agent_spec(&def(None, &["--model", "gpt-5.5"]), &prices).price,
            Some(price(1.0))
        );
        assert_eq!(
            agent_spec(&def(None, &["-m", "o9"]), &prices).price,
            Some(price(2.0))
        );
        assert_eq!(
            agent_spec(&def(None, &["--model=o9"]), &prices).price,
            Some(price(2.0))
        );
        assert_eq!(agent_spec(&def(Some("other"), &[]), &prices).price, None);
        assert_eq!(agent_spec(&def(None, &[]), &prices).price, None);
    }
}
