//! The verification cache's key: what must be equal for an earlier run of a check to stand
//! for a new one. A check's outcome depends on the files it runs on, the command (and the
//! metric expectation it is judged by), the environment it gets, and — because the auditor
//! puts the protected paths back as they are at the base before verifying — the protected
//! paths' contents at the base. The key covers exactly those four parts:
//!
//! - the candidate's tree id;
//! - the check's command and metric expectation;
//! - the names and values of the allowed environment (private per-audit directories such
//!   as `HOME` and `TMPDIR` are left out by the caller: they are fresh every time);
//! - the protected paths' tree: the protected globs and every entry (path, mode, object
//!   id) of the base's tree that they match;
//! - the check's integrity settings (its canary and census, see [`crate::integrity`]),
//!   and, for a check whose census is compared with the base's, the base's tree
//!   ([`with_base`]): the verdict then depends on the base too.
//!
//! The key is a SHA-1 (git's object hash) over a length-prefixed encoding of the parts, so
//! no two different sets of parts share an encoding.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use git2::{ObjectType, Oid, TreeWalkMode, TreeWalkResult};

use crate::boundary::BoundaryRules;
use crate::contract::Check;
use crate::git::{GitError, Repo};

/// The cache key of `check` run on `tree` with `env`, the protected paths' tree being
/// `protected_tree` (see [`protected_tree`]). `None` for a human-language check, which is
/// never run and so never cached.
///
/// ```
/// use std::collections::BTreeMap;
/// use goalpost_shared::cache::check_key;
/// use goalpost_shared::contract::{Check, CheckKind, Spanned};
///
/// let check = Check {
///     text: Spanned::new("`make test` passes".to_owned(), 3, 3),
///     kind: CheckKind::Machine { command: "make test".to_owned(), metric: None },
/// };
/// let env = BTreeMap::from([("PATH".to_owned(), "/usr/bin".to_owned())]);
/// let a = check_key("4b825dc642cb6eb9a060e54bf8d69288fbee4904", &check, &env, "p1").unwrap();
/// let b = check_key("4b825dc642cb6eb9a060e54bf8d69288fbee4904", &check, &env, "p2").unwrap();
/// assert_ne!(a, b);
/// ```
pub fn check_key(
    tree: &str,
    check: &Check,
    env: &BTreeMap<String, String>,
    protected_tree: &str,
) -> Option<String> {
    let command = check.command()?;
    let mut text = String::from("goalpost check cache v2\n");
    field(&mut text, "tree", tree);
    field(&mut text, "command", command);
    match check.metric() {
        Some(m) => field(
            &mut text,
            "metric",
            &format!("{} {} {}", m.name, m.op.as_str(), m.target),
        ),
        None => field(&mut text, "metric", ""),
    }
    for (name, value) in env {
        field(&mut text, "env-name", name);
        field(&mut text, "env-value", value);
    }
    field(&mut text, "protected", protected_tree);
    let settings = check.integrity();
    field(&mut text, "canary", &settings.canary.as_key());
    field(
        &mut text,
        "census",
        if settings.census { "on" } else { "off" },
    );
    for glob in &settings.census_allow {
        field(&mut text, "census-allow", glob);
    }
    Some(hash(text.as_bytes()))
}

/// The key of a check whose verdict also depends on the base's tree (its test census is
/// compared with the base's): `key` with `base_tree` added.
pub fn with_base(key: &str, base_tree: &str) -> String {
    let mut text = String::from("goalpost check cache with base v1\n");
    field(&mut text, "key", key);
    field(&mut text, "base", base_tree);
    hash(text.as_bytes())
}

