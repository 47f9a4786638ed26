//! Reading a child's stdout and stderr: each drained by its own thread into a buffer that
//! keeps the head and the tail of the stream and counts the rest.

use std::borrow::Cow;
use std::fmt;
use std::io::{self, Read};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::Instant;

use super::lock;

/// What was kept of one output stream.
///
/// Up to the cap, `bytes` is the whole stream. Past it, `bytes` is the stream's first
/// `cap / 2` bytes followed by its last `cap - cap / 2` bytes: the start says what the
/// command was doing, the end holds the error and the final metrics. `gap_at` is where the
/// omitted middle was cut out.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct Captured {
    pub bytes: Vec<u8>,
    /// Offset in `bytes` of the omitted part; `bytes.len()` when nothing was omitted.
    pub gap_at: usize,
    /// Bytes the stream carried in all.
    pub total: u64,
    pub truncated: bool,
}

impl Captured {
    /// Bytes read but not kept.
    pub fn omitted(&self) -> u64 {
        self.total.saturating_sub(self.bytes.len() as u64)
    }

    /// The kept text, invalid UTF-8 replaced, with a marker where bytes were omitted.
    pub fn text_lossy(&self) -> String {
        if !self.truncated {
            return String::from_utf8_lossy(&self.bytes).into_owned();
        }
        let (head, tail) = self.bytes.split_at(self.gap_at.min(self.bytes.len()));
        format!(
            "{}\n[... {} bytes omitted ...]\n{}",
            String::from_utf8_lossy(head),
            self.omitted(),
            String::from_utf8_lossy(tail)
        )
    }

    /// At most the last `max_bytes` of the stream as text, for error messages. Never
    /// reaches back across the omitted part.
    pub fn tail(&self, max_bytes: usize) -> String {
        let start = if self.truncated { self.gap_at } else { 0 };
        let kept = &self.bytes[start.min(self.bytes.len())..];
        tail(kept, max_bytes).text().into_owned()
    }
}

/// The end of an output: at most its last `max` bytes, starting on a UTF-8 character
/// boundary rather than with half a character. Every tail goalpost shows (a failed git
/// command's stderr, a check's output in a prompt or an audit report) is cut here.
///
/// ```
/// use goalpost_shared::process::tail;
///
/// let end = tail("naïve é".as_bytes(), 3);
/// assert_eq!(end.text(), " é");
/// assert_eq!(end.cut, 6);
/// assert_eq!(end.marked(), "[... 6 bytes before ...]\n é");
/// ```
pub fn tail(bytes: &[u8], max: usize) -> Tail<'_> {
    let mut cut = bytes.len().saturating_sub(max);
    while bytes.get(cut).is_some_and(|b| b & 0xC0 == 0x80) {
        cut += 1;
    }
    // `cut` only grows while a byte exists at it, so it is at most `bytes.len()`.
    Tail {
        kept: &bytes[cut..],
        cut,
    }
}

/// What [`tail`] kept of an output, and how much it cut off before that.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Tail<'a> {
    pub kept: &'a [u8],
    /// Bytes of the output before `kept`.
    pub cut: usize,
}

impl<'a> Tail<'a> {
    /// Drops the partial line a cut left at the start, when the next line begins within
    /// `within` bytes; a tail that cut nothing starts with a whole line already.
    pub fn from_line_start(self, within: usize) -> Tail<'a> {
        if self.cut == 0 {
            return self;
        }
        match self.kept.iter().position(|&b| b == b'\n') {
            Some(i) if i < within => Tail {
                kept: &self.kept[i + 1..],
                cut: self.cut + i + 1,
            },
            _ => self,
        }
    }

    /// The kept bytes as text, invalid UTF-8 replaced.
    pub fn text(&self) -> Cow<'a, str> {
        String::from_utf8_lossy(self.kept)
    }

    /// The text, after a line saying how many bytes were cut before it, if any were.
    pub fn marked(&self) -> String {
        if self.cut == 0 {
            self.text().into_owned()
        } else {
            format!("[... {} bytes before ...]\n{}", self.cut, self.text())
        }
    }
}

impl fmt::Debug for Captured {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        const PREVIEW: usize = 400;
        let text = self.text_lossy();
        let preview: String = text.chars().take(PREVIEW).collect();
        f.debug_struct("Captured")
            .field("total", &self.total)
            .field("truncated", &self.truncated)
            .field("text", &preview)
            .finish_non_exhaustive()
    }
}

/// One output stream, drained by its own thread into a capped buffer.
#[derive(Debug)]
pub(super) struct Reader {
    buffer: Arc<Mutex<CaptureBuffer>>,
    /// Disconnects when the thread is done, i.e. the pipe closed.
    done: Receiver<()>,
}

impl Reader {
    pub(super) fn start(pipe: impl Read + Send + 'static, cap: usize) -> io::Result<Reader> {
        let buffer = Arc::new(Mutex::new(CaptureBuffer::new(cap)));
        let (done_tx, done) = mpsc::channel::<()>();
        let shared = Arc::clone(&buffer);
        thread::Builder::new()
            .name("process-output".into())
            .spawn(move || {
                let _done = done_tx;
                drain(pipe, &shared);
            })?;
        Ok(Reader { buffer, done })
    }

    /// What was read by `deadline`, and whether the pipe closed by then. If it did not,
    /// the thread stops at its next read and drops the pipe.
    pub(super) fn finish(self, deadline: Instant) -> (Captured, bool) {
        let left = deadline.saturating_duration_since(Instant::now());
        let closed = matches!(
            self.done.recv_timeout(left),
            Err(RecvTimeoutError::Disconnected)
        );
        let mut buffer = lock(&self.buffer);
        buffer.abandoned = !closed;
        (buffer.captured(), closed)
    }
}

