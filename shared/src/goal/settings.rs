//! The front matter's keys, read into [`Settings`]: release branch, parallelism, budgets,
//! agents, roles, approval and prices. Every unknown key is reported with the closest
//! known one.

use std::collections::BTreeMap;
use std::time::Duration;

use toml::de::{DeTable, DeValue};

use super::front_matter::{Toml, Value};
use super::one_of;
use crate::contract::Spanned;
use crate::plan::{
    Adapter, AgentDef, Approval, AuditBudget, Budget, HeldOut, HeldOutFeedback, Network, Price,
    Roles, Settings, WallTime,
};

pub(crate) const TOP_KEYS: &[&str] = &[
    "release",
    "max_parallel",
    "budget",
    "run_budget",
    "agents",
    "roles",
    "approval",
    "prices",
    "network",
    "setup",
    "setup_timeout",
    "held_out",
    "audit_skill",
];
pub(crate) const BUDGET_KEYS: &[&str] = &[
    "turns",
    "wall",
    "tokens",
    "tokens_in",
    "tokens_out",
    "tokens_cached",
    "cost_usd",
    "tool_calls",
    "iterations",
    "tmp_mb",
    "objects_mb",
    "audit",
];
pub(crate) const AUDIT_BUDGET_KEYS: &[&str] = &["tokens", "cost_usd", "wall"];
pub(crate) const AGENT_KEYS: &[&str] = &["adapter", "command", "args", "model", "env"];
pub(crate) const ROLE_KEYS: &[&str] = &["implementer", "reviewer", "auditor"];
pub(crate) const HELD_OUT_KEYS: &[&str] = &["dir", "into", "feedback"];
pub(crate) const PRICE_KEYS: &[&str] = &["input_per_mtok", "output_per_mtok", "cached_per_mtok"];

const WALL_EXPECTED: &str = "a duration in quotes such as \"90s\", \"30m\", \"2h\" or \"1h30m\"";

pub(crate) fn build(t: &mut Toml<'_, '_>, root: &DeTable<'_>) -> Settings {
    t.check_keys(root, "", TOP_KEYS);
    let mut s = Settings::default();
    for (key, v) in root.iter() {
        match key.get_ref().as_ref() {
            "release" => s.release = t.string("release", v),
            "max_parallel" => {
                if let Some(n) = t.positive_u32("max_parallel", v) {
                    s.max_parallel = n;
                }
            }
            "budget" => s.budget = budget(t, "budget", v),
            "run_budget" => s.run_budget = budget(t, "run_budget", v),
            "agents" => s.agents = agents(t, v),
            "roles" => s.roles = roles(t, v),
            "approval" => {
                if let Some(a) = t.string("approval", v) {
                    match a.value.as_str() {
                        "auto" => s.approval = Spanned::new(Approval::Auto, a.line, a.col),
                        "human" => s.approval = Spanned::new(Approval::Human, a.line, a.col),
                        other => t.error(
                            v.span(),
                            format!("unknown approval \"{other}\""),
                            "\"auto\" (the release branch moves when the whole-goal checks pass) or \"human\" (wait for `goalpost approve`)",
                        ),
                    }
                }
            }
            "prices" => s.prices = prices(t, v),
            "held_out" => s.held_out = held_out(t, v),
            "audit_skill" => {
                s.audit_skill = t.string("audit_skill", v);
                if s.audit_skill
                    .as_ref()
                    .is_some_and(|p| p.value.trim().is_empty())
                {
                    t.error(
                        v.span(),
                        "\"audit_skill\" is empty",
                        "the path of a Markdown prompt file, such as `audit_skill = \"audit-skill.md\"` (relative to the goal file)",
                    );
                    s.audit_skill = None;
                }
            }
            "setup" => s.setup.commands = setup_commands(t, v),
            "setup_timeout" => {
                if let Some(secs) = setup_timeout(t, v) {
                    s.setup.timeout_secs = secs;
                }
            }
            "network" => {
                if let Some(n) = t.string("network", v) {
                    match n.value.as_str() {
                        "open" => s.network = Spanned::new(Network::Open, n.line, n.col),
                        "none" => s.network = Spanned::new(Network::None, n.line, n.col),
                        other => t.error(
                            v.span(),
                            format!("unknown network \"{other}\""),
                            "\"open\" (checks use the machine's network, the default) or \"none\" (each check runs with only a loopback device of its own)",
                        ),
                    }
                }
            }
            _ => {}
        }
    }
    s
}

