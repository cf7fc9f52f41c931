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
    match cli::run(args) {
        Ok(code) => std::process::exit(code),
        Err(e) => {
            eprintln!("mpx: error: {e:#}");
            std::process::exit(1);
        }
    }
}
