//! The latency rows' mpx side, for either kernel: no-op cells on one and on all engines, psum,
//! the 1M-f64 allreduce (timed inside the engines and as a round trip), and the start/stop
//! cycles.

use anyhow::{bail, Context, Result};
use mpx_client::Targets;

use crate::{
    cells::Cells,
    cluster::Kernel,
    ctx::{breakdown, cell_runs, Ctx},
    rows::Measured,
    stats::Stats,
};

/// Client round trips of `code` on `targets` of `kernel`'s cluster, with their [`breakdown`].
fn round_trips(ctx: &mut Ctx, kernel: Kernel, targets: Targets, code: &str) -> Result<Measured> {
    let (warmup, samples) = (ctx.cfg.latency_warmup, ctx.cfg.latency_samples);
    let view = ctx.client(kernel)?.view(targets);
    let runs = cell_runs(&view, code, warmup, samples)?;
    let secs: Vec<f64> = runs.iter().map(|r| r.secs).collect();
    Ok(Measured::Done {
        stats: Stats::of(&secs).context("no samples")?,
        leftovers: None,
        breakdown: breakdown(&runs),
        relay: None,
    })
}

/// rtt1: a no-op cell on engine 0.
pub fn rtt1(ctx: &mut Ctx, kernel: Kernel) -> Result<Measured> {
    round_trips(ctx, kernel, Targets::ids([0]), Cells::of(kernel).noop)
}

/// rttN: a no-op cell on every engine.
pub fn rtt_n(ctx: &mut Ctx, kernel: Kernel) -> Result<Measured> {
    round_trips(ctx, kernel, Targets::All, Cells::of(kernel).noop)
}

/// psum: the reference session's `s = psum(a)` on every engine.
pub fn psum(ctx: &mut Ctx, kernel: Kernel) -> Result<Measured> {
    round_trips(ctx, kernel, Targets::All, Cells::of(kernel).psum)
}

/// allreduce8M inside the engines: each engine times the allreduce after a barrier
/// (`wtime()` in rhai, `MPI.Wtime()` in Python); a sample is the slowest engine's time (as the
/// raw MPI floor does).
pub fn allreduce_inside(ctx: &mut Ctx, kernel: Kernel) -> Result<Measured> {
    let (warmup, samples) = (ctx.cfg.latency_warmup, ctx.cfg.latency_samples);
    let view = ctx.client(kernel)?.view(Targets::All);
    let mut out = Vec::with_capacity(samples);
    for run in cell_runs(&view, Cells::of(kernel).allreduce_timed, warmup, samples)? {
        let mut slowest = 0.0f64;
        for r in &run.results {
            let v = r.outcome.value.as_deref().context("the timing cell returned no value")?;
            let secs: f64 = v.trim().parse().with_context(|| format!("engine {}: {v:?}", r.engine_id))?;
            slowest = slowest.max(secs);
        }
        out.push(slowest);
    }
    Measured::of(&out)
}

/// allreduce8M as a client round trip (no barrier, no clock in the cell).
pub fn allreduce_round_trip(ctx: &mut Ctx, kernel: Kernel) -> Result<Measured> {
    round_trips(ctx, kernel, Targets::All, Cells::of(kernel).allreduce)
}

/// start: `mpx cluster start -n 4 --daemonize` until ready (one warm-up cycle excluded).
pub fn start(ctx: &mut Ctx, kernel: Kernel) -> Result<Measured> {
    Measured::of(&ctx.lifecycle(kernel)?.start)
}

/// stop: `mpx cluster stop` until every process is gone, with the processes left behind.
pub fn stop(ctx: &mut Ctx, kernel: Kernel) -> Result<Measured> {
    let l = ctx.lifecycle(kernel)?;
    match Stats::of(&l.stop) {
        Some(stats) => {
            Ok(Measured::Done { stats, leftovers: Some(l.leftovers), breakdown: None, relay: None })
        }
        None => bail!("no stop samples"),
    }
}
