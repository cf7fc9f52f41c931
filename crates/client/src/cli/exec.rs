//! `mpx px` and `mpx run`.

use std::path::PathBuf;

use anyhow::{Context, Result};
use clap::Args;
use mpx_client::{display, Client};

use super::Target;

#[derive(Args)]
pub struct PxArgs {
    #[command(flatten)]
    target: Target,
    /// The code to run.
    code: String,
}

#[derive(Args)]
pub struct RunArgs {
    #[command(flatten)]
    target: Target,
    /// The file to run.
    file: PathBuf,
}

/// Runs `code` on the target engines, prints the results, and returns the exit code
/// (1 if any engine reported an error).
pub fn execute_and_print(client: &Client, target: &Target, code: &str) -> Result<i32> {
    let pending = client.view(target.targets.clone()).execute(code)?;
    let results = pending.get(target.timeout())?;
    print!("{}", display::render(&results));
    Ok(i32::from(display::any_error(&results)))
}

pub fn px(args: PxArgs) -> Result<i32> {
    let client = Client::connect(&args.target.cluster_id)?;
    execute_and_print(&client, &args.target, &args.code)
}

pub fn run_file(args: RunArgs) -> Result<i32> {
    let code = std::fs::read_to_string(&args.file)
        .with_context(|| format!("cannot read {}", args.file.display()))?;
    let client = Client::connect(&args.target.cluster_id)?;
    execute_and_print(&client, &args.target, &code)
}
