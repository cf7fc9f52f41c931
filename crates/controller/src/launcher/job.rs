//! The [`Launcher`] trait (how a job of engines starts, ends and stops) and [`explain_death`]
//! (mpirun's report of a dead rank). A leaf: it imports nothing from `launcher/mod.rs`.

use std::{path::Path, time::Duration};

use futures::future::LocalBoxFuture;
use mpx_messages::Rank;

use crate::error::ClusterError;

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
    use mpx_messages::Kernel;

    use super::{explain_death, Rank};

    #[test]
    fn kernel_names_round_trip() {
        for k in Kernel::ALL {
            assert_eq!(k.name().parse::<Kernel>(), Ok(k));
        }
        assert_eq!(Kernel::default(), Kernel::Python);
        let err = "julia".parse::<Kernel>().unwrap_err().to_string();
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
