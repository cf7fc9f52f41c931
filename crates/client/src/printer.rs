//! [`CellPrinter`]: what `mpx px`, `mpx wait` and the console print while a request runs and
//! when it ends. The caller feeds it the output pieces and the results as they come and prints
//! what it returns; the printer decides when (the [`Hold`] rule of [`crate::output`]) and how
//! (collapsed by [`LiveOutput`], results rendered by [`display::render_opts`]). It does no IO and
//! reads no clock: `now` is given, so tests replay any timing.
//!
//! A request whose output is held prints nothing until it ends, then its output per engine in
//! engine order, then its values and errors. Once its output streams, complete lines are shown
//! in batches (every [`BATCH`], when each running engine has a line or after
//! [`MAX_HOLD`](crate::collapse::MAX_HOLD)), and an engine that answers while others still run
//! is shown at once.

use std::{
    collections::{BTreeSet, HashMap},
    time::Instant,
};

use mpx_messages::{EngineId, EngineOutput};

use crate::{
    collapse::{LiveOutput, BATCH},
    display,
    output::Hold,
    reply::EngineResult,
};

/// Shows one request's output and results (see the module doc).
#[derive(Debug)]
pub struct CellPrinter {
    hold: Hold,
    live: LiveOutput,
    collapse: bool,
    labels: HashMap<EngineId, String>,
    /// The engines the request runs on.
    engines: Vec<EngineId>,
    /// Engines whose results were shown while others ran.
    shown: BTreeSet<EngineId>,
    /// When the last batch of output was shown.
    last_batch: Option<Instant>,
}

impl CellPrinter {
    /// A printer for a request on `engines`, collapsing identical output unless `collapse` is
    /// false, labelling engines by `labels` where given.
    pub fn new(collapse: bool, labels: HashMap<EngineId, String>, engines: Vec<EngineId>) -> Self {
        Self::with_hold(Hold::new(), collapse, labels, engines)
    }

    /// Like [`new`](Self::new), with a given [`Hold`] (other limits).
    pub fn with_hold(
        hold: Hold,
        collapse: bool,
        labels: HashMap<EngineId, String>,
        engines: Vec<EngineId>,
    ) -> Self {
        CellPrinter {
            hold,
            live: LiveOutput::new(collapse, labels.clone()),
            collapse,
            labels,
            engines,
            shown: BTreeSet::new(),
            last_batch: None,
        }
    }

    /// A piece of output, received at `now`.
    pub fn piece(&mut self, piece: &EngineOutput, now: Instant) {
        self.hold.printed(piece.engine_id, now);
        self.live.add_at(piece.engine_id, piece.stream, &piece.text, now);
    }

    /// The cell is known to run long (ranks stuck in an MPI call, see
    /// [`Hold::running_long`]): the next [`tick`](Self::tick) shows what was held.
    pub fn running_long(&mut self) {
        self.hold.running_long();
    }

    /// What to print at `now`, given the results received so far (in engine order, as
    /// [`AsyncResult::partial`](crate::result::AsyncResult::partial) gives them): nothing while
    /// the output is held; once it streams, a batch of lines when one is due, and the engines
    /// that answered while others still run.
    pub fn tick(&mut self, partial: &[EngineResult], now: Instant) -> String {
        for r in partial {
            self.hold.answered(r, now);
        }
        if !self.hold.streaming(now) {
            return String::new();
        }
        let answered: BTreeSet<EngineId> = partial.iter().map(|r| r.engine_id).collect();
        let running: Vec<EngineId> = self.engines.iter().copied().filter(|e| !answered.contains(e)).collect();
        let mut out = String::new();
        let batch_due = self.last_batch.is_none_or(|at| now.saturating_duration_since(at) >= BATCH);
        if batch_due && self.live.due_at(&running, now) {
            self.last_batch = Some(now);
            out.push_str(&self.live.batch_at(now));
        }
        let fresh: Vec<EngineResult> =
            partial.iter().filter(|r| !self.shown.contains(&r.engine_id)).cloned().collect();
        if !fresh.is_empty() && !running.is_empty() {
            out.push_str(&self.live.batch_at(now));
            out.push_str(&display::render_opts(&fresh, &self.labels, self.collapse));
            self.shown.extend(fresh.iter().map(|r| r.engine_id));
        }
        out
    }

    /// All the output not shown yet, unfinished lines included, per engine in engine order:
    /// what to print when the request ended or the wait gave up.
    pub fn finish_output(&mut self) -> String {
        self.live.finish()
    }

