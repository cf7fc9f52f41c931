//! `mpx`: start and stop clusters, run code on engines, and the interactive console.

mod cli;

use clap::Parser;

fn main() {
    let args = cli::Cli::parse();
    cli::init_logging(&args);
    if !args.runs_a_cluster() {
        // A command whose output goes to a closed pipe (`mpx px ... | head -1`) ends quietly, as
        // Unix tools do, instead of panicking in `print!`. Commands that run a controller keep
        // Rust's default (SIGPIPE ignored): they must always reach their cleanup.
        // SAFETY: restoring a signal's default disposition, before any other thread exists.
        unsafe {
            let _ = nix::sys::signal::signal(nix::sys::signal::SIGPIPE, nix::sys::signal::SigHandler::SigDfl);
        }
    }
    match cli::run(args) {
        Ok(code) => std::process::exit(code),
        Err(e) => {
            eprintln!("mpx: error: {e:#}");
            std::process::exit(1);
        }
    }
}
