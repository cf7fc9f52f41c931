//! Results that outlive their wait: a request whose client went away before it ended (`mpx px
//! --timeout` gave up and exited, a console closed) is kept here, its engines' later output and
//! replies added as they come, until a client fetches it by id (`mpx wait ID`, the console's
//! `%result ID`) — given once — or it is dropped.
//!
//! # Bounds
//! - at most [`KEEP_REQUESTS`] requests: the oldest is dropped first;
//! - at most [`KEEP_BYTES`] of replies and output in all: the oldest are dropped first;
//! - a request that ended more than [`KEEP_FOR`] ago is dropped;
//! - at most [`KEEP_OUTPUT`] of output per engine and stream; the rest is counted and replaced
//!   by a line saying how much was left out.
//!
//! What an engine printed or answered before its client went away was sent to that client and
//! is not kept; the kept request lists the engines that had not answered yet.

use std::collections::{BTreeMap, VecDeque};

use mpx_messages::{EngineId, EngineReply, Payload, StreamName, Ticket};

/// The most requests kept.
pub const KEEP_REQUESTS: usize = 1000;

/// The most bytes (replies' buffers and output) kept in all (64 MiB).
pub const KEEP_BYTES: usize = 64 << 20;

/// How long a request is kept after it ended (seconds).
pub const KEEP_FOR: f64 = 3600.0;

/// The most output kept per engine and stream of a request (1 MiB).
pub const KEEP_OUTPUT: usize = 1 << 20;

/// A request whose client went away.
#[derive(Debug)]
pub struct Orphan {
    /// The request's controller-wide id.
    pub id: Ticket,
    /// The engines that had not answered when its client went away, in id order.
    pub engines: Vec<EngineId>,
    /// Their answers so far, with their buffers.
    pub replies: Vec<(EngineReply, Vec<Payload>)>,
    /// Their output so far, by engine and stream, with the bytes left out.
    pub output: BTreeMap<(EngineId, StreamName), (String, usize)>,
    /// Bytes kept (buffers and output).
    bytes: usize,
    /// When the last engine answered (seconds since the Unix epoch).
    ended: Option<f64>,
}

impl Orphan {
    /// Whether every engine answered.
    pub fn is_done(&self) -> bool {
        self.replies.len() == self.engines.len()
    }
}

/// The kept requests, oldest first.
#[derive(Debug, Default)]
pub struct Retained {
    orphans: VecDeque<Orphan>,
    bytes: usize,
}

impl Retained {
    /// Keeps request `id`, whose client went away while `engines` had not answered.
    pub fn keep(&mut self, id: Ticket, engines: Vec<EngineId>, now: f64) {
        self.orphans.push_back(Orphan {
            id,
            engines,
            replies: Vec::new(),
            output: BTreeMap::new(),
            bytes: 0,
            ended: None,
        });
        self.trim(now);
    }

    /// Whether request `id` is kept.
    pub fn contains(&self, id: Ticket) -> bool {
        self.orphans.iter().any(|o| o.id == id)
    }

    fn get(&mut self, id: Ticket) -> Option<&mut Orphan> {
        self.orphans.iter_mut().find(|o| o.id == id)
    }

    /// Adds output an engine wrote for request `id` (dropped when it is not kept).
    pub fn output(&mut self, id: Ticket, engine: EngineId, stream: StreamName, text: &str, now: f64) {
        let Some(o) = self.get(id) else { return };
        let (kept, dropped) = o.output.entry((engine, stream)).or_default();
        let room = KEEP_OUTPUT.saturating_sub(kept.len());
        let at = if text.len() <= room {
            text.len()
        } else {
            mpx_messages::output::split_point(text, room).min(room)
        };
        kept.push_str(&text[..at]);
        *dropped += text.len() - at;
        o.bytes += at;
        self.bytes += at;
        self.trim(now);
    }

    /// Adds an engine's answer to request `id` (dropped when it is not kept).
    pub fn reply(&mut self, id: Ticket, reply: EngineReply, buffers: Vec<Payload>, now: f64) {
        let Some(o) = self.get(id) else { return };
        let n: usize = buffers.iter().map(Payload::len).sum();
        o.replies.push((reply, buffers));
        o.bytes += n;
        if o.is_done() {
            o.ended = Some(now);
        }
        self.bytes += n;
        self.trim(now);
    }

