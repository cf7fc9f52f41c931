//! `mpx-engine`: what mpirun starts, one per rank.

use clap::Parser;

fn main() -> anyhow::Result<()> {
    // Its own file once registered: $MPX_HOME/cluster-ID/engine-ID.log (`mpx logs --engine ID`).
    mpx_engine::log::init();
    let opts = mpx_engine::EngineArgs::parse().options();
    mpx_engine::main_with(opts, mpx_engine::Registry::new())?;
    Ok(())
}
