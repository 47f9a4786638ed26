//! Where each test runner collects a new test: the file a check's canary is written to,
//! and its content, from the runner's arguments and the tree's configuration.
//!
//! | runner | canary |
//! | --- | --- |
//! | `cargo test`, `cargo nextest run` | `tests/goalpost_canary.rs` of each package the command tests (inside modules named after its test filter) |
//! | `pytest` | `test_goalpost_canary.py` in the first directory it collects (its arguments, else `testpaths`, else where it runs), named after `python_files` |
//! | `python -m unittest` | `test_goalpost_canary.py` in discovery's start directory, named after its pattern |
//! | `node --test` | `goalpost-canary.test.mjs` where it runs, or in the directory or glob it is given |
//! | jest, vitest | `goalpost-canary.test.js` (jest) or `.test.mjs` (vitest) where they run |
//! | `go test` | `goalpost_canary_test.go` in the first package it tests |
//!
//! A command that names its tests one by one (`pytest tests/test_a.py`, `cargo test --lib`,
//! `-k`, `--exact`) collects no new file: its canary is not run, and the report says why.

use std::collections::BTreeMap;

use crate::canary::MESSAGE;
use crate::runner::{Files, Kind, Runner, join};

/// The canary files of one runner, or why it collects none.
pub(crate) fn plant(runner: &Runner, files: &dyn Files) -> Result<Vec<(String, String)>, String> {
    match runner.kind {
        Kind::Cargo | Kind::Nextest => cargo(runner, files),
        Kind::Pytest => pytest(runner, files),
        Kind::Unittest => unittest(runner),
        Kind::NodeTest => node(runner),
        Kind::Jest | Kind::Vitest => js(runner, files),
        Kind::Go => go(runner, files),
    }
}

/// A path like `dir/name` that is not in the tree yet: `name`, else `name` with a number.
fn free_path(files: &dyn Files, dir: &str, stem: &str, ext: &str) -> String {
    let at = |name: String| join(dir, &name).unwrap_or(name);
    let mut path = at(format!("{stem}{ext}"));
    let mut n = 2;
    while files.paths().contains(&path) {
        path = at(format!("{stem}_{n}{ext}"));
        n += 1;
    }
    path
}

/// The value of option `name` in `args` (`--name VALUE`, `--name=VALUE`).
fn option<'a>(args: &'a [String], names: &[&str]) -> Option<&'a str> {
    for (i, arg) in args.iter().enumerate() {
        for name in names {
            if arg == name {
                return args.get(i + 1).map(String::as_str);
            }
            if let Some(v) = arg.strip_prefix(name).and_then(|r| r.strip_prefix('=')) {
                return Some(v);
            }
            if name.len() == 2 && !name.starts_with("--") && arg.len() > 2 && arg.starts_with(name)
            {
                return Some(&arg[2..]);
            }
        }
    }
    None
}

/// The positional arguments of `args`, given the options that take a value.
fn positionals<'a>(args: &'a [String], with_value: &[&str]) -> Vec<&'a str> {
    let mut out = Vec::new();
    let mut skip = false;
    for arg in args {
        if skip {
            skip = false;
            continue;
        }
        if arg.starts_with('-') {
            skip = with_value.contains(&arg.as_str());
            continue;
        }
        out.push(arg.as_str());
    }
    out
}

const CARGO_WITH_VALUE: &[&str] = &[
    "-p",
    "--package",
    "--exclude",
    "-F",
    "--features",
    "--target",
    "--manifest-path",
    "-j",
    "--jobs",
    "--profile",
    "--target-dir",
    "--color",
    "--message-format",
    "-Z",
    "--config",
    "--test",
    "--bench",
    "--bin",
    "--example",
    "-E",
    "--filterset",
    "--filter-expr",
    "--partition",
    "--retries",
    "--test-threads",
    "--skip",
    "--cargo-profile",
    "--archive-file",
    "--workspace-remap",
    "--nextest-profile",
    "-P",
    "--lockfile-path",
    "--timings",
];

