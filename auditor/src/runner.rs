//! Which test runners a check's command starts, read from the command itself and from the
//! files it names: `make` targets (their recipes and prerequisites), `npm test` and
//! `npm run` (the `scripts` of `package.json`), and shell scripts the command runs. The
//! canary and the census both start here: a runner says where a failing test is collected
//! and what its summary looks like.
//!
//! The files are read from commits, never from the checkout the checks ran in: a check
//! may have rewritten its own Makefile while it ran.

use std::cell::OnceCell;
use std::collections::{BTreeMap, BTreeSet};

use git2::{ObjectType, Oid, TreeWalkMode, TreeWalkResult};
use goalpost_shared::git::Repo;

/// How deep `make`, `npm run` and scripts are followed.
const MAX_DEPTH: usize = 4;

/// A test runner the command starts.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Runner {
    pub kind: Kind,
    /// The directory it runs in, relative to the checkout's root ("" for the root).
    pub dir: String,
    /// Its arguments after the runner's own words (`cargo test`, `python -m pytest`).
    pub args: Vec<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Kind {
    Cargo,
    Nextest,
    Pytest,
    Unittest,
    NodeTest,
    Jest,
    Vitest,
    Go,
}

impl Kind {
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Cargo => "cargo test",
            Kind::Nextest => "cargo nextest",
            Kind::Pytest => "pytest",
            Kind::Unittest => "unittest",
            Kind::NodeTest => "node --test",
            Kind::Jest => "jest",
            Kind::Vitest => "vitest",
            Kind::Go => "go test",
        }
    }
}

/// Read access to one commit's files.
pub trait Files {
    /// The file at `path` (relative to the root), as text.
    fn read(&self, path: &str) -> Option<String>;
    /// Every file path of the tree.
    fn paths(&self) -> &[String];
}

/// The files of a commit of `repo`; the tree is walked only when its paths are asked for.
pub struct CommitFiles<'r> {
    repo: &'r Repo,
    commit: Oid,
    paths: OnceCell<Vec<String>>,
}

impl<'r> CommitFiles<'r> {
    pub fn new(repo: &'r Repo, commit: Oid) -> CommitFiles<'r> {
        CommitFiles {
            repo,
            commit,
            paths: OnceCell::new(),
        }
    }
}

impl Files for CommitFiles<'_> {
    fn read(&self, path: &str) -> Option<String> {
        let bytes = self.repo.read_blob_at(self.commit, path).ok()??;
        String::from_utf8(bytes).ok()
    }

    fn paths(&self) -> &[String] {
        self.paths.get_or_init(|| {
            let mut paths = Vec::new();
            let tree = self
                .repo
                .git2()
                .find_commit(self.commit)
                .and_then(|c| c.tree());
            if let Ok(tree) = tree {
                let _ = tree.walk(TreeWalkMode::PreOrder, |root, entry| {
                    if entry.kind() == Some(ObjectType::Blob) {
                        let name = String::from_utf8_lossy(entry.name_bytes());
                        paths.push(format!("{root}{name}"));
                    }
                    TreeWalkResult::Ok
                });
            }
            paths
        })
    }
}

/// The runners `command` starts, as far as the files of `files` tell, sorted.
pub fn recognise(command: &str, files: &dyn Files) -> Vec<Runner> {
    interpret(command, files).runners.into_iter().collect()
}

/// What reading `command` found: the runners it starts and the parts of files that took
/// it there.
#[derive(Debug, Default)]
pub struct Found {
    pub runners: BTreeSet<Runner>,
    /// Each part of a file the command was followed through to a runner, by (path, part):
    /// a Makefile target's rules with their recipes as expanded (part `target NAME`), a
    /// `package.json` script (part `scripts.NAME`), a whole shell script (part ""). Two
    /// trees whose parts differ run their tests differently. A part that starts no runner
    /// (a script that is the code under test) is not one.
    pub followed: BTreeMap<(String, String), String>,
    /// How many runner starts were read, the same one twice included.
    starts: usize,
}

impl Found {
    /// Records `text` as the part `part` of `path` when `follow` (reading it) started a
    /// runner.
    fn follow(&mut self, path: String, part: String, text: String, follow: impl FnOnce(&mut Self)) {
        let before = self.starts;
        follow(self);
        if self.starts > before {
            self.followed.insert((path, part), text);
        }
    }
}

/// The runners `command` starts and the parts of files it was followed through.
pub fn interpret(command: &str, files: &dyn Files) -> Found {
    let mut found = Found::default();
    scan(command, "", files, 0, &mut found);
    found
}

