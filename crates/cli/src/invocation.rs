//! How this `mpx` was invoked: as the `mpx` executable, or from the Python package (its `mpx`
//! console script, or `python -m mpx`), which runs the same command inside an interpreter.
//! The daemon of `cluster start --daemonize` re-runs the command the same way, and clusters
//! started from a Python environment run that interpreter's engines (`python -m mpx.engine`).

use std::{ffi::OsString, path::PathBuf, sync::OnceLock};

/// The way back into this command, and the Python it runs in, if any.
#[derive(Debug, Clone)]
pub struct Invocation {
    /// The words that run `mpx` again (`[exe]`, or `[python, -m, mpx]`).
    pub program: Vec<OsString>,
    /// The command's arguments (after the program).
    pub args: Vec<OsString>,
    /// The interpreter `mpx` runs in, when started from the Python package: its engines are
    /// that interpreter's, unless `--engine`, `--python` or `$MPX_ENGINE` say otherwise.
    pub python: Option<PathBuf>,
}

static INVOCATION: OnceLock<Invocation> = OnceLock::new();

/// Notes how this process was invoked (once, before the command runs).
pub(crate) fn set(invocation: Invocation) {
    let _ = INVOCATION.set(invocation);
}

/// How this process was invoked: what [`set`] noted, else this executable and its arguments.
pub(crate) fn get() -> Invocation {
    INVOCATION
        .get_or_init(|| Invocation {
            program: std::env::current_exe().map(OsString::from).into_iter().collect(),
            args: std::env::args_os().skip(1).collect(),
            python: None,
        })
        .clone()
}
