//! Running a cluster: bind the controller, write the connection file, launch the engines under
//! mpirun, wait until they are all registered, serve until told to stop, then tear everything
//! down (engines, mpirun's process group, files).

use std::{
    net::{IpAddr, SocketAddr},
    path::{Path, PathBuf},
    time::{Duration, Instant},
};

use actix::prelude::*;
use mpx_messages::{ConnectionInfo, EngineInfo, Key, Rank, DEFAULT_MAX_FRAME};
use rand::RngExt;
use tokio::{
    net::{TcpListener, TcpSocket, UnixListener},
    sync::{mpsc, oneshot},
};
use tracing::{info, warn};

use crate::{
    address,
    error::ClusterError,
    files,
    hub::{Feed, Hub, SetRunner, StopEngines, WaitForEngines},
    launcher::Launcher,
    listener::{self, ListenerConfig},
    reap::reap,
    world::{Event, RunnerCall},
};

/// Everything `mpx cluster start` needs.
#[derive(Debug, Clone)]
pub struct ClusterOptions {
    /// Cluster id (names the connection file).
    pub cluster_id: String,
    /// Number of engines (MPI ranks).
    pub n: u32,
    /// Directory of connection files.
    pub home: PathBuf,
    /// How long engines may take to register.
    pub timeout: Duration,
    /// Address to bind (`127.0.0.1:0` by default).
    pub bind: String,
    /// Address written into the connection file instead of the bound one (needed when `bind`
    /// is a wildcard such as `0.0.0.0`); see [`crate::address`].
    pub advertise: Option<IpAddr>,
    /// Largest frame accepted, in bytes.
    pub max_frame: usize,
    /// Grace period between SIGTERM and SIGKILL at teardown.
    pub grace: Duration,
    /// Heartbeat period (zero: none).
    pub heartbeat: Duration,
    /// Restart the MPI world when it goes down, instead of stopping.
    pub restart: bool,
}

impl ClusterOptions {
    /// Options with defaults for everything but the id and size.
    pub fn new(cluster_id: impl Into<String>, n: u32) -> Self {
        ClusterOptions {
            cluster_id: cluster_id.into(),
            n,
            home: files::mpx_home(),
            timeout: Duration::from_secs(60),
            bind: "127.0.0.1:0".into(),
            advertise: None,
            max_frame: DEFAULT_MAX_FRAME,
            grace: Duration::from_secs(1),
            heartbeat: Duration::from_secs(1),
            restart: false,
        }
    }
}

/// Reported once every engine has registered.
#[derive(Debug, Clone)]
pub struct Ready {
    /// Cluster id.
    pub cluster_id: String,
    /// Number of engines.
    pub n: u32,
    /// Time from start to ready.
    pub elapsed: Duration,
    /// The connection file.
    pub connection_file: PathBuf,
    /// The controller's address, as the connection file gives it.
    pub address: SocketAddr,
}

/// Why a running cluster stopped.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StopReason {
    /// SIGINT or SIGTERM.
    Signal(&'static str),
    /// A client sent a shutdown request (`mpx cluster stop`).
    Requested,
    /// The MPI world went down (an engine died, a client aborted, the job ended) and the
    /// cluster was not started with `restart`.
    WorldDown(String),
}

/// A bound controller: its address, hub, and the signal that a client asked to stop.
pub struct Controller {
    /// Where it listens.
    pub address: SocketAddr,
    /// Its Unix socket, for peers on this host (`None`: none could be bound).
    pub unix: Option<PathBuf>,
    /// The hub actor.
    pub hub: Addr<Hub>,
    /// Fires when a client sends a shutdown request.
    pub shutdown: oneshot::Receiver<()>,
}