fn drain(mut pipe: impl Read, buffer: &Mutex<CaptureBuffer>) {
    let mut chunk = vec![0; 64 * 1024];
    loop {
        match pipe.read(&mut chunk) {
            Ok(0) => return,
            Ok(n) => {
                let mut buffer = lock(buffer);
                if buffer.abandoned {
                    return;
                }
                buffer.push(&chunk[..n]);
            }
            Err(err) if err.kind() == io::ErrorKind::Interrupted => {}
            // Nothing more can be read; the status tells what happened to the child.
            Err(_) => return,
        }
    }
}

/// The head of a stream and a window on its tail, plus a count of everything.
#[derive(Debug)]
struct CaptureBuffer {
    head: Vec<u8>,
    head_cap: usize,
    /// Holds up to twice `tail_cap` between compactions; its last `tail_cap` bytes count.
    tail: Vec<u8>,
    tail_cap: usize,
    total: u64,
    abandoned: bool,
}

impl CaptureBuffer {
    fn new(cap: usize) -> Self {
        let head_cap = cap / 2;
        CaptureBuffer {
            head: Vec::new(),
            head_cap,
            tail: Vec::new(),
            tail_cap: cap - head_cap,
            total: 0,
            abandoned: false,
        }
    }

    fn push(&mut self, bytes: &[u8]) {
        self.total += bytes.len() as u64;
        let to_head = bytes.len().min(self.head_cap - self.head.len());
        let (head, rest) = bytes.split_at(to_head);
        self.head.extend_from_slice(head);
        if rest.len() >= self.tail_cap {
            self.tail.clear();
            self.tail
                .extend_from_slice(&rest[rest.len() - self.tail_cap..]);
        } else {
            self.tail.extend_from_slice(rest);
            if self.tail.len() > 2 * self.tail_cap {
                self.tail.drain(..self.tail.len() - self.tail_cap);
            }
        }
    }

    fn captured(&self) -> Captured {
        let tail = &self.tail[self.tail.len().saturating_sub(self.tail_cap)..];
        let mut bytes = Vec::with_capacity(self.head.len() + tail.len());
        bytes.extend_from_slice(&self.head);
        bytes.extend_from_slice(tail);
        let truncated = self.total > bytes.len() as u64;
        Captured {
            gap_at: if truncated {
                self.head.len()
            } else {
                bytes.len()
            },
            bytes,
            total: self.total,
            truncated,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn capture(cap: usize, chunks: &[&[u8]]) -> Captured {
        let mut buffer = CaptureBuffer::new(cap);
        for chunk in chunks {
            buffer.push(chunk);
        }
        buffer.captured()
    }

    #[test]
    fn under_the_cap_everything_is_kept() {
        let c = capture(10, &[b"abc", b"defg"]);
        assert_eq!(c.bytes, b"abcdefg");
        assert!(!c.truncated);
        assert_eq!(c.total, 7);
        assert_eq!(c.text_lossy(), "abcdefg");
        assert_eq!(c.tail(3), "efg");
    }

    #[test]
    fn at_the_cap_everything_is_kept() {
        let c = capture(6, &[b"abcdef"]);
        assert_eq!(c.bytes, b"abcdef");
        assert!(!c.truncated);
    }

    #[test]
    fn over_the_cap_head_and_tail_are_kept() {
        let chunks: Vec<&[u8]> = vec![b"0123", b"456789", b"ab", b"cdefghij"];
        let c = capture(6, &chunks);
        assert_eq!(c.bytes, b"012hij");
        assert_eq!(c.gap_at, 3);
        assert_eq!(c.total, 20);
        assert_eq!(c.omitted(), 14);
        assert!(c.truncated);
        assert_eq!(c.text_lossy(), "012\n[... 14 bytes omitted ...]\nhij");
        assert_eq!(c.tail(100), "hij");
    }

    #[test]
    fn many_small_chunks_keep_the_true_tail() {
        let mut buffer = CaptureBuffer::new(8);
        for i in 0..1000u32 {
            buffer.push(format!("{i},").as_bytes());
        }
        let c = buffer.captured();
        assert_eq!(c.bytes, b"0,1,999,");
        assert!(buffer.tail.len() <= 8);
    }

    #[test]
    fn zero_cap_keeps_nothing_and_counts() {
        let c = capture(0, &[b"abc"]);
        assert!(c.bytes.is_empty());
        assert_eq!(c.total, 3);
        assert!(c.truncated);
    }

    #[test]
    fn tail_starts_on_a_character_boundary() {
        let c = capture(100, &["naïve é".as_bytes()]);
        assert_eq!(c.tail(1), "");
        assert_eq!(c.tail(2), "é");
        assert_eq!(c.tail(3), " é");
    }

    #[test]
    fn a_tail_cuts_at_a_character_boundary() {
        assert_eq!(tail("héllo".as_bytes(), 4).text(), "llo");
        assert_eq!(tail(b"abc", 10).text(), "abc");
        assert_eq!(tail(b"abc", 10).cut, 0);
    }

    #[test]
    fn a_marked_tail_says_how_much_was_cut() {
        assert_eq!(tail(b"short", 10).marked(), "short");
        let end = tail(b"line one\nline two\nend", 12);
        assert_eq!(end.marked(), "[... 9 bytes before ...]\nline two\nend");
        let end = tail(b"line one\nline two\nend", 14);
        assert_eq!(end.text(), "e\nline two\nend");
        assert_eq!(
            end.from_line_start(3).marked(),
            "[... 9 bytes before ...]\nline two\nend"
        );
        assert_eq!(end.from_line_start(1), end);
        assert_eq!(tail(b"a\nb", 10).from_line_start(5).text(), "a\nb");
    }
}