/// `setup = ["cmd", ...]`: each item one shell command, none of them blank.
fn setup_commands(t: &mut Toml<'_, '_>, v: &Value<'_>) -> Vec<Spanned<String>> {
    const EXPECTED: &str = "an array of shell commands, such as `setup = [\"npm ci\"]`";
    let DeValue::Array(items) = v.get_ref() else {
        t.error(
            v.span(),
            format!("\"setup\" is {}", type_name(v.get_ref())),
            EXPECTED,
        );
        return Vec::new();
    };
    let mut out = Vec::new();
    for item in items.iter() {
        match item.get_ref() {
            DeValue::String(cmd) if !cmd.trim().is_empty() => {
                out.push(t.spanned(cmd.to_string(), item.span()));
            }
            DeValue::String(_) => t.error(item.span(), "an empty setup command", EXPECTED),
            other => t.error(
                item.span(),
                format!("a setup command is {}", type_name(other)),
                EXPECTED,
            ),
        }
    }
    out
}

/// `setup_timeout = "10m"`: the time the setup commands may take together, in seconds.
fn setup_timeout(t: &mut Toml<'_, '_>, v: &Value<'_>) -> Option<u64> {
    if let DeValue::String(text) = v.get_ref()
        && let Some(d) = parse_wall_time(text)
    {
        return Some(d.as_secs().max(1));
    }
    t.error(
        v.span(),
        format!("invalid setup_timeout {}", shown(v.get_ref())),
        WALL_EXPECTED,
    );
    None
}

fn type_name(v: &DeValue<'_>) -> String {
    match v.type_str().chars().next() {
        Some('a' | 'e' | 'i' | 'o' | 'u') => format!("an {}", v.type_str()),
        _ => format!("a {}", v.type_str()),
    }
}

/// A value as the goal file wrote it, for an error message.
fn shown(v: &DeValue<'_>) -> String {
    match v {
        DeValue::String(s) => format!("\"{s}\""),
        DeValue::Integer(i) => i.as_str().to_string(),
        DeValue::Float(f) => f.as_str().to_string(),
        other => format!("of type {}", other.type_str()),
    }
}

fn budget(t: &mut Toml<'_, '_>, name: &str, v: &Value<'_>) -> Budget {
    let mut b = Budget::default();
    let Some(table) = t.table(name, v) else {
        return b;
    };
    t.check_keys(table, &format!("{name}."), BUDGET_KEYS);
    for (key, v) in table.iter() {
        let k = key.get_ref().as_ref();
        let path = format!("{name}.{k}");
        match k {
            "turns" => b.turns = t.positive_u32(&path, v),
            "iterations" => b.iterations = t.positive_u32(&path, v),
            "tokens" => b.tokens = t.positive_int(&path, v),
            "tokens_in" => b.tokens_in = t.positive_int(&path, v),
            "tokens_out" => b.tokens_out = t.positive_int(&path, v),
            "tokens_cached" => b.tokens_cached = t.positive_int(&path, v),
            "tool_calls" => b.tool_calls = t.positive_int(&path, v),
            "tmp_mb" | "objects_mb" if name == "run_budget" => t.error(
                v.span(),
                format!("\"run_budget.{k}\" caps nothing: the cap is per attempt, turn and check"),
                format!("put `{k}` in `[budget]`"),
            ),
            "tmp_mb" => b.tmp_mb = t.positive_int(&path, v),
            "objects_mb" => b.objects_mb = t.positive_int(&path, v),
            "cost_usd" => b.cost_usd = t.non_negative(&path, v),
            "wall" => b.wall = wall(t, &path, v),
            "audit" => b.audit = audit_budget(t, &path, v),
            _ => {}
        }
    }
    b
}

/// `[budget.audit]` or `[run_budget.audit]`.
fn audit_budget(t: &mut Toml<'_, '_>, name: &str, v: &Value<'_>) -> AuditBudget {
    let mut b = AuditBudget::default();
    let Some(table) = t.table(name, v) else {
        return b;
    };
    t.check_keys(table, &format!("{name}."), AUDIT_BUDGET_KEYS);
    for (key, v) in table.iter() {
        let k = key.get_ref().as_ref();
        let path = format!("{name}.{k}");
        match k {
            "tokens" => b.tokens = t.positive_int(&path, v),
            "cost_usd" => b.cost_usd = t.non_negative(&path, v),
            "wall" if name.starts_with("run_budget") => t.error(
                v.span(),
                format!("\"{path}\" limits nothing: the wall time is per audit"),
                "put `wall` in `[budget.audit]`",
            ),
            "wall" => b.wall = wall(t, &path, v),
            _ => {}
        }
    }
    b
}

