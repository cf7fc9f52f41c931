//! Child processes with deadlines, each in its own process group, and `/proc` scans.

use std::{
    collections::BTreeSet,
    io::Read,
    os::unix::process::CommandExt,
    process::{Child, Command, ExitStatus, Output, Stdio},
    thread::JoinHandle,
    time::{Duration, Instant},
};

use anyhow::{bail, Context, Result};
use mpx_controller::files::pid_alive;

use crate::cleanup::{self, Guard, Resource};

/// A running child in its own process group, registered for cleanup; its output is drained by
/// two threads so a chatty child never blocks on a full pipe.
pub struct Running {
    child: Child,
    guard: Option<Guard>,
    out: Option<JoinHandle<Vec<u8>>>,
    err: Option<JoinHandle<Vec<u8>>>,
    what: String,
}

fn drain(mut r: impl Read + Send + 'static) -> JoinHandle<Vec<u8>> {
    std::thread::spawn(move || {
        let mut buf = Vec::new();
        let _ = r.read_to_end(&mut buf);
        buf
    })
}

/// Spawns `cmd` in a new process group with piped output.
///
/// # Errors
/// The spawn fails.
pub fn spawn(cmd: &mut Command) -> Result<Running> {
    let what = format!("{cmd:?}");
    let mut child = cmd
        .process_group(0)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .with_context(|| format!("cannot start {what}"))?;
    let guard = cleanup::register(Resource::Group(child.id() as i32));
    let out = child.stdout.take().map(drain);
    let err = child.stderr.take().map(drain);
    Ok(Running { child, guard: Some(guard), out, err, what })
}

impl Running {
    /// Its pid (= its process group id).
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Its exit status if it has exited (and reaps it).
    pub fn try_wait(&mut self) -> Option<ExitStatus> {
        self.child.try_wait().ok().flatten()
    }

    /// Waits up to `timeout`; on overrun kills its process group and fails with its output.
    ///
    /// # Errors
    /// Overrun, or waiting fails.
    pub fn wait(mut self, timeout: Duration) -> Result<Output> {
        let deadline = Instant::now() + timeout;
        let status = loop {
            if let Some(status) = self.child.try_wait()? {
                break status;
            }
            if Instant::now() > deadline {
                // Dropping `self` kills the group and reaps the child.
                let what = std::mem::take(&mut self.what);
                drop(self);
                bail!("timed out after {timeout:?}: {what}");
            }
            std::thread::sleep(Duration::from_millis(2));
        };
        // The leader exited; end any member it left behind, then collect the output.
        if let Some(guard) = self.guard.take() {
            drop(guard);
        }
        let stdout = self.out.take().map(|h| h.join().unwrap_or_default()).unwrap_or_default();
        let stderr = self.err.take().map(|h| h.join().unwrap_or_default()).unwrap_or_default();
        Ok(Output { status, stdout, stderr })
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        if let Some(guard) = self.guard.take() {
            drop(guard);
            let _ = self.child.wait();
        }
    }
}

/// Runs `cmd` to completion within `timeout` (in its own process group).
///
/// # Errors
/// It cannot start, or overruns (it is then killed).
pub fn run(cmd: &mut Command, timeout: Duration) -> Result<Output> {
    spawn(cmd)?.wait(timeout)
}

/// The session id and process group of `pid`, from `/proc/PID/stat`; `None` for a zombie or a
/// process that is gone.
pub fn session_and_group(pid: u32) -> Option<(i32, i32)> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Fields after the parenthesised command name: state ppid pgrp session ...
    let mut fields = stat.rsplit_once(')')?.1.split_whitespace();
    let state = fields.next()?;
    if state == "Z" {
        return None;
    }
    let _ppid = fields.next()?;
    let pgrp = fields.next()?.parse().ok()?;
    let session = fields.next()?.parse().ok()?;
    Some((session, pgrp))
}

/// Live processes of a cluster: the known `pids`, plus any process in one of the controller
/// `sessions` or in mpirun's process `group` (children the cluster started that we never saw).
pub fn cluster_members(pids: &[u32], sessions: &[i32], group: Option<i32>) -> Vec<u32> {
    let mut found: BTreeSet<u32> = pids.iter().copied().filter(|&p| pid_alive(p)).collect();
    if !sessions.is_empty() || group.is_some() {
        if let Ok(dir) = std::fs::read_dir("/proc") {
            for entry in dir.flatten() {
                let Some(pid) = entry.file_name().to_str().and_then(|s| s.parse::<u32>().ok()) else {
                    continue;
                };
                if let Some((sid, pgrp)) = session_and_group(pid) {
                    if sessions.contains(&sid) || Some(pgrp) == group {
                        found.insert(pid);
                    }
                }
            }
        }
    }
    found.into_iter().collect()
}
