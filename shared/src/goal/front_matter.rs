//! The optional `+++` TOML front matter: finding it, parsing it with spans, and typed reads
//! of its values that report each problem at the goal file's own line and column.

use std::ops::Range;

use toml::de::{DeTable, DeValue};

use super::markdown::Source;
use super::{Sink, expected_word, settings};
use crate::contract::Spanned;
use crate::plan::Settings;

/// The settings of the front matter (defaults when there is none), where the Markdown
/// starts, and whether the front matter could be read at all.
#[derive(Debug)]
pub(crate) struct FrontMatter {
    pub settings: Settings,
    pub body_start: usize,
    /// False when the TOML did not parse: agent names cannot be checked against it then.
    pub readable: bool,
}

/// Where the front matter's TOML and the Markdown body are in the file.
#[derive(Debug, PartialEq, Eq)]
enum Split {
    None,
    Found {
        toml: Range<usize>,
        body_start: usize,
    },
    Unterminated {
        body_start: usize,
    },
}

fn split(text: &str) -> Split {
    let mut lines = text.split_inclusive('\n');
    let Some(first) = lines.next() else {
        return Split::None;
    };
    if first.trim_end() != "+++" {
        return Split::None;
    }
    let toml_start = first.len();
    let mut offset = toml_start;
    for line in lines {
        if line.trim_end() == "+++" {
            return Split::Found {
                toml: toml_start..offset,
                body_start: offset + line.len(),
            };
        }
        offset += line.len();
    }
    Split::Unterminated {
        body_start: toml_start,
    }
}

pub(crate) fn read(src: &Source<'_>, sink: &mut Sink) -> FrontMatter {
    let mut fm = FrontMatter {
        settings: Settings::default(),
        body_start: 0,
        readable: true,
    };
    let toml_range = match split(src.text) {
        Split::None => return fm,
        Split::Unterminated { body_start } => {
            sink.error(
                1,
                1,
                "the front matter opened here with `+++` is never closed",
                "a line `+++` after the TOML front matter, before the Markdown",
            );
            fm.body_start = body_start;
            fm.readable = false;
            return fm;
        }
        Split::Found { toml, body_start } => {
            fm.body_start = body_start;
            toml
        }
    };
    let (root, errors) = DeTable::parse_recoverable(&src.text[toml_range.clone()]);
    if !errors.is_empty() {
        for e in errors {
            let (line, col) = src.pos(toml_range.start + e.span().map_or(0, |s| s.start));
            sink.error(
                line,
                col,
                format!(
                    "the front matter is not valid TOML: {}",
                    e.message().trim_end()
                ),
                "TOML between the `+++` lines, such as `max_parallel = 3` or a `[budget]` table",
            );
        }
        fm.readable = false;
        return fm;
    }
    let mut toml = Toml {
        src,
        base: toml_range.start,
        sink,
    };
    fm.settings = settings::build(&mut toml, root.get_ref());
    fm
}

/// A spanned TOML value of the front matter.
pub(crate) type Value<'i> = toml::Spanned<DeValue<'i>>;

/// Typed reads of front-matter values; each failed read reports at the value's position.
#[derive(Debug)]
pub(crate) struct Toml<'s, 'a> {
    src: &'s Source<'a>,
    base: usize,
    pub sink: &'s mut Sink,
}

impl Toml<'_, '_> {
    pub fn pos(&self, span: Range<usize>) -> (u32, u32) {
        self.src.pos(self.base + span.start)
    }

    pub fn spanned<T>(&self, value: T, span: Range<usize>) -> Spanned<T> {
        let (line, col) = self.pos(span);
        Spanned::new(value, line, col)
    }

    pub fn error(
        &mut self,
        span: Range<usize>,
        message: impl Into<String>,
        expected: impl Into<String>,
    ) {
        let (line, col) = self.pos(span);
        self.sink.error(line, col, message, expected);
    }

    /// Reports every key of `table` that is not in `known`; `path` prefixes the key in the
    /// message (`"budget."`).
    pub fn check_keys(&mut self, table: &DeTable<'_>, path: &str, known: &[&str]) {
        for key in table.keys() {
            if !known.contains(&key.get_ref().as_ref()) {
                let name = key.get_ref();
                self.error(
                    key.span(),
                    format!("unknown key \"{path}{name}\""),
                    expected_word(name, known),
                );
            }
        }
    }