    /// The results not shown yet (values, errors, and any output they carry), in engine order.
    pub fn finish_results(&self, results: &[EngineResult]) -> String {
        let rest: Vec<EngineResult> =
            results.iter().filter(|r| !self.shown.contains(&r.engine_id)).cloned().collect();
        display::render_opts(&rest, &self.labels, self.collapse)
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::testing::piece;

    fn ids(n: u32) -> Vec<EngineId> {
        (0..n).map(EngineId::from).collect()
    }

    fn result(engine: u32, ran: f64, value: &str) -> EngineResult {
        crate::testing::result(engine, ran, Some(value))
    }

    /// Plays `events` (at milliseconds after the start: a piece, or a result) through a
    /// printer, ticking every 50 ms as the CLI does; returns what was printed, in order.
    fn play(collapse: bool, events: &[(u64, Result<EngineOutput, EngineResult>)], n: u32) -> Vec<String> {
        let t0 = Instant::now();
        let mut printer = CellPrinter::new(collapse, HashMap::new(), ids(n));
        let mut partial: Vec<EngineResult> = Vec::new();
        let mut printed = Vec::new();
        let mut events: Vec<_> = events.iter().collect();
        events.sort_by_key(|(at, _)| *at);
        let end = events.last().map_or(0, |(at, _)| *at) + 50;
        let mut events = events.into_iter().peekable();
        for ms in (0..=end).step_by(50) {
            while let Some((_, event)) = events.next_if(|(at, _)| *at <= ms) {
                match event {
                    Ok(p) => printer.piece(p, t0 + Duration::from_millis(ms)),
                    Err(r) => {
                        partial.push(r.clone());
                        partial.sort_by_key(|r| r.engine_id);
                    }
                }
            }
            if partial.len() == n as usize {
                break;
            }
            let text = printer.tick(&partial, t0 + Duration::from_millis(ms));
            printed.extend(text.lines().map(str::to_string));
        }
        let text = printer.finish_output() + &printer.finish_results(&partial);
        printed.extend(text.lines().map(str::to_string));
        printed
    }

    /// Regression (issue 25): under load (16 clients at once) a short cell's engines run it at
    /// different times; its lines were printed in the order they arrived, `[stdout:3]` first.
    #[test]
    fn a_quick_cell_prints_in_engine_order_whatever_order_its_pieces_arrive() {
        // Queued for 1.5 s behind other clients' cells, then run by engines 3, 1, 2, 0 in turn,
        // up to 0.9 s apart: each ran it for 10 ms.
        let mut events = Vec::new();
        for (at, engine) in [(1500, 3), (1800, 1), (2000, 2), (2400, 0)] {
            events.push((at, Ok(piece(engine, &format!("rank {engine}\n")))));
            events.push((at + 10, Err(result(engine, 0.01, "7"))));
        }
        let expected = ["[stdout:0] rank 0", "[stdout:1] rank 1", "[stdout:2] rank 2", "[stdout:3] rank 3"];
        let printed = play(true, &events, 4);
        assert_eq!(printed, [&expected[..], &["Out[0-3]: 7"]].concat());
        let printed = play(false, &events, 4);
        assert_eq!(printed[..4], expected, "{printed:?}");
        assert_eq!(printed[4..], ["Out[0]: 7", "Out[1]: 7", "Out[2]: 7", "Out[3]: 7"]);
    }

    #[test]
    fn a_long_cell_streams_its_lines_as_they_come() {
        // Every engine prints `first`, runs 2 s, prints `second`; engine 2 prints first.
        let mut events = Vec::new();
        for engine in [2, 0, 1, 3] {
            events.push((100 + 10 * u64::from(engine == 2), Ok(piece(engine, "first\n"))));
        }
        for engine in 0..4 {
            events.push((2100, Ok(piece(engine, &format!("second {engine}\n")))));
            events.push((2110 + 100 * u64::from(engine), Err(result(engine, 2.0, "1"))));
        }
        let printed = play(true, &events, 4);
        // `first` is shown while the cell runs (before any `second`), collapsed; the engines
        // that end while others run are shown as they end.
        assert_eq!(printed[0], "[stdout:0-3] first", "{printed:?}");
        assert_eq!(printed.iter().filter(|l| l.contains("second")).count(), 4, "{printed:?}");
        assert!(printed.contains(&"[stdout:0] second 0".to_string()), "{printed:?}");
        assert_eq!(
            printed.iter().filter(|l| l.starts_with("Out[")).count(),
            4,
            "one per engine: {printed:?}"
        );
        let first_out = printed.iter().position(|l| l.starts_with("Out[")).expect("values");
        assert_eq!(
            printed[first_out], "Out[0]: 1",
            "engine 0 ended first and was shown at once: {printed:?}"
        );
    }

    #[test]
    fn a_silent_engine_holds_the_others_output_for_at_most_hold_max() {
        // Engines 1-3 end at once; engine 0 runs 5 s without printing.
        let mut events = vec![];
        for engine in 1..4 {
            events.push((0, Ok(piece(engine, "done\n"))));
            events.push((10, Err(result(engine, 0.01, "0"))));
        }
        events.push((5000, Err(result(0, 5.0, "0"))));
        let t0 = Instant::now();
        let mut printer = CellPrinter::new(true, HashMap::new(), ids(4));
        for (_, e) in &events[..6] {
            if let Ok(p) = e {
                printer.piece(p, t0);
            }
        }
        let partial: Vec<EngineResult> = (1..4).map(|e| result(e, 0.01, "0")).collect();
        let at = |d: Duration| t0 + Duration::from_millis(10) + d;
        assert_eq!(printer.tick(&partial, at(Duration::ZERO)), "");
        assert_eq!(printer.tick(&partial, at(crate::output::HOLD_MAX / 2)), "");
        assert_eq!(printer.tick(&partial, at(crate::output::HOLD_MAX)), "[stdout:1-3] done\nOut[1-3]: 0\n");
        let all: Vec<EngineResult> = (0..4).map(|e| result(e, 0.01, "0")).collect();
        assert_eq!(printer.finish_output() + &printer.finish_results(&all), "Out[0]: 0\n");
        assert_eq!(play(true, &events, 4)[0], "[stdout:1-3] done");
    }
}
