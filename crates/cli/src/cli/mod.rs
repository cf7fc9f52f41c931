//! Command-line definitions and dispatch.

mod cluster;
mod console;
mod controller;
mod daemon;
mod data;
mod engines;
mod exec;

use std::{path::PathBuf, time::Duration};

use anyhow::Result;
use clap::{Args, Parser, Subcommand};
use mpx_client::Targets;
use mpx_controller::Kernel;

/// Interactive parallel computing on MPI.
#[derive(Parser)]
#[command(name = "mpx", version)]
pub struct Cli {
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
    /// What every engine is doing: idle, running a cell, or inside an MPI call (and how long).
    Where(exec::WhereArgs),
    /// Interactive console: `%px CODE`, `%autopx`, plain lines run locally.
    Console(console::ConsoleArgs),
    /// Bind a variable on the engines to an array from a `.npy` file (MPI Bcast among them).
    Push(data::PutArgs),
    /// Fetch a variable from the engines into `.npy` files.
    Pull(data::GetArgs),
    /// Split a `.npy` array along axis 0 over the engines (MPI Scatterv).
    Scatter(data::PutArgs),
    /// Concatenate a variable along axis 0 from the engines into a `.npy` file (MPI Gatherv).
    Gather(data::GetArgs),
}

/// How engines are started: the mpirun command, the engine executable and its kernel (for
/// `cluster start` and `cluster engines`).
#[derive(Args, Clone, Debug)]
pub struct EngineCommand {
    /// The mpirun command.
    #[arg(long, default_value = "mpirun")]
    pub mpirun: String,
    /// The engine executable (default: `mpx-engine` next to `mpx`, or $MPX_ENGINE).
    #[arg(long)]
    pub engine: Option<PathBuf>,
    /// The cell language of the engines (`mpx-engine --kernel`).
    #[arg(long, default_value = "python", value_parser = parse_kernel)]
    pub kernel: Kernel,
}

/// Parses `--kernel` (`python` or `rhai`; the error lists both).
pub fn parse_kernel(s: &str) -> Result<Kernel, String> {
    s.parse()
}

/// Which cluster and engines a command talks to.
#[derive(Args, Clone, Debug)]
pub struct Target {
    /// Cluster id or connection file (default: the only running cluster).
    #[arg(long, default_value = "")]
    cluster_id: String,
    /// Engines to run on, e.g. `0,2` or `1-3` (default: all).
    #[arg(long, value_parser = parse_targets, default_value = "all")]
    targets: Targets,
    /// Seconds to wait for the result.
    #[arg(long, default_value_t = 60.0)]
    timeout: f64,
}

impl Target {
    fn timeout(&self) -> Duration {
        Duration::from_secs_f64(self.timeout.max(0.0))
    }
}

/// Parses `all`, `0,2`, `1-3` or a mix such as `0,2-3`.
pub fn parse_targets(text: &str) -> Result<Targets, String> {
    let text = text.trim();
    if text == "all" {
        return Ok(Targets::All);
    }
    if text.is_empty() {
        return Err("empty target list: give engine ids (0,2 or 1-3) or all".into());
    }
    let mut ids = Vec::new();
    for part in text.split(',') {
        let part = part.trim();
        let bad = || format!("bad target {part:?}: expected e.g. 0,2 or 1-3 or all");
        if let Some((a, b)) = part.split_once('-') {
            let (a, b): (u32, u32) =
                (a.trim().parse().map_err(|_| bad())?, b.trim().parse().map_err(|_| bad())?);
            if a > b {
                return Err(bad());
            }
            ids.extend(a..=b);
        } else {
            ids.push(part.parse().map_err(|_| bad())?);
        }
    }
    Ok(Targets::ids(ids))
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
        Command::Where(args) => exec::where_(args),
        Command::Console(args) => console::run(args),
        Command::Push(args) => data::push(args),
        Command::Pull(args) => data::pull(args),
        Command::Scatter(args) => data::scatter(args),
        Command::Gather(args) => data::gather(args),
    }
}

/// Starts `cmd`'s process in a session (and process group) of its own, away from this
/// terminal's signals; its process group is then its pid.
pub(crate) fn new_session(cmd: &mut std::process::Command) {
    use std::os::unix::process::CommandExt;
    // SAFETY: setsid is async-signal-safe, as the code between fork and exec must be.
    unsafe {
        cmd.pre_exec(|| {
            libc::setsid();
            Ok(())
        });
    }
}