fn cargo(runner: &Runner, files: &dyn Files) -> Result<Vec<(String, String)>, String> {
    let split = runner
        .args
        .iter()
        .position(|a| a == "--")
        .unwrap_or(runner.args.len());
    let (own, harness) = runner.args.split_at(split);
    let harness = harness.get(1..).unwrap_or_default();
    for narrow in [
        "--lib",
        "--bins",
        "--bin",
        "--doc",
        "--examples",
        "--example",
        "--benches",
        "--bench",
        "--test",
    ] {
        if own
            .iter()
            .any(|a| a == narrow || a.starts_with(&format!("{narrow}=")))
            && !own.iter().any(|a| a == "--tests" || a == "--all-targets")
        {
            return Err(format!("`{narrow}` selects no new integration test"));
        }
    }
    for exact in ["--exact", "-E", "--filterset", "--filter-expr"] {
        if own
            .iter()
            .chain(harness)
            .any(|a| a == exact || a.starts_with(&format!("{exact}=")))
        {
            return Err(format!("`{exact}` selects tests a new one cannot match"));
        }
    }
    let filter = positionals(own, CARGO_WITH_VALUE)
        .into_iter()
        .chain(positionals(
            harness,
            &["--skip", "--test-threads", "--format", "--color", "-Z"],
        ))
        .next();
    let content = rust_test(filter)?;

    let manifests = cargo_manifests(files);
    let mut packages: Vec<String> = Vec::new();
    for (i, arg) in own.iter().enumerate() {
        let name = if arg == "-p" || arg == "--package" {
            own.get(i + 1).cloned()
        } else {
            arg.strip_prefix("--package=")
                .or_else(|| arg.strip_prefix("-p").filter(|n| !n.is_empty()))
                .map(str::to_owned)
        };
        packages.extend(name);
    }
    let manifest_dir = match option(own, &["--manifest-path"]) {
        Some(path) => join(
            &runner.dir,
            path.trim_end_matches("Cargo.toml").trim_end_matches('/'),
        ),
        None => Some(runner.dir.clone()),
    }
    .ok_or("a manifest outside the checkout")?;
    let dirs: Vec<String> = if !packages.is_empty() {
        packages
            .iter()
            .filter_map(|name| {
                manifests
                    .iter()
                    .find(|m| m.name.as_deref() == Some(name.as_str()))
                    .map(|m| m.dir.clone())
            })
            .collect()
    } else {
        let root = manifests.iter().find(|m| m.dir == manifest_dir);
        let whole = own.iter().any(|a| a == "--workspace" || a == "--all");
        match root {
            Some(m) if m.name.is_some() && !whole => vec![m.dir.clone()],
            Some(_) => manifests
                .iter()
                .filter(|m| m.name.is_some() && under_dir(&m.dir, &manifest_dir))
                .map(|m| m.dir.clone())
                .collect(),
            None => Vec::new(),
        }
    };
    if dirs.is_empty() {
        return Err("no package of the command found in the tree".to_owned());
    }
    Ok(dirs
        .into_iter()
        .map(|dir| {
            let tests = join(&dir, "tests").unwrap_or_default();
            (
                free_path(files, &tests, "goalpost_canary", ".rs"),
                content.clone(),
            )
        })
        .collect())
}

fn under_dir(path: &str, dir: &str) -> bool {
    dir.is_empty() || path == dir || path.starts_with(&format!("{dir}/"))
}

struct Manifest {
    dir: String,
    name: Option<String>,
}

/// Every `Cargo.toml` of the tree outside `target/`, with its package's name.
fn cargo_manifests(files: &dyn Files) -> Vec<Manifest> {
    files
        .paths()
        .iter()
        .filter(|p| *p == "Cargo.toml" || p.ends_with("/Cargo.toml"))
        .filter(|p| !p.split('/').any(|c| c == "target"))
        .map(|path| {
            let dir = path
                .trim_end_matches("Cargo.toml")
                .trim_end_matches('/')
                .to_owned();
            let name = files
                .read(path)
                .and_then(|text| text.parse::<toml::Table>().ok())
                .and_then(|t| t.get("package")?.get("name")?.as_str().map(str::to_owned));
            Manifest { dir, name }
        })
        .collect()
}

/// A failing Rust test whose path contains `filter` (inside modules named after its
/// `::`-separated parts).
pub(crate) fn rust_test(filter: Option<&str>) -> Result<String, String> {
    let mut open = String::new();
    let mut close = String::new();
    if let Some(filter) = filter {
        for part in filter.split("::").filter(|p| !p.is_empty()) {
            let ident = part.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
                && !part.starts_with(|c: char| c.is_ascii_digit());
            if !ident {
                return Err(format!(
                    "no test can be named to match the filter `{filter}`"
                ));
            }
            open.push_str(&format!("mod r#{part} {{ "));
            close.push_str(" }");
        }
    }
    Ok(format!(
        "// Added by goalpost's audit: the check must fail with this test.\n\
         {open}#[test] fn goalpost_canary() {{ panic!(\"{MESSAGE}\"); }}{close}\n"
    ))
}

