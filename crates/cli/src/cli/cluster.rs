//! `mpx cluster start | stop | list`.

use std::{
    path::PathBuf,
    time::{Duration, Instant},
};

use anyhow::{bail, Context, Result};
use clap::{Args, Subcommand, ValueEnum};
use mpx_client::Client;
use mpx_controller::{
    files,
    launcher::{pbs::Pbs, slurm::Slurm, template::shell_quote, BatchLauncher, BatchOptions, EngineProgram},
    ClusterOptions, Launcher, LocalLauncher,
};

use mpx_messages::DEFAULT_MAX_FRAME;
use nix::sys::signal::{kill, Signal};

use super::{daemon, ArgError, EngineCommand};

/// One MiB, the unit of `--max-frame-mb`.
const MIB: usize = 1 << 20;

#[derive(Subcommand)]
pub enum ClusterCommand {
    /// Start a controller and N engines (under mpirun, or as a Slurm or PBS job).
    Start(StartArgs),
    /// Stop a cluster: engines, their job and the controller.
    Stop(StopArgs),
    /// List the clusters under $MPX_HOME.
    List,
    /// Add another MPI world (engine set) of N engines to a running cluster.
    Engines(super::engines::EnginesArgs),
}

/// How the engines are started.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum LauncherKind {
    /// mpirun on this machine.
    Local,
    /// A Slurm batch job (sbatch; mpirun inside the allocation).
    Slurm,
    /// A PBS batch job (qsub; mpirun inside the job).
    Pbs,
}

#[derive(Args)]
pub struct StartArgs {
    /// Number of engines (MPI ranks).
    #[arg(short = 'n', long = "engines", visible_alias = "n", value_name = "N")]
    n: u32,
    /// Cluster id.
    #[arg(long, default_value = "default")]
    cluster_id: String,
    /// Return once the cluster is ready and leave it running in the background.
    #[arg(long)]
    daemonize: bool,
    /// Seconds the engines may take to register (for batch jobs: including the time queued).
    #[arg(long, default_value_t = 60.0)]
    timeout: f64,
    /// Address the controller binds and writes into the connection file (default 127.0.0.1;
    /// 0.0.0.0 listens everywhere and needs --interface for the address engines use).
    #[arg(long)]
    ip: Option<String>,
    /// Network interface whose address the controller binds (or, with --ip 0.0.0.0,
    /// advertises) so that engines on other hosts reach it.
    #[arg(long, value_name = "NAME")]
    interface: Option<String>,
    /// How the engines are started.
    #[arg(long, value_enum, default_value = "local")]
    launcher: LauncherKind,
    /// Queue (PBS) or partition (Slurm) of the engines' job.
    #[arg(long)]
    queue: Option<String>,
    /// Time limit of the engines' job, HH:MM:SS.
    #[arg(long, value_parser = parse_walltime)]
    walltime: Option<String>,
    /// Job script template instead of the built-in one. It may use the variables n, queue,
    /// walltime, connection_file, engine, job_name, mpirun and kernel, each written in braces
    /// (`{queue}`).
    #[arg(long, value_name = "FILE")]
    launcher_template: Option<PathBuf>,
    /// How the engines are started.
    #[command(flatten)]
    engines: EngineCommand,
    /// Largest frame the controller accepts, in MiB; a peer sending a bigger one is refused
    /// and disconnected. At most the default, which is also what engines and clients accept.
    #[arg(long, default_value_t = (DEFAULT_MAX_FRAME / MIB) as u32,
          value_parser = clap::value_parser!(u32).range(1..=(DEFAULT_MAX_FRAME / MIB) as i64))]
    max_frame_mb: u32,
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

/// Accepts `[D-]HH:MM:SS`-like limits (digits, `:` and `-`).
pub(super) fn parse_walltime(text: &str) -> Result<String, ArgError> {
    let ok = !text.is_empty()
        && text.chars().all(|c| c.is_ascii_digit() || c == ':' || c == '-')
        && text.chars().next().is_some_and(|c| c.is_ascii_digit());
    if ok {
        Ok(text.to_string())
    } else {
        Err(ArgError::Walltime { given: text.to_string() })
    }
}

impl StartArgs {
    /// The cluster id and whether the command daemonizes (for the log file).
    pub(super) fn log_identity(&self) -> (&str, bool) {
        (&self.cluster_id, self.daemonize)
    }
}

#[derive(Args)]
pub struct StopArgs {
    /// Cluster id [default: the only running cluster].
    #[arg(long, default_value = "", hide_default_value = true)]
    cluster_id: String,
    /// Stop every cluster under $MPX_HOME.
    #[arg(long)]
    all: bool,
}

pub fn run(cmd: ClusterCommand) -> Result<i32> {
    match cmd {
        ClusterCommand::Start(args) if args.daemonize && !daemon::is_daemon_child() => {
            daemon::daemonize(&args.cluster_id, args.n as usize)
        }
        ClusterCommand::Start(args) => start_foreground(args),
        ClusterCommand::Stop(args) => stop(args),
        ClusterCommand::List => list(),
        ClusterCommand::Engines(args) => super::engines::run(args),
    }
}

