//! `mpx cluster start | stop | list`.

use std::{
    io::{BufRead, BufReader, Write},
    os::unix::process::CommandExt,
    path::PathBuf,
    process::{Command, Stdio},
    time::{Duration, Instant},
};

use anyhow::{bail, Context, Result};
use clap::{Args, Subcommand};
use mpx_client::Client;
use mpx_controller::{files, run_cluster, ClusterOptions, LocalLauncher, StopReason};
use mpx_messages::DEFAULT_MAX_FRAME;

/// One MiB, the unit of `--max-frame-mb`.
const MIB: usize = 1 << 20;

#[derive(Subcommand)]
pub enum ClusterCommand {
    /// Start a controller and N engines under mpirun.
    Start(StartArgs),
    /// Stop a cluster: engines, mpirun and controller.
    Stop(StopArgs),
    /// List the clusters under $MPX_HOME.
    List,
}

#[derive(Args)]
pub struct StartArgs {
    /// Number of engines (MPI ranks).
    #[arg(short = 'n', long = "n")]
    n: u32,
    /// Cluster id.
    #[arg(long, default_value = "default")]
    cluster_id: String,
    /// Return once the cluster is ready and leave it running in the background.
    #[arg(long)]
    daemonize: bool,
    /// Seconds the engines may take to register.
    #[arg(long, default_value_t = 60.0)]
    timeout: f64,
    /// Address the controller binds.
    #[arg(long, default_value = "127.0.0.1")]
    ip: String,
    /// The mpirun command.
    #[arg(long, default_value = "mpirun")]
    mpirun: String,
    /// The engine executable (default: `mpx-engine` next to `mpx`, or $MPX_ENGINE).
    #[arg(long)]
    engine: Option<PathBuf>,
    /// Largest frame the controller accepts, in MiB; a peer sending a bigger one is refused
    /// and disconnected. At most the default, which is also what engines and clients accept.
    #[arg(long, default_value_t = (DEFAULT_MAX_FRAME / MIB) as u32,
          value_parser = clap::value_parser!(u32).range(1..=(DEFAULT_MAX_FRAME / MIB) as i64))]
    max_frame_mb: u32,
    /// Internal: run as the daemon child of `--daemonize`, reporting readiness on stdout.
    #[arg(long, hide = true)]
    daemon_child: bool,
    /// Seconds between heartbeats; an engine that misses 3 is declared dead (0: off).
    #[arg(long, default_value_t = 1.0)]
    heartbeat: f64,
    /// Restart the MPI world when a rank dies or it is aborted (variables are lost) instead of
    /// stopping the cluster.
    #[arg(long)]
    restart: bool,
    /// Extra arguments for mpirun.
    #[arg(last = true)]
    mpirun_args: Vec<String>,
}

#[derive(Args)]
pub struct StopArgs {
    /// Cluster id (default: the only running cluster).
    #[arg(long, default_value = "")]
    cluster_id: String,
    /// Stop every cluster under $MPX_HOME.
    #[arg(long)]
    all: bool,
}

pub fn run(cmd: ClusterCommand) -> Result<i32> {
    match cmd {
        ClusterCommand::Start(args) if args.daemonize => daemonize(args),
        ClusterCommand::Start(args) => start_foreground(args),
        ClusterCommand::Stop(args) => stop(args),
        ClusterCommand::List => list(),
    }
}

fn engine_exe(explicit: Option<PathBuf>) -> PathBuf {
    if let Some(p) = explicit.or_else(|| std::env::var_os("MPX_ENGINE").map(PathBuf::from)) {
        return p;
    }
    let sibling = std::env::current_exe().ok().and_then(|exe| Some(exe.parent()?.join("mpx-engine")));
    match sibling {
        Some(p) if p.is_file() => p,
        _ => PathBuf::from("mpx-engine"),
    }
}

fn start_foreground(args: StartArgs) -> Result<i32> {
    if args.n == 0 {
        bail!("-n must be at least 1");
    }
    let mut opts = ClusterOptions::new(args.cluster_id.clone(), args.n);
    let launcher = Box::new(LocalLauncher::new(args.mpirun, args.mpirun_args, engine_exe(args.engine)));
    opts.timeout = Duration::from_secs_f64(args.timeout.max(0.0));
    opts.bind = format!("{}:0", args.ip);
    opts.heartbeat = Duration::from_secs_f64(args.heartbeat.max(0.0));
    opts.restart = args.restart;
    opts.max_frame = args.max_frame_mb as usize * MIB;
    let child = args.daemon_child;
    let system = actix::System::new();
    let result = system.block_on(run_cluster(opts, launcher, |ready| {
        let line = format!(
            "cluster {}: {} engines ready in {:.2} s (connection file {})",
            ready.cluster_id,
            ready.n,
            ready.elapsed.as_secs_f64(),
            ready.connection_file.display()
        );
        if child {
            // The parent reads this line and exits; nothing is printed on stdout after it.
            let mut out = std::io::stdout();
            let _ = writeln!(out, "ready: {line}");
            let _ = out.flush();
            tracing::info!("{line}");
        } else {
            println!("{line}");
        }
    }));
    match result {
        Ok(StopReason::WorldDown(why)) => {
            let msg = format!("the MPI world went down ({why}); cluster stopped");
            tracing::error!("{msg}");
            if !child {
                eprintln!("mpx: {msg}");
            }
            Ok(1)
        }
        Ok(reason) => {
            if !child {
                println!("cluster {} stopped ({reason:?})", args.cluster_id);
            }
            Ok(0)
        }
        Err(e) => {
            if child {
                let _ = writeln!(std::io::stdout(), "error: {e}");
            }
            Err(e.into())
        }
    }
}