    pub fn table<'t, 'i>(&mut self, key: &str, v: &'t Value<'i>) -> Option<&'t DeTable<'i>> {
        match v.get_ref() {
            DeValue::Table(t) => Some(t),
            other => {
                self.type_error(key, v.span(), other, "a table");
                None
            }
        }
    }

    pub fn string(&mut self, key: &str, v: &Value<'_>) -> Option<Spanned<String>> {
        match v.get_ref() {
            DeValue::String(s) => Some(self.spanned(s.to_string(), v.span())),
            other => {
                self.type_error(key, v.span(), other, "a string");
                None
            }
        }
    }

    /// A whole number of at least 1.
    pub fn positive_int(&mut self, key: &str, v: &Value<'_>) -> Option<Spanned<u64>> {
        let n = match v.get_ref() {
            DeValue::Integer(i) => i64::from_str_radix(i.as_str(), i.radix()).ok(),
            other => {
                self.type_error(key, v.span(), other, "a whole number of at least 1");
                return None;
            }
        };
        match n.and_then(|n| u64::try_from(n).ok()).filter(|&n| n > 0) {
            Some(n) => Some(self.spanned(n, v.span())),
            None => {
                self.error(
                    v.span(),
                    format!("\"{key}\" must be at least 1"),
                    "a whole number of at least 1",
                );
                None
            }
        }
    }

    pub fn positive_u32(&mut self, key: &str, v: &Value<'_>) -> Option<Spanned<u32>> {
        let n = self.positive_int(key, v)?;
        match u32::try_from(n.value) {
            Ok(x) => Some(Spanned::new(x, n.line, n.col)),
            Err(_) => {
                self.error(
                    v.span(),
                    format!("\"{key}\" is too large"),
                    "a number below 4294967296",
                );
                None
            }
        }
    }

    /// A number (integer or float) of at least 0.
    pub fn non_negative(&mut self, key: &str, v: &Value<'_>) -> Option<Spanned<f64>> {
        let n = match v.get_ref() {
            DeValue::Integer(i) => i64::from_str_radix(i.as_str(), i.radix())
                .ok()
                .map(|n| n as f64),
            DeValue::Float(f) => f.as_str().parse::<f64>().ok(),
            other => {
                self.type_error(key, v.span(), other, "a number");
                return None;
            }
        };
        match n.filter(|n| n.is_finite() && *n >= 0.0) {
            Some(n) => Some(self.spanned(n, v.span())),
            None => {
                self.error(
                    v.span(),
                    format!("\"{key}\" must be a number of at least 0"),
                    "a number such as 2.5",
                );
                None
            }
        }
    }

    /// An array of strings; a single string is split on whitespace.
    pub fn strings(&mut self, key: &str, v: &Value<'_>) -> Option<Vec<String>> {
        match v.get_ref() {
            DeValue::String(s) => Some(s.split_whitespace().map(str::to_string).collect()),
            DeValue::Array(items) => {
                let mut out = vec![];
                for item in items.iter() {
                    match item.get_ref() {
                        DeValue::String(s) => out.push(s.to_string()),
                        other => {
                            self.type_error(key, item.span(), other, "strings in the array");
                            return None;
                        }
                    }
                }
                Some(out)
            }
            other => {
                self.type_error(key, v.span(), other, "an array of strings");
                None
            }
        }
    }

    fn type_error(&mut self, key: &str, span: Range<usize>, found: &DeValue<'_>, expected: &str) {
        self.error(
            span,
            format!("\"{key}\" is {}", article(found.type_str())),
            expected.to_string(),
        );
    }
}

fn article(type_str: &str) -> String {
    match type_str.chars().next() {
        Some('a' | 'e' | 'i' | 'o' | 'u') => format!("an {type_str}"),
        _ => format!("a {type_str}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_front_matter_from_markdown() {
        assert_eq!(split("# Goal\n"), Split::None);
        assert_eq!(
            split("+++\na = 1\n+++\n# Goal\n"),
            Split::Found {
                toml: 4..10,
                body_start: 14
            }
        );
        assert_eq!(
            split("+++\na = 1\n# Goal\n"),
            Split::Unterminated { body_start: 4 }
        );
    }
}
