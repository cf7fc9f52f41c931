//! The session's history for Python (`mpx_client::replay`, `mpx_client::export`): a replay of
//! the session before the last restart that Ctrl-C can stop, and the export to a batch program,
//! written as `mpx export` writes it.

use std::{
    path::{Path, PathBuf},
    sync::{
        atomic::{AtomicBool, Ordering},
        mpsc::{self, RecvTimeoutError},
        Arc,
    },
    time::Duration,
};

use mpx_client::{
    export,
    replay::{self, Replayed},
    Client, ClientError, Targets,
};
use mpx_messages::HistoryEntry;
use pyo3::{
    exceptions::{PyOSError, PyRuntimeError, PyValueError},
    prelude::*,
};

use crate::to_py;

/// How often the wait for a replay wakes up to let Python handle Ctrl-C.
const SLICE: Duration = Duration::from_millis(50);

/// A replay entry's wait when Python gives no limit.
const NO_LIMIT: Duration = Duration::from_secs(30 * 24 * 3600);

/// What a replay did, for Python: `(the replayed session's entries as JSON, the numbers run
/// again, (number, why) not replayed, (number, why) where it stopped)`.
pub(crate) type ReplayOut = (String, Vec<u64>, Vec<(u64, String)>, Option<(u64, String)>);

/// Entries as JSON (as `Client.history_json` gives them).
fn entries_json(entries: &[HistoryEntry]) -> PyResult<String> {
    serde_json::to_string(entries).map_err(|e| PyValueError::new_err(e.to_string()))
}

/// Runs `session` again entry by entry (each with `replay::replay`, so it replays and skips as
/// `mpx replay` does), stopping before the next entry once `stop` is set.
fn run_entries(
    client: &Client,
    session: &[HistoryEntry],
    timeout: Duration,
    stop: &AtomicBool,
) -> Result<Replayed, ClientError> {
    let mut done = Replayed::default();
    for entry in session {
        if stop.load(Ordering::SeqCst) {
            done.failed = Some((entry.n, "not run: the replay was interrupted (Ctrl-C)".into()));
            break;
        }
        let one = match replay::replay(client, std::slice::from_ref(entry), timeout) {
            Ok(one) => one,
            Err(ClientError::Timeout(_)) => {
                let why = format!(
                    "still running after {:.0} s (the replay stopped waiting for it)",
                    timeout.as_secs_f64()
                );
                done.failed = Some((entry.n, why));
                break;
            }
            Err(e) => return Err(e),
        };
        done.ran.extend(one.ran);
        done.skipped.extend(one.skipped);
        if one.failed.is_some() {
            done.failed = one.failed;
            break;
        }
    }
    Ok(done)
}

/// Replays the session before the current MPI world (`replay::previous_session`), each entry
/// waited for up to `timeout` (None: no limit). Ctrl-C interrupts the engines and stops the
/// replay after the running entry (a second Ctrl-C stops waiting for it).
pub(crate) fn replay_previous(
    py: Python<'_>,
    client: &Arc<Client>,
    timeout: Option<f64>,
    control: Duration,
) -> PyResult<ReplayOut> {
    let history = py.detach(|| client.history(control)).map_err(to_py)?;
    let session = replay::previous_session(&history.entries, history.epoch);
    let text = entries_json(&session)?;
    if session.is_empty() {
        return Ok((text, Vec::new(), Vec::new(), None));
    }
    let per_entry = timeout.map_or(NO_LIMIT, crate::secs);
    let stop = Arc::new(AtomicBool::new(false));
    let (tx, rx) = mpsc::channel();
    let (runner, flag) = (client.clone(), stop.clone());
    std::thread::Builder::new()
        .name("mpx-replay".into())
        .spawn(move || {
            let _ = tx.send(run_entries(&runner, &session, per_entry, &flag));
        })
        .map_err(|e| PyRuntimeError::new_err(format!("cannot start the replay: {e}")))?;
    let mut rx = rx;
    let mut interrupted = false;
    loop {
        let (back, got) = py.detach(move || {
            let got = rx.recv_timeout(SLICE);
            (rx, got)
        });
        rx = back;
        match got {
            Ok(done) => {
                let done = done.map_err(to_py)?;
                return Ok((text, done.ran, done.skipped, done.failed));
            }
            Err(RecvTimeoutError::Disconnected) => {
                return Err(PyRuntimeError::new_err("the replay ended without an answer"))
            }
            Err(RecvTimeoutError::Timeout) => {}
        }
        if let Err(e) = py.check_signals() {
            if interrupted {
                return Err(e);
            }
            interrupted = true;
            stop.store(true, Ordering::SeqCst);
            // The running entry ends with KeyboardInterrupt (or, inside a collective, the world
            // restarts); the replay then stops there.
            let _ = py.detach(|| client.interrupt(Targets::All, control));
        }
    }
}

