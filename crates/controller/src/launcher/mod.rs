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
pub mod program;
pub mod slurm;
pub mod template;

pub use batch::{BatchLauncher, BatchOptions};
pub use external::ExternalEngines;
pub use local::{mpirun_command, LocalLauncher};
pub use pbs::PbsLauncher;
pub use program::EngineProgram;
pub use slurm::SlurmLauncher;

pub use mpx_messages::Kernel;
use mpx_messages::Rank;

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

    /// The batch queue and time limit of the job, for a batch launcher.
    fn batch(&self) -> Option<mpx_messages::BatchSettings> {
        None
    }

    /// How engine `rank` died, as the job's launcher reported it (signal or exit code), once
    /// the job has ended.
    fn explain(&self, rank: Rank) -> Option<String> {
        explain_death(rank, &self.output())
    }
}

/// Reads mpirun's report of a dead rank: "exited on signal 9 (Killed)" or, for a non-zero exit,
/// the `Process name: [[job,1],RANK] ... Exit code: N` block.
pub fn explain_death(rank: Rank, output: &str) -> Option<String> {
    let noticed = format!("process rank {rank} with PID");
    for line in output.lines() {
        if let Some(at) = line.find(&noticed) {
            let rest = &line[at..];
            if let Some(sig) = rest.find("exited on signal") {
                let what = rest[sig + "exited on signal".len()..].trim().trim_end_matches('.');
                return Some(format!("killed by signal {what}"));
            }
        }
    }
    let mut lines = output.lines().peekable();
    let suffix = format!(",{rank}]");
    while let Some(line) = lines.next() {
        let line = line.trim();
        if line.starts_with("Process name:") && line.ends_with(&suffix) {
            for next in lines.by_ref().take(3) {
                if let Some(code) = next.trim().strip_prefix("Exit code:") {
                    return Some(format!("exited with code {}", code.trim()));
                }
            }
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::{explain_death, Kernel, Rank};

    #[test]
    fn kernel_names_round_trip() {
        for k in Kernel::ALL {
            assert_eq!(k.name().parse::<Kernel>(), Ok(k));
        }
        assert_eq!(Kernel::default(), Kernel::Python);
        let err = "julia".parse::<Kernel>().unwrap_err();
        assert!(err.contains("julia") && err.contains("python, rhai"), "{err}");
    }

    #[test]
    fn reads_mpiruns_reports() {
        let killed = "--------\nmpirun noticed that process rank 2 with PID 4242 on node vm exited on signal 9 (Killed).\n---";
        assert_eq!(explain_death(Rank(2), killed).as_deref(), Some("killed by signal 9 (Killed)"));
        assert_eq!(explain_death(Rank(1), killed), None);
        let exited = "mpirun detected that one or more processes exited with non-zero status, thus causing\n\
                      the job to be terminated. The first process to do so was:\n\n  \
                      Process name: [[26809,1],3]\n  Exit code:    3\n-----";
        assert_eq!(explain_death(Rank(3), exited).as_deref(), Some("exited with code 3"));
        assert_eq!(explain_death(Rank(0), exited), None);
    }
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