fn scan(script: &str, dir: &str, files: &dyn Files, depth: usize, out: &mut Found) {
    if depth > MAX_DEPTH {
        return;
    }
    let mut dir = dir.to_owned();
    for words in simple_commands(script) {
        let words = strip_prefixes(&words);
        let Some(first) = words.first() else {
            continue;
        };
        if first == "cd" {
            match words.get(1) {
                Some(to) => match join(&dir, to) {
                    Some(d) => dir = d,
                    None => return,
                },
                None => dir.clear(),
            }
            continue;
        }
        command(&words, &dir, files, depth, out);
    }
}

fn command(words: &[String], dir: &str, files: &dyn Files, depth: usize, out: &mut Found) {
    let program = words[0].rsplit('/').next().unwrap_or("");
    let rest = &words[1..];
    let mut push = |kind: Kind, args: &[String]| {
        out.starts += 1;
        out.runners.insert(Runner {
            kind,
            dir: dir.to_owned(),
            args: args.to_vec(),
        });
    };
    match program {
        "cargo" => {
            let rest = match rest.first() {
                Some(t) if t.starts_with('+') => &rest[1..],
                _ => rest,
            };
            match rest.first().map(String::as_str) {
                Some("test" | "t") => push(Kind::Cargo, &rest[1..]),
                Some("nextest") if rest.get(1).is_some_and(|w| w == "run" || w == "r") => {
                    push(Kind::Nextest, &rest[2..]);
                }
                _ => {}
            }
        }
        "pytest" | "py.test" => push(Kind::Pytest, rest),
        "jest" => push(Kind::Jest, rest),
        "vitest" => push(Kind::Vitest, rest),
        "go" if rest.first().is_some_and(|w| w == "test") => push(Kind::Go, &rest[1..]),
        "node" if rest.iter().any(|w| w == "--test") => {
            let args: Vec<String> = rest.iter().filter(|w| *w != "--test").cloned().collect();
            push(Kind::NodeTest, &args);
        }
        "npx" | "pnpx" | "bunx" => {
            let inner: Vec<String> = rest
                .iter()
                .skip_while(|w| w.starts_with('-'))
                .cloned()
                .collect();
            if !inner.is_empty() {
                command(&inner, dir, files, depth + 1, out);
            }
        }
        "npm" | "pnpm" | "yarn" => {
            let script = match rest.first().map(String::as_str) {
                Some("test" | "t" | "tst") => Some("test"),
                Some("run" | "run-script") => rest.get(1).map(String::as_str),
                _ => None,
            };
            if let Some(script) = script
                && let Some((path, body)) = npm_script(files, dir, script)
            {
                out.follow(path, format!("scripts.{script}"), body.clone(), |out| {
                    scan(&body, dir, files, depth + 1, out);
                });
            }
        }
        "make" | "gmake" => make(rest, dir, files, depth, out),
        "sh" | "bash" | "dash" => {
            if let Some(path) = rest.iter().find(|w| !w.starts_with('-'))
                && let Some(path) = join(dir, path)
                && let Some(script) = files.read(&path)
            {
                out.follow(path, String::new(), script.clone(), |out| {
                    scan(&script, dir, files, depth + 1, out);
                });
            }
        }
        _ if is_python(program) => {
            let Some(at) = rest.iter().position(|w| w == "-m") else {
                return;
            };
            match rest.get(at + 1).map(String::as_str) {
                Some("pytest") => push(Kind::Pytest, &rest[at + 2..]),
                Some("unittest") => push(Kind::Unittest, &rest[at + 2..]),
                _ => {}
            }
        }
        _ if words[0].contains('/') => {
            if let Some(path) = join(dir, &words[0])
                && let Some(script) = files.read(&path)
                && script.starts_with("#!")
                && script.lines().next().is_some_and(|l| l.contains("sh"))
            {
                out.follow(path, String::new(), script.clone(), |out| {
                    scan(&script, dir, files, depth + 1, out);
                });
            }
        }
        _ => {}
    }
}

fn is_python(program: &str) -> bool {
    program == "py"
        || program
            .strip_prefix("python")
            .is_some_and(|v| v.chars().all(|c| c.is_ascii_digit() || c == '.'))
}

/// The path of the `package.json` in `dir` and its `scripts.NAME`.
fn npm_script(files: &dyn Files, dir: &str, name: &str) -> Option<(String, String)> {
    let path = join(dir, "package.json")?;
    let text = files.read(&path)?;
    let json: serde_json::Value = serde_json::from_str(&text).ok()?;
    let body = json["scripts"][name].as_str()?.to_owned();
    Some((path, body))
}

