//! What engines print for a request, as it arrives ([`EngineOutput`] pieces, before each
//! engine's reply).
//!
//! Two ways to get it:
//! - **in the results** (the default): each engine's pieces are joined into its result's
//!   `stdout` and `stderr`, as before streaming existed. At most [`KEEP`] bytes per engine and
//!   stream are kept; the rest is counted and replaced by one line saying how much was left out,
//!   so a cell printing gigabytes cannot fill the client's memory.
//! - **as it arrives**: [`AsyncResult::output`](crate::result::AsyncResult::output) returns an
//!   [`OutputStream`]; while it exists, pieces queue for it instead (and the results carry no
//!   output: it was given once, to the stream). The stream also takes the output of the engines
//!   that answered before it started out of their results, so a request's output is all in one
//!   place however fast its engines were. The queue holds at most [`QUEUE_LIMIT`] bytes:
//!   beyond that the connection's reader waits for the stream to be read, which slows the
//!   controller's sends to this client and, through it, the engines.
//!
//! # In what order it is shown
//! A user of ipyparallel expects a cell that ends quickly to show its output grouped per
//! engine, in engine order (`[stdout:0]`, `[stdout:1]`, ...), and a long cell to show lines
//! as they come. Under load those two look alike from the client's side: a short cell waits
//! behind other clients' cells, so its engines run it at different times, and the time since
//! submission says nothing about how long the cell runs. [`Hold`] decides from what the
//! engines send instead:
//!
//! 1. **Held.** Output is held, and shown when the request ends, grouped per engine in engine
//!    order (collapsed where engines printed the same).
//! 2. **Streamed** from the moment the cell is seen to run long; the rest then shows as it
//!    comes (in batches, see [`crate::collapse`]; an engine that answered while others run is
//!    shown at once). The cell runs long when
//!    - an engine answered after running it for at least [`WINDOW`] (its reply's
//!      `completed - started`, both on the engine's clock), or
//!    - an engine has printed and not answered for [`WINDOW`] (it is running the cell now,
//!      and has been for that long), or
//!    - output or a result has been waiting [`HOLD_MAX`] since the first came: an engine that
//!      is silent (still busy with other clients' cells, or running without printing) does
//!      not hide the others' output longer than that, or
//!    - an engine answered with an error and others have not answered for [`WINDOW`] (a rank
//!      that raised while the others wait for it, in a collective most likely: its traceback
//!      is shown at once, not at the end), or
//!    - the controller says ranks are stuck in an MPI call ([`Hold::running_long`]; what was
//!      held is shown before that notice).
//!
//! The clock starts when the first output or result arrives, not at submission: a request
//! that waits behind others is not running yet. [`crate::printer::CellPrinter`] applies the
//! rule for the CLI and the console.

use std::{
    collections::{BTreeMap, BTreeSet, VecDeque},
    sync::Arc,
    time::{Duration, Instant},
};

use mpx_messages::{EngineId, EngineOutput, StreamName};

use crate::{reply::EngineResult, state::Shared};

pub use crate::state::{KEEP, QUEUE_LIMIT};

/// How long a cell runs before its output streams (see the module doc): the time an engine
/// ran it, or has been printing without answering.
pub const WINDOW: Duration = crate::collapse::FIRST_BATCH;

/// The longest output is held for engines that have neither printed nor answered.
pub const HOLD_MAX: Duration = Duration::from_secs(2);

/// Whether a request's output is still held or streams now (the rule in the module doc). A
/// pure state machine: the caller tells it what arrived and when, and asks at any time.
#[derive(Debug, Clone)]
pub struct Hold {
    window: Duration,
    max: Duration,
    /// When the first output or result arrived.
    first: Option<Instant>,
    /// Engines that printed and have not answered, with when their first piece arrived.
    printing: BTreeMap<EngineId, Instant>,
    /// Engines that answered.
    answered: BTreeSet<EngineId>,
    /// When the first answer with an error came.
    failed: Option<Instant>,
    /// Set once the output streams; it never goes back.
    streaming: bool,
}

impl Default for Hold {
    fn default() -> Self {
        Hold::with_limits(WINDOW, HOLD_MAX)
    }
}

impl Hold {
    /// A hold with the limits [`WINDOW`] and [`HOLD_MAX`].
    pub fn new() -> Self {
        Hold::default()
    }

    /// A hold with other limits (tests, tools).
    pub fn with_limits(window: Duration, max: Duration) -> Self {
        Hold {
            window,
            max,
            first: None,
            printing: BTreeMap::new(),
            answered: BTreeSet::new(),
            failed: None,
            streaming: false,
        }
    }

