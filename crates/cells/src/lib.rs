//! The mpx cell language: [rhai](https://rhai.rs) with n-d arrays and MPI-style collectives.
//!
//! An engine owns one [`Interpreter`] per MPI rank. Each `%px` cell is run by
//! [`Interpreter::execute`] in a persistent scope: variables and `fn` definitions of one cell are
//! visible in the next. Cells talk to the other ranks only through the [`Collectives`] trait,
//! which the engine implements over MPI and [`local::LocalWorld`] implements over threads.
//!
//! ```
//! use std::sync::{atomic::AtomicBool, Arc};
//! use mpx_cells::{local::LocalWorld, Interpreter, Registry};
//!
//! let comm = LocalWorld::new(1).pop().expect("one rank");
//! let mut interp = Interpreter::new(Box::new(comm), Registry::new(), Arc::new(AtomicBool::new(false)));
//! interp.execute("let a = linspace(0, 1, 5); fn twice(x) { x * 2 }");
//! let out = interp.execute("sum(twice(a))");
//! assert_eq!(out.value.as_deref(), Some("5.0"));
//! ```
//!
//! # Threads
//!
//! An `Interpreter` is not `Send`: create it on the thread that runs cells (the thread that owns
//! the communicator). Only the `interrupt` flag is shared, with whichever thread stops cells.
//!
//! # Layout
//!
//! - [`interpreter`]: `Interpreter`, `CellOutcome`, scope persistence and compaction.
//! - [`array`](mod@array): `ArrayValue`, the copy-on-write typed n-d array (`ndarray` in cells), and display.
//! - [`ops`]: element-wise arithmetic with broadcasting, maps and reductions.
//! - [`builtins`]: array functions registered on rhai (`rand`, `zeros`, `sum`, indexing, ...).
//! - [`collectives`]: cell-facing `allreduce`, `reduce`, `bcast`, `allgather`, `send`, `recv`.
//! - [`encode`]: the binary encoding of values sent between ranks.
//! - [`comm`]: the `Collectives` trait the engine implements.
//! - [`local`]: an in-process `Collectives` world for tests.
//! - [`registry`]: native Rust functions made callable from cells.
//! - [`error`]: `CellError` and the mapping of rhai errors.
#![deny(missing_docs)]

pub mod array;
pub mod builtins;
pub mod collectives;
pub mod comm;
pub mod encode;
pub mod error;
pub mod interpreter;
pub mod local;
pub mod ops;
pub mod raw;
pub mod registry;

pub use array::{ArrayValue, DType};
pub use comm::{Collectives, CommError, ReduceOp};
pub use error::CellError;
pub use interpreter::{CellOutcome, Interpreter};
pub use registry::Registry;
pub use rhai;
