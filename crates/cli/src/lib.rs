//! The `mpx` command, as a library: the `mpx` executable's `main` is [`run_command`], and the
//! Python package runs the same command in its interpreter (its `mpx` console script and
//! `python -m mpx`), so one `pip install` gives the command too.
//!
//! The commands' errors are `anyhow` errors, printed by [`run_command`] (this crate is a
//! binary's code); the values clap parses with our own parsers (`--targets`, `--kernel`,
//! `--walltime`) are refused with typed errors (`TargetError`, `ArgError`), which clap shows.

mod cli;
mod invocation;

pub use invocation::Invocation;

use std::ffi::OsString;

use clap::Parser;

/// Runs `mpx` with the arguments of `invocation` and returns its exit code (errors are
/// printed on stderr as `mpx: error: ...`). `--help`, `--version` and bad arguments print
/// and end the process, as they do in the executable.
pub fn run_command(invocation: Invocation) -> i32 {
    let args =
        cli::Cli::parse_from(std::iter::once(OsString::from("mpx")).chain(invocation.args.iter().cloned()));
    invocation::set(invocation);
    cli::init_logging(&args);
    if !args.runs_a_cluster() {
        // A command whose output goes to a closed pipe (`mpx px ... | head -1`) ends quietly, as
        // Unix tools do, instead of panicking in `print!`. Commands that run a controller keep
        // Rust's default (SIGPIPE ignored): they must always reach their cleanup.
        // SAFETY: restoring a signal's default disposition, before this command starts threads.
        unsafe {
            let _ = nix::sys::signal::signal(nix::sys::signal::SIGPIPE, nix::sys::signal::SigHandler::SigDfl);
        }
    }
    match cli::run(args) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("mpx: error: {e:#}");
            1
        }
    }
}
