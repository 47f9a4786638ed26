//! The verification surface's own files: what decides how a machine check runs, derived
//! from its command. A candidate that changes one of them breaks a boundary
//! ([`ViolationKind::CheckConfig`]) unless an allowed path of the goal file names the file
//! itself (its last component without a wildcard), as for git-level changes.
//!
//! # What decides how a check runs
//!
//! - Whatever the command was followed through to a test runner (see `runner`): the
//!   rules of each `make` target with their recipes as expanded, the `package.json`
//!   scripts `npm test` and `npm run` start, and the shell scripts that start a runner.
//!   These are compared between base and candidate: a changed recipe of the target is a
//!   violation, a new target elsewhere in the Makefile is not; a script that starts no
//!   runner (the code under test of a shell project) is not configuration.
//! - For `cargo test` and `cargo nextest`: `.cargo/config` and `.cargo/config.toml`,
//!   `build.rs`, `rust-toolchain` and `rust-toolchain.toml` anywhere, `.config/nextest.toml`
//!   for nextest, and these keys of any `Cargo.toml`: `package.autotests`,
//!   `package.autolib`, `package.autobins`, `package.autobenches`, `package.autoexamples`,
//!   `package.build`, `lib`, `bin`, `test`, `bench`, `workspace.members`,
//!   `workspace.exclude`, `workspace.default-members` and `profile` (a new dependency is
//!   not a violation).
//! - For `pytest`: `conftest.py`, `pytest.ini` and `.pytest.ini` anywhere, `[tool.pytest*]`
//!   in `pyproject.toml`, `[tool:pytest]` in `setup.cfg`, `[pytest]` in `tox.ini`.
//! - For `pytest` and `python -m unittest`: `sitecustomize.py` and `usercustomize.py`
//!   anywhere, and a module or package where the runner starts that shadows the runner
//!   (`unittest`, `pytest`, `_pytest`, `pluggy`, `py`).
//! - For `node --test`, `jest` and `vitest`: `.npmrc` anywhere; `jest.config.*`,
//!   `vitest.config.*`, `vitest.workspace.*`, `vite.config.*`, `babel.config.*` and
//!   `.babelrc*` anywhere; the `jest` key of any `package.json`.
//! - For `go test`: `go.work` anywhere.
//!
//! Both trees are read from commits, never from the checkout the checks ran in.

use std::collections::{BTreeMap, BTreeSet};

use git2::Oid;
use goalpost_shared::boundary::BoundaryRules;
use goalpost_shared::contract::Check;
use goalpost_shared::git::{PathChange, Repo};
use goalpost_shared::protocol::{Violation, ViolationKind};

use crate::runner::{self, CommitFiles, Files, Kind, Runner};

/// Every change of `changes` (base..candidate) to a file that decides how one of the
/// `machine` checks runs, as a violation, sorted by path; each path once.
pub fn judge(
    repo: &Repo,
    base: Oid,
    candidate: Oid,
    changes: &[PathChange],
    machine: &[&Check],
    rules: &BoundaryRules,
) -> Vec<Violation> {
    let changed: BTreeSet<String> = changes
        .iter()
        .flat_map(|c| c.paths().map(str::to_owned).collect::<Vec<_>>())
        .collect();
    let commands: Vec<&str> = machine.iter().filter_map(|c| c.command()).collect();
    judge_files(
        &CommitFiles::new(repo, base),
        &CommitFiles::new(repo, candidate),
        &changed,
        &commands,
        rules,
    )
}