/// The protected paths' tree at `base`: a hash of the protected `patterns` (as written)
/// and of every entry of `base`'s tree that `rules` protects. Two bases with the same
/// protected contents under the same globs give the same value, whatever else differs.
pub fn protected_tree(
    repo: &Repo,
    base: Oid,
    rules: &BoundaryRules,
    patterns: &[String],
) -> Result<String, GitError> {
    let git = |context: String| move |source| GitError::Git2 { context, source };
    let tree = repo
        .git2()
        .find_commit(base)
        .and_then(|c| c.tree())
        .map_err(git(format!("reading the tree of {base}")))?;
    let mut text = String::from("goalpost protected tree v1\n");
    for pattern in patterns {
        field(&mut text, "glob", pattern);
    }
    tree.walk(TreeWalkMode::PreOrder, |root, entry| {
        if entry.kind() == Some(ObjectType::Tree) {
            return TreeWalkResult::Ok;
        }
        let name = String::from_utf8_lossy(entry.name_bytes());
        let path = format!("{root}{name}");
        if rules.is_protected(&path) {
            field(
                &mut text,
                "entry",
                &format!("{:o} {} {path}", entry.filemode(), entry.id()),
            );
        }
        TreeWalkResult::Ok
    })
    .map_err(git(format!("walking the tree of {base}")))?;
    Ok(hash(text.as_bytes()))
}

/// Appends `name len:value\n`; the length makes the encoding unambiguous.
fn field(out: &mut String, name: &str, value: &str) {
    let _ = writeln!(out, "{name} {}:{value}", value.len());
}

fn hash(bytes: &[u8]) -> String {
    // Hashing bytes in memory cannot fail in libgit2; the zero id would only make every
    // key equal to itself, never to another key.
    Oid::hash_object(ObjectType::Blob, bytes)
        .unwrap_or(Oid::ZERO_SHA1)
        .to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::contract::{CheckKind, MetricExpectation, MetricOp, Spanned};

    fn check(command: &str, metric: Option<(&str, MetricOp, f64)>) -> Check {
        Check {
            text: Spanned::new(format!("`{command}` passes"), 1, 1),
            kind: CheckKind::Machine {
                command: command.to_owned(),
                metric: metric.map(|(name, op, target)| MetricExpectation {
                    name: name.to_owned(),
                    op,
                    target,
                }),
            },
        }
    }

    fn env(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    #[test]
    fn every_part_of_the_key_counts_one_at_a_time() {
        let c = check("make test", None);
        let e = env(&[("PATH", "/usr/bin"), ("LANG", "C")]);
        let key = |tree: &str, c: &Check, e: &BTreeMap<String, String>, p: &str| {
            check_key(tree, c, e, p).expect("a machine check has a key")
        };
        let base = key("t1", &c, &e, "p1");
        assert_eq!(base, key("t1", &c, &e, "p1"), "the key is deterministic");
        assert_ne!(base, key("t2", &c, &e, "p1"), "tree");
        assert_ne!(
            base,
            key("t1", &check("make lint", None), &e, "p1"),
            "command"
        );
        let metric = check("make test", Some(("ms", MetricOp::Below, 80.0)));
        assert_ne!(base, key("t1", &metric, &e, "p1"), "metric");
        let tighter = check("make test", Some(("ms", MetricOp::Below, 50.0)));
        assert_ne!(
            key("t1", &metric, &e, "p1"),
            key("t1", &tighter, &e, "p1"),
            "metric target"
        );
        let other_value = env(&[("PATH", "/bin"), ("LANG", "C")]);
        assert_ne!(base, key("t1", &c, &other_value, "p1"), "env value");
        let more = env(&[("PATH", "/usr/bin"), ("LANG", "C"), ("TZ", "UTC")]);
        assert_ne!(base, key("t1", &c, &more, "p1"), "env var set");
        assert_ne!(base, key("t1", &c, &e, "p2"), "protected tree");
        let off = Check {
            text: Spanned::new("`make test` passes; Canary: off".to_owned(), 1, 1),
            ..c.clone()
        };
        assert_ne!(base, key("t1", &off, &e, "p1"), "canary setting");
        assert_ne!(with_base(&base, "b1"), with_base(&base, "b2"), "base tree");
        assert_ne!(with_base(&base, "b1"), base);
    }

    #[test]
    fn fields_cannot_run_into_each_other() {
        let c = check("make", None);
        let a = check_key("t", &c, &env(&[("A", "1B=2")]), "p");
        let b = check_key("t", &c, &env(&[("A", "1"), ("B", "2")]), "p");
        assert_ne!(a, b);
    }

    #[test]
    fn a_human_check_has_no_key() {
        let human = Check {
            text: Spanned::new("reads well".to_owned(), 1, 1),
            kind: CheckKind::Human,
        };
        assert_eq!(check_key("t", &human, &BTreeMap::new(), "p"), None);
    }
}
