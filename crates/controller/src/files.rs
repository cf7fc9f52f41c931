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
