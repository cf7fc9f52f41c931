//! Command-line definitions and dispatch.

mod cluster;
mod console;
mod controller;
mod daemon;
mod data;
mod engines;
mod exec;
mod logging;
mod logs;
mod progress;
mod recover;
pub(crate) mod session;
mod targets;

use std::{path::PathBuf, time::Duration};

use anyhow::Result;
use clap::{Args, CommandFactory, Parser, Subcommand};
use clap_verbosity_flag::{Verbosity, WarnLevel};
use mpx_client::{Client, Targets};
use mpx_controller::Kernel;

pub use logging::init_logging;
use targets::{parse_targets, TargetSpec};

/// What `mpx --help` says about logging, after the commands.
const LOGGING_HELP: &str = "\
Logging:
  Warnings go to stderr; -v shows more (-v info, -vv debug, -vvv trace), -q less (-q errors
  only, -qq nothing). MPX_LOG overrides both with a tracing filter, e.g. MPX_LOG=debug or
  MPX_LOG=warn,mpx_controller=debug. A cluster's controller always logs (at info, or as
  MPX_LOG says) to $MPX_HOME/cluster-ID.log and each engine to
  $MPX_HOME/cluster-ID/engine-ID.log; `mpx logs` shows them. $MPX_HOME is ~/.mpx by default.";

/// Interactive parallel computing on MPI.
#[derive(Parser)]
#[command(name = "mpx", version, after_help = LOGGING_HELP)]
pub struct Cli {
    #[command(flatten)]
    verbosity: Verbosity<WarnLevel>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Start, stop and list clusters.
    #[command(subcommand)]
    Cluster(cluster::ClusterCommand),
    /// Run a controller alone; engines are started by hand under mpirun.
    #[command(subcommand)]
    Controller(controller::ControllerCommand),
    /// Run code on engines (like %px).
    Px(exec::PxArgs),
    /// Run a file on engines.
    Run(exec::RunArgs),
    /// The result of a request whose client stopped waiting (`px --timeout`), kept by the
    /// controller: the results of requests nobody waits for are kept for an hour (at most
    /// 1000 requests and 64 MiB; the oldest go first) and given once.
    Wait(exec::WaitArgs),
    /// What every engine is doing: idle, running a cell, or inside an MPI call (and how long).
    Where(exec::WhereArgs),
    /// Interrupt the running cells (Ctrl-C from another terminal): ranks inside an MPI call
    /// are freed too (the world restarts when a call cannot be cancelled)
    Interrupt(recover::InterruptArgs),
    /// Restart the cluster's MPI world: same engine ids, controller and connection file;
    /// variables are lost. Returns when the new world is ready
    Restart(recover::RestartArgs),
    /// The session's history: every cell, run, push and pull, numbered, with targets and
    /// outcomes (`-n N`, `--errors`)
    History(session::HistoryArgs),
    /// Run the session before the last restart again (its cells and runs that succeeded, its
    /// pushes of unchanged .npy files), stopping at the first failure
    Replay(session::ReplayArgs),
    /// Write the session since the last restart as a Python program for `mpirun -n N python3
    /// FILE.py` (and a job script with --sbatch/--pbs)
    Export(session::ExportArgs),
    /// Interactive console: `%px CODE`, `%autopx`, plain lines run locally.
    Console(console::ConsoleArgs),
    /// Bind a variable on the engines to an array from a `.npy` file (MPI Bcast among them;
    /// --shared: one read-only copy for all the engines of the controller's host).
    Push(data::PushArgs),
    /// Fetch a variable from the engines into `.npy` files.
    Pull(data::GetArgs),
    /// Split a `.npy` array along axis 0 over the engines (MPI Scatterv).
    Scatter(data::PutArgs),
    /// Concatenate a variable along axis 0 from the engines into a `.npy` file (MPI Gatherv).
    Gather(data::GatherArgs),
    /// Show a cluster's log, or one engine's.
    Logs(logs::LogsArgs),
    /// Print a shell completion script: `source <(mpx completions bash)`.
    Completions {
        /// The shell.
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
}

/// How engines are started: the mpirun command, the engine executable and its kernel (for
/// `cluster start` and `cluster engines`).
#[derive(Args, Clone, Debug)]
pub struct EngineCommand {
    /// The mpirun command.
    #[arg(long, default_value = "mpirun")]
    pub mpirun: String,
    /// The engine executable (default: $MPX_ENGINE, or `mpx-engine` next to `mpx`; from the
    /// Python package: its interpreter's `python -m mpx.engine`).
    #[arg(long, conflicts_with = "python")]
    pub engine: Option<PathBuf>,
    /// Run the engines in this Python interpreter (`PATH -m mpx.engine`; its environment must
    /// have the mpx package), default $MPX_PYTHON.
    #[arg(long, value_name = "PATH")]
    pub python: Option<PathBuf>,
    /// The cell language of the engines (`mpx-engine --kernel`).
    #[arg(long, default_value = "python", value_parser = parse_kernel)]
    pub kernel: Kernel,
}

/// A command-line value clap's own parsers do not check, refused (targets have their own,
/// [`targets::TargetError`]).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ArgError {
    /// `--kernel` names no kernel.
    #[error("unknown kernel {given:?}: expected one of {}", kernel_names())]
    UnknownKernel {
        /// The name given.
        given: String,
    },
    /// `--walltime` is not `[D-]HH:MM:SS`-like.
    #[error("bad walltime {given:?}: expected HH:MM:SS")]
    Walltime {
        /// The limit given.
        given: String,
    },
}

