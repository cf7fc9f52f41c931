//! How engines are started: one trait, one implementation per system.
//!
//! A launcher starts a job of N engines that connect back with the connection file, reports
//! when that job ends by itself, and stops it (with a grace period, then by force).
//!
//! - [`local`]: mpirun on this machine, in its own process group.
//! - [`slurm`] and [`pbs`]: one batch job (script from a [`template`]), through [`batch`].
//! - [`external`]: nothing; engines are started by hand (`mpx controller start`).

use std::{
    collections::VecDeque,
    path::Path,
    sync::{Arc, Mutex},
    time::Duration,
};

use futures::future::LocalBoxFuture;
use tokio::io::{AsyncBufReadExt, AsyncRead, BufReader};
use tracing::info;

use crate::ClusterError;

pub mod batch;
pub mod command;
pub mod external;
pub mod local;
pub mod pbs;
pub mod slurm;
pub mod template;

pub use batch::{BatchLauncher, BatchOptions};
pub use external::ExternalEngines;
pub use local::LocalLauncher;
pub use pbs::PbsLauncher;
pub use slurm::SlurmLauncher;

/// How many lines of a job's output are kept for error messages.
pub const OUTPUT_LINES: usize = 40;

/// Starts and stops one job of engines.
pub trait Launcher {
    /// Starts `n` engines that connect using `connection_file`.
    ///
    /// # Errors
    /// [`ClusterError::MpirunFailed`] (or similar) if the job cannot be started.
    fn start(&mut self, n: u32, connection_file: &Path) -> Result<(), ClusterError>;

    /// Resolves when the job ends by itself, with a description of how it ended.
    fn wait(&mut self) -> LocalBoxFuture<'_, String>;

    /// Stops the job: a grace period to end on its own, then SIGTERM, then SIGKILL (or the batch
    /// system's equivalent). Resolves when everything it started is gone.
    fn stop(&mut self, grace: Duration) -> LocalBoxFuture<'_, ()>;

    /// The last lines the job printed (for error messages).
    fn output(&self) -> String;

    /// Process id of the launching process (mpirun), if there is one on this machine.
    fn pid(&self) -> Option<u32>;
}

/// The tail of a job's output, filled by reader tasks.
#[derive(Clone, Default, Debug)]
pub struct OutputTail(Arc<Mutex<VecDeque<String>>>);

impl OutputTail {
    /// Reads `pipe` line by line into the tail (and the log) until it closes.
    pub fn collect(&self, pipe: impl AsyncRead + Unpin + 'static, source: &'static str) {
        let tail = self.clone();
        actix::spawn(async move {
            let mut lines = BufReader::new(pipe).lines();
            while let Ok(Some(line)) = lines.next_line().await {
                info!(target: "mpx::job", source, "{line}");
                tail.push(line);
            }
        });
    }

    /// Adds a line.
    pub fn push(&self, line: String) {
        let mut buf = self.0.lock().expect("output lock");
        if buf.len() == OUTPUT_LINES {
            buf.pop_front();
        }
        buf.push_back(line);
    }

    /// The kept lines.
    pub fn text(&self) -> String {
        self.0.lock().expect("output lock").iter().cloned().collect::<Vec<_>>().join("\n")
    }
}

/// Describes how a process ended.
pub fn describe_status(what: &str, status: Option<std::process::ExitStatus>) -> String {
    use std::os::unix::process::ExitStatusExt;
    match status {
        Some(s) => match (s.code(), s.signal()) {
            (Some(code), _) => format!("{what} exited with code {code}"),
            (_, Some(sig)) => format!("{what} was killed by signal {sig}"),
            _ => format!("{what} ended"),
        },
        None => format!("{what} ended (status unknown)"),
    }
}
