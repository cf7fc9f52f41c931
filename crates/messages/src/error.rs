//! Errors as they cross the wire: [`MpxError`] says what failed (a cell, an engine's death, its
//! world going down, a refusal, a payload or stream the protocol refused), intact from the side
//! that knows to the client, which matches on it; [`RemoteError`] is an error raised by a cell
//! on an engine (ipyparallel's `wrap_exception`).
//!
//! On the wire an `MpxError` is tagged adjacently, e.g.
//! `{"kind": "EngineDied", "detail": {"engine": 2, "rank": 2, "cause": "killed by signal 9"}}`.

use std::fmt;

use serde::{Deserialize, Serialize};

use crate::{EngineId, Rank};

/// An error raised on an engine by a cell or the engine's handling of a task.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RemoteError {
    /// Error class, e.g. `RuntimeError`, `ParseError`, `KeyboardInterrupt`.
    pub ename: String,
    /// Human-readable message.
    pub evalue: String,
    /// 1-based line of the cell where it happened, when known.
    pub line: Option<usize>,
    /// The kernel's traceback (Python: the `File "<cell-N>", line L, in f` lines with their
    /// source), empty when the kernel has none.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub traceback: String,
}

impl RemoteError {
    /// An error without a line or traceback.
    pub fn new(ename: impl Into<String>, evalue: impl Into<String>) -> Self {
        RemoteError { ename: ename.into(), evalue: evalue.into(), line: None, traceback: String::new() }
    }
}

/// Why a request (or one engine's part of it) failed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", content = "detail")]
pub enum MpxError {
    /// The cell raised an error; the engine goes on.
    Cell(RemoteError),
    /// A payload failed authentication at its final receiver (an engine, or the client): its
    /// MAC does not match its bytes, or its binding puts it out of its place (another request's
    /// bytes, a chunk sent again). Nothing was bound to it; the engine goes on.
    Authentication {
        /// What was refused, and why.
        reason: String,
    },
    /// A streamed array broke off: a chunk that does not continue it, none in time, or the
    /// connection lost mid-stream. Nothing was bound; the engine goes on.
    Stream {
        /// What broke, and where.
        reason: String,
    },
    /// An authentic reply that cannot be read: its array does not match its description.
    Decode {
        /// What does not match.
        reason: String,
    },
    /// The engine died during the request (killed, crashed, exited, silent); its world was torn
    /// down after it.
    EngineDied {
        /// The engine.
        engine: EngineId,
        /// Its rank in its world.
        rank: Rank,
        /// How it died (mpirun's report: signal or exit code), and what became of its world.
        cause: String,
    },
    /// The engine's world went down while it ran the request (another rank died, a client
    /// aborted, the job ended); the engine was told to stop.
    WorldDown {
        /// What happened, and what becomes of the world (stopped, restarted).
        reason: String,
    },
    /// No such engine is registered.
    NoSuchEngine {
        /// The engine asked for.
        engine: EngineId,
        /// The engines registered.
        registered: Vec<EngineId>,
    },
    /// None of the targeted engines is registered (or up).
    NoEngines {
        /// Which engines were asked for.
        reason: String,
    },
    /// The controller refused the request (targets spanning sets for a
    /// collective, an array that does not fit its description, ...).
    Refused {
        /// Why.
        reason: String,
    },
}

impl MpxError {
    /// A refusal.
    pub fn refused(reason: impl Into<String>) -> Self {
        MpxError::Refused { reason: reason.into() }
    }

    /// A payload refused for its MAC or binding ([`MpxError::Authentication`]).
    pub fn authentication(reason: impl Into<String>) -> Self {
        MpxError::Authentication { reason: reason.into() }
    }

    /// A stream that broke off ([`MpxError::Stream`]).
    pub fn stream(reason: impl Into<String>) -> Self {
        MpxError::Stream { reason: reason.into() }
    }

    /// A reply that cannot be read ([`MpxError::Decode`]).
    pub fn decode(reason: impl Into<String>) -> Self {
        MpxError::Decode { reason: reason.into() }
    }

