//! [`EngineArgs`]: the command line of `mpx-engine`, and of any engine binary built on this
//! library with its own native functions (see `examples/mpx-engine-native.rs`).

use std::{path::PathBuf, time::Duration};

use crate::{EngineOptions, Kernel};

/// One mpx engine (an MPI rank). Started by `mpx cluster start` or by hand under mpirun.
#[derive(Debug, clap::Parser)]
#[command(version)]
pub struct EngineArgs {
    /// The controller's connection file.
    #[arg(long)]
    pub connect: PathBuf,
    /// Seconds to wait for the connection file to appear.
    #[arg(long, default_value_t = 30.0)]
    pub wait: f64,
    /// The kernel that runs cells: python (embedded CPython, numpy, mpi4py) or rhai.
    #[arg(long, default_value = "python")]
    pub kernel: Kernel,
}

impl EngineArgs {
    /// The engine's options.
    pub fn options(self) -> EngineOptions {
        EngineOptions {
            connection_file: self.connect,
            wait: Duration::from_secs_f64(self.wait.max(0.0)),
            kernel: self.kernel,
        }
    }
}

/// The whole life of an engine process from its command line (`args` without the program
/// name): the log, the options, [`crate::main_with`] with no native functions. Returns the
/// exit code; an engine that fails prints one line, the reason (what `mpx cluster start` shows
/// of mpirun's output). `mpx-engine` and the Python package's `python -m mpx.engine` run this;
/// `--help`, `--version` and bad arguments print and end the process.
pub fn run_command(args: impl IntoIterator<Item = std::ffi::OsString>) -> i32 {
    use clap::Parser;
    // Its own file once registered: $MPX_HOME/cluster-ID/engine-ID.log (`mpx logs --engine ID`).
    crate::log::init();
    let opts = EngineArgs::parse_from(std::iter::once("mpx-engine".into()).chain(args)).options();
    match crate::main_with(opts, crate::Registry::new()) {
        Ok(()) => 0,
        Err(e) => {
            eprintln!("mpx-engine: {e}");
            1
        }
    }
}
