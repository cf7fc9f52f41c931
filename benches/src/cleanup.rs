//! Everything the benchmark starts is registered here and ended on every path.
//!
//! - Normal paths and errors (`?`): the [`Guard`] of each resource releases it on `Drop`.
//! - Panics: the release profile has `panic = "abort"`, so no `Drop` runs; the panic hook from
//!   [`install`] releases everything still registered before the abort.
//! - SIGINT, SIGTERM, SIGHUP: [`install`] blocks them in every thread and a dedicated thread
//!   waits for them with `sigwait`, releases everything, and exits with 128 + the signal.
//!   (Children do not inherit the mask: `std::process` resets it in the child.)
//!
//! Processes are ended by process group or by PID, never by name.

use std::{
    path::PathBuf,
    process::{Command, Stdio},
    sync::{
        atomic::{AtomicBool, AtomicU64, Ordering},
        Mutex, MutexGuard, TryLockError,
    },
    time::{Duration, Instant},
};

use mpx_controller::files;

use crate::{procs, MPI_ENV};

/// Something to end.
#[derive(Debug, Clone)]
pub enum Resource {
    /// A scratch directory (the run's `$MPX_HOME`): removed.
    Dir(PathBuf),
    /// A process group the benchmark created (an `mpirun` floor, an `mpx` command): SIGKILL it.
    Group(i32),
    /// A daemonized cluster: `mpx cluster stop --all` in its private home, then SIGKILL whatever
    /// is left of its processes (the controller's session, mpirun's process group, known pids).
    Cluster {
        /// The `mpx` binary.
        mpx: PathBuf,
        /// Its `$MPX_HOME`.
        home: PathBuf,
        /// Its processes, once known.
        pids: Vec<u32>,
        /// The controller's session id, once known (also found from the home's connection files).
        session: Option<i32>,
        /// mpirun's process group, once known.
        group: Option<i32>,
    },
}

static LIVE: Mutex<Vec<(u64, Resource)>> = Mutex::new(Vec::new());
static NEXT: AtomicU64 = AtomicU64::new(1);
/// Held by whoever ends the run (the signal thread, or [`finish`]) until the process exits.
static ENDING: Mutex<()> = Mutex::new(());
/// Set once a signal arrived: nothing new may start.
static STOPPING: AtomicBool = AtomicBool::new(false);

fn live() -> MutexGuard<'static, Vec<(u64, Resource)>> {
    LIVE.lock().unwrap_or_else(|e| e.into_inner())
}

/// A registered resource: released on drop unless [`disarm`](Guard::disarm)ed.
#[derive(Debug)]
pub struct Guard {
    id: u64,
}

/// Registers `res`; it is released when the returned guard drops. After a signal, the caller
/// blocks here until the process exits, so nothing starts behind the cleanup's back.
pub fn register(res: Resource) -> Guard {
    if STOPPING.load(Ordering::SeqCst) {
        let _wait = ENDING.lock();
        std::process::exit(1);
    }
    let id = NEXT.fetch_add(1, Ordering::Relaxed);
    live().push((id, res));
    Guard { id }
}

impl Guard {
    /// Updates the registered resource (e.g. a cluster's pids once known).
    pub fn update(&self, f: impl FnOnce(&mut Resource)) {
        if let Some((_, res)) = live().iter_mut().find(|(id, _)| *id == self.id) {
            f(res);
        }
    }

    /// Forgets the resource without ending anything (it ended cleanly).
    pub fn disarm(self) {
        take(self.id);
        std::mem::forget(self);
    }
}

fn take(id: u64) -> Option<Resource> {
    let mut live = live();
    let at = live.iter().position(|(i, _)| *i == id)?;
    Some(live.remove(at).1)
}

impl Drop for Guard {
    fn drop(&mut self) {
        if let Some(res) = take(self.id) {
            release(&res);
        }
    }
}

