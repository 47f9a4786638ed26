//! The environment every agent's turn runs with, whatever its adapter.

use std::collections::BTreeMap;
use std::ffi::OsString;
use std::path::Path;

use goalpost_shared::protocol::{AgentSpec, Role, WorkerInput};

/// The environment an agent's turn runs with: the allow-listed variables of the worker's
/// own environment, `TMPDIR` in the attempt's private dir, the package managers' caches in
/// the run's package cache of the attempts, the run's agent environment,
/// the agent's own `env`, and last (so nothing overrides them) the `GOALPOST_*` facts of
/// the turn. `GOALPOST_PROMPT_FILE` is added by the adapter that writes the file.
pub fn agent_env(
    input: &WorkerInput,
    spec: &AgentSpec,
    role: Role,
    iteration: u32,
    tmpdir: &Path,
) -> BTreeMap<OsString, OsString> {
    let mut env = allowed_env(&input.env_allow);
    env.insert("TMPDIR".into(), tmpdir.into());
    if let Some(cache) = &input.sandbox.package_cache {
        env.extend(goalpost_shared::setup::cache_env(cache));
    }
    for (key, value) in input.agent_env.iter().chain(&spec.env) {
        env.insert(key.into(), value.into());
    }
    let facts = [
        ("GOALPOST_ROLE", role.as_str().to_owned()),
        ("GOALPOST_PHASE", input.phase.clone()),
        ("GOALPOST_ATTEMPT", input.attempt.to_string()),
        ("GOALPOST_ITERATION", iteration.to_string()),
        ("GOALPOST_RUN", input.run_id.clone()),
    ];
    for (key, value) in facts {
        env.insert(key.into(), value.into());
    }
    env
}

/// The variables named in `names` that are set in the worker's own environment.
pub fn allowed_env(names: &[String]) -> BTreeMap<OsString, OsString> {
    names
        .iter()
        .filter_map(|name| std::env::var_os(name).map(|value| (OsString::from(name), value)))
        .collect()
}