    /// The error's class: the cell's `ename`, or the variant's name (`AuthenticationError`,
    /// `StreamError` and `DecodeError` for the protocol's, as Python names its errors).
    pub fn ename(&self) -> &str {
        match self {
            MpxError::Cell(e) => &e.ename,
            MpxError::Authentication { .. } => "AuthenticationError",
            MpxError::Stream { .. } => "StreamError",
            MpxError::Decode { .. } => "DecodeError",
            MpxError::EngineDied { .. } => "EngineDied",
            MpxError::WorldDown { .. } => "WorldDown",
            MpxError::NoSuchEngine { .. } => "NoSuchEngine",
            MpxError::NoEngines { .. } => "NoEngines",
            MpxError::Refused { .. } => "Refused",
        }
    }

    /// The error's message (without its class).
    pub fn evalue(&self) -> String {
        match self {
            MpxError::Cell(e) => e.evalue.clone(),
            MpxError::EngineDied { engine, cause, .. } => format!("engine {engine} died: {cause}"),
            MpxError::WorldDown { reason }
            | MpxError::Refused { reason }
            | MpxError::NoEngines { reason }
            | MpxError::Authentication { reason }
            | MpxError::Stream { reason }
            | MpxError::Decode { reason } => reason.clone(),
            MpxError::NoSuchEngine { engine, registered } => {
                let ids: Vec<u32> = registered.iter().map(|e| e.0).collect();
                format!("no engine {engine} (registered: {ids:?})")
            }
        }
    }

    /// The cell's line, when known.
    pub fn line(&self) -> Option<usize> {
        match self {
            MpxError::Cell(e) => e.line,
            _ => None,
        }
    }

    /// The cell's traceback (empty for the other kinds).
    pub fn traceback(&self) -> &str {
        match self {
            MpxError::Cell(e) => &e.traceback,
            _ => "",
        }
    }
}

impl fmt::Display for MpxError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            // A refusal reads as its reason (callers say "refused").
            MpxError::Refused { reason } | MpxError::NoEngines { reason } => f.write_str(reason),
            MpxError::NoSuchEngine { .. } => f.write_str(&self.evalue()),
            _ => write!(f, "{}: {}", self.ename(), self.evalue()),
        }
    }
}

impl std::error::Error for MpxError {}

impl From<RemoteError> for MpxError {
    fn from(e: RemoteError) -> Self {
        MpxError::Cell(e)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_kind_round_trips_as_json_and_reads_as_before() {
        let died =
            MpxError::EngineDied { engine: EngineId(3), rank: Rank(1), cause: "killed by signal 9".into() };
        let json = serde_json::to_string(&died).unwrap();
        assert_eq!(
            json,
            r#"{"kind":"EngineDied","detail":{"engine":3,"rank":1,"cause":"killed by signal 9"}}"#
        );
        assert_eq!(died.to_string(), "EngineDied: engine 3 died: killed by signal 9");
        let kinds = [
            died,
            MpxError::Cell(RemoteError { line: Some(2), ..RemoteError::new("NameError", "x") }),
            MpxError::WorldDown { reason: "aborted".into() },
            MpxError::NoSuchEngine { engine: EngineId(9), registered: vec![EngineId(0)] },
            MpxError::refused("the targets span several engine sets"),
            MpxError::NoEngines { reason: "no engines are registered".into() },
            MpxError::authentication("refused the chunk at byte 0: it is not the next chunk"),
            MpxError::stream("no piece was sent within 30 s"),
            MpxError::decode("bad array reply: 8 bytes for 2 x f64"),
        ];
        for e in kinds {
            let back: MpxError = serde_json::from_str(&serde_json::to_string(&e).unwrap()).unwrap();
            assert_eq!(back, e);
        }
        let missing =
            MpxError::NoSuchEngine { engine: EngineId(9), registered: vec![EngineId(0), EngineId(1)] };
        assert_eq!(missing.to_string(), "no engine 9 (registered: [0, 1])");
        // The protocol's failures read as before, when they travelled as cell errors.
        let refused = MpxError::authentication("the payload was altered");
        assert_eq!(
            serde_json::to_string(&refused).unwrap(),
            r#"{"kind":"Authentication","detail":{"reason":"the payload was altered"}}"#
        );
        assert_eq!(refused.to_string(), "AuthenticationError: the payload was altered");
        assert_eq!(MpxError::stream("lost").to_string(), "StreamError: lost");
        assert_eq!(MpxError::decode("bad").to_string(), "DecodeError: bad");
    }
}
