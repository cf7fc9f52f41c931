//! `mpx interrupt` and `mpx restart`: getting a session out of a stuck cell.

use std::time::{Duration, Instant};

use anyhow::Result;
use clap::Args;
use mpx_client::Client;

use super::Target;

#[derive(Args)]
pub struct InterruptArgs {
    #[command(flatten)]
    target: Target,
}

/// `mpx interrupt`: Ctrl-C for the running cells of the targets, from another terminal.
pub fn interrupt(args: InterruptArgs) -> Result<i32> {
    let client = Client::connect(&args.target.cluster_id)?;
    let targets = args.target.targets(&client)?;
    let told = client.interrupt(targets, Duration::from_secs(10))?;
    let ids: Vec<String> = told.iter().map(|e| e.to_string()).collect();
    println!("interrupted the running cells of engines {}", ids.join(","));
    Ok(0)
}

#[derive(Args)]
pub struct RestartArgs {
    /// Cluster id or connection file [default: the only running cluster].
    #[arg(long, default_value = "", hide_default_value = true)]
    cluster_id: String,
    /// Seconds to wait for the new world.
    #[arg(long, default_value_t = 120.0)]
    timeout: f64,
    /// Then run the session again (see `mpx replay`).
    #[arg(long)]
    replay: bool,
}

/// `mpx restart`: a new MPI world for the cluster (same engine ids, controller and connection
/// file; variables are lost), ready when this returns.
pub fn restart(args: RestartArgs) -> Result<i32> {
    let client = Client::connect(&args.cluster_id)?;
    let t0 = Instant::now();
    eprintln!("restarting the MPI world (its variables are lost)...");
    let engines =
        client.restart("restarted by `mpx restart`", Duration::from_secs_f64(args.timeout.max(0.0)))?;
    println!("the MPI world is ready: {} engines in {:.2} s", engines.len(), t0.elapsed().as_secs_f64());
    if args.replay {
        return super::session::replay_previous(&client);
    }
    Ok(0)
}
