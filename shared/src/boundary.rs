//! Judging changed paths against a contract's boundaries: allowed, forbidden and
//! protected globs, plus the changes git itself treats specially.
//!
//! # Patterns
//!
//! Boundary globs read like `.gitignore` lines, matched against repository-relative paths
//! with `/` separators:
//!
//! - a pattern without a `/` (other than a trailing one) matches a file or directory name
//!   at any depth: `*.lock` matches `Cargo.lock` and `web/yarn.lock`;
//! - a pattern with a `/` in it is anchored at the repository root: `src/*.rs` matches
//!   `src/main.rs`, not `lib/src/main.rs`; a leading `/` or `./` only anchors (`/Makefile`);
//! - `*` and `?` stay within one path component, `**` spans any number of them, `[abc]`
//!   and `{a,b}` work as in globset;
//! - a pattern matches a path when it matches the path itself or any of its parent
//!   directories, so `docs` and `docs/` both mean the directory and everything under it.
//!   A trailing `/` therefore only documents intent: `tests/` also matches an entry named
//!   `tests` that replaced the directory (a symlink, a file), which is exactly the kind of
//!   change a protected `tests/` must catch;
//! - negation (`!pattern`) is not supported and is an error rather than silently ignored.
//!
//! Always-protected paths (the plan file, goalpost's own files) are not globs: each is a
//! literal repository-relative path anchored at the root.
//!
//! # Rules
//!
//! Every path a change touches is judged, both paths of a rename: moving a forbidden file
//! into an allowed directory touches the forbidden path. A path matching a forbidden glob
//! is [`ViolationKind::Forbidden`]; otherwise, when allowed globs are given, a path
//! matching none of them is [`ViolationKind::NotAllowed`]; independently, a path matching
//! a protected glob (the contract's or an always-protected one) is
//! [`ViolationKind::Protected`].
//!
//! Git-level changes are [`ViolationKind::GitLevel`] unless an allowed glob names the path
//! explicitly (its last component has no wildcard and it matches the path itself, not a
//! parent directory): `.gitmodules` and `.gitattributes` at any depth, any submodule
//! (gitlink) entry, and a symlink whose target is absolute, climbs out of the repository
//! with `..`, or points into `.git`.

use globset::{Glob, GlobBuilder, GlobMatcher};

use crate::contract::{Boundaries, Spanned};
use crate::git::{EntryMode, PathChange};
use crate::protocol::{Violation, ViolationKind};

/// A boundary glob that cannot be compiled.
#[derive(Debug, thiserror::Error)]
pub enum BoundaryError {
    #[error("{} path `{pattern}`{}: {reason}", .list, line_note(*.line))]
    Pattern {
        /// Which list it came from: "allowed", "forbidden", "protected" or "always protected".
        list: &'static str,
        pattern: String,
        /// The goal-file line, when there is one.
        line: Option<u32>,
        reason: String,
    },
}

fn line_note(line: Option<u32>) -> String {
    line.map_or_else(String::new, |line| format!(" (line {line})"))
}

/// Where a rule came from, for the violation's `rule` text.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Origin {
    Line(u32),
    AlwaysProtected,
}

/// One compiled boundary glob.
#[derive(Debug, Clone)]
struct Rule {
    pattern: String,
    origin: Origin,
    /// Matches the path itself.
    exact: GlobMatcher,
    /// Matches anything under the path.
    under: GlobMatcher,
    /// The last component has no wildcard: the pattern names paths, not families of them.
    literal_name: bool,
}