/// A wall time such as `"30m"` at `path`.
fn wall(t: &mut Toml<'_, '_>, path: &str, v: &Value<'_>) -> Option<Spanned<WallTime>> {
    if let DeValue::String(text) = v.get_ref()
        && let Some(duration) = parse_wall_time(text)
    {
        let wall = WallTime {
            text: text.to_string(),
            duration,
        };
        return Some(t.spanned(wall, v.span()));
    }
    let shown = shown(v.get_ref());
    t.error(
        v.span(),
        format!("invalid wall time {shown} for \"{path}\""),
        WALL_EXPECTED,
    );
    None
}

/// Parses a wall time such as `90s`, `30m`, `2h`, `1h30m` or `1.5h`; `None` if malformed
/// or zero.
pub fn parse_wall_time(text: &str) -> Option<Duration> {
    let mut total = 0.0_f64;
    let mut rest = text.trim();
    if rest.is_empty() {
        return None;
    }
    while !rest.is_empty() {
        let num_len = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(rest.len());
        let n: f64 = rest[..num_len].parse().ok()?;
        rest = rest[num_len..].trim_start();
        let unit_len = rest
            .find(|c: char| !c.is_ascii_alphabetic())
            .unwrap_or(rest.len());
        let secs = match &rest[..unit_len] {
            "s" => 1.0,
            "m" => 60.0,
            "h" => 3600.0,
            "d" => 86400.0,
            _ => return None,
        };
        total += n * secs;
        rest = rest[unit_len..].trim_start();
    }
    (total > 0.0)
        .then(|| Duration::try_from_secs_f64(total).ok())
        .flatten()
}

fn agents(t: &mut Toml<'_, '_>, v: &Value<'_>) -> BTreeMap<String, AgentDef> {
    let mut out = BTreeMap::new();
    let Some(table) = t.table("agents", v) else {
        return out;
    };
    for (key, v) in table.iter() {
        let name = key.get_ref().to_string();
        let path = format!("agents.{name}");
        let Some(def) = t.table(&path, v) else {
            continue;
        };
        t.check_keys(def, &format!("{path}."), AGENT_KEYS);
        let name_sp = t.spanned(name.clone(), key.span());
        let mut agent = AgentDef {
            name: name_sp.clone(),
            adapter: Spanned::new(Adapter::Command, name_sp.line, name_sp.col),
            command: vec![],
            args: vec![],
            model: None,
            env: BTreeMap::new(),
        };
        let mut has_adapter = false;
        let mut adapter_known = false;
        for (k, v) in def.iter() {
            let k = k.get_ref().as_ref();
            let kpath = format!("{path}.{k}");
            match k {
                "adapter" => {
                    has_adapter = true;
                    if let Some(a) = t.string(&kpath, v) {
                        match Adapter::from_name(&a.value) {
                            Some(ad) => {
                                agent.adapter = Spanned::new(ad, a.line, a.col);
                                adapter_known = true;
                            }
                            None => {
                                let known: Vec<&str> =
                                    Adapter::ALL.iter().map(|a| a.as_str()).collect();
                                let hint = super::suggest(&a.value, known.iter().copied())
                                    .map_or_else(String::new, |k| {
                                        format!("did you mean \"{k}\"? ")
                                    });
                                t.error(
                                    v.span(),
                                    format!("unknown adapter \"{}\" for agent \"{name}\"", a.value),
                                    format!("{hint}the known adapters are {}", one_of(known)),
                                );
                            }
                        }
                    }
                }
                "command" => agent.command = t.strings(&kpath, v).unwrap_or_default(),
                "args" => agent.args = t.strings(&kpath, v).unwrap_or_default(),
                "model" => agent.model = t.string(&kpath, v).map(|s| s.value),
                "env" => {
                    if let Some(env) = t.table(&kpath, v) {
                        for (ek, ev) in env.iter() {
                            let epath = format!("{kpath}.{}", ek.get_ref());
                            if let Some(s) = t.string(&epath, ev) {
                                agent.env.insert(ek.get_ref().to_string(), s.value);
                            }
                        }
                    }
                }
                _ => {}
            }
        }
        if !has_adapter {
            let known: Vec<&str> = Adapter::ALL.iter().map(|a| a.as_str()).collect();
            t.error(
                key.span(),
                format!("agent \"{name}\" has no adapter"),
                format!("`adapter = ` one of {}", one_of(known)),
            );
        }
        if agent.adapter.value == Adapter::Command && adapter_known && agent.command.is_empty() {
            t.error(
                key.span(),
                format!("agent \"{name}\" uses the command adapter but has no command"),
                "`command = [\"path/to/agent\", \"arg\"]`",
            );
        }
        out.insert(name, agent);
    }
    out
}

