//! Where clusters keep their files: `$MPX_HOME` (default `~/.mpx`), one `cluster-<id>.json`
//! connection file (mode 0600) per running cluster.

use std::{
    fs,
    io::Write,
    os::unix::fs::{OpenOptionsExt, PermissionsExt},
    path::{Path, PathBuf},
};

use mpx_messages::ConnectionInfo;

use crate::ClusterError;

/// The directory holding connection files: `$MPX_HOME`, or `~/.mpx`.
pub fn mpx_home() -> PathBuf {
    if let Some(dir) = std::env::var_os("MPX_HOME") {
        return PathBuf::from(dir);
    }
    let home = std::env::var_os("HOME").map(PathBuf::from).unwrap_or_else(|| PathBuf::from("."));
    home.join(".mpx")
}

/// The connection file of cluster `id` under `home`.
pub fn connection_file(home: &Path, id: &str) -> PathBuf {
    home.join(format!("cluster-{id}.json"))
}

/// The log file of a daemonized cluster `id` under `home`.
pub fn log_file(home: &Path, id: &str) -> PathBuf {
    home.join(format!("cluster-{id}.log"))
}

/// Writes a connection file atomically with mode 0600 (created so, never widened).
///
/// # Errors
/// I/O errors creating the directory or the file.
pub fn write_connection_file(path: &Path, info: &ConnectionInfo) -> Result<(), ClusterError> {
    if let Some(dir) = path.parent() {
        fs::create_dir_all(dir)?;
        let _ = fs::set_permissions(dir, fs::Permissions::from_mode(0o700));
    }
    let tmp = path.with_extension("json.tmp");
    let _ = fs::remove_file(&tmp);
    let mut f = fs::OpenOptions::new().write(true).create_new(true).mode(0o600).open(&tmp)?;
    f.write_all(serde_json::to_string_pretty(info).expect("serializable").as_bytes())?;
    f.sync_all()?;
    fs::rename(&tmp, path)?;
    Ok(())
}

/// Reads a connection file, refusing one that others can read (it holds the key).
///
/// # Errors
/// [`ClusterError::BadConnectionFile`] if it is missing, unreadable, too open or not valid.
pub fn read_connection_file(path: &Path) -> Result<ConnectionInfo, ClusterError> {
    let bad = |why: String| ClusterError::BadConnectionFile { path: path.to_path_buf(), why };
    let meta = fs::metadata(path).map_err(|e| bad(e.to_string()))?;
    if meta.permissions().mode() & 0o077 != 0 {
        return Err(bad(format!(
            "mode {:o} lets others read the key; it must be 0600",
            meta.permissions().mode() & 0o777
        )));
    }
    let text = fs::read_to_string(path).map_err(|e| bad(e.to_string()))?;
    serde_json::from_str(&text).map_err(|e| bad(format!("not a connection file: {e}")))
}

/// Connection files of the clusters under `home`, sorted by cluster id.
pub fn list_connection_files(home: &Path) -> Vec<(String, PathBuf)> {
    let mut found: Vec<(String, PathBuf)> = fs::read_dir(home)
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|entry| {
            let name = entry.file_name().into_string().ok()?;
            let id = name.strip_prefix("cluster-")?.strip_suffix(".json")?.to_string();
            Some((id, entry.path()))
        })
        .collect();
    found.sort();
    found
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