fn make(args: &[String], dir: &str, files: &dyn Files, depth: usize, out: &mut Found) {
    let mut dir = dir.to_owned();
    let mut file = None;
    let mut targets = Vec::new();
    let mut i = 0;
    while i < args.len() {
        let arg = &args[i];
        let value = || args.get(i + 1).cloned();
        if arg == "-C" || arg == "--directory" {
            match value().and_then(|v| join(&dir, &v)) {
                Some(d) => dir = d,
                None => return,
            }
            i += 1;
        } else if let Some(d) = arg.strip_prefix("-C").filter(|d| !d.is_empty()) {
            match join(&dir, d) {
                Some(d) => dir = d,
                None => return,
            }
        } else if arg == "-f" || arg == "--file" || arg == "--makefile" {
            file = value();
            i += 1;
        } else if !arg.starts_with('-') && !arg.contains('=') {
            targets.push(arg.clone());
        }
        i += 1;
    }
    let names = match &file {
        Some(f) => vec![f.clone()],
        None => vec!["GNUmakefile".into(), "makefile".into(), "Makefile".into()],
    };
    let Some((path, text)) = names.iter().find_map(|n| {
        let path = join(&dir, n)?;
        files.read(&path).map(|text| (path, text))
    }) else {
        return;
    };
    let makefile = Makefile::parse(&text, path);
    if targets.is_empty() {
        targets.extend(makefile.default_target());
    }
    let mut seen = BTreeSet::new();
    for target in targets {
        makefile.follow(&target, &dir, files, depth, &mut seen, out);
    }
}

/// The rules and simple variables of a Makefile.
struct Makefile {
    path: String,
    rules: Vec<(Vec<String>, Vec<String>, Vec<String>)>,
    vars: Vec<(String, String)>,
}

impl Makefile {
    fn parse(text: &str, path: String) -> Makefile {
        let joined = text.replace("\\\n", " ");
        let mut rules: Vec<(Vec<String>, Vec<String>, Vec<String>)> = Vec::new();
        let mut vars = Vec::new();
        let mut in_rule = false;
        for line in joined.lines() {
            if let Some(recipe) = line.strip_prefix('\t') {
                if in_rule && let Some(rule) = rules.last_mut() {
                    rule.2.push(recipe.to_owned());
                }
                continue;
            }
            if line.trim().is_empty() || line.trim_start().starts_with('#') {
                continue;
            }
            in_rule = false;
            if let Some((name, value)) = assignment(line) {
                vars.push((name, value));
                continue;
            }
            let Some((targets, after)) = line.split_once(':') else {
                continue;
            };
            let (prereqs, inline) = match after.split_once(';') {
                Some((p, r)) => (p, Some(r.trim().to_owned())),
                None => (after, None),
            };
            rules.push((
                targets.split_whitespace().map(str::to_owned).collect(),
                prereqs.split_whitespace().map(str::to_owned).collect(),
                inline.into_iter().collect(),
            ));
            in_rule = true;
        }
        Makefile { path, rules, vars }
    }

    fn default_target(&self) -> Option<String> {
        self.rules
            .iter()
            .flat_map(|(targets, _, _)| targets.first())
            .find(|t| !t.starts_with('.') && !t.contains('%'))
            .cloned()
    }

    fn follow(
        &self,
        target: &str,
        dir: &str,
        files: &dyn Files,
        depth: usize,
        seen: &mut BTreeSet<String>,
        out: &mut Found,
    ) {
        if depth > MAX_DEPTH || !seen.insert(target.to_owned()) {
            return;
        }
        let before = out.starts;
        let mut rules = String::new();
        for (targets, prereqs, recipe) in &self.rules {
            if !targets.iter().any(|t| t == target) {
                continue;
            }
            rules.push_str(&format!("{}: {}\n", targets.join(" "), prereqs.join(" ")));
            for prereq in prereqs {
                self.follow(prereq, dir, files, depth + 1, seen, out);
            }
            for line in recipe {
                let line = self.expand(line);
                rules.push_str(&format!("\t{line}\n"));
                let line = line.trim_start_matches(['@', '-', '+', ' ']);
                scan(line, dir, files, depth + 1, out);
            }
        }
        if out.starts > before {
            out.followed
                .insert((self.path.clone(), format!("target {target}")), rules);
        }
    }