/// The kernels' names, for [`ArgError::UnknownKernel`].
fn kernel_names() -> String {
    Kernel::ALL.map(Kernel::name).join(", ")
}

/// Parses `--kernel` (`python` or `rhai`; the error lists both).
///
/// # Errors
/// [`ArgError::UnknownKernel`].
pub fn parse_kernel(s: &str) -> Result<Kernel, ArgError> {
    Kernel::ALL.into_iter().find(|k| k.name() == s).ok_or_else(|| ArgError::UnknownKernel { given: s.into() })
}

/// Which cluster and engines a command talks to.
#[derive(Args, Clone, Debug)]
pub struct Target {
    /// Cluster id or connection file [default: the only running cluster].
    #[arg(long, default_value = "", hide_default_value = true)]
    cluster_id: String,
    /// Engines to run on: all, ids 0,2, ranges 1-3, or Python indexes and slices of the
    /// engines: -1, ::2, 1:3.
    #[arg(long, value_parser = parse_targets, default_value = "all", allow_hyphen_values = true)]
    targets: TargetSpec,
    /// Seconds to wait for the result.
    #[arg(long, default_value_t = 60.0)]
    timeout: f64,
}

impl Target {
    fn timeout(&self) -> Duration {
        Duration::from_secs_f64(self.timeout.max(0.0))
    }

    /// The engines `--targets` names on `client`'s cluster.
    fn targets(&self, client: &Client) -> Result<Targets> {
        self.targets.resolve(client)
    }
}

impl Cli {
    /// Whether this command runs (or starts) a controller: `cluster start` and `controller
    /// start`, in the foreground or as the daemon's child.
    pub fn runs_a_cluster(&self) -> bool {
        matches!(&self.command, Command::Cluster(cluster::ClusterCommand::Start(_)) | Command::Controller(_))
    }
}

/// Runs a command; returns the process exit code.
pub fn run(cli: Cli) -> Result<i32> {
    match cli.command {
        Command::Cluster(cmd) => cluster::run(cmd),
        Command::Controller(cmd) => controller::run(cmd),
        Command::Px(args) => exec::px(args),
        Command::Run(args) => exec::run_file(args),
        Command::Wait(args) => exec::wait(args),
        Command::Where(args) => exec::where_(args),
        Command::Interrupt(args) => recover::interrupt(args),
        Command::Restart(args) => recover::restart(args),
        Command::History(args) => session::history(args),
        Command::Replay(args) => session::replay(args),
        Command::Export(args) => session::export(args),
        Command::Console(args) => console::run(args),
        Command::Push(args) => data::push(args),
        Command::Pull(args) => data::pull(args),
        Command::Scatter(args) => data::scatter(args),
        Command::Gather(args) => data::gather(args),
        Command::Logs(args) => logs::run(args),
        Command::Completions { shell } => {
            clap_complete::generate(shell, &mut Cli::command(), "mpx", &mut std::io::stdout());
            Ok(0)
        }
    }
}

/// Starts `cmd`'s process in a session (and process group) of its own, away from this
/// terminal's signals; its process group is then its pid.
pub(crate) fn new_session(cmd: &mut std::process::Command) {
    use std::os::unix::process::CommandExt;
    // SAFETY: setsid is async-signal-safe, as the code between fork and exec must be.
    unsafe {
        cmd.pre_exec(|| nix::unistd::setsid().map(drop).map_err(std::io::Error::from));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refused_values_read_as_they_did() {
        assert_eq!(parse_kernel("rhai"), Ok(Kernel::Rhai));
        let unknown = parse_kernel("perl").unwrap_err();
        // The same text as the kernel's own parser gives.
        assert_eq!(unknown.to_string(), "perl".parse::<Kernel>().unwrap_err().to_string());
        assert_eq!(unknown.to_string(), "unknown kernel \"perl\": expected one of python, rhai");
        assert!(cluster::parse_walltime("1-02:00:00").is_ok());
        assert_eq!(
            cluster::parse_walltime("2h").unwrap_err().to_string(),
            "bad walltime \"2h\": expected HH:MM:SS"
        );
    }

    #[test]
    fn clap_shows_the_typed_errors() {
        let refused = Cli::try_parse_from(["mpx", "px", "--targets", "3-1", "1"]).err().expect("refused");
        assert!(refused.to_string().contains("the range is empty (3 > 1)"), "{refused}");
    }
}
