//! `mpx push | pull | scatter | gather` with `.npy` files.

use std::path::PathBuf;

use anyhow::Result;
use clap::Args;
use mpx_client::{display, npy, Client};

use super::Target;

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

pub fn push(args: PutArgs) -> Result<i32> {
    let array = npy::read(&args.file)?;
    let client = Client::connect(&args.target.cluster_id)?;
    let results =
        client.view(args.target.targets(&client)?).push(&args.name, &array)?.get(args.target.timeout())?;
    print!("{}", display::render(&results));
    Ok(i32::from(display::any_error(&results)))
}

pub fn scatter(args: PutArgs) -> Result<i32> {
    let array = npy::read(&args.file)?;
    let client = Client::connect(&args.target.cluster_id)?;
    let pending = client.view(args.target.targets(&client)?).scatter(&args.name, &array)?;
    let results = pending.get(args.target.timeout())?;
    print!("{}", display::render(&results));
    Ok(i32::from(display::any_error(&results)))
}

pub fn pull(args: GetArgs) -> Result<i32> {
    let client = Client::connect(&args.target.cluster_id)?;
    let results = client.view(args.target.targets(&client)?).pull(&args.name)?.get(args.target.timeout())?;
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
    let results =
        client.view(args.target.targets(&client)?).gather(&args.name)?.get(args.target.timeout())?;
    print!("{}", display::render(&results));
    if let Some(a) = results.iter().find_map(|r| r.array.as_ref()) {
        npy::write(&args.out, a)?;
        println!("gathered {} {:?} -> {}", a.dtype(), a.shape(), args.out.display());
    }
    Ok(i32::from(display::any_error(&results)))
}