const PYTHON_TEST: &str = "# Added by goalpost's audit: the check must fail with this test.\n\
import unittest\n\n\n\
class GoalpostCanary(unittest.TestCase):\n    \
def test_goalpost_canary(self):\n        \
self.fail(\"goalpost canary: this test must fail\")\n";

const PYTEST_WITH_VALUE: &[&str] = &[
    "-k",
    "-m",
    "-p",
    "-c",
    "-o",
    "--rootdir",
    "--deselect",
    "--ignore",
    "--ignore-glob",
    "--junitxml",
    "--basetemp",
    "--confcutdir",
    "-n",
    "--maxfail",
    "--tb",
    "-W",
    "--log-level",
    "--durations",
    "--import-mode",
    "--override-ini",
    "--capture",
    "-r",
];

fn pytest(runner: &Runner, files: &dyn Files) -> Result<Vec<(String, String)>, String> {
    for select in ["-k", "-m"] {
        if option(&runner.args, &[select]).is_some() {
            return Err(format!("`{select}` selects tests a new one may not match"));
        }
    }
    let paths = positionals(&runner.args, PYTEST_WITH_VALUE);
    let config = pytest_config(files, &runner.dir);
    let dir = match paths.first() {
        Some(p) if p.contains("::") || p.ends_with(".py") => {
            return Err("the command names its test files".to_owned());
        }
        Some(p) => join(&runner.dir, p),
        None => Some(match config.testpaths.first() {
            Some(t) => join(&runner.dir, t).unwrap_or_default(),
            None => runner.dir.clone(),
        }),
    }
    .ok_or("a test path outside the checkout")?;
    let pattern = config
        .python_files
        .first()
        .map_or("test_*.py", String::as_str);
    let (stem, ext) = name_from_pattern(pattern)
        .ok_or_else(|| format!("cannot name a file `{pattern}` matches"))?;
    Ok(vec![(
        free_path(files, &dir, &stem, &ext),
        PYTHON_TEST.to_owned(),
    )])
}

#[derive(Default)]
struct PytestConfig {
    testpaths: Vec<String>,
    python_files: Vec<String>,
}

/// `testpaths` and `python_files` of the first pytest configuration found in `dir`, in
/// pytest's order.
fn pytest_config(files: &dyn Files, dir: &str) -> PytestConfig {
    for (name, section) in [
        ("pytest.ini", "pytest"),
        ("pyproject.toml", ""),
        ("tox.ini", "pytest"),
        ("setup.cfg", "tool:pytest"),
    ] {
        let Some(text) = join(dir, name).and_then(|p| files.read(&p)) else {
            continue;
        };
        if name == "pyproject.toml" {
            let Some(options) = text
                .parse::<toml::Table>()
                .ok()
                .and_then(|t| t.get("tool")?.get("pytest")?.get("ini_options").cloned())
            else {
                continue;
            };
            let list = |key: &str| -> Vec<String> {
                match options.get(key) {
                    Some(toml::Value::Array(a)) => a
                        .iter()
                        .filter_map(|v| v.as_str().map(str::to_owned))
                        .collect(),
                    Some(toml::Value::String(s)) => {
                        s.split_whitespace().map(str::to_owned).collect()
                    }
                    _ => Vec::new(),
                }
            };
            return PytestConfig {
                testpaths: list("testpaths"),
                python_files: list("python_files"),
            };
        }
        if let Some(values) = ini_section(&text, section) {
            return PytestConfig {
                testpaths: values.get("testpaths").cloned().unwrap_or_default(),
                python_files: values.get("python_files").cloned().unwrap_or_default(),
            };
        }
    }
    PytestConfig::default()
}

/// The keys of `[section]` of an ini file, each value split on whitespace (continuation
/// lines included).
fn ini_section(text: &str, section: &str) -> Option<BTreeMap<String, Vec<String>>> {
    let header = format!("[{section}]");
    let mut lines = text.lines().skip_while(|l| l.trim() != header);
    lines.next()?;
    let mut values: BTreeMap<String, Vec<String>> = BTreeMap::new();
    let mut key = String::new();
    for line in lines {
        if line.trim_start().starts_with('[') {
            break;
        }
        if line.starts_with([' ', '\t']) && !key.is_empty() {
            values
                .entry(key.clone())
                .or_default()
                .extend(line.split_whitespace().map(str::to_owned));
        } else if let Some((k, v)) = line.split_once('=') {
            key = k.trim().to_owned();
            values.insert(
                key.clone(),
                v.split_whitespace().map(str::to_owned).collect(),
            );
        }
    }
    Some(values)
}