    /// Takes request `id` (it is given once).
    pub fn take(&mut self, id: Ticket) -> Option<Orphan> {
        let i = self.orphans.iter().position(|o| o.id == id)?;
        let o = self.orphans.remove(i)?;
        self.bytes -= o.bytes;
        Some(o)
    }

    /// Requests kept and their bytes.
    pub fn size(&self) -> (usize, usize) {
        (self.orphans.len(), self.bytes)
    }

    /// Drops what is over the bounds: requests ended more than [`KEEP_FOR`] ago, then the
    /// oldest while there are too many or they hold too much.
    pub fn trim(&mut self, now: f64) {
        let before = self.orphans.len();
        let mut freed = 0;
        self.orphans.retain(|o| {
            let stale = o.ended.is_some_and(|t| now - t > KEEP_FOR);
            if stale {
                freed += o.bytes;
            }
            !stale
        });
        self.bytes -= freed;
        while self.orphans.len() > KEEP_REQUESTS || (self.bytes > KEEP_BYTES && self.orphans.len() > 1) {
            let o = self.orphans.pop_front().expect("not empty");
            self.bytes -= o.bytes;
        }
        if self.orphans.len() < before {
            tracing::info!(
                dropped = before - self.orphans.len(),
                kept = self.orphans.len(),
                "kept results dropped"
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use mpx_messages::Outcome;

    use super::*;

    fn reply(id: u32) -> EngineReply {
        EngineReply {
            req_id: mpx_messages::RequestId(0),
            engine_id: EngineId(id),
            outcome: Outcome::default(),
        }
    }

    #[test]
    fn a_kept_request_collects_replies_and_output_and_is_given_once() {
        let mut r = Retained::default();
        r.keep(Ticket(7), vec![EngineId(0), EngineId(1)], 0.0);
        r.output(Ticket(7), EngineId(1), StreamName::Stdout, "late\n", 1.0);
        r.output(Ticket(8), EngineId(1), StreamName::Stdout, "not kept\n", 1.0);
        r.reply(Ticket(7), reply(1), vec![Payload::new(bytes::Bytes::from_static(b"abc"))], 1.0);
        assert_eq!(r.size(), (1, 8));
        let o = r.take(Ticket(7)).expect("kept");
        assert!(!o.is_done());
        assert_eq!(o.output[&(EngineId(1), StreamName::Stdout)], ("late\n".to_string(), 0));
        assert!(r.take(Ticket(7)).is_none(), "given once");
        assert_eq!(r.size(), (0, 0));
    }

    #[test]
    fn output_is_capped_per_engine_and_stream() {
        let mut r = Retained::default();
        r.keep(Ticket(1), vec![EngineId(0)], 0.0);
        r.output(Ticket(1), EngineId(0), StreamName::Stdout, &"x".repeat(KEEP_OUTPUT - 2), 0.0);
        r.output(Ticket(1), EngineId(0), StreamName::Stdout, "abcd", 0.0);
        let o = r.take(Ticket(1)).expect("kept");
        let (text, dropped) = &o.output[&(EngineId(0), StreamName::Stdout)];
        assert_eq!((text.len(), *dropped), (KEEP_OUTPUT, 2));
    }

    #[test]
    fn the_oldest_go_first_over_the_count_bytes_and_age_bounds() {
        let mut r = Retained::default();
        for id in 0..KEEP_REQUESTS as u64 + 5 {
            r.keep(Ticket(id), vec![EngineId(0)], 0.0);
        }
        assert_eq!(r.size().0, KEEP_REQUESTS);
        assert!(!r.contains(Ticket(4)) && r.contains(Ticket(5)));
        let mut r = Retained::default();
        let mb = || vec![Payload::new(bytes::Bytes::from(vec![0u8; 1 << 20]))];
        for id in 0..70 {
            r.keep(Ticket(id), vec![EngineId(0)], 0.0);
            r.reply(Ticket(id), reply(0), mb(), 0.0);
        }
        assert_eq!(r.size(), (64, 64 << 20));
        assert!(!r.contains(Ticket(5)) && r.contains(Ticket(6)));
        // Ended requests older than an hour go; running ones stay.
        r.keep(Ticket(100), vec![EngineId(0)], 10.0);
        r.trim(KEEP_FOR + 1.0);
        assert_eq!(r.size(), (1, 0));
        assert!(r.contains(Ticket(100)));
    }
}
