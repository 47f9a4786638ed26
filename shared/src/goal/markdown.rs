//! The Markdown side of a goal file: its headings and the paragraphs and list items under
//! each, as source lines that keep their 1-based line and column in the whole file.

use std::ops::Range;

use pulldown_cmark::{Event, Options, Parser, Tag, TagEnd};

/// Maps byte offsets of the whole goal file to 1-based lines and columns.
#[derive(Debug)]
pub(crate) struct Source<'a> {
    pub text: &'a str,
    line_starts: Vec<usize>,
}

impl<'a> Source<'a> {
    pub fn new(text: &'a str) -> Self {
        let mut line_starts = vec![0];
        line_starts.extend(text.match_indices('\n').map(|(i, _)| i + 1));
        Source { text, line_starts }
    }

    /// The line and column (counted in characters) of byte `offset`.
    pub fn pos(&self, offset: usize) -> (u32, u32) {
        let offset = offset.min(self.text.len());
        let line = self.line_starts.partition_point(|&s| s <= offset).max(1) - 1;
        let start = self.line_starts[line];
        let col = self
            .text
            .get(start..offset)
            .map_or(offset - start, |s| s.chars().count());
        (to_u32(line + 1), to_u32(col + 1))
    }
}

fn to_u32(n: usize) -> u32 {
    u32::try_from(n).unwrap_or(u32::MAX)
}

/// A heading as written, without its `#` markers.
#[derive(Debug, Clone)]
pub(crate) struct Heading {
    pub level: u8,
    pub text: String,
    pub line: u32,
    pub col: u32,
}

