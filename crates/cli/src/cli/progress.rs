//! [`Progress`]: one line on stderr for work that takes a while (a cell, a data move, a cluster
//! start): nothing for the first [`SHOW_AFTER`], then elapsed time and what is known (engines
//! done of all, bytes and rate). Only on a terminal: when stdout or stderr is a pipe or a
//! file, nothing is drawn, so scripts see the same text as before.

use std::{
    io::IsTerminal,
    time::{Duration, Instant},
};

use indicatif::{HumanBytes, ProgressBar, ProgressDrawTarget, ProgressStyle};

/// How long work runs before its progress line appears.
pub const SHOW_AFTER: Duration = Duration::from_secs(2);

/// A progress line, drawn only on a terminal and only after [`SHOW_AFTER`].
pub struct Progress {
    what: String,
    started: Instant,
    bar: Option<ProgressBar>,
    enabled: bool,
}

impl Progress {
    /// Progress of `what` (e.g. `cell`, `push x`, `cluster start`), from now.
    pub fn new(what: impl Into<String>) -> Self {
        let enabled = std::io::stdout().is_terminal() && std::io::stderr().is_terminal();
        Progress { what: what.into(), started: Instant::now(), bar: None, enabled }
    }

    /// Shows (after [`SHOW_AFTER`]) the count of `done` of `total` (e.g. engines), with `bytes`
    /// moved so far when known.
    pub fn update(&mut self, done: usize, total: usize, noun: &str, bytes: Option<u64>) {
        let elapsed = self.started.elapsed();
        if !self.enabled || elapsed < SHOW_AFTER {
            return;
        }
        let bar = self.bar.get_or_insert_with(|| {
            let bar = ProgressBar::with_draw_target(None, ProgressDrawTarget::stderr());
            bar.set_style(ProgressStyle::with_template("{spinner} {msg}").expect("a valid template"));
            bar.enable_steady_tick(Duration::from_millis(200));
            bar
        });
        bar.set_message(line(&self.what, elapsed, done, total, noun, bytes));
    }

    /// Runs `f` (which prints) with the progress line out of the way.
    pub fn suspend<R>(&self, f: impl FnOnce() -> R) -> R {
        match &self.bar {
            Some(bar) => bar.suspend(f),
            None => f(),
        }
    }

    /// Removes the line.
    pub fn finish(&mut self) {
        if let Some(bar) = self.bar.take() {
            bar.finish_and_clear();
        }
    }
}

impl Drop for Progress {
    fn drop(&mut self) {
        self.finish();
    }
}

/// The text of a progress line: `cell: 12.3 s, 2/4 engines done` (with `, 1.5 GiB at 120 MiB/s`
/// when bytes are known).
pub fn line(
    what: &str,
    elapsed: Duration,
    done: usize,
    total: usize,
    noun: &str,
    bytes: Option<u64>,
) -> String {
    let secs = elapsed.as_secs_f64();
    let mut text = format!("{what}: {secs:.1} s, {done}/{total} {noun}");
    if let Some(b) = bytes {
        let rate = if secs > 0.0 { (b as f64 / secs) as u64 } else { 0 };
        text.push_str(&format!(", {} at {}/s", HumanBytes(b), HumanBytes(rate)));
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_say_time_counts_and_rates() {
        assert_eq!(
            line("cell", Duration::from_millis(12_340), 2, 4, "engines done", None),
            "cell: 12.3 s, 2/4 engines done"
        );
        assert_eq!(
            line("push x", Duration::from_secs(2), 0, 4, "engines done", Some(4 << 20)),
            "push x: 2.0 s, 0/4 engines done, 4.00 MiB at 2.00 MiB/s"
        );
    }
}
