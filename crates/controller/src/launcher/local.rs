//! The local launcher: `mpirun -n N [--oversubscribe] [args] ENGINE --kernel K --connect FILE`,
//! in its own process group so that stopping it reaches every process it started, and in the
//! directory the cluster was started from (so that cells import the user's modules).

use std::{
    path::{Path, PathBuf},
    process::Stdio,
    time::Duration,
};

use futures::{future::LocalBoxFuture, FutureExt};
use mpx_messages::Kernel;
use nix::{
    sys::signal::{killpg, Signal},
    unistd::Pid,
};
use tokio::process::{Child, Command};
use tracing::{info, warn};

use super::{
    job::Launcher,
    output::{describe_status, OutputTail},
    program::EngineProgram,
};
use crate::error::ClusterError;

/// The command that starts `n` engines under mpirun on this machine:
/// `mpirun -n N [--oversubscribe] [mpirun_args] ENGINE --kernel K --connect FILE`, with
/// `--oversubscribe` added (unless given) when the machine's engines (`already` running plus
/// `n`) outnumber its cores. Used for a cluster's first world and for `mpx cluster engines`.
pub fn mpirun_command(
    mpirun: &str,
    n: u32,
    already: usize,
    mpirun_args: &[String],
    engine: &EngineProgram,
    kernel: Kernel,
    connection_file: &Path,
) -> std::process::Command {
    let mut cmd = std::process::Command::new(mpirun);
    cmd.arg("-n").arg(n.to_string());
    let cores = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1);
    if already + n as usize > cores && !mpirun_args.iter().any(|a| a == "--oversubscribe") {
        cmd.arg("--oversubscribe");
    }
    cmd.args(mpirun_args)
        .args(engine.argv())
        .arg("--kernel")
        .arg(kernel.name())
        .arg("--connect")
        .arg(connection_file)
        .stdin(Stdio::null());
    cmd
}

/// Runs engines with mpirun on this machine.
#[derive(Debug)]
pub struct LocalLauncher {
    /// The mpirun command.
    pub mpirun: String,
    /// Extra arguments for mpirun, before the engine command.
    pub mpirun_args: Vec<String>,
    /// The program of each rank.
    pub engine: EngineProgram,
    /// The cell language of the engines (`--kernel`).
    pub kernel: Kernel,
    /// Where mpirun (and so every engine) runs; `None`: this process's current directory.
    pub workdir: Option<PathBuf>,
    child: Option<Child>,
    pgid: Option<i32>,
    output: OutputTail,
}

impl LocalLauncher {
    /// A launcher running `ENGINE --kernel KERNEL` under `mpirun` with extra arguments, in
    /// the current directory (see [`LocalLauncher::workdir`]).
    pub fn new(
        mpirun: impl Into<String>,
        mpirun_args: Vec<String>,
        engine: impl Into<EngineProgram>,
        kernel: Kernel,
    ) -> Self {
        LocalLauncher {
            mpirun: mpirun.into(),
            mpirun_args,
            engine: engine.into(),
            kernel,
            workdir: None,
            child: None,
            pgid: None,
            output: OutputTail::default(),
        }
    }

    /// Signals the process group created for this mpirun, nothing else.
    fn signal_group(&self, sig: Signal) {
        if let Some(pgid) = self.pgid {
            let _ = killpg(Pid::from_raw(pgid), sig);
        }
    }
}

/// How long mpirun has to end its job once its ranks are gone, before SIGKILL: it removes its
/// session directory and the ranks' shared-memory segments (`/dev/shm/vader_segment.*`, 4 MB
/// each); SIGKILLed before that, it leaves them behind for good. (Ranks stuck in an interrupted
/// collective outlived mpirun's SIGTERM by seconds, and each restart of a broken world left
/// three segments.)
const TERM_GRACE: Duration = Duration::from_secs(3);

