//! An engine binary with native Rust functions callable from cells (the seed's "compiled
//! libraries exposed to Python"). Start a cluster with it:
//!
//! ```text
//! cargo build --examples
//! mpx cluster start -n 4 --engine target/debug/examples/mpx-engine-native
//! mpx px 'norm2(rand(10))'
//! ```

use std::{path::PathBuf, time::Duration};

use clap::Parser;
use mpx_engine::{ArrayValue, EngineOptions, Registry};

#[derive(Parser)]
struct Args {
    /// The controller's connection file.
    #[arg(long)]
    connect: PathBuf,
    /// Seconds to wait for the connection file.
    #[arg(long, default_value_t = 30.0)]
    wait: f64,
}

/// Euclidean norm of an array of any dtype (reads it without copying when it is f64).
fn norm2(a: ArrayValue) -> f64 {
    a.to_f64().iter().map(|x| x * x).sum::<f64>().sqrt()
}

/// `a * x + y`, element-wise, as a new f64 array.
fn axpy(
    a: f64,
    x: ArrayValue,
    y: ArrayValue,
) -> Result<ArrayValue, Box<mpx_engine::cells::rhai::EvalAltResult>> {
    let (x, y) = (x.to_f64(), y.to_f64());
    if x.shape() != y.shape() {
        return Err(format!("axpy: shapes {:?} and {:?} differ", x.shape(), y.shape()).into());
    }
    Ok(ArrayValue::from(&*x * a + &*y))
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let mut registry = Registry::new();
    registry.add(|engine| {
        engine.register_fn("norm2", norm2);
        engine.register_fn("axpy", axpy);
        engine.register_fn("axpy", |a: i64, x: ArrayValue, y: ArrayValue| axpy(a as f64, x, y));
        // Ends this rank's process at once, as a crashing native library would.
        engine.register_fn("exit_now", |code: i64| -> () { std::process::exit(code as i32) });
    });
    let opts = EngineOptions { connection_file: args.connect, wait: Duration::from_secs_f64(args.wait) };
    mpx_engine::main_with(opts, registry)?;
    Ok(())
}
