//! Where clusters keep their files: `$MPX_HOME` (default `~/.mpx`), one `cluster-<id>.json`
//! connection file (mode 0600) per running cluster.

use std::{
    fs,
    path::{Path, PathBuf},
};

pub use mpx_messages::connection::{
    connection_file, list_connection_files, mpx_home, read_connection_file, write_connection_file,
};

/// The log file of a daemonized cluster `id` under `home`.
pub fn log_file(home: &Path, id: &str) -> PathBuf {
    home.join(format!("cluster-{id}.log"))
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
            None => fs::read(format!("/proc/{pid}/cmdline"))
                .map(|c| String::from_utf8_lossy(&c).contains("mpx"))
                .unwrap_or(true),
        }
}

/// Whether a process with this pid exists and is not a zombie.
pub fn pid_alive(pid: u32) -> bool {
    // SAFETY: kill with signal 0 only checks for existence and permission.
    let r = unsafe { libc::kill(pid as libc::pid_t, 0) };
    let exists = r == 0 || std::io::Error::last_os_error().raw_os_error() == Some(libc::EPERM);
    exists && !is_zombie(pid)
}

/// Whether `/proc` shows the process as a zombie (exited, not yet reaped).
fn is_zombie(pid: u32) -> bool {
    let Ok(stat) = fs::read_to_string(format!("/proc/{pid}/stat")) else {
        return false;
    };
    // The state follows the parenthesised command name, which may itself contain spaces.
    stat.rsplit_once(')').and_then(|(_, rest)| rest.split_whitespace().next()) == Some("Z")
}