impl Rule {
    fn compile(list: &'static str, pattern: &str, origin: Origin) -> Result<Rule, BoundaryError> {
        let line = match origin {
            Origin::Line(line) => Some(line),
            Origin::AlwaysProtected => None,
        };
        let error = |reason: String| BoundaryError::Pattern {
            list,
            pattern: pattern.to_owned(),
            line,
            reason,
        };
        let compiled = match origin {
            Origin::Line(_) => compile_pattern(pattern),
            // goalpost's own paths (the plan file), not globs: anchored and literal, so
            // protecting `goal.md` does not protect `docs/goal.md` too.
            Origin::AlwaysProtected => {
                let path = pattern
                    .trim()
                    .trim_start_matches("./")
                    .trim_start_matches('/');
                compile_pattern(&format!("/{}", globset::escape(path)))
            }
        };
        let (exact, under) = compiled.map_err(error)?;
        let body = pattern.trim().trim_end_matches('/');
        let last = body.rsplit('/').next().unwrap_or(body);
        Ok(Rule {
            pattern: pattern.trim().to_owned(),
            origin,
            exact,
            under,
            literal_name: !last.is_empty() && !last.contains(['*', '?', '[', '{']),
        })
    }

    fn matches(&self, path: &str) -> bool {
        self.exact.is_match(path) || self.under.is_match(path)
    }

    fn describe(&self, what: &str) -> String {
        match self.origin {
            Origin::Line(line) => format!("{what} `{}` (line {line})", self.pattern),
            Origin::AlwaysProtected => format!("always protected `{}`", self.pattern),
        }
    }
}

/// Compiles one boundary pattern into (matches the path, matches anything under it).
fn compile_pattern(pattern: &str) -> Result<(GlobMatcher, GlobMatcher), String> {
    let trimmed = pattern.trim();
    if trimmed.starts_with('!') {
        return Err("negated patterns are not supported".to_owned());
    }
    let body = trimmed.trim_end_matches('/');
    // A leading `/` or `./` anchors like any other inner `/`.
    let anchored = body.contains('/');
    let body = body
        .strip_prefix("./")
        .unwrap_or(body)
        .trim_start_matches('/');
    if body.is_empty() {
        return Err("empty pattern".to_owned());
    }
    let full = if anchored {
        body.to_owned()
    } else {
        format!("**/{body}")
    };
    let build = |glob: &str| -> Result<GlobMatcher, String> {
        GlobBuilder::new(glob)
            .literal_separator(true)
            .backslash_escape(true)
            .build()
            .map(|g: Glob| g.compile_matcher())
            .map_err(|e| e.kind().to_string())
    };
    Ok((build(&full)?, build(&format!("{full}/**"))?))
}

/// Checks that `pattern` is a boundary glob this module can compile; for the goal-file
/// parser, which reports the error at the pattern's line.
pub fn validate_pattern(pattern: &str) -> Result<(), String> {
    compile_pattern(pattern).map(drop)
}

/// A contract's boundaries, compiled once and applied to any number of paths.
///
/// ```
/// use goalpost_shared::boundary::BoundaryRules;
/// use goalpost_shared::contract::{Boundaries, Spanned};
/// use goalpost_shared::git::{ChangeStatus, EntryMode, PathChange};
/// use goalpost_shared::protocol::ViolationKind;
///
/// let boundaries = Boundaries {
///     allowed: vec![Spanned::new("src/".to_owned(), 20, 16)],
///     forbidden: vec![Spanned::new("secrets/".to_owned(), 21, 18)],
///     protected: vec![Spanned::new("tests/".to_owned(), 22, 18)],
/// };
/// let rules = BoundaryRules::new(&boundaries, &["goal.md".to_owned()]).unwrap();
/// // Moving a forbidden file into an allowed directory still touches the forbidden path.
/// let moved = PathChange {
///     status: ChangeStatus::Renamed,
///     old_path: Some("secrets/key.pem".to_owned()),
///     new_path: Some("src/key.pem".to_owned()),
///     old_mode: EntryMode::File,
///     new_mode: EntryMode::File,
/// };
/// let violations = rules.judge(&[moved], &|_| None);
/// assert_eq!(violations.len(), 1);
/// assert_eq!(violations[0].kind, ViolationKind::Forbidden);
/// assert_eq!(violations[0].path, "secrets/key.pem");
/// assert_eq!(violations[0].rule, "forbidden `secrets/` (line 21)");
/// ```
#[derive(Debug, Clone)]
pub struct BoundaryRules {
    allowed: Vec<Rule>,
    forbidden: Vec<Rule>,
    protected: Vec<Rule>,
}

