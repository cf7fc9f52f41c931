//! Where clusters keep their files: `$MPX_HOME` (default `~/.mpx`), one `cluster-<id>.json`
//! connection file (mode 0600) per running cluster.

use std::{
    fs,
    path::{Path, PathBuf},
};

pub use mpx_messages::connection::{
    connection_file, list_connection_files, mpx_home, read_connection_file, socket_file,
    write_connection_file,
};

use crate::error::ClusterError;

/// The log file of a daemonized cluster `id` under `home`.
pub fn log_file(home: &Path, id: &str) -> PathBuf {
    home.join(format!("cluster-{id}.log"))
}

/// Holds `$MPX_HOME/cluster-<id>.lock` locked for as long as it lives (the whole life of a
/// cluster's controller process), so that two starts of one cluster id cannot both run.
#[derive(Debug)]
pub struct ClusterLock(#[allow(dead_code)] nix::fcntl::Flock<fs::File>);

/// Takes the cluster id's lock, without waiting. The lock file is left in place (removing it
/// could let two later starts lock two different files).
///
/// # Errors
/// [`ClusterError::AlreadyRunning`] when another process holds it; I/O errors.
pub fn lock_cluster(home: &Path, id: &str) -> Result<ClusterLock, ClusterError> {
    use std::os::unix::fs::OpenOptionsExt;
    fs::create_dir_all(home)?;
    let file = fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .mode(0o600)
        .open(home.join(format!("cluster-{id}.lock")))?;
    // Released when the lock (and its file) is dropped, or the process ends.
    match nix::fcntl::Flock::lock(file, nix::fcntl::FlockArg::LockExclusiveNonblock) {
        Ok(lock) => Ok(ClusterLock(lock)),
        Err((_, nix::errno::Errno::EWOULDBLOCK)) => Err(ClusterError::AlreadyRunning(id.to_string())),
        Err((_, e)) => Err(std::io::Error::from(e).into()),
    }
}

/// Whether the controller a connection file names is still running: its pid is alive and the
/// process there started when the controller did (a pid reused by an unrelated process after a
/// crash is not the controller; for files without a start time, it must be an mpx process).
pub fn controller_running(info: &mpx_messages::ConnectionInfo) -> bool {
    let pid = info.controller_pid;
    pid_alive(pid)
        && match info.controller_started {
            Some(t) => mpx_messages::connection::process_start_time(pid) == Some(t),
            // A file from before start times were recorded: at least an mpx process.
            None => procfs::process::Process::new(pid as i32)
                .and_then(|p| p.cmdline())
                .map(|argv| argv.iter().any(|a| a.contains("mpx")))
                .unwrap_or(true),
        }
}

/// Whether a process with this pid exists and is not a zombie.
pub fn pid_alive(pid: u32) -> bool {
    // Signal "0" only checks for existence and permission.
    let r = nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid as i32), None);
    let exists = matches!(r, Ok(()) | Err(nix::errno::Errno::EPERM));
    exists && !is_zombie(pid)
}

/// Whether `/proc` shows the process as a zombie (exited, not yet reaped).
fn is_zombie(pid: u32) -> bool {
    procfs::process::Process::new(pid as i32).and_then(|p| p.stat()).is_ok_and(|s| s.state == 'Z')
}

/// The session's history of cluster `id`, beside its engines' logs (removed with the cluster).
pub fn history_file(home: &Path, id: &str) -> PathBuf {
    home.join(format!("cluster-{id}")).join("history.json")
}

/// Saves the session's history (JSON, mode 0600), replacing the file at once (a temporary file
/// renamed over it).
///
/// # Errors
/// The file cannot be written.
pub fn write_history(path: &Path, entries: &[mpx_messages::HistoryEntry]) -> std::io::Result<()> {
    use std::{io::Write, os::unix::fs::OpenOptionsExt};
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    let tmp = path.with_extension("json.tmp");
    let mut file =
        std::fs::OpenOptions::new().write(true).create(true).truncate(true).mode(0o600).open(&tmp)?;
    file.write_all(&serde_json::to_vec(entries).map_err(std::io::Error::other)?)?;
    std::fs::rename(&tmp, path)
}

/// Reads a saved history (for `mpx history` when the controller does not answer).
///
/// # Errors
/// The file is missing or not a history.
pub fn read_history(path: &Path) -> std::io::Result<Vec<mpx_messages::HistoryEntry>> {
    serde_json::from_slice(&std::fs::read(path)?).map_err(std::io::Error::other)
}
