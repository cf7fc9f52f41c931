//! The mpx engine: one MPI rank that runs cells for the controller.
//!
//! # Threads
//! - **MPI thread** (the main thread): initialises MPI, owns the communicators and the cell
//!   interpreter, and serves the job channel until told to exit; then finalizes MPI.
//! - **Control thread**: runs an actix System with the [`control::Control`] actor (connection to
//!   the controller). It never calls MPI, so it answers even while the MPI thread blocks.
//!
//! A panic anywhere calls `MPI_Abort`: an unwinding panic on one rank would otherwise leave the
//! others waiting in a collective forever.
//!
//! # Layout
//! - [`control`]: the control actor and the job channel.
//! - [`data`]: push/pull/scatter/gather over MPI collectives.
//! - [`mpi_comm`]: `Collectives` over MPI for the cells.
//! - [`state`]: what the engine is doing, for `mpx where`.
//! - [`worker`]: the MPI thread's job loop.
#![deny(missing_docs)]

pub mod control;
pub mod data;
pub mod mpi_comm;
pub mod state;
pub mod worker;

pub use mpx_cells::{self as cells, ArrayValue, Registry};
pub use worker::{main_with, EngineError, EngineOptions};
