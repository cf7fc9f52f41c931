//! The mpx engine: one MPI rank that runs cells for the controller.
//!
//! # Threads
//! - **MPI thread** (the main thread): initialises MPI, owns the communicators and the kernel
//!   (embedded CPython or rhai), and serves the job channel until told to exit; then
//!   finalizes MPI.
//! - **Control thread** (`mpx-control`): runs an actix System with the [`control::Control`]
//!   actor (connection to the controller). It never calls MPI, so it answers even while the MPI
//!   thread blocks.
//! - **Probe thread** (`mpx-probe`, Python kernel): reads the main thread's Python stack for
//!   `mpx where` and for blocked-call reports ([`control::Prober`]); it may wait for the GIL,
//!   which the control thread must never do. It never calls MPI.
//! - **Exit watchdog** (`mpx-exit-watchdog`): started when the engine is told to leave; if the
//!   MPI thread has not left its job loop within [`control::EXIT_GRACE`] (stuck in a call another
//!   rank never joins), it ends the process, and mpirun the rest of the job. It never calls MPI.
//!
//! MPI is initialised at `MPI_THREAD_MULTIPLE`, and the engine refuses to start
//! ([`EngineError::ThreadLevel`]) when the library grants less: cells' own threads and native
//! functions may call MPI beside the MPI thread, and the panic hook's `MPI_Abort` may run on any
//! thread; the SAFETY notes rely on it.
//!
//! A panic anywhere calls `MPI_Abort`: an unwinding panic on one rank would otherwise leave the
//! others waiting in a collective forever.
//!
//! # Layout
//! - [`args`]: [`EngineArgs`], the command line of an engine binary.
//! - [`control`]: the control actor and the job channel.
//! - [`data`]: push/pull/scatter/gather over MPI collectives.
//! - [`intercept`]: MPI calls of cells, noted for `mpx where`.
//! - [`kernel`]: the `Kernel` interface and its two kernels, Python and rhai.
//! - [`log`]: the engine's own log file.
//! - [`registry`]: native Rust functions for cells of both kernels.
//! - [`shm`]: the same-host path: arrays in sealed memfds instead of frame buffers.
//! - [`output`]: what running cells write, on its way to the controller while they run.
//! - [`mpi_comm`]: `Collectives` over MPI for the cells.
//! - [`state`]: what the engine is doing, for `mpx where`.
//! - [`stream`]: arrays streamed in chunks (push/scatter in, pull/gather out).
//! - [`task`]: one task on the MPI thread, with the bytes and descriptors it takes and gives.
//! - [`threads`]: BLAS/OpenMP thread counts that share the host among its engines.
//! - [`writer`]: the control thread's frames to the controller.
//! - [`worker`]: the MPI thread's job loop.
#![deny(missing_docs)]

pub mod args;
pub mod control;
pub mod data;
pub mod intercept;
pub mod kernel;
pub mod landing;
pub mod lend;
pub mod log;
pub mod mpi_comm;
pub mod output;
pub mod registry;
pub mod shm;
pub mod siblings;
pub mod state;
pub mod stream;
pub mod task;
pub mod threads;
pub mod worker;
pub mod writer;

pub use args::{run_command, EngineArgs};
pub use mpx_cells::{self as cells, ArrayValue};
pub use mpx_messages::Kernel;
pub use registry::Registry;
pub use worker::{main_with, EngineError, EngineOptions};
pub use {numpy, pyo3};