/// The program of the engines: `--engine`, `--python`, `$MPX_ENGINE`, `$MPX_PYTHON`, the
/// interpreter this command runs in (when started from the Python package), `mpx-engine` next
/// to this executable, or `mpx-engine` on PATH.
pub(super) fn engine_program(cmd: &EngineCommand) -> EngineProgram {
    let env = |name: &str| std::env::var_os(name).filter(|v| !v.is_empty()).map(PathBuf::from);
    if let Some(exe) = cmd.engine.clone() {
        return EngineProgram::Binary(exe);
    }
    if let Some(python) = cmd.python.clone() {
        return EngineProgram::Python(python);
    }
    if let Some(exe) = env("MPX_ENGINE") {
        return EngineProgram::Binary(exe);
    }
    if let Some(python) = env("MPX_PYTHON").or(crate::invocation::get().python) {
        return EngineProgram::Python(python);
    }
    let sibling = std::env::current_exe().ok().and_then(|exe| Some(exe.parent()?.join("mpx-engine")));
    match sibling {
        Some(p) if p.is_file() => EngineProgram::Binary(p),
        _ => EngineProgram::default(),
    }
}

/// The launcher the arguments ask for. The engines run in the current directory (the one
/// `mpx cluster start` was run in: the daemon does not change it), so that cells find the
/// user's files and modules there.
fn launcher(args: &StartArgs) -> Result<Box<dyn Launcher>> {
    let engine = engine_program(&args.engines);
    let workdir = std::env::current_dir().context("cannot read the current directory")?;
    let kernel = args.engines.kernel;
    if args.launcher == LauncherKind::Local {
        if args.queue.is_some() || args.walltime.is_some() || args.launcher_template.is_some() {
            bail!("--queue, --walltime and --launcher-template need --launcher slurm or pbs");
        }
        let mut local =
            LocalLauncher::new(args.engines.mpirun.clone(), args.mpirun_args.clone(), engine, kernel);
        local.workdir = Some(workdir);
        return Ok(Box::new(local));
    }
    let template = match &args.launcher_template {
        Some(path) => Some(
            std::fs::read_to_string(path)
                .with_context(|| format!("cannot read the launcher template {}", path.display()))?,
        ),
        None => None,
    };
    let mpirun = std::iter::once(&args.engines.mpirun).chain(&args.mpirun_args).map(|a| shell_quote(a));
    let opts = BatchOptions {
        queue: args.queue.clone().unwrap_or_default(),
        walltime: args.walltime.clone().unwrap_or_default(),
        template,
        engine,
        mpirun: mpirun.collect::<Vec<_>>().join(" "),
        job_name: format!("mpx-{}", args.cluster_id),
        poll: Duration::from_secs(1),
        kernel,
        workdir: Some(workdir),
    };
    Ok(match args.launcher {
        LauncherKind::Slurm => Box::new(BatchLauncher::new(Slurm::default(), opts)),
        _ => Box::new(BatchLauncher::new(Pbs::default(), opts)),
    })
}

fn start_foreground(args: StartArgs) -> Result<i32> {
    if args.n == 0 {
        bail!("-n must be at least 1 (for a controller without engines: mpx controller start)");
    }
    let launcher = launcher(&args)?;
    let mut opts = ClusterOptions::new(args.cluster_id.clone(), args.n);
    opts.timeout = Duration::from_secs_f64(args.timeout.max(0.0));
    let listen = mpx_controller::address::resolve(args.ip.as_deref(), args.interface.as_deref(), 0)?;
    (opts.bind, opts.advertise) = (listen.bind, listen.advertise);
    opts.heartbeat = Duration::from_secs_f64(args.heartbeat.max(0.0));
    opts.restart = args.restart;
    opts.max_frame = args.max_frame_mb as usize * MIB;
    daemon::run_foreground(opts, launcher, |ready| {
        format!(
            "cluster {}: {} engines ready in {:.2} s (connection file {})",
            ready.cluster_id,
            ready.n,
            ready.elapsed.as_secs_f64(),
            ready.connection_file.display()
        )
    })
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
    if !files::controller_running(&info) {
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
    let steps = [(Duration::from_secs(15), Signal::SIGTERM), (Duration::from_secs(5), Signal::SIGKILL)];
    for (wait, sig) in steps {
        let deadline = Instant::now() + wait;
        while files::pid_alive(pid) && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(5));
        }
        if !files::pid_alive(pid) {
            break;
        }
        // Only the controller this file names: the pid is checked against its start time.
        if !files::controller_running(&info) {
            break;
        }
        tracing::warn!(pid, %sig, "controller still running; signalling it");
        let _ = kill(nix::unistd::Pid::from_raw(pid as i32), sig);
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
        return Ok(0);
    }
    let mut table = comfy_table::Table::new();
    table.load_style(comfy_table::presets::NOTHING).set_header([
        "CLUSTER",
        "STATE",
        "ENGINES",
        "CONTROLLER PID",
        "MPIRUN PID",
        "ADDRESS",
    ]);
    for (id, path) in found {
        let row = match files::read_connection_file(&path) {
            Ok(info) if files::controller_running(&info) => {
                match Client::connect(&path.to_string_lossy()).and_then(|c| c.info(Duration::from_secs(2))) {
                    Ok(ci) => [
                        id,
                        "running".into(),
                        ci.engines.len().to_string(),
                        ci.controller_pid.to_string(),
                        ci.mpirun_pid.map(|p| p.to_string()).unwrap_or_else(|| "-".into()),
                        info.address,
                    ],
                    Err(e) => [
                        id,
                        format!("not answering: {e}"),
                        "-".into(),
                        info.controller_pid.to_string(),
                        "-".into(),
                        info.address,
                    ],
                }
            }
            Ok(info) => [
                id,
                "stale (controller gone)".into(),
                "-".into(),
                info.controller_pid.to_string(),
                "-".into(),
                info.address,
            ],
            Err(e) => [id, format!("unreadable: {e}"), "-".into(), "-".into(), "-".into(), "-".into()],
        };
        table.add_row(row);
    }
    println!("{}", table.trim_fmt());
    Ok(0)
}