/// [`judge`] over any two trees' files.
pub fn judge_files(
    base: &dyn Files,
    candidate: &dyn Files,
    changed: &BTreeSet<String>,
    commands: &[&str],
    rules: &BoundaryRules,
) -> Vec<Violation> {
    let mut found: BTreeMap<String, String> = BTreeMap::new();
    for command in commands {
        let mut note = |path: &str, what: String| {
            found.entry(path.to_owned()).or_insert_with(|| {
                format!(
                    "{what} (part of how `{command}` runs): changeable only where an \
                     allowed path names `{path}`"
                )
            });
        };
        let at_base = runner::interpret(command, base);
        let at_candidate = runner::interpret(command, candidate);
        let parts: BTreeSet<&(String, String)> = at_base
            .followed
            .keys()
            .chain(at_candidate.followed.keys())
            .collect();
        for part in parts {
            if at_base.followed.get(part) != at_candidate.followed.get(part) {
                note(&part.0, describe_part(&part.0, &part.1));
            }
        }
        let runners: BTreeSet<&Runner> = at_base
            .runners
            .iter()
            .chain(&at_candidate.runners)
            .collect();
        for runner in runners {
            for path in changed {
                if let Some(what) = controls(runner, path, base, candidate) {
                    note(path, what);
                }
            }
        }
    }
    found
        .into_iter()
        // A protected path is judged as such, and put back as at base for the checks.
        .filter(|(path, _)| !rules.names_explicitly(path) && !rules.is_protected(path))
        .map(|(path, rule)| Violation {
            kind: ViolationKind::CheckConfig,
            path,
            rule,
        })
        .collect()
}

fn describe_part(path: &str, part: &str) -> String {
    if let Some(target) = part.strip_prefix("target ") {
        format!("the rules of `{target}` in `{path}`")
    } else if part.is_empty() {
        format!("the script `{path}` it runs")
    } else {
        format!("`{part}` of `{path}`")
    }
}

/// Cargo.toml keys that decide which tests exist and how they are built and run.
const CARGO_KEYS: &[&str] = &[
    "package.autotests",
    "package.autolib",
    "package.autobins",
    "package.autobenches",
    "package.autoexamples",
    "package.build",
    "lib",
    "bin",
    "test",
    "bench",
    "workspace.members",
    "workspace.exclude",
    "workspace.default-members",
    "profile",
];

/// Modules a Python runner imports that a module of the same name where it starts would
/// shadow.
const PYTHON_RUNNER_MODULES: &[&str] = &["unittest", "pytest", "_pytest", "pluggy", "py"];

/// Why the change of `path` changes how `runner` runs, if it does.
fn controls(runner: &Runner, path: &str, base: &dyn Files, cand: &dyn Files) -> Option<String> {
    let name = path.rsplit('/').next().unwrap_or(path);
    let config = || Some(format!("`{path}`"));
    match runner.kind {
        Kind::Cargo | Kind::Nextest => {
            if path == ".cargo/config.toml"
                || path == ".cargo/config"
                || path.ends_with("/.cargo/config.toml")
                || path.ends_with("/.cargo/config")
                || matches!(name, "build.rs" | "rust-toolchain" | "rust-toolchain.toml")
                || (runner.kind == Kind::Nextest
                    && (path == ".config/nextest.toml" || path.ends_with("/.config/nextest.toml")))
            {
                return config();
            }
            if name == "Cargo.toml" {
                return changed_keys(path, base, cand, Format::Toml, CARGO_KEYS);
            }
            None
        }
        Kind::Pytest | Kind::Unittest => {
            if matches!(name, "sitecustomize.py" | "usercustomize.py") {
                return config();
            }
            if let Some(module) = shadowed_module(&runner.dir, path) {
                return Some(format!(
                    "`{path}`, which shadows the runner's module `{module}`"
                ));
            }
            if runner.kind == Kind::Unittest {
                return None;
            }
            match name {
                "conftest.py" | "pytest.ini" | ".pytest.ini" => config(),
                "pyproject.toml" => changed_keys(path, base, cand, Format::Toml, &["tool.pytest"]),
                "setup.cfg" => changed_keys(path, base, cand, Format::Ini, &["tool:pytest"]),
                "tox.ini" => changed_keys(path, base, cand, Format::Ini, &["pytest"]),
                _ => None,
            }
        }
        Kind::NodeTest | Kind::Jest | Kind::Vitest => {
            let configs = [
                "jest.config",
                "vitest.config",
                "vitest.workspace",
                "vite.config",
                "babel.config",
            ];
            if name == ".npmrc"
                || name == ".babelrc"
                || name.starts_with(".babelrc.")
                || (name.contains('.')
                    && configs.iter().any(|c| name.starts_with(&format!("{c}."))))
            {
                return config();
            }
            if name == "package.json" {
                return changed_keys(path, base, cand, Format::Json, &["jest"]);
            }
            None
        }
        Kind::Go => (name == "go.work").then(|| format!("`{path}`")),
    }
}