    /// `$(NAME)` and `${NAME}` of the Makefile's own variables; `$(MAKE)` is `make`.
    fn expand(&self, line: &str) -> String {
        let mut line = line.replace("$(MAKE)", "make").replace("${MAKE}", "make");
        for (name, value) in self.vars.iter().rev() {
            line = line
                .replace(&format!("$({name})"), value)
                .replace(&format!("${{{name}}}"), value);
        }
        line.replace("$$", "$")
    }
}

/// `NAME = value` (also `:=`, `::=`, `?=`), outside a recipe.
fn assignment(line: &str) -> Option<(String, String)> {
    let at = line.find('=')?;
    let name = line[..at].trim_end_matches([':', '?', '+']).trim();
    if name.is_empty() || !name.chars().all(|c| c.is_alphanumeric() || c == '_') {
        return None;
    }
    Some((name.to_owned(), line[at + 1..].trim().to_owned()))
}

/// `path` relative to `dir`, normalised; `None` for an absolute path or one leaving the
/// root.
pub fn join(dir: &str, path: &str) -> Option<String> {
    if path.starts_with('/') {
        return None;
    }
    let mut parts: Vec<&str> = dir.split('/').filter(|p| !p.is_empty()).collect();
    for part in path.split('/') {
        match part {
            "" | "." => {}
            ".." => {
                parts.pop()?;
            }
            p => parts.push(p),
        }
    }
    Some(parts.join("/"))
}

/// The words of each simple command of a shell script: split at unquoted `;`, `&&`, `||`,
/// `|`, `&` and line ends, with quotes and backslashes taken away. Good enough for the
/// commands people write in goal files and Makefiles; anything cleverer is not
/// recognised.
pub fn simple_commands(script: &str) -> Vec<Vec<String>> {
    let mut commands = Vec::new();
    let mut words: Vec<String> = Vec::new();
    let mut word = String::new();
    let mut in_word = false;
    let mut chars = script.chars().peekable();
    let end_word = |word: &mut String, in_word: &mut bool, words: &mut Vec<String>| {
        if *in_word {
            words.push(std::mem::take(word));
            *in_word = false;
        }
    };
    while let Some(c) = chars.next() {
        match c {
            '\'' => {
                in_word = true;
                for c in chars.by_ref() {
                    if c == '\'' {
                        break;
                    }
                    word.push(c);
                }
            }
            '"' => {
                in_word = true;
                while let Some(c) = chars.next() {
                    match c {
                        '"' => break,
                        '\\' => word.extend(chars.next()),
                        c => word.push(c),
                    }
                }
            }
            '\\' => {
                if let Some(next) = chars.next()
                    && next != '\n'
                {
                    word.push(next);
                    in_word = true;
                }
            }
            '#' if !in_word => {
                for c in chars.by_ref() {
                    if c == '\n' {
                        break;
                    }
                }
                end_word(&mut word, &mut in_word, &mut words);
                commands.push(std::mem::take(&mut words));
            }
            ';' | '&' | '|' | '\n' | '(' | ')' => {
                end_word(&mut word, &mut in_word, &mut words);
                commands.push(std::mem::take(&mut words));
            }
            c if c.is_whitespace() => end_word(&mut word, &mut in_word, &mut words),
            c => {
                word.push(c);
                in_word = true;
            }
        }
    }
    end_word(&mut word, &mut in_word, &mut words);
    commands.push(words);
    commands.retain(|c| !c.is_empty());
    commands
}

/// The command without leading `VAR=value` words and wrappers (`env`, `exec`, `time`,
/// `nice`, `timeout N`, `command`).
fn strip_prefixes(words: &[String]) -> Vec<String> {
    let mut i = 0;
    while i < words.len() {
        let w = &words[i];
        let assignment = w.split_once('=').is_some_and(|(k, _)| {
            !k.is_empty() && k.chars().all(|c| c.is_alphanumeric() || c == '_')
        });
        if assignment || matches!(w.as_str(), "env" | "exec" | "time" | "nice" | "command") {
            i += 1;
        } else if w == "timeout" {
            i += 2;
        } else if matches!(w.as_str(), "if" | "then" | "else" | "do" | "!" | "{" | "}") {
            i += 1;
        } else {
            break;
        }
    }
    words.get(i..).unwrap_or_default().to_vec()
}

#[cfg(test)]
pub(crate) mod tests {
    use std::collections::BTreeMap;

    use super::*;

    /// Files held in memory.
    pub(crate) struct Mem {
        files: BTreeMap<String, String>,
        paths: Vec<String>,
    }

