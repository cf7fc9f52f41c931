//! Running a controller (with or without engines) in the foreground, or as a detached daemon
//! that reports `ready: LINE` or `error: TEXT` on its stdout to the `mpx` that started it.

use std::{
    io::{BufRead, BufReader, Write},
    path::Path,
    process::{Command, Stdio},
    sync::{
        atomic::{AtomicBool, Ordering},
        Arc, OnceLock,
    },
    thread::JoinHandle,
    time::{Duration, Instant, SystemTime},
};

use anyhow::{bail, Context, Result};
use mpx_controller::{files, run_cluster, ClusterOptions, Launcher, Ready, StopReason};

use super::progress::{Progress, SHOW_AFTER};

/// The environment variable that marks the daemon child of `--daemonize` (removed from the
/// environment as soon as it is read, so that mpirun and the engines do not inherit it).
const CHILD_MARKER: &str = "MPX_DAEMON_CHILD";

/// Whether this process is the daemon child of `--daemonize` (reads and clears the marker on
/// first use: call it from `main` before any thread starts).
pub fn is_daemon_child() -> bool {
    static CHILD: OnceLock<bool> = OnceLock::new();
    *CHILD.get_or_init(|| {
        let child = std::env::var_os(CHILD_MARKER).is_some();
        std::env::remove_var(CHILD_MARKER);
        child
    })
}

/// Removes the logs an earlier run of this cluster id left in its log directory (engines and
/// sets this run does not have), once this run is ready: its own engines have written theirs.
fn remove_earlier_logs(connection_file: &Path, started: SystemTime) {
    let dir = mpx_messages::connection::log_dir(connection_file);
    for entry in std::fs::read_dir(&dir).into_iter().flatten().flatten() {
        let earlier = entry.metadata().and_then(|m| m.modified()).is_ok_and(|t| t < started);
        if earlier && entry.file_name().to_str().is_some_and(|n| n.ends_with(".log")) {
            let _ = std::fs::remove_file(entry.path());
        }
    }
}

/// Why a cluster stopped, in words.
fn describe_stop(reason: &StopReason) -> String {
    match reason {
        StopReason::Signal(sig) => format!("on {sig}"),
        StopReason::Requested => "on request".into(),
        StopReason::WorldDown(why) => format!("the MPI world went down: {why}"),
    }
}

/// Runs a cluster until it stops; prints `ready_line(ready)` when it is ready (as the `ready:`
/// report when `daemon_child`). Returns the exit code.
pub fn run_foreground(
    opts: ClusterOptions,
    launcher: Box<dyn Launcher>,
    ready_line: impl FnOnce(&Ready) -> String,
) -> Result<i32> {
    let daemon_child = is_daemon_child();
    let id = opts.cluster_id.clone();
    tracing::info!(cluster = %id, pid = std::process::id(), "starting");
    let started = SystemTime::now();
    let system = actix::System::new();
    let result = system.block_on(run_cluster(opts, launcher, |ready| {
        remove_earlier_logs(&ready.connection_file, started);
        let line = ready_line(ready);
        if daemon_child {
            // The parent reads this line and exits; nothing is printed on stdout after it.
            let mut out = std::io::stdout();
            let _ = writeln!(out, "ready: {line}");
            let _ = out.flush();
        } else {
            println!("{line}");
        }
        tracing::info!("{line}");
    }));
    match result {
        Ok(StopReason::WorldDown(why)) => {
            let msg = format!("the MPI world went down ({why}); cluster stopped");
            tracing::error!("{msg}");
            if !daemon_child {
                eprintln!("mpx: {msg}");
            }
            Ok(1)
        }
        Ok(reason) => {
            let msg = format!("cluster {id} stopped {}", describe_stop(&reason));
            tracing::info!("{msg}");
            if !daemon_child {
                println!("{msg}");
            }
            Ok(0)
        }
        Err(e) => {
            tracing::error!("cluster {id} failed: {e}");
            if daemon_child {
                let _ = writeln!(std::io::stdout(), "error: {e}");
            }
            Err(e.into())
        }
    }
}