/// The runner module `path` shadows when a Python runner starts in `dir`: `dir/NAME.py`
/// or anything in the package `dir/NAME/`.
fn shadowed_module(dir: &str, path: &str) -> Option<&'static str> {
    let rest = if dir.is_empty() {
        path
    } else {
        path.strip_prefix(dir)?.strip_prefix('/')?
    };
    let first = rest.split('/').next()?;
    let module = if rest.contains('/') {
        first
    } else {
        first.strip_suffix(".py")?
    };
    PYTHON_RUNNER_MODULES.iter().copied().find(|m| *m == module)
}

#[derive(Debug, Clone, Copy)]
enum Format {
    Toml,
    Json,
    /// Sections of an INI file, by name.
    Ini,
}

/// Which of `keys` differ between the two versions of the file at `path`, as a phrase;
/// `None` when none does. A version that cannot be parsed differs in every key it has at
/// the other side.
fn changed_keys(
    path: &str,
    base: &dyn Files,
    cand: &dyn Files,
    format: Format,
    keys: &[&str],
) -> Option<String> {
    let before = base.read(path).map(|t| values(&t, format, keys));
    let after = cand.read(path).map(|t| values(&t, format, keys));
    let none = vec![None; keys.len()];
    let before = before.unwrap_or_else(|| none.clone());
    let after = after.unwrap_or(none);
    let differ: Vec<String> = keys
        .iter()
        .zip(before.iter().zip(&after))
        .filter(|(_, (b, a))| b != a)
        .map(|(key, _)| format!("`{key}`"))
        .collect();
    (!differ.is_empty()).then(|| format!("{} in `{path}`", differ.join(", ")))
}

/// Each key's value in `text`, rendered canonically; `None` where it is absent. Text that
/// does not parse gives a marker for every key, so any change to it counts.
fn values(text: &str, format: Format, keys: &[&str]) -> Vec<Option<String>> {
    match format {
        Format::Toml => match toml::from_str::<toml::Table>(text) {
            Ok(table) => keys
                .iter()
                .map(|key| {
                    let mut at = table.get(key.split('.').next()?)?;
                    for part in key.split('.').skip(1) {
                        at = at.get(part)?;
                    }
                    Some(at.to_string())
                })
                .collect(),
            Err(_) => vec![Some(format!("unparsable: {text}")); keys.len()],
        },
        Format::Json => match serde_json::from_str::<serde_json::Value>(text) {
            Ok(json) => keys
                .iter()
                .map(|key| json.get(key).map(|v| v.to_string()))
                .collect(),
            Err(_) => vec![Some(format!("unparsable: {text}")); keys.len()],
        },
        Format::Ini => keys.iter().map(|key| ini_section(text, key)).collect(),
    }
}

/// The non-blank, non-comment lines of the INI section `name` (every occurrence), trimmed.
fn ini_section(text: &str, name: &str) -> Option<String> {
    let mut inside = false;
    let mut lines: Option<String> = None;
    for line in text.lines() {
        let line = line.trim();
        if let Some(header) = line.strip_prefix('[').and_then(|l| l.strip_suffix(']')) {
            inside = header.trim() == name;
            if inside {
                lines.get_or_insert_with(String::new);
            }
            continue;
        }
        if inside && !line.is_empty() && !line.starts_with(['#', ';']) {
            let section = lines.get_or_insert_with(String::new);
            section.push_str(line);
            section.push('\n');
        }
    }
    lines
}

#[cfg(test)]
mod tests {
    use goalpost_shared::contract::{Boundaries, Spanned};

    use super::*;
    use crate::runner::tests::Mem;

    fn rules(allowed: &[&str]) -> BoundaryRules {
        let boundaries = Boundaries {
            allowed: allowed
                .iter()
                .map(|g| Spanned::new((*g).to_owned(), 1, 1))
                .collect(),
            ..Boundaries::default()
        };
        BoundaryRules::new(&boundaries, &[]).expect("rules")
    }