    /// `engine` printed something, received at `now`.
    pub fn printed(&mut self, engine: EngineId, now: Instant) {
        self.first.get_or_insert(now);
        if !self.answered.contains(&engine) {
            self.printing.entry(engine).or_insert(now);
        }
    }

    /// An engine's result, seen at `now` (the same result again changes nothing).
    pub fn answered(&mut self, result: &EngineResult, now: Instant) {
        if !self.answered.insert(result.engine_id) {
            return;
        }
        self.first.get_or_insert(now);
        self.printing.remove(&result.engine_id);
        if result.outcome.error.is_some() {
            self.failed.get_or_insert(now);
        }
        // A result the controller made (an engine died, no engine ran it) carries no times.
        let (started, completed) = (result.outcome.started, result.outcome.completed);
        if started > 0.0 && completed - started >= self.window.as_secs_f64() {
            self.streaming = true;
        }
    }

    /// Whether the output streams at `now` (else it is held until the request ends).
    pub fn streaming(&mut self, now: Instant) -> bool {
        if !self.streaming {
            let since = |at: &Instant| now.saturating_duration_since(*at);
            let running_long = self.printing.values().any(|at| since(at) >= self.window);
            let waited = self.first.as_ref().is_some_and(|at| since(at) >= self.max);
            let failed = self.failed.as_ref().is_some_and(|at| since(at) >= self.window);
            self.streaming = running_long || waited || failed;
        }
        self.streaming
    }

    /// The cell is known to run long (the controller says ranks are stuck in an MPI call):
    /// the output streams from now on.
    pub fn running_long(&mut self) {
        self.streaming = true;
    }
}

/// The output of one request as it arrives (see the module doc). Dropping it gives the rest of
/// the output back to the results.
#[derive(Debug)]
pub struct OutputStream {
    pub(crate) req_id: mpx_messages::RequestId,
    pub(crate) shared: Arc<Shared>,
}

impl OutputStream {
    /// Starts streaming request `req_id`'s output. What arrived before comes first, in engine
    /// order: the output of engines that have answered already (taken out of their results, so
    /// that all of it is in one place and a caller can show it in engine order), then what the
    /// others printed so far.
    pub(crate) fn start(req_id: mpx_messages::RequestId, shared: Arc<Shared>) -> OutputStream {
        {
            let mut state = shared.state.lock().expect("client state");
            let mut queue = VecDeque::new();
            if let Some(request) = state.requests.get_mut(&req_id) {
                for (&engine_id, result) in request.results.iter_mut() {
                    for (stream, text) in [
                        (StreamName::Stdout, std::mem::take(&mut result.outcome.stdout)),
                        (StreamName::Stderr, std::mem::take(&mut result.outcome.stderr)),
                    ] {
                        if !text.is_empty() {
                            queue.push_back(EngineOutput { req_id, engine_id, stream, text });
                        }
                    }
                }
            }
            state.output.entry(req_id).or_default().start_stream(queue, req_id);
        }
        OutputStream { req_id, shared }
    }

    /// The pieces that arrived since the last call, waiting up to `timeout` for at least one
    /// (empty on timeout, or when the connection closed).
    pub fn next(&self, timeout: Duration) -> Vec<EngineOutput> {
        let deadline = Instant::now() + timeout;
        let mut state = self.shared.state.lock().expect("client state");
        loop {
            if let Some(out) = state.output.get_mut(&self.req_id).filter(|o| o.has_queued()) {
                let taken = out.drain();
                drop(state);
                self.shared.cond.notify_all();
                return taken;
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() || state.closed.is_some() {
                return Vec::new();
            }
            state = self.shared.cond.wait_timeout(state, left).expect("client state").0;
        }
    }
}

impl Drop for OutputStream {
    fn drop(&mut self) {
        if let Ok(mut state) = self.shared.state.lock() {
            if let Some(out) = state.output.get_mut(&self.req_id) {
                out.stop_stream();
            }
        }
        self.shared.cond.notify_all();
    }
}

#[cfg(test)]
mod tests {
    use mpx_messages::EngineId;

    use super::*;
    use crate::testing::piece;