/// Binds a controller (on `bind`, and on the Unix socket `unix_socket` when given) and starts
/// serving on the current actix System.
///
/// # Errors
/// [`ClusterError::Io`] if the address cannot be bound (a Unix socket that cannot be bound is
/// logged and left out: peers then use TCP).
pub async fn start_controller(
    bind: &str,
    unix_socket: Option<&Path>,
    key: Key,
    cluster_id: &str,
    max_frame: usize,
    heartbeat: Duration,
) -> Result<Controller, ClusterError> {
    let listener = listen(bind).await?;
    let address = listener.local_addr()?;
    if !address.ip().is_loopback() {
        warn!(%address, "the controller listens beyond loopback: anyone who can reach it and has the key gets in");
    }
    let (tx, shutdown) = oneshot::channel();
    let hub = Hub::new(cluster_id.to_string(), heartbeat, tx).start();
    let config = ListenerConfig { key, max_frame, heartbeat };
    let history = listener::nonce_history();
    let unix = unix_socket.and_then(|path| match bind_unix(path) {
        Ok(unix) => {
            actix::spawn(listener::serve_unix(unix, hub.clone(), config.clone(), history.clone()));
            Some(path.to_path_buf())
        }
        Err(e) => {
            warn!(path = %path.display(), error = %e, "no Unix socket: peers on this host use TCP");
            None
        }
    });
    actix::spawn(listener::serve(listener, hub.clone(), config, history));
    Ok(Controller { address, unix, hub, shutdown })
}

/// Pending connections the listener queues before accepting them (the kernel caps it at
/// `net.core.somaxconn`). A world of thousands of ranks connects at once: with the usual 128, the
/// overflow's SYNs are dropped and retried a second later.
pub const LISTEN_BACKLOG: u32 = 4096;

/// Binds `bind` (`ip:port`, or a name that resolves) with [`LISTEN_BACKLOG`].
async fn listen(bind: &str) -> Result<TcpListener, ClusterError> {
    let mut last = None;
    for addr in tokio::net::lookup_host(bind).await? {
        let socket = if addr.is_ipv4() { TcpSocket::new_v4()? } else { TcpSocket::new_v6()? };
        socket.set_reuseaddr(true)?;
        match socket.bind(addr).and_then(|()| socket.listen(LISTEN_BACKLOG)) {
            Ok(listener) => return Ok(listener),
            Err(e) => last = Some(e),
        }
    }
    Err(last.unwrap_or_else(|| std::io::Error::other(format!("{bind} resolves to no address"))).into())
}

/// Binds the Unix socket at `path` (a stale socket file of a dead controller is replaced) with
/// mode 0600; its directory, `$MPX_HOME`, is 0700.
fn bind_unix(path: &Path) -> std::io::Result<UnixListener> {
    use std::os::unix::fs::{FileTypeExt, PermissionsExt};
    if std::fs::symlink_metadata(path).is_ok_and(|m| m.file_type().is_socket()) {
        std::fs::remove_file(path)?;
    }
    let listener = UnixListener::bind(path)?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))?;
    Ok(listener)
}

/// A fresh random cluster key.
pub fn new_key() -> Key {
    let mut bytes = [0u8; 32];
    rand::rng().fill(&mut bytes);
    Key::new(bytes.to_vec())
}

