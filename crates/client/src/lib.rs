//! The mpx client library: connect to a cluster, run code on engines, collect results. It
//! depends only on `mpx-messages` (the `mpx` command is the `mpx-cli` crate).
//!
//! # Layout
//! - [`client`]: [`Client`], the connection to a controller.
//! - [`view`]: [`View`], a set of target engines, and what runs on them.
//! - [`balanced`]: [`BalancedView`], load-balanced tasks: each runs on one free engine.
//! - [`result`]: [`AsyncResult`], one request's per-engine results, waited for with timeouts.
//! - [`returned`]: [`ReturnedData`], what an apply's function returned out of band.
//! - [`npy`]: `.npy` files of every dtype, for the CLI's data commands.
//! - [`display`]: ipyparallel-style rendering (`[stdout:0] ...`, `Out[0]: ...`, `[2:error] ...`).
//! - [`collapse`]: identical output of several engines shown once (`[stdout:0-3] ...`), also
//!   while it streams in.
//! - [`output`]: what engines print, as it arrives ([`OutputStream`]) or joined into the results.
//!
//! # Examples
//! ```no_run
//! use std::time::Duration;
//! let client = mpx_client::Client::connect("default")?;
//! let results = client.view(mpx_client::Targets::All).execute_sync("rank * 2", Duration::from_secs(10))?;
//! for r in results {
//!     println!("{}: {:?}", r.engine_id, r.outcome.value);
//! }
//! # Ok::<(), mpx_client::ClientError>(())
//! ```
#![deny(missing_docs)]

pub mod balanced;
pub mod client;
pub mod collapse;
mod connect;
pub mod display;
pub mod export;
mod incoming;
pub mod npy;
pub mod output;
mod reader;
pub mod replay;
pub mod result;
pub mod returned;
mod session;
mod shm;
pub mod socket;
pub mod view;

pub use balanced::{wait_any, BalancedView, MapItem, MapIter, MapOptions, TaskHandle, TaskResult, Work};
pub use client::Client;
pub use mpx_messages::{
    ArrayError, Dtype, EngineId, EngineOutput, EngineState, MpxError, Outcome, Rank, RawArray, RemoteError,
    Request, StreamName, Targets,
};
pub use output::OutputStream;
pub use result::{AsyncResult, EngineResult};
pub use returned::ReturnedData;
pub use shm::SharedPushError;
pub use view::{ApplyArg, View};

use thiserror::Error;

/// Why a client call failed.
#[derive(Debug, Error)]
pub enum ClientError {
    /// No such cluster / connection file problem.
    #[error("{0}")]
    NotFound(String),
    /// The TCP connection could not be made. (The cause is part of the message and not a
    /// `source`, so that error chains do not say it twice.)
    #[error("cannot connect to the controller at {address}: {cause}")]
    Connect {
        /// Address tried.
        address: String,
        /// Cause.
        cause: std::io::Error,
    },
    /// The controller refused our signature.
    #[error(
        "authentication failed: the controller rejected this client's key (wrong or stale connection file?)"
    )]
    Rejected,
    /// The connection ended.
    #[error("connection to the controller lost: {0}")]
    Closed(String),
    /// The wait ran out; the request goes on and can be waited for again.
    #[error("timed out after {0:?} (the request is still running; wait again to get it)")]
    Timeout(std::time::Duration),
    /// The controller refused the request.
    #[error("request refused by the controller: {0}")]
    Refused(MpxError),
    /// An engine died (killed, crashed, exited); `cause` is what mpirun reported (signal or
    /// exit code). Its MPI world was torn down (or restarted) after it.
    #[error("engine {engine} died: {cause}")]
    EngineDied {
        /// The engine.
        engine: EngineId,
        /// Its rank in its MPI world.
        rank: Rank,
        /// How it died.
        cause: String,
    },
    /// One or more engines reported an error.
    #[error("{}", .0.iter().map(|(id, e)| format!("[{id}:{}] {}", e.ename(), e.evalue())).collect::<Vec<_>>().join("; "))]
    Remote(Vec<(EngineId, MpxError)>),
    /// A load-balanced task that no engine ran failed ([`MpxError::NoEngines`]: none to run it;
    /// [`MpxError::Refused`]: not a kind of task that runs on one engine).
    #[error("the task ran on no engine: {0}")]
    NotRun(MpxError),
    /// An `.npy` file that cannot be used (malformed, unsupported dtype, unwritable).
    #[error("{path}: {cause}")]
    Npy {
        /// The file.
        path: String,
        /// Why (part of the message, not a `source`: error chains say it once).
        cause: npy::NpyError,
    },
    /// A shared push (one read-only copy for the host's engines) cannot be made: it needs
    /// the same-host path (this client and every target on the controller's host, memfds), and
    /// it never becomes a copy per engine instead.
    #[error("cannot push shared: {0}; a shared push maps one memfd on the controller's host")]
    NotShared(#[from] shm::SharedPushError),
    /// Framing or encoding failure.
    #[error(transparent)]
    Codec(#[from] mpx_messages::CodecError),
}