/// The processes whose parent is `pid` (mpirun's local ranks), from `/proc`.
fn children_of(pid: u32) -> Vec<i32> {
    let Ok(dir) = std::fs::read_dir("/proc") else { return Vec::new() };
    dir.flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<i32>().ok())
        .filter(|&child| {
            std::fs::read_to_string(format!("/proc/{child}/stat")).ok().is_some_and(|stat| {
                // After the parenthesised command name: state, then the parent's pid.
                let mut rest = stat.rsplit_once(')').map(|(_, r)| r).unwrap_or("").split_whitespace();
                rest.nth(1).and_then(|p| p.parse::<u32>().ok()) == Some(pid)
            })
        })
        .collect()
}

impl Launcher for LocalLauncher {
    fn start(&mut self, n: u32, connection_file: &Path) -> Result<(), ClusterError> {
        let mut cmd = Command::from(mpirun_command(
            &self.mpirun,
            n,
            0,
            &self.mpirun_args,
            &self.engine,
            self.kernel,
            connection_file,
        ));
        cmd.stdout(Stdio::piped()).stderr(Stdio::piped()).process_group(0).kill_on_drop(true);
        if let Some(dir) = &self.workdir {
            cmd.current_dir(dir);
        }
        // When a rank dies, mpirun waits this long before SIGKILLing the others and only then
        // reports the death (1 s by default). The world cannot go on anyway: report at once.
        if std::env::var_os("OMPI_MCA_odls_base_sigkill_timeout").is_none() {
            cmd.env("OMPI_MCA_odls_base_sigkill_timeout", "0");
        }
        info!(command = ?cmd.as_std(), "launching engines");
        let mut child = cmd.spawn().map_err(|e| ClusterError::MpirunFailed {
            status: format!("could not run {:?}: {e}", self.mpirun),
            output: String::new(),
        })?;
        self.pgid = child.id().map(|p| p as i32);
        if let Some(out) = child.stdout.take() {
            self.output.collect(out, "stdout");
        }
        if let Some(err) = child.stderr.take() {
            self.output.collect(err, "stderr");
        }
        self.child = Some(child);
        Ok(())
    }

    fn wait(&mut self) -> LocalBoxFuture<'_, String> {
        async move {
            match self.child.as_mut() {
                Some(child) => describe_status("mpirun", child.wait().await.ok()),
                None => std::future::pending().await,
            }
        }
        .boxed_local()
    }

    fn stop(&mut self, grace: Duration) -> LocalBoxFuture<'_, ()> {
        async move {
            let Some(mut child) = self.child.take() else { return };
            if tokio::time::timeout(grace, child.wait()).await.is_err() {
                warn!("mpirun did not end after the engines were told to stop; sending SIGTERM");
                self.signal_group(Signal::SIGTERM);
                if tokio::time::timeout(grace, child.wait()).await.is_err() {
                    // Its ranks do not end (stuck in MPI): SIGKILL them, so that mpirun sees
                    // them gone and ends the job itself, removing their shared-memory segments;
                    // SIGKILLed first, it would leave those in /dev/shm for good.
                    let ranks = child.id().map(children_of).unwrap_or_default();
                    warn!(?ranks, "mpirun did not end after SIGTERM; sending SIGKILL to its ranks");
                    for pid in ranks {
                        let _ = nix::sys::signal::kill(Pid::from_raw(pid), Signal::SIGKILL);
                    }
                    if tokio::time::timeout(TERM_GRACE, child.wait()).await.is_err() {
                        warn!("mpirun did not end after its ranks; sending SIGKILL");
                        self.signal_group(Signal::SIGKILL);
                        let _ = child.wait().await;
                    }
                }
            }
            // mpirun is gone; its group may still hold stragglers.
            self.signal_group(Signal::SIGKILL);
        }
        .boxed_local()
    }

    fn output(&self) -> String {
        self.output.text()
    }

    fn pid(&self) -> Option<u32> {
        self.pgid.map(|p| p as u32)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_children_of_a_process_are_found_and_only_they() {
        let mut child = std::process::Command::new("sleep").arg("30").spawn().expect("sleep");
        let found = children_of(std::process::id());
        let pid = child.id() as i32;
        let _ = child.kill();
        let _ = child.wait();
        assert!(found.contains(&pid), "{pid} not in {found:?}");
        assert!(!found.contains(&(std::process::id() as i32)));
        assert!(children_of(pid as u32).is_empty(), "a sleep has no children");
    }
}