    impl Mem {
        pub(crate) fn new(files: &[(&str, &str)]) -> Mem {
            let files: BTreeMap<String, String> = files
                .iter()
                .map(|(p, t)| ((*p).to_owned(), (*t).to_owned()))
                .collect();
            let paths = files.keys().cloned().collect();
            Mem { files, paths }
        }
    }

    impl Files for Mem {
        fn read(&self, path: &str) -> Option<String> {
            self.files.get(path).cloned()
        }
        fn paths(&self) -> &[String] {
            &self.paths
        }
    }

    fn kinds(command: &str, files: &[(&str, &str)]) -> Vec<(Kind, String, Vec<String>)> {
        recognise(command, &Mem::new(files))
            .into_iter()
            .map(|r| (r.kind, r.dir, r.args))
            .collect()
    }

    fn s(words: &[&str]) -> Vec<String> {
        words.iter().map(|w| (*w).to_owned()).collect()
    }

    #[test]
    fn direct_commands_name_their_runner() {
        assert_eq!(
            kinds("cargo test --workspace", &[]),
            [(Kind::Cargo, String::new(), s(&["--workspace"]))]
        );
        assert_eq!(
            kinds("cargo +nightly nextest run -p core", &[]),
            [(Kind::Nextest, String::new(), s(&["-p", "core"]))]
        );
        assert_eq!(
            kinds(
                "RUST_LOG=x cd crates/a && timeout 60 python3 -m pytest -q tests",
                &[]
            ),
            [(Kind::Pytest, "crates/a".to_owned(), s(&["-q", "tests"]))]
        );
        assert_eq!(kinds("python -m unittest", &[])[0].0, Kind::Unittest);
        assert_eq!(
            kinds("node --test test/", &[]),
            [(Kind::NodeTest, String::new(), s(&["test/"]))]
        );
        assert_eq!(kinds("npx jest --ci", &[])[0].0, Kind::Jest);
        assert_eq!(kinds("go test ./...", &[])[0].0, Kind::Go);
        assert!(kinds("./bench.sh | tee out.txt", &[]).is_empty());
        assert!(kinds("cargo build && echo 'cargo test'", &[]).is_empty());
    }

    #[test]
    fn make_targets_are_followed_through_recipes_prerequisites_and_variables() {
        let makefile = "PY := python3\n\
                        all: build\n\
                        build:\n\tcargo build\n\
                        test: unit lint\n\t@echo done\n\
                        unit:\n\t@$(PY) -m unittest discover -s tests\n\
                        lint:\n\t-$(MAKE) -C web check\n";
        let web = "{\"scripts\": {\"test\": \"node --test\"}}";
        let webmake = "check:\n\tnpm test\n";
        let files = [
            ("Makefile", makefile),
            ("web/Makefile", webmake),
            ("web/package.json", web),
        ];
        assert_eq!(
            kinds("make test", &files),
            [
                (
                    Kind::Unittest,
                    String::new(),
                    s(&["discover", "-s", "tests"])
                ),
                (Kind::NodeTest, "web".to_owned(), Vec::new()),
            ]
        );
        // The default target is the first rule's.
        assert!(kinds("make", &files).is_empty());
        // A recipe that runs nothing known names no runner.
        assert!(kinds("make test", &[("Makefile", "test:\n\t@true\n")]).is_empty());
    }

    #[test]
    fn scripts_and_npm_scripts_are_followed() {
        let files = [
            ("ci/test.sh", "#!/bin/sh\nset -e\ncargo test -p core\n"),
            ("package.json", "{\"scripts\": {\"check\": \"vitest run\"}}"),
        ];
        assert_eq!(kinds("./ci/test.sh", &files)[0].0, Kind::Cargo);
        assert_eq!(kinds("sh ci/test.sh", &files)[0].0, Kind::Cargo);
        assert_eq!(kinds("npm run check", &files)[0].0, Kind::Vitest);
        assert!(kinds("npm test", &files).is_empty());
    }

    #[test]
    fn shell_words_are_split_like_sh() {
        assert_eq!(
            simple_commands("a 'b c' \"d\\\"e\" f\\ g; h && i | j # k\nl"),
            [
                s(&["a", "b c", "d\"e", "f g"]),
                s(&["h"]),
                s(&["i"]),
                s(&["j"]),
                s(&["l"])
            ]
        );
        assert_eq!(join("a/b", "../c"), Some("a/c".to_owned()));
        assert_eq!(join("", "../c"), None);
        assert_eq!(join("", "./"), Some(String::new()));
    }
}
