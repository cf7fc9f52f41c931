//! `mpx push | pull | scatter | gather` with `.npy` files.

use std::{path::PathBuf, time::Duration};

use anyhow::Result;
use clap::Args;
use mpx_client::{display, npy, AsyncResult, Client, ClientError, EngineResult};

use super::{progress::Progress, Target};

/// Waits for a data move, with a progress line on a terminal after 2 s: elapsed time, engines
/// done, and for a push or scatter the array's bytes and the average rate since `progress`
/// began (the send included).
fn wait_moving(
    pending: &AsyncResult,
    timeout: Duration,
    mut progress: Progress,
    bytes: Option<u64>,
) -> Result<Vec<EngineResult>, ClientError> {
    let total = pending.engines(timeout.min(Duration::from_secs(10))).map(|e| e.len()).unwrap_or(0);
    let deadline = std::time::Instant::now() + timeout;
    loop {
        let left = deadline.saturating_duration_since(std::time::Instant::now());
        if pending.wait(left.min(Duration::from_millis(100)))? {
            progress.finish();
            return pending.get(Duration::ZERO);
        }
        if left.is_zero() {
            return Err(ClientError::Timeout(timeout));
        }
        progress.update(pending.answered(), total, "engines done", bytes);
    }
}

#[derive(Args)]
pub struct PutArgs {
    #[command(flatten)]
    target: Target,
    /// Variable name on the engines.
    name: String,
    /// The `.npy` file to send.
    file: PathBuf,
}

#[derive(Args)]
pub struct PushArgs {
    #[command(flatten)]
    put: PutArgs,
    /// One read-only copy for all the engines (each maps the same sealed memfd; numpy arrays
    /// not writeable): needs this client and every target on the controller's host, and fails
    /// otherwise rather than sending a copy to each engine.
    #[arg(long)]
    shared: bool,
}

#[derive(Args)]
pub struct GetArgs {
    #[command(flatten)]
    target: Target,
    /// Variable name on the engines.
    name: String,
    /// The `.npy` file to write (pull from several engines writes `STEM.<engine>.npy` each).
    #[arg(long)]
    out: PathBuf,
}

#[derive(Args)]
pub struct GatherArgs {
    #[command(flatten)]
    target: Target,
    /// Variable name on the engines.
    name: String,
    /// The `.npy` file to write: the engines' arrays concatenated along axis 0, in engine
    /// order.
    #[arg(long)]
    out: PathBuf,
}

pub fn push(PushArgs { put: args, shared }: PushArgs) -> Result<i32> {
    let array = npy::read(&args.file)?;
    let client = Client::connect(&args.target.cluster_id)?;
    let progress = Progress::new(format!("push {}", args.name));
    let source = mpx_client::replay::file_source(&args.file)?;
    let view = client.view(args.target.targets(&client)?);
    let pending = if shared {
        view.push_shared_from(&args.name, &array, source)?
    } else {
        view.push_from(&args.name, &array, source)?
    };
    let bytes = Some(array.data().len() as u64);
    let results = wait_moving(&pending, args.target.timeout(), progress, bytes)?;
    print!("{}", display::render(&results));
    Ok(i32::from(display::any_error(&results)))
}

pub fn scatter(args: PutArgs) -> Result<i32> {
    let array = npy::read(&args.file)?;
    let client = Client::connect(&args.target.cluster_id)?;
    let progress = Progress::new(format!("scatter {}", args.name));
    let source = mpx_client::replay::file_source(&args.file)?;
    let pending = client.view(args.target.targets(&client)?).scatter_from(&args.name, &array, source)?;
    let bytes = Some(array.data().len() as u64);
    let results = wait_moving(&pending, args.target.timeout(), progress, bytes)?;
    print!("{}", display::render(&results));
    Ok(i32::from(display::any_error(&results)))
}

pub fn pull(args: GetArgs) -> Result<i32> {
    let client = Client::connect(&args.target.cluster_id)?;
    let progress = Progress::new(format!("pull {}", args.name));
    let pending = client.view(args.target.targets(&client)?).pull(&args.name)?;
    let results = wait_moving(&pending, args.target.timeout(), progress, None)?;
    print!("{}", display::render(&results));
    let arrays: Vec<_> = results.iter().filter_map(|r| Some((r.engine_id, r.array.as_ref()?))).collect();
    match arrays.as_slice() {
        [(id, a)] if results.len() == 1 => {
            npy::write(&args.out, a)?;
            println!("[{id}] {} {:?} -> {}", a.dtype(), a.shape(), args.out.display());
        }
        _ => {
            for (id, a) in arrays {
                let path = npy::per_engine_path(&args.out, id);
                npy::write(&path, a)?;
                println!("[{id}] {} {:?} -> {}", a.dtype(), a.shape(), path.display());
            }
        }
    }
    Ok(i32::from(display::any_error(&results)))
}

pub fn gather(args: GatherArgs) -> Result<i32> {
    let client = Client::connect(&args.target.cluster_id)?;
    let progress = Progress::new(format!("gather {}", args.name));
    let pending = client.view(args.target.targets(&client)?).gather(&args.name)?;
    let results = wait_moving(&pending, args.target.timeout(), progress, None)?;
    print!("{}", display::render(&results));
    if let Some(a) = results.iter().find_map(|r| r.array.as_ref()) {
        npy::write(&args.out, a)?;
        println!("gathered {} {:?} -> {}", a.dtype(), a.shape(), args.out.display());
    }
    Ok(i32::from(display::any_error(&results)))
}
