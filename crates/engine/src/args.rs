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