/// A file name `pattern` (`test*.py`, `*_test.py`, `check_*.py`) matches, as stem and
/// extension.
pub(crate) fn name_from_pattern(pattern: &str) -> Option<(String, String)> {
    if pattern.contains(['?', '[', '/']) || pattern.matches('*').count() != 1 {
        return None;
    }
    let (stem, ext) = pattern.rsplit_once('.')?;
    let stem = stem.replace('*', "_goalpost_canary_");
    let stem = stem.trim_matches('_').replace("__", "_");
    Some((stem, format!(".{ext}")))
}

fn unittest(runner: &Runner) -> Result<Vec<(String, String)>, String> {
    let args = &runner.args;
    if option(args, &["-k"]).is_some() {
        return Err("`-k` selects tests a new one may not match".to_owned());
    }
    let with_value = [
        "-s",
        "--start-directory",
        "-p",
        "--pattern",
        "-t",
        "--top-level-directory",
        "-k",
    ];
    let names = positionals(args, &with_value);
    let discover = names.first() == Some(&"discover");
    if !names.is_empty() && !discover {
        return Err("the command names its test modules".to_owned());
    }
    let rest = if discover { &names[1..] } else { &names[..] };
    let start = option(args, &["-s", "--start-directory"])
        .or(rest.first().copied())
        .unwrap_or(".");
    let pattern = option(args, &["-p", "--pattern"])
        .or(rest.get(1).copied())
        .unwrap_or("test*.py");
    let dir = join(&runner.dir, start).ok_or("a start directory outside the checkout")?;
    let (stem, ext) = name_from_pattern(pattern)
        .ok_or_else(|| format!("cannot name a file `{pattern}` matches"))?;
    Ok(vec![(
        join(&dir, &format!("{stem}{ext}")).unwrap_or_default(),
        PYTHON_TEST.to_owned(),
    )])
}

const NODE_TEST_ESM: &str = "// Added by goalpost's audit: the check must fail with this test.\n\
import test from 'node:test';\n\
test('goalpost canary', () => { throw new Error('goalpost canary: this test must fail'); });\n";

/// For a `.js` file, which may be loaded as CommonJS or as a module.
const NODE_TEST_ANY: &str = "// Added by goalpost's audit: the check must fail with this test.\n\
import('node:test').then(({ default: test }) => {\n  \
test('goalpost canary', () => { throw new Error('goalpost canary: this test must fail'); });\n});\n";

const JEST_TEST: &str = "// Added by goalpost's audit: the check must fail with this test.\n\
test('goalpost canary', () => { throw new Error('goalpost canary: this test must fail'); });\n";

const VITEST_TEST: &str = "// Added by goalpost's audit: the check must fail with this test.\n\
import { test } from 'vitest';\n\
test('goalpost canary', () => { throw new Error('goalpost canary: this test must fail'); });\n";

fn node(runner: &Runner) -> Result<Vec<(String, String)>, String> {
    if runner.args.iter().any(|a| {
        a.starts_with("--test-name-pattern")
            || a.starts_with("--test-only")
            || a.starts_with("--test-skip-pattern")
    }) {
        return Err("a name pattern selects tests a new one may not match".to_owned());
    }
    let paths = positionals(
        &runner.args,
        &[
            "--test-reporter",
            "--test-reporter-destination",
            "--import",
            "--require",
            "-r",
            "--loader",
        ],
    );
    let Some(first) = paths.first() else {
        return Ok(vec![(
            join(&runner.dir, "goalpost-canary.test.mjs").unwrap_or_default(),
            NODE_TEST_ESM.to_owned(),
        )]);
    };
    if first.contains('*') {
        let name = first.replace("**/", "").replacen('*', "goalpost-canary", 1);
        if name.contains('*') || name.contains(['{', '?', '[']) {
            return Err(format!("cannot name a file `{first}` matches"));
        }
        let content = if name.ends_with(".mjs") {
            NODE_TEST_ESM
        } else {
            NODE_TEST_ANY
        };
        return Ok(vec![(
            join(&runner.dir, &name).ok_or("a path outside the checkout")?,
            content.to_owned(),
        )]);
    }
    if [".js", ".mjs", ".cjs", ".ts"]
        .iter()
        .any(|e| first.ends_with(e))
    {
        return Err("the command names its test files".to_owned());
    }
    let dir = join(&runner.dir, first).ok_or("a path outside the checkout")?;
    Ok(vec![(
        join(&dir, "goalpost-canary.test.mjs").unwrap_or_default(),
        NODE_TEST_ESM.to_owned(),
    )])
}

