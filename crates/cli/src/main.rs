//! `mpx`: start and stop clusters, run code on engines, and the interactive console.

mod cli;

use clap::Parser;

fn main() {
    tracing_subscriber::fmt()
        .with_env_filter(
            // Warnings, plus what is done with the batch system (commands run, job ids).
            tracing_subscriber::EnvFilter::try_from_env("MPX_LOG")
                .unwrap_or_else(|_| "warn,mpx::batch=info".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    let args = cli::Cli::parse();
    if !args.runs_a_cluster() {
        // A command whose output goes to a closed pipe (`mpx px ... | head -1`) ends quietly, as
        // Unix tools do, instead of panicking in `print!`. Commands that run a controller keep
        // Rust's default (SIGPIPE ignored): they must always reach their cleanup.
        // SAFETY: restoring a signal's default disposition, before any other thread exists.
        unsafe {
            libc::signal(libc::SIGPIPE, libc::SIG_DFL);
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