/// Runs a whole cluster in the foreground until a signal, a shutdown request or the end of
/// mpirun; calls `on_ready` once all engines registered. Everything started is stopped and the
/// connection file removed before this returns, on every path.
///
/// # Errors
/// [`ClusterError`] if the cluster could not be started (nothing is left running then).
pub async fn run_cluster(
    opts: ClusterOptions,
    mut launcher: Box<dyn Launcher>,
    on_ready: impl FnOnce(&Ready),
) -> Result<StopReason, ClusterError> {
    let t0 = Instant::now();
    let path = files::connection_file(&opts.home, &opts.cluster_id);
    let _lock = files::lock_cluster(&opts.home, &opts.cluster_id)?;
    if let Ok(old) = files::read_connection_file(&path) {
        if files::controller_running(&old) {
            return Err(ClusterError::AlreadyRunning(opts.cluster_id.clone()));
        }
    }
    if let Ok(bind) = opts.bind.parse::<SocketAddr>() {
        // Refuse a wildcard with nothing to advertise before listening at all.
        address::advertised(bind, opts.advertise)?;
    }
    let key = new_key();
    let socket = files::socket_file(&opts.home, &opts.cluster_id);
    let mut ctl = start_controller(
        &opts.bind,
        Some(&socket),
        key.clone(),
        &opts.cluster_id,
        opts.max_frame,
        opts.heartbeat,
    )
    .await?;
    let _socket = ctl.unix.clone().map(RemoveOnDrop);
    let advertised = address::advertised(ctl.address, opts.advertise)?;
    if advertised != ctl.address {
        info!(bound = %ctl.address, %advertised, "the connection file gives the advertised address");
    }
    let info = ConnectionInfo {
        cluster_id: opts.cluster_id.clone(),
        address: advertised.to_string(),
        key: key.to_hex(),
        controller_pid: std::process::id(),
        engines: opts.n,
        controller_started: mpx_messages::connection::process_start_time(std::process::id()),
        unix: ctl.unix.clone(),
        host: Some(mpx_messages::connection::hostname()),
    };
    files::write_connection_file(&path, &info)?;
    let _cleanup = RemoveOnDrop(path.clone());
    let history_file = files::history_file(&opts.home, &opts.cluster_id);
    let _history = RemoveOnDrop(history_file.clone());
    let (calls_tx, mut calls) = mpsc::unbounded_channel();
    ctl.hub.do_send(SetRunner {
        calls: calls_tx,
        restart: opts.restart,
        history_file: Some(history_file),
        batch: launcher.batch(),
    });

    let mut signals = Signals::new()?;
    start_world(&opts, launcher.as_mut(), &ctl.hub, &path, &mut signals).await?;
    on_ready(&Ready {
        cluster_id: opts.cluster_id.clone(),
        n: opts.n,
        elapsed: t0.elapsed(),
        connection_file: path.clone(),
        address: advertised,
    });

    // The runner: carries out what the core asks of the launcher (see `world::deaths`).
    let mut job_running = opts.n > 0;
    let reason = loop {
        let call = tokio::select! {
            name = signals.next() => break StopReason::Signal(name),
            _ = &mut ctl.shutdown => break StopReason::Requested,
            Some(call) = calls.recv() => call,
            status = launcher.wait(), if job_running => {
                job_running = false;
                ctl.hub.do_send(Feed(Event::JobEnded { status }));
                continue;
            }
        };
        match call {
            RunnerCall::ExplainDeath { engine, rank } => {
                let cause = death_report(launcher.as_mut(), rank).await;
                ctl.hub.do_send(Feed(Event::DeathExplained { engine, cause }));
            }
            RunnerCall::EndWorld { engines, restart, why } => {
                // Ranks stuck in a collective will not finish on their own: no grace period.
                end_job(engines, launcher.as_mut(), BROKEN_WORLD_GRACE).await;
                if !restart {
                    break StopReason::WorldDown(why);
                }
                info!("restarting the MPI world after: {why}");
                if let Err(e) = start_world(&opts, launcher.as_mut(), &ctl.hub, &path, &mut signals).await {
                    break StopReason::WorldDown(format!("{why}; the restart failed: {e}"));
                }
                job_running = true;
                info!("the MPI world was restarted");
            }
            RunnerCall::StopCluster => break StopReason::Requested,
        }
    };
    info!(?reason, "stopping the cluster");
    let t1 = Instant::now();
    teardown(&ctl.hub, launcher.as_mut(), opts.grace).await;
    if matches!(reason, StopReason::WorldDown(_)) {
        // Clients are being sent the errors of their pending requests: let the sessions write
        // them before the process (and its sockets) goes away.
        tokio::time::sleep(FLUSH_GRACE).await;
    }
    info!(elapsed = ?t1.elapsed(), "cluster stopped");
    Ok(reason)
}

/// Time for client sessions to write their last replies before the controller exits.
const FLUSH_GRACE: Duration = Duration::from_millis(200);

/// Grace before signalling the job of a world that went down.
const BROKEN_WORLD_GRACE: Duration = Duration::from_millis(100);

/// How long a death waits for mpirun's report of it.
const DEATH_REPORT_WAIT: Duration = Duration::from_millis(1500);

