//! Making sure engine processes end: after a grace period, SIGKILL to those on this host that
//! are still alive. Used by the hub for a torn-down world the cluster's launcher does not run
//! ([`Command::Reap`](crate::world::Command::Reap)) and by the cluster runner after it ended
//! its job.

use std::time::{Duration, Instant};

use mpx_messages::EngineInfo;
use tracing::warn;

use crate::files;

/// SIGKILLs the engines on this host still alive after `grace` (an engine on another host
/// reports a pid that means nothing here).
pub async fn reap(engines: Vec<EngineInfo>, grace: Duration) {
    let here = mpx_messages::connection::hostname();
    for pid in engines.iter().filter(|e| e.hostname == here).map(|e| e.pid) {
        let deadline = Instant::now() + grace;
        while files::pid_alive(pid) && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        if files::pid_alive(pid) {
            warn!(pid, "engine outlived its job; sending SIGKILL");
            // An engine on this host that registered with this controller.
            let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid as i32), nix::sys::signal::SIGKILL);
        }
    }
}
