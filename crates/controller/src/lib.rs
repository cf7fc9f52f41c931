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
#![deny(missing_docs)]

use std::{path::PathBuf, time::Duration};

use thiserror::Error;

pub mod address;
pub mod client_session;
pub mod cluster;
pub mod engine_conn;
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

pub use cluster::{run_cluster, start_controller, ClusterOptions, Ready, StopReason};
pub use launcher::{ExternalEngines, Kernel, Launcher, LocalLauncher, PbsLauncher, SlurmLauncher};

/// Why a cluster could not be started or reached.
#[derive(Debug, Error)]
pub enum ClusterError {
    /// mpirun could not be run or ended before the engines were ready.
    #[error("{status}; its output:\n{output}")]
    MpirunFailed {
        /// Exit status or spawn error.
        status: String,
        /// The last lines mpirun printed.
        output: String,
    },
    /// The batch system refused the job (or its submit command failed).
    #[error("could not submit the engines' job: {command}: {why}")]
    SubmitFailed {
        /// The command run.
        command: String,
        /// What went wrong.
        why: String,
    },
    /// A job script template cannot work.
    #[error("bad job script template: {0}")]
    BadTemplate(String),
    /// Not every engine registered in time.
    #[error("the {n} engines did not all register within {after:?}; their job's output:\n{output}")]
    Timeout {
        /// Engines expected.
        n: u32,
        /// The timeout.
        after: Duration,
        /// The last lines mpirun printed.
        output: String,
    },
    /// A signal arrived during the start.
    #[error("interrupted by {0} while starting")]
    Interrupted(&'static str),
    /// A controller with this id is running already.
    #[error("a cluster with id {0:?} is already running or starting (mpx cluster stop --cluster-id {0})")]
    AlreadyRunning(String),
    /// The connection file is missing, unsafe or invalid.
    #[error("connection file {path}: {why}")]
    BadConnectionFile {
        /// Its path.
        path: PathBuf,
        /// What is wrong.
        why: String,
    },
    /// The address to listen on or to advertise cannot work (`--ip`, `--interface`).
    #[error("{0}")]
    Address(String),
    /// I/O error.
    #[error("i/o: {0}")]
    Io(#[from] std::io::Error),
}

impl From<mpx_messages::connection::ConnectionFileError> for ClusterError {
    fn from(e: mpx_messages::connection::ConnectionFileError) -> Self {
        use mpx_messages::connection::ConnectionFileError as E;
        match e {
            E::Bad { path, why } => ClusterError::BadConnectionFile { path, why },
            E::Io(e) => ClusterError::Io(e),
        }
    }
}