    /// The violations of changing `base` into `candidate` for `command`, as (path, rule).
    fn judged(
        command: &str,
        base: &[(&str, &str)],
        candidate: &[(&str, &str)],
        allowed: &[&str],
    ) -> Vec<(String, String)> {
        let before: BTreeMap<&str, &str> = base.iter().copied().collect();
        let after: BTreeMap<&str, &str> = candidate.iter().copied().collect();
        let changed: BTreeSet<String> = before
            .keys()
            .chain(after.keys())
            .filter(|p| before.get(*p) != after.get(*p))
            .map(|p| (*p).to_owned())
            .collect();
        judge_files(
            &Mem::new(base),
            &Mem::new(candidate),
            &changed,
            &[command],
            &rules(allowed),
        )
        .into_iter()
        .map(|v| {
            assert_eq!(v.kind, ViolationKind::CheckConfig);
            (v.path, v.rule)
        })
        .collect()
    }

    fn paths(found: &[(String, String)]) -> Vec<&str> {
        found.iter().map(|(p, _)| p.as_str()).collect()
    }

    const CARGO: &str = "[package]\nname = \"calc\"\nversion = \"0.1.0\"\n";
    const LIB: &str = "pub fn add() {}\n";

    #[test]
    fn a_cargo_config_and_a_build_script_decide_how_cargo_test_runs() {
        let base = [("Cargo.toml", CARGO), ("src/lib.rs", LIB)];
        let cand = [
            ("Cargo.toml", CARGO),
            ("src/lib.rs", "pub fn add() { }\n"),
            (
                ".cargo/config.toml",
                "[target.'cfg(all())']\nrunner = \"true\"\n",
            ),
            ("build.rs", "fn main() {}\n"),
        ];
        let found = judged("cargo test --offline", &base, &cand, &[]);
        assert_eq!(paths(&found), [".cargo/config.toml", "build.rs"]);
        assert_eq!(
            found[0].1,
            "`.cargo/config.toml` (part of how `cargo test --offline` runs): changeable \
             only where an allowed path names `.cargo/config.toml`"
        );
    }

    #[test]
    fn only_the_test_keys_of_cargo_toml_count_not_a_new_dependency() {
        let base = [("Cargo.toml", CARGO)];
        let dep = format!("{CARGO}\n[dependencies]\nitoa = \"1\"\n");
        assert!(judged("cargo test", &base, &[("Cargo.toml", &dep)], &[]).is_empty());
        let off = CARGO.replace("version", "autotests = false\nversion");
        let found = judged("cargo test", &base, &[("Cargo.toml", &off)], &[]);
        assert_eq!(found.len(), 1);
        assert!(
            found[0]
                .1
                .starts_with("`package.autotests` in `Cargo.toml` (part of how"),
            "{}",
            found[0].1
        );
        let harness = format!("{CARGO}\n[[test]]\nname = \"api\"\nharness = false\n");
        let found = judged("cargo test", &base, &[("Cargo.toml", &harness)], &[]);
        assert!(
            found[0].1.starts_with("`test` in `Cargo.toml`"),
            "{found:?}"
        );
        let broken = "[package\n";
        assert_eq!(
            paths(&judged("cargo test", &base, &[("Cargo.toml", broken)], &[])),
            ["Cargo.toml"]
        );
    }

    #[test]
    fn the_followed_make_recipe_counts_and_another_target_does_not() {
        let make = "test:\n\tpython3 -m unittest\n";
        let base = [("Makefile", make)];
        let other = format!("{make}\nlint:\n\tflake8\n");
        assert!(judged("make test", &base, &[("Makefile", &other)], &[]).is_empty());
        let found = judged("make test", &base, &[("Makefile", "test:\n\t@true\n")], &[]);
        assert_eq!(paths(&found), ["Makefile"]);
        assert!(
            found[0]
                .1
                .starts_with("the rules of `test` in `Makefile` (part"),
            "{}",
            found[0].1
        );
        let var = "RUN = python3 -m unittest\ntest:\n\t$(RUN)\n";
        let var_true = "RUN = true\ntest:\n\t$(RUN)\n";
        assert_eq!(
            paths(&judged(
                "make test",
                &[("Makefile", var)],
                &[("Makefile", var_true)],
                &[]
            )),
            ["Makefile"]
        );
    }

