//! What engines print for a request, as it arrives ([`EngineOutput`] pieces, before each
//! engine's reply).
//!
//! Two ways to get it:
//! - **in the results** (the default): each engine's pieces are joined into its result's
//!   `stdout` and `stderr`, as before streaming existed. At most [`KEEP`] bytes per engine and
//!   stream are kept; the rest is counted and replaced by one line saying how much was left out,
//!   so a cell printing gigabytes cannot fill the client's memory.
//! - **as it arrives**: [`AsyncResult::output`](crate::AsyncResult::output) returns an
//!   [`OutputStream`]; while it exists, pieces queue for it instead (and the results carry no
//!   output: it was given once, to the stream). The stream also takes the output of the engines
//!   that answered before it started out of their results, so a request's output is all in one
//!   place however fast its engines were. The queue holds at most [`QUEUE_LIMIT`] bytes:
//!   beyond that the connection's reader waits for the stream to be read, which slows the
//!   controller's sends to this client and, through it, the engines.

use std::{
    collections::{BTreeMap, VecDeque},
    sync::Arc,
    time::{Duration, Instant},
};

use mpx_messages::{EngineId, EngineOutput, StreamName};

use crate::client::Shared;

/// The most output kept per engine and stream in a result (16 MiB).
pub const KEEP: usize = 16 << 20;

/// The most output queued for an [`OutputStream`] before the reader waits for it (4 MiB).
pub const QUEUE_LIMIT: usize = 4 << 20;

/// Output kept for one engine and stream.
#[derive(Debug, Default)]
struct Kept {
    text: String,
    dropped: usize,
}

/// One request's output on the client.
#[derive(Debug, Default)]
pub(crate) struct RequestOutput {
    kept: BTreeMap<(EngineId, StreamName), Kept>,
    /// Pieces for the [`OutputStream`], while one exists.
    queue: Option<VecDeque<EngineOutput>>,
    queued: usize,
}

impl RequestOutput {
    /// Whether a piece may be added now (false: the stream's queue is full).
    pub(crate) fn has_room(&self) -> bool {
        self.queue.is_none() || self.queued < QUEUE_LIMIT
    }

    /// Adds a piece: to the stream's queue, or to what the result keeps.
    pub(crate) fn add(&mut self, piece: EngineOutput) {
        if let Some(q) = &mut self.queue {
            self.queued += piece.text.len();
            q.push_back(piece);
            return;
        }
        let kept = self.kept.entry((piece.engine_id, piece.stream)).or_default();
        let room = KEEP.saturating_sub(kept.text.len());
        if piece.text.len() <= room {
            kept.text.push_str(&piece.text);
        } else {
            let at = mpx_messages::output::split_point(&piece.text, room).min(room);
            kept.text.push_str(&piece.text[..at]);
            kept.dropped += piece.text.len() - at;
        }
    }

    /// The text kept for an engine and stream (taken), with a line for what was left out.
    pub(crate) fn take(&mut self, engine: EngineId, stream: StreamName) -> String {
        let Some(mut kept) = self.kept.remove(&(engine, stream)) else { return String::new() };
        if kept.dropped > 0 {
            if !kept.text.ends_with('\n') {
                kept.text.push('\n');
            }
            kept.text.push_str(&format!(
                "[mpx: {} more bytes of {stream} were not kept (the client keeps {} MiB per engine)]\n",
                kept.dropped,
                KEEP >> 20
            ));
        }
        kept.text
    }
}

/// The output of one request as it arrives (see the module doc). Dropping it gives the rest of
/// the output back to the results.
#[derive(Debug)]
pub struct OutputStream {
    pub(crate) req_id: u64,
    pub(crate) shared: Arc<Shared>,
}