/// Waits (bounded) for the launcher's report of how rank `rank` died: mpirun prints it as soon
/// as it has reaped the rank, before it ends the rest of the job.
async fn death_report(launcher: &mut dyn Launcher, rank: Rank) -> Option<String> {
    let deadline = Instant::now() + DEATH_REPORT_WAIT;
    let mut ended = false;
    while Instant::now() < deadline {
        if let Some(cause) = launcher.explain(rank) {
            return Some(cause);
        }
        if ended {
            // The job is over and its output read: no report is coming.
            return None;
        }
        tokio::select! {
            _ = launcher.wait() => {
                ended = true;
                // Let the output readers drain what the job printed last.
                tokio::time::sleep(Duration::from_millis(30)).await;
            }
            _ = tokio::time::sleep(Duration::from_millis(10)) => {}
        }
    }
    launcher.explain(rank)
}

/// Starts the engines' job and waits until all N engines registered; on failure, tears down
/// what was started and returns the error with the job's output.
async fn start_world(
    opts: &ClusterOptions,
    launcher: &mut dyn Launcher,
    hub: &Addr<Hub>,
    path: &std::path::Path,
    signals: &mut Signals,
) -> Result<(), ClusterError> {
    if opts.n > 0 {
        hub.do_send(Feed(Event::Launching));
    }
    launcher.start(opts.n, path)?;
    hub.do_send(Feed(Event::Launched { mpirun_pid: launcher.pid() }));
    let (ready_tx, ready_rx) = oneshot::channel();
    hub.do_send(WaitForEngines { n: opts.n as usize, ready: ready_tx });
    let started = tokio::select! {
        _ = ready_rx => Ok(()),
        status = launcher.wait() => Err(ClusterError::MpirunFailed { status, output: String::new() }),
        _ = tokio::time::sleep(opts.timeout) => Err(ClusterError::Timeout {
            n: opts.n,
            after: opts.timeout,
            output: String::new(),
        }),
        name = signals.next() => Err(ClusterError::Interrupted(name)),
    };
    if let Err(mut e) = started {
        // Let the output readers catch up with what the job printed before it ended.
        tokio::time::sleep(Duration::from_millis(50)).await;
        if let ClusterError::MpirunFailed { output, .. } | ClusterError::Timeout { output, .. } = &mut e {
            *output = launcher.output();
        }
        teardown(hub, launcher, opts.grace).await;
        return Err(e);
    }
    Ok(())
}

/// Removes a file when dropped (the connection file and the history, on every exit path).
struct RemoveOnDrop(PathBuf);

impl Drop for RemoveOnDrop {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

/// SIGINT and SIGTERM as one stream.
struct Signals {
    int: tokio::signal::unix::Signal,
    term: tokio::signal::unix::Signal,
}

impl Signals {
    fn new() -> Result<Self, ClusterError> {
        use tokio::signal::unix::{signal, SignalKind};
        Ok(Signals { int: signal(SignalKind::interrupt())?, term: signal(SignalKind::terminate())? })
    }

    async fn next(&mut self) -> &'static str {
        tokio::select! {
            _ = self.int.recv() => "SIGINT",
            _ = self.term.recv() => "SIGTERM",
        }
    }
}

/// Stops the engines and their job: ask the engines to shut down, then let the launcher end the
/// job (grace, SIGTERM, SIGKILL); finally SIGKILL any engine process on this machine that
/// outlived the job (engines are not always in the launcher's process group; a pid reported by
/// an engine on another host means nothing here).
async fn teardown(hub: &Addr<Hub>, launcher: &mut dyn Launcher, grace: Duration) {
    let engines = hub.send(StopEngines).await.unwrap_or_default();
    end_job(engines, launcher, grace).await;
}

/// Ends the engines' job (the launcher: grace, SIGTERM, SIGKILL), then SIGKILLs any engine on
/// this host that outlived it (engines are not always in the launcher's process group).
async fn end_job(engines: Vec<EngineInfo>, launcher: &mut dyn Launcher, grace: Duration) {
    launcher.stop(grace).await;
    reap(engines, grace).await;
}
