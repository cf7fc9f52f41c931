//! `mpx-engine`: what mpirun starts, one per rank.

use clap::Parser;

fn main() {
    // Its own file once registered: $MPX_HOME/cluster-ID/engine-ID.log (`mpx logs --engine ID`).
    mpx_engine::log::init();
    let opts = mpx_engine::EngineArgs::parse().options();
    if let Err(e) = mpx_engine::main_with(opts, mpx_engine::Registry::new()) {
        // One line, the reason: what `mpx cluster start` shows of mpirun's output.
        eprintln!("mpx-engine: {e}");
        std::process::exit(1);
    }
}
