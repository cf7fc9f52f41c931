//! `mpx-engine`: what mpirun starts, one per rank.

use clap::Parser;

fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("MPX_LOG").unwrap_or_else(|_| "warn".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    let opts = mpx_engine::EngineArgs::parse().options();
    mpx_engine::main_with(opts, mpx_engine::Registry::new())?;
    Ok(())
}
