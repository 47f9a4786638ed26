//! The live block on a terminal (`--progress tty`): the lines a person follows scroll by as
//! `plain` prints them, and below them the run's [`block`] is redrawn in place on every
//! event and, while nothing happens, every second, read from the state store. When the
//! run ends the block is drawn once more and left on the screen, above the summary.

use std::io::Write as _;
use std::time::{Duration, Instant};

use goalpost_state::{EventRecord, RunView, Store};

use super::block::{InFlight, Limits, block};
use super::{Reporter, line};

/// How often the block is redrawn while no event comes, for its clocks.
const REDRAW: Duration = Duration::from_secs(1);

/// The size assumed when the terminal's cannot be read.
const FALLBACK_SIZE: (usize, usize) = (80, 24);

/// Redraws the run's block in place on stdout, a terminal.
#[derive(Debug)]
pub struct InPlace<'a> {
    store: &'a Store,
    run: String,
    limits: Limits,
    flight: InFlight,
    /// The block's lines on the screen now, below everything printed above it.
    drawn: usize,
    /// The block as last read, drawn again when the store cannot be read.
    last: Vec<String>,
    drawn_at: Option<Instant>,
}

impl<'a> InPlace<'a> {
    pub fn new(store: &'a Store, run: &str, limits: Limits) -> Self {
        InPlace {
            store,
            run: run.to_owned(),
            limits,
            flight: InFlight::default(),
            drawn: 0,
            last: Vec::new(),
            drawn_at: None,
        }
    }

    /// Prints `above` (if any) where the block was, and the block below it.
    fn draw(&mut self, above: Option<&str>) {
        match RunView::load(self.store, Some(&self.run)) {
            Ok(Some(view)) => {
                let now = now_ms();
                self.last = block(&view, &self.flight, &self.limits, now);
            }
            Ok(None) => {}
            Err(e) => tracing::warn!("cannot read run {} for its progress: {e}", self.run),
        }
        let (cols, rows) = terminal_size::terminal_size_of(std::io::stdout())
            .map(|(w, h)| (usize::from(w.0), usize::from(h.0)))
            .unwrap_or(FALLBACK_SIZE);
        let shown = fit(&self.last, cols, rows);
        let text = frame(self.drawn, above, &shown);
        let mut out = std::io::stdout().lock();
        // stdout gone (a closed terminal) is no reason to stop the run.
        let _ = out.write_all(text.as_bytes());
        let _ = out.flush();
        self.drawn = shown.len();
        self.drawn_at = Some(Instant::now());
    }
}

impl Reporter for InPlace<'_> {
    fn report(&mut self, record: &EventRecord) {
        self.flight.apply(record);
        self.draw(line(&record.event).as_deref());
    }

    fn tick(&mut self) {
        if self.drawn_at.is_none_or(|at| at.elapsed() >= REDRAW) {
            self.draw(None);
        }
    }

    fn finish(&mut self, ended: &EventRecord) {
        self.flight.apply(ended);
        self.draw(None);
        // Left as it is: what is printed next goes below it.
        self.drawn = 0;
    }
}

/// Milliseconds since the Unix epoch, the event log's clock (0 on a clock before it).
fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

/// What to write to replace the `drawn` lines of the old block, the last ones on the
/// screen, with `above` (a line that stays) and the new block: back to the old block's
/// first line, clear from there to the end of the screen, then the new lines.
pub fn frame(drawn: usize, above: Option<&str>, block: &[String]) -> String {
    let mut out = String::new();
    if drawn > 0 {
        out.push_str(&format!("\r\x1b[{drawn}A"));
    }
    out.push_str("\x1b[J");
    if let Some(line) = above {
        out.push_str(line);
        out.push('\n');
    }
    for line in block {
        out.push_str(line);
        out.push('\n');
    }
    out
}

/// `lines` cut to a terminal of `cols` columns and `rows` rows: no line wraps (a wrapped
/// line would take two rows where the redraw counts one) and the block leaves a row for
/// the cursor (a block taller than the screen could not be reached to redraw it).
pub fn fit(lines: &[String], cols: usize, rows: usize) -> Vec<String> {
    let width = cols.saturating_sub(1).max(1);
    let height = rows.saturating_sub(1).max(1);
    let clip = |l: &String| l.chars().take(width).collect::<String>();
    if lines.len() <= height {
        return lines.iter().map(clip).collect();
    }
    let mut out: Vec<String> = lines[..height - 1].iter().map(clip).collect();
    let more = format!("... {} more line(s)", lines.len() - (height - 1));
    out.push(clip(&more));
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lines(texts: &[&str]) -> Vec<String> {
        texts.iter().map(|t| (*t).to_owned()).collect()
    }

    #[test]
    fn a_redraw_goes_back_over_the_old_block_clears_it_and_prints_the_line_above_the_new_one() {
        let new = lines(&["run r1  active  3s", "  api  running"]);
        assert_eq!(
            frame(0, None, &new),
            "\x1b[Jrun r1  active  3s\n  api  running\n"
        );
        assert_eq!(
            frame(2, Some("phase api: started on 0123456789"), &new),
            "\r\x1b[2A\x1b[Jphase api: started on 0123456789\nrun r1  active  3s\n  api  running\n"
        );
    }

    #[test]
    fn the_block_is_cut_to_the_terminals_width_and_height() {
        let block = lines(&["0123456789", "abc", "defgh", "ijk"]);
        assert_eq!(fit(&block, 6, 10), lines(&["01234", "abc", "defgh", "ijk"]));
        // Five rows: four for the block, one for the cursor.
        assert_eq!(fit(&block, 80, 5), block);
        assert_eq!(
            fit(&block, 80, 4),
            lines(&["0123456789", "abc", "... 2 more line(s)"])
        );
        // A terminal too small for anything still gets one line.
        assert_eq!(fit(&block, 1, 1), lines(&["."]));
    }
}
