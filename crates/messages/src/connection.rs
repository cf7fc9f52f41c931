//! The connection file: how clients and engines find and authenticate to a controller, and
//! where clusters keep them: `$MPX_HOME` (default `~/.mpx`), one `cluster-<id>.json` (mode
//! 0600) per running cluster. The one implementation the controller, the engines and the
//! clients use.

use std::{
    fs,
    io::Write,
    os::unix::fs::{OpenOptionsExt, PermissionsExt},
    path::{Path, PathBuf},
};

use serde::{Deserialize, Serialize};
use thiserror::Error;

/// A connection file that cannot be used.
#[derive(Debug, Error)]
pub enum ConnectionFileError {
    /// Missing, unreadable, readable by others, or not a connection file.
    #[error("connection file {path}: {why}")]
    Bad {
        /// Its path.
        path: PathBuf,
        /// What is wrong.
        why: String,
    },
    /// It could not be written.
    #[error("cannot write the connection file: {0}")]
    Io(#[from] std::io::Error),
}

/// Contents of `cluster-<id>.json` (mode 0600).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConnectionInfo {
    /// Cluster id.
    pub cluster_id: String,
    /// `host:port` the controller listens on.
    pub address: String,
    /// Cluster key, hex (the header and payload MAC keys are derived from it).
    pub key: String,
    /// Process id of the controller.
    pub controller_pid: u32,
    /// Number of engines the cluster was started with (0 if started without engines).
    pub engines: u32,
    /// When the controller process started ([`process_start_time`] of `controller_pid`), so
    /// that a stale file whose pid now belongs to another process is recognised as stale.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub controller_started: Option<u64>,
    /// The controller's Unix socket (`$MPX_HOME/cluster-<id>.sock`, mode 0600 in the 0700
    /// home): peers on the controller's host connect there instead of `address` (see
    /// [`ConnectionInfo::local_socket`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub unix: Option<PathBuf>,
    /// The controller's host name ([`hostname`]): a peer on the same host may use `unix`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub host: Option<String>,
}

impl ConnectionInfo {
    /// The Unix socket a peer on this host connects to: the controller's, when it runs on this
    /// host, the socket exists, and `MPX_SHM` is not `0` (which keeps every connection on TCP).
    pub fn local_socket(&self) -> Option<&Path> {
        let path = self.unix.as_deref()?;
        let same_host = self.host.as_deref() == Some(hostname().as_str());
        (same_host && shm_enabled() && path.exists()).then_some(path)
    }
}

/// Whether the same-host path (Unix socket, memfds) may be used: unless `MPX_SHM=0`.
pub fn shm_enabled() -> bool {
    std::env::var_os("MPX_SHM").is_none_or(|v| v != "0")
}

/// The Unix socket of cluster `id` under `home`: `cluster-<id>.sock`.
pub fn socket_file(home: &Path, id: &str) -> PathBuf {
    home.join(format!("cluster-{id}.sock"))
}

/// This host's name, as engines report it and the controller compares it (to tell whether an
/// engine's pid means anything here).
pub fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname").map(|s| s.trim().to_string()).unwrap_or_default()
}

/// When process `pid` started, in clock ticks since boot (`starttime` of `/proc/PID/stat`);
/// `None` if there is no such process (or no `/proc`).
pub fn process_start_time(pid: u32) -> Option<u64> {
    let pid = i32::try_from(pid).ok()?;
    Some(procfs::process::Process::new(pid).ok()?.stat().ok()?.starttime)
}

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

/// Writes a connection file atomically with mode 0600 (created so, never widened).
///
/// # Errors
/// I/O errors creating the directory or the file.
pub fn write_connection_file(path: &Path, info: &ConnectionInfo) -> Result<(), ConnectionFileError> {
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
/// [`ConnectionFileError::Bad`] if it is missing, unreadable, too open or not valid.
pub fn read_connection_file(path: &Path) -> Result<ConnectionInfo, ConnectionFileError> {
    let bad = |why: String| ConnectionFileError::Bad { path: path.to_path_buf(), why };
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

/// The directory of a cluster's per-engine logs, beside its connection file:
/// `$MPX_HOME/cluster-<id>/` for `$MPX_HOME/cluster-<id>.json`.
pub fn log_dir(connection_file: &Path) -> PathBuf {
    connection_file.with_extension("")
}

/// The log of engine `id` of the cluster of `connection_file`:
/// `$MPX_HOME/cluster-<id>/engine-<engine>.log`.
pub fn engine_log(connection_file: &Path, engine: u32) -> PathBuf {
    log_dir(connection_file).join(format!("engine-{engine}.log"))
}
