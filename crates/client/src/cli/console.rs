//! `mpx console`: placeholder until the console is written.

use anyhow::Result;
use clap::Args;

#[derive(Args)]
pub struct ConsoleArgs {
    /// Cluster id or connection file (default: the only running cluster).
    #[arg(long, default_value = "")]
    cluster_id: String,
}

pub fn run(_args: ConsoleArgs) -> Result<i32> {
    anyhow::bail!("not yet")
}