    /// Regression: under load, an engine could answer before the caller started the stream (the
    /// CLI asked the controller for labels first); its output stayed in its result, was shown
    /// after the others' streamed output, and `[stdout:0]` came last.
    #[test]
    fn a_stream_started_after_some_engines_answered_shows_all_output_in_engine_order() {
        use mpx_messages::Outcome;

        use crate::{collapse::LiveOutput, reply::EngineResult, state::RequestState};

        let shared = Arc::new(Shared::new());
        {
            let mut state = shared.state.lock().unwrap();
            // Engine 2 answered first, its output joined into its result; engines 3 and 1 have
            // printed, not answered.
            let mut request = RequestState::default();
            let outcome = Outcome { stdout: "r 2\n".into(), stderr: "w 2\n".into(), ..Default::default() };
            let result = EngineResult {
                engine_id: EngineId::from(2),
                outcome,
                array: None,
                returned: None,
                received: 0.0,
            };
            request.results.insert(EngineId::from(2), result);
            state.requests.insert(mpx_messages::RequestId(1), request);
            let out = state.output.entry(mpx_messages::RequestId(1)).or_default();
            out.add(piece(3, "r 3\n"));
            out.add(piece(1, "r 1\n"));
        }
        let stream = OutputStream::start(mpx_messages::RequestId(1), shared.clone());
        shared
            .state
            .lock()
            .unwrap()
            .output
            .get_mut(&mpx_messages::RequestId(1))
            .unwrap()
            .add(piece(0, "r 0\n"));
        let mut live = LiveOutput::new(true, Default::default());
        for p in stream.next(Duration::ZERO) {
            live.add(p.engine_id, p.stream, &p.text);
        }
        assert_eq!(
            live.finish(),
            "[stdout:0] r 0\n[stdout:1] r 1\n[stdout:2] r 2\n[stdout:3] r 3\n[stderr:2] w 2\n"
        );
        // The result gave its output to the stream: shown once, in its place.
        let state = shared.state.lock().unwrap();
        let result = &state.requests[&mpx_messages::RequestId(1)].results[&EngineId::from(2)];
        assert_eq!((result.outcome.stdout.as_str(), result.outcome.stderr.as_str()), ("", ""));
    }

    fn answer(engine: u32, ran: f64) -> EngineResult {
        crate::testing::result(engine, ran, None)
    }

    #[test]
    fn a_quick_cell_is_held_however_late_and_far_apart_its_engines_run_it() {
        let t0 = Instant::now();
        let at = |ms: u64| t0 + Duration::from_millis(ms);
        let mut hold = Hold::new();
        // Nothing for 5 s (queued behind other clients' cells): held.
        assert!(!hold.streaming(at(5000)));
        // Engine 3 runs it first, engine 0 a second later: each ran it briefly.
        hold.printed(EngineId::from(3), at(5000));
        hold.answered(&answer(3, 0.01), at(5010));
        assert!(!hold.streaming(at(5900)));
        hold.printed(EngineId::from(0), at(6000));
        hold.answered(&answer(0, 0.01), at(6010));
        assert!(!hold.streaming(at(6500)), "held while no engine is seen to run long");
        // An engine still silent does not hide the others' output for more than HOLD_MAX.
        assert!(hold.streaming(at(5000) + HOLD_MAX));
    }

    #[test]
    fn a_cell_seen_running_long_streams() {
        let t0 = Instant::now();
        let at = |ms: u64| t0 + Duration::from_millis(ms);
        // An engine printed and has not answered for the window.
        let mut hold = Hold::new();
        hold.printed(EngineId::from(1), at(0));
        hold.printed(EngineId::from(1), at(400));
        assert!(!hold.streaming(at(499)));
        assert!(hold.streaming(at(500)));
        assert!(hold.streaming(at(501)), "it never goes back");
        // An engine answered after running the cell for the window.
        let mut hold = Hold::new();
        hold.answered(&answer(2, 0.6), at(0));
        assert!(hold.streaming(at(0)));
        // A result without times (made by the controller) says nothing of the cell.
        let mut hold = Hold::new();
        hold.answered(&EngineResult { outcome: Default::default(), ..answer(2, 0.0) }, at(0));
        assert!(!hold.streaming(at(100)));
    }

    #[test]
    fn a_rank_that_raised_while_others_wait_or_stuck_ranks_end_the_hold() {
        let t0 = Instant::now();
        let at = |ms: u64| t0 + Duration::from_millis(ms);
        // Engine 0 raised at once; the others have not answered for the window.
        let mut hold = Hold::new();
        let mut failed = answer(0, 0.01);
        failed.outcome.error = Some(mpx_messages::MpxError::Cell(mpx_messages::RemoteError::new(
            "ZeroDivisionError",
            "division by zero",
        )));
        hold.answered(&failed, at(0));
        assert!(!hold.streaming(at(499)), "a quick cell whose engines all raise is still held");
        assert!(hold.streaming(at(500)));
        // The controller says ranks are stuck: streams at once.
        let mut hold = Hold::new();
        hold.answered(&answer(0, 0.01), at(0));
        assert!(!hold.streaming(at(10)));
        hold.running_long();
        assert!(hold.streaming(at(10)));
    }
}
