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
//! - [`output`]: what engines print, as it arrives ([`OutputStream`]) or joined into the results,
//!   and when a request's output is held to be shown in engine order or streams ([`output::Hold`]).
//! - [`printer`]: [`printer::CellPrinter`], what the CLI and the console print while a request
//!   runs and when it ends.
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
mod error;
pub mod export;
mod incoming;
mod lend;
pub mod npy;
pub mod output;
pub mod printer;
mod reader;
pub mod replay;
mod reply;
pub mod result;
pub mod returned;
mod session;
mod shm;
pub mod socket;
mod state;
mod submit;
#[cfg(test)]
mod testing;
pub mod view;

pub use balanced::{wait_any, BalancedView, MapItem, MapIter, MapOptions, TaskHandle, TaskResult, Work};
pub use client::Client;
pub use error::{ClientError, SharedPushError};
pub use mpx_messages::{
    ArrayError, Dtype, EngineId, EngineOutput, EngineState, MpxError, Outcome, Rank, RawArray, RemoteError,
    Request, StreamName, Targets,
};
pub use output::OutputStream;
pub use result::{AsyncResult, EngineResult};
pub use returned::ReturnedData;
pub use view::{ApplyArg, View};
