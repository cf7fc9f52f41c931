//! The mpx controller: registers engines, routes work from clients to engines and results back,
//! and runs whole clusters (controller + engines under mpirun).
//!
//! # Layout
//! - [`world`]: the pure core: engines and sets, pending requests, load-balanced tasks and
//!   their scheduler ([`world::scheduler`]), `where` polls, deaths, teardowns and restarts;
//!   events in, commands out (no actors, sockets or clocks).
//! - [`hub`]: the `Hub` actor, which feeds the core and carries out its commands (the only
//!   writer to connections).
//! - [`engine_conn`]: the `EngineConn` actor, one per engine connection.
//! - [`client_session`]: the `ClientSession` actor, one per client connection.
//! - [`plan`]: which engine gets which part of a task (pure).
//! - [`listener`]: the accept loop and the first-frame handshake.
//! - [`writer`]: writes a connection's frames, payloads straight from their memory; its
//!   [`Link`](writer::Link)s give streams back-pressure.
//! - [`forward`]: the routes of streamed arrays' chunks through the controller.
//! - [`address`]: which address a controller binds and which it advertises.
//! - [`cluster`]: start a controller, launch engines, tear everything down.
//! - [`reap`]: make sure engine processes on this host end (SIGKILL after a grace period).
//! - [`launcher`]: how engines are started (`local`: mpirun; `slurm`, `pbs`: batch jobs; none).
//! - [`files`]: connection files under `$MPX_HOME`.
//! - [`ClusterError`] (`error.rs`): why a cluster could not be started or reached.
//!
//! No file imports another in a circle, and none imports this one (it only declares and
//! re-exports):
//! `tests/no_import_cycles.rs` checks it.
#![deny(missing_docs)]

pub mod address;
pub mod client_session;
pub mod cluster;
pub mod engine_conn;
mod error;
pub mod files;
pub mod forward;
pub mod hub;
pub mod launcher;
pub mod listener;
pub mod peer;
pub mod plan;
pub mod reap;
pub mod world;
pub mod writer;

pub use error::ClusterError;

pub use cluster::{run_cluster, start_controller, ClusterOptions, Ready, StopReason};
pub use launcher::{ExternalEngines, Kernel, Launcher, LocalLauncher, PbsLauncher, SlurmLauncher};