    #[test]
    fn npm_scripts_followed_and_scripts_run_count() {
        let pkg = r#"{"scripts": {"test": "node --test", "lint": "eslint ."}}"#;
        let lint =
            r#"{"scripts": {"test": "node --test", "lint": "true"}, "dependencies": {"a": "1"}}"#;
        assert!(
            judged(
                "npm test",
                &[("package.json", pkg)],
                &[("package.json", lint)],
                &[]
            )
            .is_empty()
        );
        let cheat = r#"{"scripts": {"test": "node --test || true"}}"#;
        let found = judged(
            "npm test",
            &[("package.json", pkg)],
            &[("package.json", cheat)],
            &[],
        );
        assert_eq!(paths(&found), ["package.json"]);
        assert!(
            found[0].1.starts_with("`scripts.test` of `package.json`"),
            "{}",
            found[0].1
        );
        let script = "#!/bin/sh\npytest -q\n";
        let found = judged(
            "sh ci/test.sh",
            &[("ci/test.sh", script)],
            &[("ci/test.sh", "#!/bin/sh\nexit 0\n")],
            &[],
        );
        assert_eq!(paths(&found), ["ci/test.sh"]);
        // A script that starts no runner is the code under test, not configuration.
        let found = judged(
            "sh calc.sh",
            &[("calc.sh", "echo 1\n")],
            &[("calc.sh", "echo 2\n")],
            &[],
        );
        assert!(found.is_empty(), "{found:?}");
    }

    #[test]
    fn python_configs_and_shadowing_modules_count() {
        let base = [("calc.py", "x = 1\n")];
        let shadow = [("calc.py", "x = 1\n"), ("unittest/__init__.py", "")];
        assert_eq!(
            paths(&judged("python3 -m unittest", &base, &shadow, &[])),
            ["unittest/__init__.py"]
        );
        let nested = [("calc.py", "x = 1\n"), ("lib/unittest.py", "")];
        assert!(judged("python3 -m unittest", &base, &nested, &[]).is_empty());
        let conftest = [("calc.py", "x = 1\n"), ("tests/conftest.py", "")];
        assert_eq!(
            paths(&judged("pytest -q", &base, &conftest, &[])),
            ["tests/conftest.py"]
        );
        assert!(judged("python3 -m unittest", &base, &conftest, &[]).is_empty());
        let pyproject = "[project]\nname = \"calc\"\n";
        let with_pytest =
            format!("{pyproject}\n[tool.pytest.ini_options]\naddopts = \"-p no:x\"\n");
        let with_dep = "[project]\nname = \"calc\"\ndependencies = [\"a\"]\n";
        let base = [("pyproject.toml", pyproject)];
        assert!(judged("pytest", &base, &[("pyproject.toml", with_dep)], &[]).is_empty());
        assert_eq!(
            paths(&judged(
                "pytest",
                &base,
                &[("pyproject.toml", &with_pytest)],
                &[]
            )),
            ["pyproject.toml"]
        );
        let cfg = "[metadata]\nname = calc\n";
        let cfg_pytest = format!("{cfg}[tool:pytest]\naddopts = -k nothing\n");
        assert_eq!(
            paths(&judged(
                "pytest",
                &[("setup.cfg", cfg)],
                &[("setup.cfg", &cfg_pytest)],
                &[]
            )),
            ["setup.cfg"]
        );
    }

    #[test]
    fn an_allowed_path_naming_the_file_lets_it_change() {
        let base = [("Cargo.toml", CARGO)];
        let cand = [("Cargo.toml", CARGO), (".cargo/config.toml", "")];
        assert!(judged("cargo test", &base, &cand, &[".cargo/config.toml"]).is_empty());
        assert_eq!(
            paths(&judged("cargo test", &base, &cand, &[".cargo/"])),
            [".cargo/config.toml"],
            "a directory glob does not name the file"
        );
    }

    #[test]
    fn node_configs_count_for_node_runners_only() {
        let base = [("a.js", "")];
        let cand = [("a.js", ""), ("jest.config.js", "module.exports = {}\n")];
        assert_eq!(
            paths(&judged("npx jest", &base, &cand, &[])),
            ["jest.config.js"]
        );
        assert!(judged("cargo test", &base, &cand, &[]).is_empty());
    }
}