fn roles(t: &mut Toml<'_, '_>, v: &Value<'_>) -> Roles {
    let mut r = Roles::default();
    let Some(table) = t.table("roles", v) else {
        return r;
    };
    t.check_keys(table, "roles.", ROLE_KEYS);
    for (key, v) in table.iter() {
        let k = key.get_ref().as_ref();
        let value = t.string(&format!("roles.{k}"), v);
        match k {
            "implementer" => r.implementer = value,
            "reviewer" => r.reviewer = value,
            "auditor" => r.auditor = value,
            _ => {}
        }
    }
    r
}

/// `[held_out]`: `dir` (the files, outside the repository), `into` (where an audit puts
/// them in its checkout) and `feedback` ("hidden" or "full").
fn held_out(t: &mut Toml<'_, '_>, v: &Value<'_>) -> HeldOut {
    let mut h = HeldOut::default();
    let Some(table) = t.table("held_out", v) else {
        return h;
    };
    t.check_keys(table, "held_out.", HELD_OUT_KEYS);
    for (key, v) in table.iter() {
        match key.get_ref().as_ref() {
            "dir" => {
                h.dir = t.string("held_out.dir", v);
                if h.dir.as_ref().is_some_and(|d| d.value.trim().is_empty()) {
                    t.error(
                        v.span(),
                        "an empty held_out.dir",
                        "the directory of the held-out checks' files, outside the repository, such as `dir = \"../hidden-tests\"`",
                    );
                    h.dir = None;
                }
            }
            "into" => {
                let Some(into) = t.string("held_out.into", v) else {
                    continue;
                };
                let path = std::path::Path::new(&into.value);
                let inside = !into.value.trim().is_empty()
                    && path.is_relative()
                    && path
                        .components()
                        .all(|c| matches!(c, std::path::Component::Normal(_)))
                    && path
                        .components()
                        .next()
                        .is_some_and(|c| c.as_os_str() != ".git");
                if inside {
                    h.into = Some(into);
                } else {
                    t.error(
                        v.span(),
                        format!("held_out.into \"{}\" is not a path inside the checkout", into.value),
                        "a relative path without `..` and outside `.git`, such as `into = \"tests/held_out\"`",
                    );
                }
            }
            "feedback" => {
                if let Some(f) = t.string("held_out.feedback", v) {
                    let value = match f.value.as_str() {
                        "hidden" => HeldOutFeedback::Hidden,
                        "full" => HeldOutFeedback::Full,
                        other => {
                            t.error(
                                v.span(),
                                format!("unknown held_out.feedback \"{other}\""),
                                "\"hidden\" (a failing held-out check is reported to the implementer by its number only, the default) or \"full\" (with its command and output)",
                            );
                            continue;
                        }
                    };
                    h.feedback = Spanned::new(value, f.line, f.col);
                }
            }
            _ => {}
        }
    }
    h
}

fn prices(t: &mut Toml<'_, '_>, v: &Value<'_>) -> BTreeMap<String, Price> {
    let mut out = BTreeMap::new();
    let Some(table) = t.table("prices", v) else {
        return out;
    };
    for (key, v) in table.iter() {
        let model = key.get_ref().to_string();
        let path = format!("prices.{model}");
        let Some(p) = t.table(&path, v) else {
            continue;
        };
        t.check_keys(p, &format!("{path}."), PRICE_KEYS);
        let get = |t: &mut Toml<'_, '_>, k: &str| {
            p.get(k)
                .and_then(|v| t.non_negative(&format!("{path}.{k}"), v))
                .map(|s| s.value)
        };
        let input = get(t, "input_per_mtok");
        let output = get(t, "output_per_mtok");
        let cached = get(t, "cached_per_mtok");
        match (input, output) {
            (Some(input), Some(output)) => {
                // Without a cached price, cached tokens cost what input does: an
                // overestimate keeps a cost budget on the safe side.
                let price = Price {
                    input_per_mtok: input,
                    output_per_mtok: output,
                    cached_per_mtok: cached.unwrap_or(input),
                };
                out.insert(model, price);
            }
            _ => t.error(
                key.span(),
                format!("the price of \"{model}\" needs input_per_mtok and output_per_mtok"),
                "`input_per_mtok = 1.25` and `output_per_mtok = 10` (US dollars per million tokens)",
            ),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wall_times() {
        assert_eq!(parse_wall_time("30m"), Some(Duration::from_secs(1800)));
        assert_eq!(parse_wall_time("90s"), Some(Duration::from_secs(90)));
        assert_eq!(parse_wall_time("1h30m"), Some(Duration::from_secs(5400)));
        assert_eq!(parse_wall_time("1.5h"), Some(Duration::from_secs(5400)));
        assert_eq!(parse_wall_time("2 h"), Some(Duration::from_secs(7200)));
        for bad in ["", "30", "30 minutes", "m", "0s", "-5m", "1x"] {
            assert_eq!(parse_wall_time(bad), None, "{bad}");
        }
    }
}