/// What an export wrote: `(the script, the data files, the job scripts, entries, ranks)`.
pub(crate) type ExportOut = (String, Vec<String>, Vec<String>, usize, usize);

fn io_error(what: String) -> impl FnOnce(std::io::Error) -> PyErr {
    move |e| PyOSError::new_err(format!("{what}: {e}"))
}

/// The session since the last restart as a program for mpirun (`mpx_client::export`), with
/// its data files copied beside it and the job scripts asked for (running `python`): what `mpx
/// export` writes.
#[allow(clippy::too_many_arguments)]
pub(crate) fn export_session(
    py: Python<'_>,
    client: &Client,
    file: &str,
    sbatch: bool,
    pbs: bool,
    queue: Option<&str>,
    walltime: Option<&str>,
    python: &str,
    control: Duration,
) -> PyResult<ExportOut> {
    let info = py.detach(|| client.info(control)).map_err(to_py)?;
    let size = info.engines.iter().map(|e| e.world_size as usize).max().unwrap_or(0);
    if info.engines.iter().any(|e| e.set != info.engines[0].set) {
        return Err(PyValueError::new_err(
            "the cluster has several engine sets: an export is for one MPI world",
        ));
    }
    // `true` is a rhai expression, a NameError in Python (a request of mpx's own: not recorded).
    let probe =
        py.detach(|| client.view(Targets::All).execute_internal("true")?.get(control)).map_err(to_py)?;
    if probe.iter().all(|r| r.outcome.error.is_none()) {
        return Err(PyValueError::new_err(
            "this cluster runs the rhai kernel: export writes a Python program, for Python clusters only",
        ));
    }
    let history = py.detach(|| client.history(control)).map_err(to_py)?;
    let entries = replay::current_session(&history.entries, history.epoch);
    let path = PathBuf::from(file);
    let stem = path
        .file_stem()
        .ok_or_else(|| PyValueError::new_err("the file needs a name"))?
        .to_string_lossy()
        .into_owned();
    let made = export::script(&entries, size, &stem).map_err(|e| PyValueError::new_err(e.to_string()))?;
    let dir = path.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
    let mut data = Vec::new();
    for (from, rel) in &made.data {
        let to = dir.join(rel);
        if let Some(parent) = to.parent() {
            std::fs::create_dir_all(parent)
                .map_err(io_error(format!("cannot create {}", parent.display())))?;
        }
        std::fs::copy(from, &to).map_err(io_error(format!(
            "cannot copy {} to {}",
            from.display(),
            to.display()
        )))?;
        data.push(to.display().to_string());
    }
    std::fs::write(&path, &made.script).map_err(io_error(format!("cannot write {}", path.display())))?;
    let name = path.file_name().map(PathBuf::from).unwrap_or_default();
    let mut jobs = Vec::new();
    // The cluster's own batch job's queue and time limit, unless given.
    let batch = info.batch.clone().unwrap_or_default();
    let queue = queue.map(str::to_string).or((!batch.queue.is_empty()).then_some(batch.queue));
    let walltime = walltime.map(str::to_string).or((!batch.walltime.is_empty()).then_some(batch.walltime));
    let job = export::Job { size, python, queue: queue.as_deref(), walltime: walltime.as_deref() };
    if sbatch {
        let path = path.with_extension("sbatch");
        std::fs::write(&path, export::sbatch(&name, job))
            .map_err(io_error(format!("cannot write {}", path.display())))?;
        jobs.push(path.display().to_string());
    }
    if pbs {
        let path = path.with_extension("pbs");
        std::fs::write(&path, export::pbs(&name, job))
            .map_err(io_error(format!("cannot write {}", path.display())))?;
        jobs.push(path.display().to_string());
    }
    Ok((path.display().to_string(), data, jobs, entries.len(), size))
}

/// A `.npy` file read for a push or scatter, with its source for the history (replayable).
pub(crate) fn npy_file(path: &str) -> PyResult<(mpx_client::RawArray, mpx_messages::DataSource)> {
    let path = Path::new(path);
    let array = mpx_client::npy::read(path).map_err(to_py)?;
    let source = replay::file_source(path).map_err(io_error(format!("cannot read {}", path.display())))?;
    Ok((array, source))
}