/// One source line of a block, trimmed, with the position of its first character.
#[derive(Debug, Clone)]
pub(crate) struct Line {
    pub text: String,
    pub line: u32,
    pub col: u32,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum BlockKind {
    Paragraph,
    /// A list item, without its marker.
    Item,
}

#[derive(Debug, Clone)]
pub(crate) struct Block {
    pub kind: BlockKind,
    pub lines: Vec<Line>,
}

impl Block {
    /// The block's lines joined with newlines, as written.
    pub fn text(&self) -> String {
        join_lines(&self.lines)
    }
}

pub(crate) fn join_lines(lines: &[Line]) -> String {
    let v: Vec<&str> = lines.iter().map(|l| l.text.as_str()).collect();
    v.join("\n")
}

/// A heading and what follows it up to the next heading of any level. The node before the
/// first heading has no heading.
#[derive(Debug, Clone)]
pub(crate) struct Node {
    pub heading: Option<Heading>,
    pub blocks: Vec<Block>,
    /// The raw text between this heading and the next, trimmed.
    pub body: String,
}

/// Where the section headed by `nodes[i]` ends: at the next heading of its level or
/// above, or at the end.
pub(crate) fn section_end(nodes: &[Node], i: usize, level: u8) -> usize {
    nodes[i + 1..]
        .iter()
        .position(|n| n.heading.as_ref().is_some_and(|x| x.level <= level))
        .map_or(nodes.len(), |p| i + 1 + p)
}

/// Splits the Markdown that starts at byte `base` of `src` into heading nodes.
pub(crate) fn parse(src: &Source<'_>, base: usize) -> Vec<Node> {
    let body = &src.text[base..];
    let mut nodes = vec![Node {
        heading: None,
        blocks: vec![],
        body: String::new(),
    }];
    // Byte ranges (in `body`) of each node's heading, and of its blocks.
    let mut heading_ranges: Vec<Range<usize>> = vec![];
    heading_ranges.push(0..0);
    let mut block_ranges: Vec<Vec<(BlockKind, Range<usize>)>> = vec![vec![]];
    let mut open_items: Vec<usize> = vec![];

    for (event, range) in Parser::new_ext(body, Options::empty()).into_offset_iter() {
        match event {
            Event::Start(Tag::Heading { level, .. }) => {
                let (text, start) = heading_text(body, range.clone());
                let (line, col) = src.pos(base + start);
                nodes.push(Node {
                    heading: Some(Heading {
                        level: level as u8,
                        text,
                        line,
                        col,
                    }),
                    blocks: vec![],
                    body: String::new(),
                });
                heading_ranges.push(range);
                block_ranges.push(vec![]);
                open_items.clear();
            }
            Event::Start(Tag::Item) => {
                if let Some(blocks) = block_ranges.last_mut() {
                    blocks.push((BlockKind::Item, range));
                    open_items.push(blocks.len() - 1);
                }
            }
            Event::End(TagEnd::Item) => {
                open_items.pop();
            }
            Event::Start(Tag::List(_)) => {
                // A nested list ends its parent item's own text.
                if let (Some(&i), Some(blocks)) = (open_items.last(), block_ranges.last_mut()) {
                    let r = &mut blocks[i].1;
                    r.end = r.end.min(range.start);
                }
            }
            Event::Start(Tag::Paragraph) if open_items.is_empty() => {
                if let Some(blocks) = block_ranges.last_mut() {
                    blocks.push((BlockKind::Paragraph, range));
                }
            }
            _ => {}
        }
    }

    for (i, node) in nodes.iter_mut().enumerate() {
        let start = heading_ranges[i].end;
        let end = heading_ranges.get(i + 1).map_or(body.len(), |r| r.start);
        node.body = body.get(start..end).unwrap_or("").trim().to_string();
        node.blocks = block_ranges[i]
            .iter()
            .map(|(kind, r)| Block {
                kind: *kind,
                lines: block_lines(src, base, r.clone(), *kind),
            })
            .filter(|b| !b.lines.is_empty())
            .collect();
    }
    nodes
}

/// The text of a heading (ATX or setext) and its byte offset in `body`.
fn heading_text(body: &str, range: Range<usize>) -> (String, usize) {
    let raw = &body[range.clone()];
    let first = raw.lines().next().unwrap_or("");
    let lead = first.len() - first.trim_start().len();
    let trimmed = first.trim_start();
    let hashes = trimmed.len() - trimmed.trim_start_matches('#').len();
    let after_hashes = &trimmed[hashes..];
    let lead2 = after_hashes.len() - after_hashes.trim_start().len();
    let mut text = after_hashes.trim();
    // An ATX heading may close with a run of `#`.
    if hashes > 0 {
        let t = text.trim_end_matches('#');
        if t.is_empty() || t.ends_with(' ') {
            text = t.trim_end();
        }
    }
    (text.to_string(), range.start + lead + hashes + lead2)
}

fn block_lines(src: &Source<'_>, base: usize, range: Range<usize>, kind: BlockKind) -> Vec<Line> {
    let body = &src.text[base..];
    let raw = body.get(range.clone()).unwrap_or("");
    let mut out = vec![];
    let mut offset = range.start;
    for (n, line) in raw.split_inclusive('\n').enumerate() {
        let line_start = offset;
        offset += line.len();
        let content = line.trim_end();
        let mut skip = content.len() - content.trim_start().len();
        if n == 0 && kind == BlockKind::Item {
            skip += marker_len(&content[skip..]);
        }
        let text = content[skip..].trim();
        if text.is_empty() {
            continue;
        }
        let (l, c) = src.pos(base + line_start + skip);
        out.push(Line {
            text: text.to_string(),
            line: l,
            col: c,
        });
    }
    out
}

/// The length of a list marker (`- `, `* `, `+ `, `1. `, `1) `) and the spaces after it.
fn marker_len(s: &str) -> usize {
    let digits = s.len() - s.trim_start_matches(|c: char| c.is_ascii_digit()).len();
    let marker = if digits > 0 {
        match s[digits..].chars().next() {
            Some('.' | ')') => digits + 1,
            _ => 0,
        }
    } else if s.starts_with(['-', '*', '+']) {
        1
    } else {
        0
    };
    let rest = &s[marker..];
    marker + (rest.len() - rest.trim_start().len())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn positions_count_lines_and_characters() {
        let src = Source::new("ab\nçd\n\nx");
        assert_eq!(src.pos(0), (1, 1));
        assert_eq!(src.pos(3), (2, 1));
        assert_eq!(src.pos(5), (2, 2));
        assert_eq!(src.pos(8), (4, 1));
    }

    #[test]
    fn headings_items_and_paragraphs_keep_their_positions() {
        let text = "# Goal: x\n\n## Verification\n- `a` passes\n  more\n- b\n\n## Other\npara one\nline two\n";
        let src = Source::new(text);
        let nodes = parse(&src, 0);
        assert_eq!(nodes.len(), 4);
        let h = nodes[2].heading.as_ref().unwrap();
        assert_eq!(
            (h.level, h.text.as_str(), h.line, h.col),
            (2, "Verification", 3, 4)
        );
        let items = &nodes[2].blocks;
        assert_eq!(items.len(), 2);
        assert_eq!(items[0].text(), "`a` passes\nmore");
        assert_eq!((items[0].lines[0].line, items[0].lines[0].col), (4, 3));
        assert_eq!((items[0].lines[1].line, items[0].lines[1].col), (5, 3));
        assert_eq!(nodes[3].blocks[0].kind, BlockKind::Paragraph);
        assert_eq!(nodes[3].body, "para one\nline two");
    }

    #[test]
    fn nested_items_are_separate_blocks() {
        let text = "## C\n- outer\n  - inner\n";
        let nodes = parse(&Source::new(text), 0);
        let texts: Vec<String> = nodes[1].blocks.iter().map(Block::text).collect();
        assert_eq!(texts, ["outer", "inner"]);
    }
}
