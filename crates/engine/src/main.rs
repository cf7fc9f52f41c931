//! `mpx-engine`: what mpirun starts, one per rank.

use std::{path::PathBuf, time::Duration};

use clap::Parser;

/// One mpx engine (an MPI rank). Started by `mpx cluster start` or by hand under mpirun.
#[derive(Parser)]
#[command(version)]
struct Args {
    /// The controller's connection file.
    #[arg(long)]
    connect: PathBuf,
    /// Seconds to wait for the connection file to appear.
    #[arg(long, default_value_t = 30.0)]
    wait: f64,
    /// The kernel that runs cells: python (embedded CPython, numpy, mpi4py) or rhai.
    #[arg(long, default_value = "python")]
    kernel: mpx_engine::Kernel,
}

fn main() -> anyhow::Result<()> {
    // Its own file once registered: $MPX_HOME/cluster-ID/engine-ID.log (`mpx logs --engine ID`).
    mpx_engine::log::init();
    let args = Args::parse();
    let opts = mpx_engine::EngineOptions {
        connection_file: args.connect,
        wait: Duration::from_secs_f64(args.wait),
        kernel: args.kernel,
    };
    mpx_engine::main_with(opts, mpx_engine::Registry::new())?;
    Ok(())
}
