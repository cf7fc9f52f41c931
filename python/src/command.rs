//! The `mpx` command and the engine, run in this interpreter: the package's `mpx` console
//! script (and `python -m mpx`) and `python -m mpx.engine` call these, so one `pip install`
//! gives the client, the command and an engine of the user's own environment.

use std::{ffi::OsString, path::PathBuf};

use pyo3::prelude::*;

/// Runs the `mpx` command with `args` and returns its exit code. `program` is how to run it
/// again (`[python, "-m", "mpx"]`, for the daemon of `cluster start --daemonize`); `python`,
/// when given, is the interpreter whose `-m mpx.engine` the clusters it starts run as engines.
/// Holds no GIL while it runs.
#[pyfunction]
#[pyo3(signature = (program, args, python=None))]
pub fn run_command(
    py: Python<'_>,
    program: Vec<OsString>,
    args: Vec<OsString>,
    python: Option<PathBuf>,
) -> i32 {
    py.detach(|| mpx_cli::run_command(mpx_cli::Invocation { program, args, python }))
}

/// Runs an mpx engine in this interpreter, on this thread (which must be the main thread: it
/// becomes the engine's MPI thread, and Python cells run on it as in the engine binary), with
/// the engine's command-line `args`; returns its exit code. Holds no GIL while it waits.
#[pyfunction]
pub fn run_engine(py: Python<'_>, args: Vec<OsString>) -> i32 {
    py.detach(|| mpx_engine::run_command(args))
}
