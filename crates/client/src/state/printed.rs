//! [`RequestOutput`]: what engines printed for one request, kept on the client until the
//! engine's result takes it, or queued for the request's [`OutputStream`] while one exists
//! (see [`crate::output`] for the two ways).
//!
//! [`OutputStream`]: crate::output::OutputStream

use std::collections::{BTreeMap, VecDeque};

use mpx_messages::{EngineId, EngineOutput, StreamName};

/// The most output kept per engine and stream in a result (16 MiB).
pub const KEEP: usize = 16 << 20;

/// The most output queued for an [`OutputStream`](crate::output::OutputStream) before the
/// reader waits for it (4 MiB).
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
    /// Pieces for the output stream, while one exists.
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

    /// Starts queueing for a stream. Its queue begins with `first` (the output of engines that
    /// answered already), then what a stream before it left, then what was kept for the
    /// others, in engine order.
    pub(crate) fn start_stream(&mut self, first: VecDeque<EngineOutput>, req_id: mpx_messages::RequestId) {
        let mut queue = first;
        queue.extend(self.queue.take().unwrap_or_default());
        for ((engine_id, stream), kept) in std::mem::take(&mut self.kept) {
            queue.push_back(EngineOutput { req_id, engine_id, stream, text: kept.text });
        }
        self.queued = queue.iter().map(|p| p.text.len()).sum();
        self.queue = Some(queue);
    }

    /// The pieces queued for the stream (taken); empty when none are, or no stream exists.
    pub(crate) fn drain(&mut self) -> Vec<EngineOutput> {
        self.queued = 0;
        self.queue.as_mut().map(|q| q.drain(..).collect()).unwrap_or_default()
    }

    /// Whether pieces wait for the stream.
    pub(crate) fn has_queued(&self) -> bool {
        self.queue.as_ref().is_some_and(|q| !q.is_empty())
    }

    /// Ends the stream: what comes next is kept for the results again.
    pub(crate) fn stop_stream(&mut self) {
        self.queue = None;
        self.queued = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::piece;

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

    #[test]
    fn a_stream_queue_fills_up_to_its_limit() {
        let mut out = RequestOutput::default();
        out.start_stream(VecDeque::new(), mpx_messages::RequestId(1));
        assert!(out.has_room());
        out.add(piece(0, &"z".repeat(QUEUE_LIMIT)));
        assert!(!out.has_room());
        assert_eq!(out.take(EngineId::from(0), StreamName::Stdout), "", "streamed output is not kept");
        assert_eq!(out.drain().len(), 1);
        assert!(out.has_room() && !out.has_queued());
        out.stop_stream();
        out.add(piece(0, "kept\n"));
        assert_eq!(out.take(EngineId::from(0), StreamName::Stdout), "kept\n");
    }
}
