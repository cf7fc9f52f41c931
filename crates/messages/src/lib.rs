//! Wire types and the frame codec shared by the mpx controller, engines and clients.
//!
//! # Layout
//! - [`wire`]: the messages of each channel (engine ⇄ controller, client ⇄ controller), and
//!   which name a request and its result have on each hop.
//! - [`work`]: the work: a client's [`Request`], an engine's [`Task`].
//! - [`ids`]: [`EngineId`] and [`Rank`], never mixed; [`Targets`]; the numbered ids
//!   ([`SetId`], [`RequestId`], [`TaskId`], [`Ticket`], [`PollId`]), plain numbers on the wire.
//! - [`error`]: [`MpxError`], errors that cross the wire intact; [`RemoteError`], a cell's.
//! - [`output`]: output while it happens (stdout/stderr pieces of running tasks).
//! - [`tasks`]: the messages of load-balanced tasks (client ⇄ controller).
//! - [`dtype`]: [`Dtype`], the element type of arrays (numpy's numeric dtypes).
//! - [`array`](mod@array): [`RawArray`], an array of any dtype as its checked little-endian bytes.
//! - [`codec`]: the authenticated wire: a handshake binding each connection to fresh nonces,
//!   then frames with keyed BLAKE3 over a sequence-numbered JSON header (per hop) and over each
//!   raw byte buffer (once, end to end).
//! - [`connection`]: the JSON connection file (address, key, cluster id).
//!
//! A connection opens with a three-message handshake (hello, challenge, proof) that proves both
//! sides hold the cluster key and derives the session's header keys from it and both sides'
//! nonces. Frame layout (inside a 4-byte big-endian length prefix):
//! `header MAC[32] | seq: u64 LE | header_len: u32 LE | header (JSON) | n_buffers: u32 LE |
//! n × (len: u64 LE | origin: u64 LE | index: u64 LE | payload MAC[32]) | buffers`. The header
//! MAC covers the head (up to the payload MACs) under the session's key, and is checked, with
//! the sequence number, before anything is interpreted; each payload MAC covers one buffer and
//! its binding and is checked by the final receiver. See [`codec`] for the details and why
//! recorded frames and payloads are refused.
#![deny(missing_docs)]

pub mod array;
pub mod codec;
pub mod connection;
pub mod dtype;
pub mod error;
pub mod history;
pub mod ids;
pub mod kernel;
pub mod memfd;
pub mod output;
pub mod stuck;
pub mod tasks;
pub mod wire;
pub mod work;

pub use array::{ArrayError, RawArray};
pub use codec::{Binding, CodecError, Fds, Frame, Key, Payload, Refused, Session, Verify, DEFAULT_MAX_FRAME};
#[cfg(feature = "tokio")]
pub use codec::{FrameCodec, Outbound};
pub use connection::ConnectionInfo;
pub use history::{DataSource, EngineOutcome, HistoryEntry, HistoryItem, SessionHistory};
pub use kernel::Kernel;
pub use output::{EngineOutput, StreamName, TaskOutput, OUTPUT_CHUNK};
pub use stuck::{Abandoned, Blocked, BlockedRank, LeftRank, Stuck};
pub use tasks::{BalancedRequest, BalancedResult, BalancedTask};
pub use wire::*;