impl BoundaryRules {
    /// Compiles `boundaries`, with `always_protected` (the plan file, goalpost's own files)
    /// added to the protected globs. Those are repository-relative paths, taken literally
    /// and anchored at the root (a directory protects everything under it).
    pub fn new(
        boundaries: &Boundaries,
        always_protected: &[String],
    ) -> Result<BoundaryRules, BoundaryError> {
        let compile = |list: &'static str, globs: &[Spanned<String>]| {
            globs
                .iter()
                .map(|g| Rule::compile(list, &g.value, Origin::Line(g.line)))
                .collect::<Result<Vec<_>, _>>()
        };
        let mut protected = compile("protected", &boundaries.protected)?;
        for pattern in always_protected {
            protected.push(Rule::compile(
                "always protected",
                pattern,
                Origin::AlwaysProtected,
            )?);
        }
        Ok(BoundaryRules {
            allowed: compile("allowed", &boundaries.allowed)?,
            forbidden: compile("forbidden", &boundaries.forbidden)?,
            protected,
        })
    }

    /// Whether `path` is protected: it must be as it is at the base commit.
    pub fn is_protected(&self, path: &str) -> bool {
        self.protected.iter().any(|r| r.matches(path))
    }

    /// Whether `path` may be changed as far as allowed and forbidden globs go.
    pub fn is_allowed(&self, path: &str) -> bool {
        !self.forbidden.iter().any(|r| r.matches(path))
            && (self.allowed.is_empty() || self.allowed.iter().any(|r| r.matches(path)))
    }

    /// Every boundary violation among `changes`, sorted by path then kind, each once.
    /// `link_target` gives the target of a symlink in the candidate by its path (the
    /// caller reads the blob); `None` is taken as "unknown" and judged as escaping, since
    /// a symlink whose target cannot be read cannot be shown to stay inside.
    pub fn judge(
        &self,
        changes: &[PathChange],
        link_target: &dyn Fn(&str) -> Option<String>,
    ) -> Vec<Violation> {
        let mut found = Vec::new();
        for change in changes {
            for path in change.paths() {
                self.judge_path(path, &mut found);
            }
            self.judge_git_level(change, link_target, &mut found);
        }
        found.sort_by(|a, b| (&a.path, rank(a.kind)).cmp(&(&b.path, rank(b.kind))));
        found.dedup_by(|a, b| a.path == b.path && a.kind == b.kind);
        found
    }

    fn judge_path(&self, path: &str, found: &mut Vec<Violation>) {
        if crate::git::has_control_character(path) {
            found.push(violation(
                path,
                ViolationKind::GitLevel,
                "a control character in the path: no report line could show it as it is".to_owned(),
            ));
        }
        if let Some(rule) = self.forbidden.iter().find(|r| r.matches(path)) {
            found.push(violation(
                path,
                ViolationKind::Forbidden,
                rule.describe("forbidden"),
            ));
        } else if !self.allowed.is_empty() && !self.allowed.iter().any(|r| r.matches(path)) {
            let globs: Vec<String> = self
                .allowed
                .iter()
                .map(|r| format!("`{}`", r.pattern))
                .collect();
            found.push(violation(
                path,
                ViolationKind::NotAllowed,
                format!("not under any allowed path ({})", globs.join(", ")),
            ));
        }
        if let Some(rule) = self.protected.iter().find(|r| r.matches(path)) {
            found.push(violation(
                path,
                ViolationKind::Protected,
                rule.describe("protected"),
            ));
        }
    }

    fn judge_git_level(
        &self,
        change: &PathChange,
        link_target: &dyn Fn(&str) -> Option<String>,
        found: &mut Vec<Violation>,
    ) {
        let mut flag = |path: &str, rule: String| {
            if !self.names_explicitly(path) {
                found.push(violation(path, ViolationKind::GitLevel, rule));
            }
        };
        for path in change.paths() {
            let name = path.rsplit('/').next().unwrap_or(path);
            if matches!(name, ".gitmodules" | ".gitattributes") {
                flag(
                    path,
                    format!("`{name}` changes how git itself treats the repository"),
                );
            }
        }
        let submodule = [
            (change.old_mode, change.old_path.as_deref()),
            (change.new_mode, change.new_path.as_deref()),
        ]
        .into_iter()
        .find_map(|(mode, path)| path.filter(|_| mode == EntryMode::Submodule));
        if let Some(path) = submodule {
            flag(path, "a submodule (gitlink) entry".to_owned());
        }
        if change.new_mode == EntryMode::Symlink
            && let Some(path) = change.new_path.as_deref()
        {
            match link_target(path) {
                None => flag(path, "a symlink whose target cannot be read".to_owned()),
                Some(target) if symlink_escapes(path, &target) => flag(
                    path,
                    format!("a symlink to `{target}`, outside the repository's files"),
                ),
                Some(_) => {}
            }
        }
    }

    /// Whether an allowed glob names `path` itself, wildcard-free in its last component:
    /// what lets a git-level change, or a change to a check's own configuration, through.
    pub fn names_explicitly(&self, path: &str) -> bool {
        self.allowed
            .iter()
            .any(|r| r.literal_name && r.exact.is_match(path))
    }
}

