//! The connection file: how clients and engines find and authenticate to a controller.

use serde::{Deserialize, Serialize};

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
}
