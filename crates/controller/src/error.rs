//! [`ClusterError`]: why a cluster could not be started or reached. It lives in a file of its
//! own, which imports nothing from the crate, so that every file can name it without importing
//! `lib.rs` (the crate root re-exports it, and `cluster` and `launcher`).

use std::{path::PathBuf, time::Duration};

use thiserror::Error;

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