impl OutputStream {
    /// Starts streaming request `req_id`'s output. What arrived before comes first, in engine
    /// order: the output of engines that have answered already (taken out of their results, so
    /// that all of it is in one place and a caller can show it in engine order), then what the
    /// others printed so far.
    pub(crate) fn start(req_id: u64, shared: Arc<Shared>) -> OutputStream {
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
            let out = state.output.entry(req_id).or_default();
            queue.extend(out.queue.take().unwrap_or_default());
            for ((engine_id, stream), kept) in std::mem::take(&mut out.kept) {
                queue.push_back(EngineOutput { req_id, engine_id, stream, text: kept.text });
            }
            out.queued = queue.iter().map(|p| p.text.len()).sum();
            out.queue = Some(queue);
        }
        OutputStream { req_id, shared }
    }

    /// The pieces that arrived since the last call, waiting up to `timeout` for at least one
    /// (empty on timeout, or when the connection closed).
    pub fn next(&self, timeout: Duration) -> Vec<EngineOutput> {
        let deadline = Instant::now() + timeout;
        let mut state = self.shared.state.lock().expect("client state");
        loop {
            let out = state.output.get_mut(&self.req_id);
            if let Some(out) = out.filter(|o| o.queue.as_ref().is_some_and(|q| !q.is_empty())) {
                out.queued = 0;
                let taken: Vec<EngineOutput> =
                    out.queue.as_mut().map(|q| q.drain(..).collect()).unwrap_or_default();
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
                out.queue = None;
                out.queued = 0;
            }
        }
        self.shared.cond.notify_all();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn piece(engine: u32, text: &str) -> EngineOutput {
        EngineOutput {
            req_id: 1,
            engine_id: EngineId::from(engine),
            stream: StreamName::Stdout,
            text: text.into(),
        }
    }

    #[test]
    fn results_keep_output_up_to_the_cap_and_say_what_was_left_out() {
        let mut out = RequestOutput::default();
        out.add(piece(0, "a\n"));
        out.add(piece(1, "b\n"));
        out.add(piece(0, "c\n"));
        assert_eq!(out.take(EngineId::from(0), StreamName::Stdout), "a\nc\n");
        assert_eq!(out.take(EngineId::from(0), StreamName::Stdout), "");
        assert_eq!(out.take(EngineId::from(1), StreamName::Stderr), "");
        let big = "x".repeat(KEEP - 1);
        out.add(piece(2, &big));
        out.add(piece(2, "yyy"));
        let text = out.take(EngineId::from(2), StreamName::Stdout);
        assert!(
            text.starts_with(&big) && text.contains("[mpx: 2 more bytes of stdout were not kept"),
            "{}",
            &text[KEEP - 5..]
        );
    }

    /// Regression: under load, an engine could answer before the caller started the stream (the
    /// CLI asked the controller for labels first); its output stayed in its result, was shown
    /// after the others' streamed output, and `[stdout:0]` came last.
    #[test]
    fn a_stream_started_after_some_engines_answered_shows_all_output_in_engine_order() {
        use std::sync::{Condvar, Mutex};

        use mpx_messages::Outcome;

        use crate::{client::State, collapse::LiveOutput, result::RequestState, EngineResult};

        let shared = Arc::new(Shared { state: Mutex::new(State::default()), cond: Condvar::new() });
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
            state.requests.insert(1, request);
            let out = state.output.entry(1).or_default();
            out.add(piece(3, "r 3\n"));
            out.add(piece(1, "r 1\n"));
        }
        let stream = OutputStream::start(1, shared.clone());
        shared.state.lock().unwrap().output.get_mut(&1).unwrap().add(piece(0, "r 0\n"));
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
        let result = &state.requests[&1].results[&EngineId::from(2)];
        assert_eq!((result.outcome.stdout.as_str(), result.outcome.stderr.as_str()), ("", ""));
    }

    #[test]
    fn a_stream_queue_fills_up_to_its_limit() {
        let mut out = RequestOutput { queue: Some(VecDeque::new()), ..Default::default() };
        assert!(out.has_room());
        out.add(piece(0, &"z".repeat(QUEUE_LIMIT)));
        assert!(!out.has_room());
        assert_eq!(out.take(EngineId::from(0), StreamName::Stdout), "", "streamed output is not kept");
    }
}