/// Shows, on a terminal, how many of `engines` have registered with cluster `cluster_id` while
/// it starts (from 2 s on), until `done` is set.
fn start_progress(cluster_id: &str, engines: usize, done: Arc<AtomicBool>) -> Option<JoinHandle<()>> {
    if engines == 0 {
        return None;
    }
    let id = cluster_id.to_string();
    let watch = move || {
        let mut progress = Progress::new("cluster start");
        let started = Instant::now();
        while !done.load(Ordering::SeqCst) {
            // Woken at once when the start is over (see `daemonize`): a start is not rounded up
            // to the next tick.
            std::thread::park_timeout(Duration::from_millis(250));
            if done.load(Ordering::SeqCst) {
                break;
            }
            if started.elapsed() < SHOW_AFTER {
                continue;
            }
            let registered = mpx_client::Client::connect(&id)
                .and_then(|c| c.info(Duration::from_secs(1)))
                .map(|info| info.engines.len())
                .unwrap_or(0);
            progress.update(registered, engines, "engines registered", None);
        }
    };
    std::thread::Builder::new().name("mpx-start-progress".into()).spawn(watch).ok()
}

/// Re-runs this very command (its own argv) as a detached daemon child (own session, stderr
/// to the log file `cluster-ID.log`, marked by an environment variable), waits for its ready
/// line (showing on a terminal how many of its `engines` registered), and returns.
pub fn daemonize(cluster_id: &str, engines: usize) -> Result<i32> {
    let home = files::mpx_home();
    std::fs::create_dir_all(&home).with_context(|| format!("cannot create {}", home.display()))?;
    let log_path = files::log_file(&home, cluster_id);
    // A new log, appended to by both the child's stderr (panics, anything printed) and its
    // log writer.
    let cannot = || format!("cannot create {}", log_path.display());
    std::fs::File::create(&log_path).with_context(cannot)?;
    let log = std::fs::OpenOptions::new().append(true).open(&log_path).with_context(cannot)?;
    let me = crate::invocation::get();
    let (program, words) = me.program.split_first().context("cannot find the mpx executable")?;
    let mut cmd = Command::new(program);
    cmd.args(words)
        .args(&me.args)
        .env(CHILD_MARKER, "1")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::from(log));
    // The child leaves our session so a Ctrl-C in this terminal does not reach the daemon.
    super::new_session(&mut cmd);
    let mut child = cmd.spawn().context("cannot start the cluster daemon")?;
    let stdout = child.stdout.take().expect("piped stdout");
    let mut lines = BufReader::new(stdout).lines();
    let done = Arc::new(AtomicBool::new(false));
    let mut progress = start_progress(cluster_id, engines, done.clone());
    while let Some(line) = lines.next() {
        let line = line.unwrap_or_default();
        done.store(true, Ordering::SeqCst);
        if let Some(watcher) = progress.take() {
            watcher.thread().unpark();
            let _ = watcher.join();
        }
        if let Some(ready) = line.strip_prefix("ready: ") {
            println!("{ready}");
            println!("(running in the background, pid {}; log {})", child.id(), log_path.display());
            return Ok(0);
        }
        if let Some(err) = line.strip_prefix("error: ") {
            // The rest of the report (e.g. the job's output) follows until the daemon exits.
            let rest: Vec<String> = lines.map_while(Result::ok).collect();
            let _ = child.wait();
            bail!("{}", std::iter::once(err.to_string()).chain(rest).collect::<Vec<_>>().join("\n"));
        }
    }
    let status = child.wait()?;
    let log = std::fs::read_to_string(&log_path).unwrap_or_default();
    bail!("the cluster daemon exited ({status}) before it was ready; its log:\n{log}")
}
