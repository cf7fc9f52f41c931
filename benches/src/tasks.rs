//! The load-balanced task rows: no-op tasks per second from one client and from 4 clients at
//! once on the shared 4-engine cluster (python kernel), and the round trip of one task.

use std::time::{Duration, Instant};

use anyhow::{ensure, Context, Result};
use mpx_client::{Client, MapOptions, Targets, Work};

use crate::{
    cluster::Kernel,
    ctx::{time_repeated, Ctx},
    rows::Measured,
};

/// The no-op task (the python kernel's `rtt1` cell).
const NOOP: &str = "pass";

/// Clients of the `tasks4` row.
pub const CLIENTS: usize = 4;

/// Tasks per sample of a rate row, and samples.
fn sizes(ctx: &Ctx) -> (usize, usize) {
    if ctx.cfg.quick {
        (2_000, 3)
    } else {
        (20_000, 5)
    }
}

/// Runs `n` no-op tasks through `client` (a map, results as completed, no bound) and checks
/// that every one succeeded.
fn run_noops(client: &Client, n: usize) -> Result<()> {
    let lb = client.load_balanced_view(Targets::All);
    let opts = MapOptions { ordered: false, timeout: Duration::from_secs(120), ..Default::default() };
    let mut done = 0;
    for item in lb.imap(vec![(); n], opts, |_| Work::Code(NOOP.into())) {
        let item = item?;
        if let Some(e) = item.result.outcome.error {
            anyhow::bail!(
                "a no-op task failed on engine {:?}: {} {}",
                item.result.engine_id,
                e.ename(),
                e.evalue()
            );
        }
        done += 1;
    }
    ensure!(done == n, "{done} of {n} tasks came back");
    Ok(())
}

/// `tasks`: no-op tasks per second from one client.
pub fn one_client(ctx: &mut Ctx) -> Result<Measured> {
    let (n, samples) = sizes(ctx);
    let client = ctx.client(Kernel::Python)?;
    run_noops(client, n / 4)?;
    let mut rates = Vec::new();
    for _ in 0..samples {
        let t0 = Instant::now();
        run_noops(client, n)?;
        rates.push(n as f64 / t0.elapsed().as_secs_f64());
    }
    Measured::rate(&rates, n)
}

/// `tasks4`: no-op tasks per second from 4 clients at once (each its own connection and
/// thread), counted from the common start to the last result.
pub fn four_clients(ctx: &mut Ctx) -> Result<Measured> {
    let (n, samples) = sizes(ctx);
    let path = ctx.client(Kernel::Python)?.connection_file().to_path_buf();
    let path = path.to_str().context("connection file path")?.to_string();
    let clients: Vec<Client> = (0..CLIENTS).map(|_| Client::connect(&path)).collect::<Result<_, _>>()?;
    let each = n / CLIENTS;
    let mut rates = Vec::new();
    for i in 0..=samples {
        let t0 = Instant::now();
        std::thread::scope(|s| -> Result<()> {
            let runs: Vec<_> = clients.iter().map(|c| s.spawn(move || run_noops(c, each))).collect();
            for r in runs {
                r.join().map_err(|_| anyhow::anyhow!("a client thread panicked"))??;
            }
            Ok(())
        })?;
        // The first round warms up.
        if i > 0 {
            rates.push((each * CLIENTS) as f64 / t0.elapsed().as_secs_f64());
        }
    }
    Measured::rate(&rates, each * CLIENTS)
}

/// `task1`: one no-op task's client round trip (submit, run on the least loaded engine, result).
pub fn one_task(ctx: &mut Ctx) -> Result<Measured> {
    let (warmup, samples) = (ctx.cfg.latency_warmup, ctx.cfg.latency_samples);
    let client = ctx.client(Kernel::Python)?;
    let lb = client.load_balanced_view(Targets::All);
    let samples = time_repeated(warmup, samples, || {
        let r = lb.execute(NOOP)?.get(Duration::from_secs(60))?;
        ensure!(r.outcome.error.is_none(), "the no-op task failed: {:?}", r.outcome.error);
        Ok(())
    })?;
    Measured::of(&samples)
}