fn js(runner: &Runner, files: &dyn Files) -> Result<Vec<(String, String)>, String> {
    if runner.args.iter().any(|a| {
        a == "-t" || a.starts_with("--testNamePattern") || a.starts_with("--testPathPattern")
    }) {
        return Err("a name pattern selects tests a new one may not match".to_owned());
    }
    let args: Vec<String> = runner
        .args
        .iter()
        .filter(|a| !matches!(a.as_str(), "run" | "watch"))
        .cloned()
        .collect();
    let paths = positionals(
        &args,
        &[
            "-c",
            "--config",
            "--reporter",
            "--reporters",
            "--project",
            "--root",
            "--dir",
            "--environment",
        ],
    );
    let dir = match paths.first() {
        Some(p)
            if files.paths().iter().any(|f| {
                f.starts_with(&format!("{}/", join(&runner.dir, p).unwrap_or_default()))
            }) =>
        {
            join(&runner.dir, p)
        }
        Some(_) => return Err("the command names its tests".to_owned()),
        None => Some(runner.dir.clone()),
    }
    .ok_or("a path outside the checkout")?;
    Ok(vec![match runner.kind {
        Kind::Vitest => (
            free_path(files, &dir, "goalpost-canary.test", ".mjs"),
            VITEST_TEST.to_owned(),
        ),
        _ => (
            free_path(files, &dir, "goalpost-canary.test", ".js"),
            JEST_TEST.to_owned(),
        ),
    }])
}

fn go(runner: &Runner, files: &dyn Files) -> Result<Vec<(String, String)>, String> {
    if option(&runner.args, &["-run", "--run"]).is_some() {
        return Err("`-run` selects tests a new one may not match".to_owned());
    }
    let packages = positionals(
        &runner.args,
        &[
            "-run",
            "-count",
            "-timeout",
            "-tags",
            "-p",
            "-parallel",
            "-skip",
            "-coverprofile",
            "-covermode",
            "-bench",
        ],
    );
    let first = packages.first().copied().unwrap_or(".");
    let dir = join(
        &runner.dir,
        first.trim_end_matches("...").trim_end_matches('/'),
    )
    .ok_or("a package outside the checkout")?;
    let path = join(&dir, "goalpost_canary_test.go").unwrap_or_default();
    let content = go_test(&path, files).ok_or_else(|| format!("no Go package in `{first}`"))?;
    Ok(vec![(path, content)])
}

/// A failing Go test for the package of the directory of `path`.
fn go_test(path: &str, files: &dyn Files) -> Option<String> {
    let dir = path.rsplit_once('/').map_or("", |(d, _)| d);
    let package = files
        .paths()
        .iter()
        .filter(|p| p.ends_with(".go") && !p.ends_with("_test.go"))
        .filter(|p| p.rsplit_once('/').map_or("", |(d, _)| d) == dir)
        .find_map(|p| {
            files
                .read(p)?
                .lines()
                .find_map(|l| l.strip_prefix("package ").map(|n| n.trim().to_owned()))
        })?;
    Some(format!(
        "// Added by goalpost's audit: the check must fail with this test.\n\
         package {package}\n\nimport \"testing\"\n\n\
         func TestGoalpostCanary(t *testing.T) {{ t.Fatal(\"{MESSAGE}\") }}\n"
    ))
}

/// The built-in canary written at the goal file's `path`, by its extension.
pub(crate) fn file_content(path: &str, runners: &[Runner], files: &dyn Files) -> Option<String> {
    let jest = runners.iter().any(|r| r.kind == Kind::Jest);
    let vitest = runners.iter().any(|r| r.kind == Kind::Vitest);
    Some(match path.rsplit_once('.').map(|(_, e)| e)? {
        "rs" => rust_test(None).ok()?,
        "py" => PYTHON_TEST.to_owned(),
        "go" => go_test(path, files)?,
        "mjs" if vitest => VITEST_TEST.to_owned(),
        "mjs" => NODE_TEST_ESM.to_owned(),
        _ if jest => JEST_TEST.to_owned(),
        _ if vitest => VITEST_TEST.to_owned(),
        _ => NODE_TEST_ANY.to_owned(),
    })
}