/// Re-runs `mpx cluster start` as a detached child (own session, log file), waits for its
/// ready line, and returns.
fn daemonize(args: StartArgs) -> Result<i32> {
    let home = files::mpx_home();
    std::fs::create_dir_all(&home).with_context(|| format!("cannot create {}", home.display()))?;
    let log_path = files::log_file(&home, &args.cluster_id);
    let log =
        std::fs::File::create(&log_path).with_context(|| format!("cannot create {}", log_path.display()))?;
    let exe = std::env::current_exe().context("cannot find the mpx executable")?;
    let mut cmd = Command::new(exe);
    cmd.args(["cluster", "start", "--daemon-child", "-n", &args.n.to_string()])
        .args(["--cluster-id", &args.cluster_id, "--timeout", &args.timeout.to_string()])
        .args(["--ip", &args.ip, "--mpirun", &args.mpirun, "--heartbeat", &args.heartbeat.to_string()])
        .args(["--max-frame-mb", &args.max_frame_mb.to_string()]);
    if args.restart {
        cmd.arg("--restart");
    }
    if let Some(engine) = &args.engine {
        cmd.arg("--engine").arg(engine);
    }
    if !args.mpirun_args.is_empty() {
        cmd.arg("--").args(&args.mpirun_args);
    }
    cmd.stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::from(log));
    // SAFETY: setsid is async-signal-safe; the child leaves our session so a Ctrl-C in this
    // terminal does not reach the daemon.
    unsafe {
        cmd.pre_exec(|| {
            libc::setsid();
            Ok(())
        });
    }
    let mut child = cmd.spawn().context("cannot start the cluster daemon")?;
    let stdout = child.stdout.take().expect("piped stdout");
    for line in BufReader::new(stdout).lines() {
        let line = line.unwrap_or_default();
        if let Some(ready) = line.strip_prefix("ready: ") {
            println!("{ready}");
            println!("(running in the background, pid {}; log {})", child.id(), log_path.display());
            return Ok(0);
        }
        if let Some(err) = line.strip_prefix("error: ") {
            let _ = child.wait();
            bail!("{err}");
        }
    }
    let status = child.wait()?;
    let log = std::fs::read_to_string(&log_path).unwrap_or_default();
    bail!("the cluster daemon exited ({status}) before it was ready; its log:\n{log}")
}

fn stop(args: StopArgs) -> Result<i32> {
    let home = files::mpx_home();
    let targets: Vec<(String, PathBuf)> = if args.all {
        files::list_connection_files(&home)
    } else {
        let path = mpx_client::client::find_connection_file(&args.cluster_id)?;
        let id = path
            .file_stem()
            .and_then(|s| s.to_str())
            .and_then(|s| s.strip_prefix("cluster-"))
            .unwrap_or(&args.cluster_id)
            .to_string();
        vec![(id, path)]
    };
    if targets.is_empty() {
        println!("no cluster is running");
    }
    let mut code = 0;
    for (id, path) in targets {
        if let Err(e) = stop_one(&id, &path) {
            eprintln!("mpx: cluster {id}: {e:#}");
            code = 1;
        }
    }
    Ok(code)
}

fn stop_one(id: &str, path: &std::path::Path) -> Result<()> {
    let t0 = Instant::now();
    let info = files::read_connection_file(path)?;
    let pid = info.controller_pid;
    if !files::pid_alive(pid) {
        let _ = std::fs::remove_file(path);
        println!("cluster {id} was not running (removed its stale connection file)");
        return Ok(());
    }
    match Client::connect(&path.to_string_lossy()) {
        Ok(client) => {
            if let Err(e) = client.shutdown(Duration::from_secs(5)) {
                tracing::warn!("shutdown request: {e}");
            }
        }
        Err(e) => tracing::warn!("cannot reach the controller ({e}); signalling it"),
    }
    // The controller tears down its engines and mpirun, then exits; escalate if it does not.
    let steps = [(Duration::from_secs(15), libc::SIGTERM), (Duration::from_secs(5), libc::SIGKILL)];
    for (wait, sig) in steps {
        let deadline = Instant::now() + wait;
        while files::pid_alive(pid) && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(5));
        }
        if !files::pid_alive(pid) {
            break;
        }
        tracing::warn!(pid, sig, "controller still running; signalling it");
        // SAFETY: pid is the controller recorded in this cluster's connection file.
        unsafe { libc::kill(pid as libc::pid_t, sig) };
    }
    let _ = std::fs::remove_file(path);
    println!("cluster {id} stopped in {:.2} s", t0.elapsed().as_secs_f64());
    Ok(())
}

fn list() -> Result<i32> {
    let home = files::mpx_home();
    let found = files::list_connection_files(&home);
    if found.is_empty() {
        println!("no cluster is running (in {})", home.display());
    }
    for (id, path) in found {
        let state = match files::read_connection_file(&path) {
            Ok(info) if files::pid_alive(info.controller_pid) => {
                match Client::connect(&path.to_string_lossy()).and_then(|c| c.info(Duration::from_secs(2))) {
                    Ok(ci) => format!(
                        "running, {} engines, controller pid {}, mpirun pid {}, {}",
                        ci.engines.len(),
                        ci.controller_pid,
                        ci.mpirun_pid.map(|p| p.to_string()).unwrap_or_else(|| "-".into()),
                        info.address
                    ),
                    Err(e) => format!("not answering: {e}"),
                }
            }
            Ok(_) => "stale (controller gone)".into(),
            Err(e) => format!("unreadable: {e}"),
        };
        println!("{id}\t{state}");
    }
    Ok(0)
}