/// Ends one resource, with bounded waits.
pub fn release(res: &Resource) {
    match res {
        Resource::Dir(dir) => {
            let _ = std::fs::remove_dir_all(dir);
        }
        Resource::Group(pgid) => {
            // SAFETY: a process group this benchmark created (its leader is our child).
            unsafe { libc::kill(-pgid, libc::SIGKILL) };
        }
        Resource::Cluster { mpx, home, pids, session, group } => {
            // The daemonized controller calls setsid: its pid is the session of the whole cluster,
            // and stays so after it exits. A cluster still starting is found by its connection file.
            let mut sessions: Vec<i32> = session.iter().copied().collect();
            for (_, path) in files::list_connection_files(home) {
                if let Ok(info) = files::read_connection_file(&path) {
                    sessions.push(info.controller_pid as i32);
                }
            }
            let stop = Command::new(mpx)
                .args(["cluster", "stop", "--all"])
                .env("MPX_HOME", home)
                .envs(MPI_ENV)
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn();
            if let Ok(mut child) = stop {
                let deadline = Instant::now() + Duration::from_secs(20);
                while child.try_wait().ok().flatten().is_none() && Instant::now() < deadline {
                    std::thread::sleep(Duration::from_millis(10));
                }
                let _ = child.kill();
                let _ = child.wait();
            }
            let deadline = Instant::now() + Duration::from_secs(5);
            loop {
                let left = procs::cluster_members(pids, &sessions, *group);
                if left.is_empty() {
                    break;
                }
                if Instant::now() > deadline {
                    for pid in left {
                        // SAFETY: a process of the cluster this benchmark started (by PID).
                        unsafe { libc::kill(pid as libc::pid_t, libc::SIGKILL) };
                    }
                    break;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            let _ = std::fs::remove_dir_all(home);
        }
    }
}

/// Releases everything still registered. `blocking == false` (the panic hook) gives up if the
/// registry is locked rather than risk a deadlock in the panicking thread.
pub fn release_all(blocking: bool) {
    let all: Vec<(u64, Resource)> = if blocking {
        std::mem::take(&mut *live())
    } else {
        match LIVE.try_lock() {
            Ok(mut l) => std::mem::take(&mut *l),
            Err(TryLockError::Poisoned(e)) => std::mem::take(&mut *e.into_inner()),
            Err(TryLockError::WouldBlock) => return,
        }
    };
    // Newest first: a cluster's commands before the cluster.
    for (_, res) in all.iter().rev() {
        release(res);
    }
}

/// Ends whatever is still registered; call last in `main`, on every path. If a signal's cleanup
/// is running, waits for it (it exits the process).
pub fn finish() {
    let _ending = ENDING.lock().unwrap_or_else(|e| e.into_inner());
    release_all(true);
}

/// Installs the panic hook and the signal thread. Call first in `main`, before any thread starts.
///
/// # Errors
/// The signal thread cannot be spawned.
pub fn install() -> std::io::Result<()> {
    let previous = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        previous(info);
        eprintln!("mpx-bench: panic: ending every cluster and mpirun job it started");
        release_all(false);
    }));
    // SAFETY: plain sigset manipulation on a local set; the mask is set before other threads
    // exist, so every later thread inherits it and only the waiter below receives these signals.
    let set = unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        for sig in [libc::SIGINT, libc::SIGTERM, libc::SIGHUP] {
            libc::sigaddset(&mut set, sig);
        }
        libc::pthread_sigmask(libc::SIG_BLOCK, &set, std::ptr::null_mut());
        set
    };
    std::thread::Builder::new().name("mpx-bench-signals".into()).spawn(move || {
        let mut sig: libc::c_int = 0;
        // SAFETY: `set` is an initialised sigset; sigwait writes the signal number into `sig`.
        while unsafe { libc::sigwait(&set, &mut sig) } != 0 {}
        STOPPING.store(true, Ordering::SeqCst);
        // Held until exit: the main thread waits in `finish` or `register` instead of exiting
        // (or starting something) while this thread is still cleaning up.
        let _ending = ENDING.lock().unwrap_or_else(|e| e.into_inner());
        eprintln!("mpx-bench: signal {sig}: ending every cluster and mpirun job it started");
        release_all(true);
        std::process::exit(128 + sig);
    })?;
    Ok(())
}