fn violation(path: &str, kind: ViolationKind, rule: String) -> Violation {
    Violation {
        kind,
        path: path.to_owned(),
        rule,
    }
}

/// The order violations of one path are listed in.
fn rank(kind: ViolationKind) -> u8 {
    match kind {
        ViolationKind::Forbidden => 0,
        ViolationKind::NotAllowed => 1,
        ViolationKind::Protected => 2,
        ViolationKind::GitLevel => 3,
        ViolationKind::ModifiedByCheck => 4,
        ViolationKind::CheckConfig => 5,
    }
}

impl Boundaries {
    /// Compiles these boundaries (plus `always_protected`) and judges `changes`; see
    /// [`BoundaryRules::judge`].
    pub fn judge(
        &self,
        changes: &[PathChange],
        always_protected: &[String],
        link_target: &dyn Fn(&str) -> Option<String>,
    ) -> Result<Vec<Violation>, BoundaryError> {
        Ok(BoundaryRules::new(self, always_protected)?.judge(changes, link_target))
    }
}

/// Whether a symlink at `path` with `target` points outside the repository's files: an
/// absolute target, one that climbs above the root with `..`, or one into `.git`.
pub fn symlink_escapes(path: &str, target: &str) -> bool {
    if target.starts_with('/') || target.is_empty() {
        return true;
    }
    let mut resolved: Vec<&str> = path.split('/').collect();
    resolved.pop(); // the link's own name
    for component in target.split('/') {
        match component {
            "" | "." => {}
            ".." => {
                if resolved.pop().is_none() {
                    return true;
                }
            }
            name => resolved.push(name),
        }
    }
    resolved.first() == Some(&".git")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::git::ChangeStatus;

    fn globs(patterns: &[&str]) -> Vec<Spanned<String>> {
        patterns
            .iter()
            .enumerate()
            .map(|(i, p)| Spanned::new((*p).to_owned(), 10 + i as u32, 1))
            .collect()
    }

    fn rules(allowed: &[&str], forbidden: &[&str], protected: &[&str]) -> BoundaryRules {
        let boundaries = Boundaries {
            allowed: globs(allowed),
            forbidden: globs(forbidden),
            protected: globs(protected),
        };
        BoundaryRules::new(&boundaries, &["goal.md".to_owned()]).expect("valid globs")
    }

    fn change(status: ChangeStatus, old: Option<&str>, new: Option<&str>) -> PathChange {
        let mode = |p: Option<&str>| p.map_or(EntryMode::Absent, |_| EntryMode::File);
        PathChange {
            status,
            old_path: old.map(str::to_owned),
            new_path: new.map(str::to_owned),
            old_mode: mode(old),
            new_mode: mode(new),
        }
    }

    fn modified(path: &str) -> PathChange {
        change(ChangeStatus::Modified, Some(path), Some(path))
    }

    fn renamed(old: &str, new: &str) -> PathChange {
        change(ChangeStatus::Renamed, Some(old), Some(new))
    }

    /// (path, kind) of every violation, for compact assertions.
    fn judged(rules: &BoundaryRules, changes: &[PathChange]) -> Vec<(String, ViolationKind)> {
        rules
            .judge(changes, &|_| Some("target.txt".to_owned()))
            .into_iter()
            .map(|v| (v.path, v.kind))
            .collect()
    }

    fn v(path: &str, kind: ViolationKind) -> (String, ViolationKind) {
        (path.to_owned(), kind)
    }

    #[test]
    fn a_pattern_without_a_slash_matches_at_any_depth() {
        let r = rules(&[], &["*.lock", "secrets"], &[]);
        assert!(!r.is_allowed("Cargo.lock"));
        assert!(!r.is_allowed("web/yarn.lock"));
        assert!(!r.is_allowed("secrets/key.pem"));
        assert!(!r.is_allowed("deploy/secrets/key.pem"));
        assert!(r.is_allowed("lockfile.txt"));
        assert!(r.is_allowed("src/secrets.rs"));
    }

    #[test]
    fn a_pattern_with_a_slash_is_anchored_at_the_root() {
        let r = rules(&[], &["src/*.rs", "/Makefile", "./ci/"], &[]);
        assert!(!r.is_allowed("src/main.rs"));
        assert!(r.is_allowed("lib/src/main.rs"));
        assert!(
            r.is_allowed("src/nested/deep.rs"),
            "`*` stays within one component"
        );
        assert!(!r.is_allowed("Makefile"));
        assert!(r.is_allowed("sub/Makefile"));
        assert!(!r.is_allowed("ci/run"));
        assert!(r.is_allowed("tools/ci/run"));
    }

    #[test]
    fn a_directory_pattern_means_everything_under_it_and_the_entry_itself() {
        let r = rules(&[], &[], &["tests/", "fixtures/data"]);
        assert!(r.is_protected("tests/run.sh"));
        assert!(r.is_protected("crate/tests/deep/case.txt"));
        assert!(r.is_protected("tests"), "an entry replacing the directory");
        assert!(r.is_protected("fixtures/data/a/b.json"));
        assert!(!r.is_protected("fixtures/database.json"));
        assert!(!r.is_protected("src/tests.rs"));
    }

    #[test]
    fn double_star_spans_components() {
        let r = rules(&[], &["docs/**/*.png"], &[]);
        assert!(!r.is_allowed("docs/a.png"));
        assert!(!r.is_allowed("docs/x/y/a.png"));
        assert!(r.is_allowed("docs/a.md"));
    }

    #[test]
    fn bad_patterns_are_errors_naming_the_line() {
        let boundaries = Boundaries {
            forbidden: globs(&["ok/", "bad[", "!neg"]),
            ..Boundaries::default()
        };
        let err = BoundaryRules::new(&boundaries, &[]).expect_err("bad glob");
        let message = err.to_string();
        assert!(
            message.starts_with("forbidden path `bad[` (line 11): "),
            "{message}"
        );
        assert!(validate_pattern("!x").is_err());
        assert!(validate_pattern("/").is_err());
        assert!(validate_pattern("src/**").is_ok());
    }

    #[test]
    fn forbidden_paths() {
        let r = rules(&[], &["secrets/"], &[]);
        let found = r.judge(
            &[modified("secrets/key.pem"), modified("src/lib.rs")],
            &|_| None,
        );
        assert_eq!(found.len(), 1);
        assert_eq!(found[0].kind, ViolationKind::Forbidden);
        assert_eq!(found[0].path, "secrets/key.pem");
        assert_eq!(found[0].rule, "forbidden `secrets/` (line 10)");
    }

    #[test]
    fn allowed_paths_and_everything_else() {
        let r = rules(&["src/", "docs/*.md"], &["src/generated/"], &[]);
        let changes = [
            modified("src/lib.rs"),
            modified("docs/guide.md"),
            modified("docs/img/a.png"),
            modified("README.md"),
            modified("src/generated/api.rs"),
        ];
        assert_eq!(
            judged(&r, &changes),
            [
                v("README.md", ViolationKind::NotAllowed),
                v("docs/img/a.png", ViolationKind::NotAllowed),
                v("src/generated/api.rs", ViolationKind::Forbidden),
            ]
        );
        let found = r.judge(&[modified("README.md")], &|_| None);
        assert_eq!(
            found[0].rule,
            "not under any allowed path (`src/`, `docs/*.md`)"
        );
    }

    #[test]
    fn empty_allowed_means_everything_not_forbidden() {
        let r = rules(&[], &["vendor/"], &[]);
        assert!(judged(&r, &[modified("anything/at/all.txt")]).is_empty());
    }

    #[test]
    fn protected_paths_including_always_protected() {
        let r = rules(&["tests/", "src/"], &[], &["tests/"]);
        let changes = [
            modified("tests/run.sh"),
            change(ChangeStatus::Added, None, Some("tests/new_case.txt")),
            change(ChangeStatus::Deleted, Some("goal.md"), None),
            modified("src/lib.rs"),
        ];
        assert_eq!(
            judged(&r, &changes),
            [
                v("goal.md", ViolationKind::NotAllowed),
                v("goal.md", ViolationKind::Protected),
                v("tests/new_case.txt", ViolationKind::Protected),
                v("tests/run.sh", ViolationKind::Protected),
            ]
        );
        let found = r.judge(&[modified("goal.md")], &|_| None);
        assert!(found.iter().any(|v| v.rule == "always protected `goal.md`"));
        assert!(
            !r.is_protected("docs/goal.md"),
            "always-protected paths are anchored"
        );
        let literal = BoundaryRules::new(&Boundaries::default(), &["plans/[v2]*.md".to_owned()])
            .expect("a literal path");
        assert!(literal.is_protected("plans/[v2]*.md"));
        assert!(!literal.is_protected("plans/v.md"));
        let found = r.judge(&[modified("tests/run.sh")], &|_| None);
        assert_eq!(found[0].rule, "protected `tests/` (line 10)");
    }

    #[test]
    fn a_rename_out_of_a_forbidden_path_is_judged_by_its_old_path() {
        let r = rules(&["src/"], &["secrets/"], &[]);
        assert_eq!(
            judged(&r, &[renamed("secrets/key.pem", "src/key.pem")]),
            [v("secrets/key.pem", ViolationKind::Forbidden)]
        );
    }

    #[test]
    fn a_rename_into_a_forbidden_path_is_judged_by_its_new_path() {
        let r = rules(&["src/"], &["secrets/"], &[]);
        assert_eq!(
            judged(&r, &[renamed("src/key.pem", "secrets/key.pem")]),
            [v("secrets/key.pem", ViolationKind::Forbidden)]
        );
    }

    #[test]
    fn renames_out_of_allowed_or_protected_paths() {
        let r = rules(&["src/"], &[], &["tests/"]);
        assert_eq!(
            judged(&r, &[renamed("tests/golden.txt", "src/golden.txt")]),
            [
                v("tests/golden.txt", ViolationKind::NotAllowed),
                v("tests/golden.txt", ViolationKind::Protected),
            ]
        );
        assert_eq!(
            judged(&r, &[renamed("src/a.rs", "lib/a.rs")]),
            [v("lib/a.rs", ViolationKind::NotAllowed)]
        );
    }

    #[test]
    fn git_configuration_files_are_git_level() {
        let r = rules(&[], &[], &[]);
        let changes = [
            change(ChangeStatus::Added, None, Some(".gitmodules")),
            modified("sub/.gitattributes"),
            modified(".gitignore"),
        ];
        let found = r.judge(&changes, &|_| None);
        assert_eq!(
            found
                .iter()
                .map(|v| (v.path.as_str(), v.kind))
                .collect::<Vec<_>>(),
            [
                (".gitmodules", ViolationKind::GitLevel),
                ("sub/.gitattributes", ViolationKind::GitLevel),
            ]
        );
        assert_eq!(
            found[0].rule,
            "`.gitmodules` changes how git itself treats the repository"
        );
    }

    #[test]
    fn an_explicitly_allowed_git_level_path_is_not_a_violation() {
        let changes = [modified(".gitattributes"), modified("web/.gitattributes")];
        let r = rules(&["**", "/.gitattributes"], &[], &[]);
        assert_eq!(
            judged(&r, &changes),
            [v("web/.gitattributes", ViolationKind::GitLevel)]
        );
        // A wildcard covers the path for allowed/forbidden, but does not name it.
        let r = rules(&["*"], &[], &[]);
        assert_eq!(judged(&r, &changes).len(), 2);
        let r = rules(&[".gitattributes"], &[], &[]);
        assert!(judged(&r, &changes).is_empty());
    }

    #[test]
    fn submodules_are_git_level() {
        let r = rules(&[], &[], &[]);
        let mut added = change(ChangeStatus::Added, None, Some("vendor/lib"));
        added.new_mode = EntryMode::Submodule;
        let mut removed = change(ChangeStatus::TypeChange, Some("third"), Some("third"));
        removed.old_mode = EntryMode::Submodule;
        let found = r.judge(&[added, removed], &|_| None);
        assert_eq!(
            found
                .iter()
                .map(|v| (v.path.as_str(), v.kind))
                .collect::<Vec<_>>(),
            [
                ("third", ViolationKind::GitLevel),
                ("vendor/lib", ViolationKind::GitLevel),
            ]
        );
        assert_eq!(found[0].rule, "a submodule (gitlink) entry");
        let r = rules(&["vendor/lib", "third"], &[], &[]);
        let mut added = change(ChangeStatus::Added, None, Some("vendor/lib"));
        added.new_mode = EntryMode::Submodule;
        assert!(r.judge(&[added], &|_| None).is_empty());
    }

    #[test]
    fn symlinks_out_of_the_repository_are_git_level() {
        let r = rules(&[], &[], &[]);
        let link = |path: &str| {
            let mut c = change(ChangeStatus::Added, None, Some(path));
            c.new_mode = EntryMode::Symlink;
            c
        };
        let targets = |path: &str| {
            Some(
                match path {
                    "abs" => "/etc/passwd",
                    "docs/up" => "../../outside",
                    "docs/git" => "../.git/config",
                    "docs/ok" => "../src/lib.rs",
                    _ => return None,
                }
                .to_owned(),
            )
        };
        let found = r.judge(
            &[
                link("abs"),
                link("docs/up"),
                link("docs/git"),
                link("docs/ok"),
                link("unread"),
            ],
            &targets,
        );
        assert_eq!(
            found.iter().map(|v| v.path.as_str()).collect::<Vec<_>>(),
            ["abs", "docs/git", "docs/up", "unread"]
        );
        assert!(found.iter().all(|v| v.kind == ViolationKind::GitLevel));
        assert_eq!(
            found[0].rule,
            "a symlink to `/etc/passwd`, outside the repository's files"
        );
    }

    #[test]
    fn symlink_escape_rules() {
        assert!(symlink_escapes("a", "/abs"));
        assert!(symlink_escapes("a", ".."));
        assert!(symlink_escapes("a/b/c", "../../../x"));
        assert!(!symlink_escapes("a/b/c", "../../x"));
        assert!(!symlink_escapes("a/b", "./c/../d"));
        assert!(symlink_escapes("a", "./.git/hooks"));
        assert!(!symlink_escapes("a", ".github/x"));
        assert!(symlink_escapes("a", ""));
    }
}
