//! Progress of long loads: a callback trait and a text progress bar on stderr.

use std::io::{IsTerminal, Write};
use std::time::{Duration, Instant};

/// Told how far a load has come. Implemented by closures `FnMut(done, total)`, by `()` (no
/// reporting) and by [`ProgressBar`].
pub trait Progress {
    /// `done` of `total` rows are written.
    fn update(&mut self, done: u64, total: u64);
    /// The load is over; `done` rows were written.
    fn finish(&mut self, _done: u64) {}
}

impl Progress for () {
    fn update(&mut self, _done: u64, _total: u64) {}
}

impl<F: FnMut(u64, u64)> Progress for F {
    fn update(&mut self, done: u64, total: u64) {
        self(done, total)
    }
}

/// A progress bar on stderr: redrawn in place on a terminal, a line every few seconds
/// otherwise (logs stay readable).
#[derive(Debug)]
pub struct ProgressBar {
    label: String,
    started: Instant,
    last_line: Option<Instant>,
    terminal: bool,
}

impl ProgressBar {
    pub fn stderr(label: impl Into<String>) -> ProgressBar {
        ProgressBar {
            label: label.into(),
            started: Instant::now(),
            last_line: None,
            terminal: std::io::stderr().is_terminal(),
        }
    }

    fn render(&self, done: u64, total: u64) -> String {
        let width = 30usize;
        let filled = if total == 0 {
            width
        } else {
            ((done as f64 / total as f64) * width as f64).round() as usize
        };
        let elapsed = self.started.elapsed().as_secs_f64().max(1e-3);
        format!(
            "{} [{}{}] {done}/{total} rows, {:.0} rows/s",
            self.label,
            "#".repeat(filled.min(width)),
            ".".repeat(width - filled.min(width)),
            done as f64 / elapsed
        )
    }
}

impl Progress for ProgressBar {
    fn update(&mut self, done: u64, total: u64) {
        let mut err = std::io::stderr().lock();
        if self.terminal {
            let _ = write!(err, "\r{}", self.render(done, total));
            let _ = err.flush();
        } else if self
            .last_line
            .is_none_or(|t| t.elapsed() >= Duration::from_secs(5))
        {
            self.last_line = Some(Instant::now());
            let _ = writeln!(err, "{}", self.render(done, total));
        }
    }

    fn finish(&mut self, done: u64) {
        let line = self.render(done, done);
        let mut err = std::io::stderr().lock();
        if self.terminal {
            let _ = writeln!(err, "\r{line}");
        } else {
            let _ = writeln!(err, "{line}");
        }
    }
}
