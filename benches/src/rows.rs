//! The table of rows: each row is one mpx operation (one function), the floor it is bounded by
//! (one function of the measured [`Floors`]) and the goal from the benchmark issue.

use std::{
    collections::BTreeMap,
    sync::Arc,
    time::{Duration, Instant},
};

use anyhow::{bail, ensure, Context, Result};
use mpx_client::{ArrayValue, Client, EngineResult, Targets, View};
use ndarray::{ArrayD, IxDyn};

use crate::{
    cluster::BenchCluster,
    floors::{Floors, BIG_BYTES},
    stats::Stats,
    Config,
};

/// The reference session's `psum` (Allreduce(SUM) of the local sums).
const PSUM_RHAI: &str = include_str!("../../examples/psum.rhai");
/// Set up once per benchmark cluster: the psum input and the 1M-f64 (8 MB) allreduce input.
const SETUP: &str = "let a = rand(100);\nlet big = rand(1000000);";
/// A cell that does nothing.
const NOOP: &str = "()";
/// How long one cell may take before the row fails.
const CELL_TIMEOUT: Duration = Duration::from_secs(60);

/// A row's mpx measurement.
#[derive(Debug, Clone)]
pub enum Measured {
    /// Timed samples (seconds), and for stops the processes left behind.
    Done {
        /// The summary.
        stats: Stats,
        /// Processes still alive 10 s after a stop began (stop row only).
        leftovers: Option<usize>,
        /// Where a round trip's time goes (medians in seconds, see [`breakdown`]).
        breakdown: Option<BTreeMap<String, f64>>,
    },
    /// The mpx side cannot run in this build yet.
    Pending(&'static str),
    /// mpx has no such operation yet.
    NotImplemented(&'static str),
}

impl Measured {
    fn of(samples: &[f64]) -> Result<Measured> {
        Ok(Measured::Done {
            stats: Stats::of(samples).context("no samples")?,
            leftovers: None,
            breakdown: None,
        })
    }
}

/// A row's goal, from the benchmark issue.
#[derive(Debug, Clone, Copy)]
pub enum Goal {
    /// No goal stated.
    None,
    /// mpx median ≤ k × floor median.
    RatioAtMost(f64),
    /// Throughput ≥ k × the floor's (floor median / mpx median ≥ k).
    ThroughputAtLeast(f64),
    /// mpx median ≤ floor median + s seconds.
    FloorPlus(f64),
    /// mpx median ≤ s seconds and no process left behind.
    WithinNoLeftovers(f64),
}

impl Goal {
    /// The goal as text (`≤ 4x floor`, ...), `None` if there is none.
    pub fn text(&self) -> Option<String> {
        match *self {
            Goal::None => None,
            Goal::RatioAtMost(k) => Some(format!("≤ {k}x floor")),
            Goal::ThroughputAtLeast(k) => Some(format!("≥ {k} of floor throughput")),
            Goal::FloorPlus(s) => Some(format!("≤ floor + {s} s")),
            Goal::WithinNoLeftovers(s) => Some(format!("≤ {s} s, 0 leftovers")),
        }
    }

    /// Whether the measurement meets the goal; `None` when there is nothing to judge.
    pub fn met(&self, mpx: &Stats, floor: Option<&Stats>, leftovers: Option<usize>) -> Option<bool> {
        match (*self, floor) {
            (Goal::None, _) => None,
            (Goal::RatioAtMost(k), Some(f)) => Some(mpx.median <= k * f.median),
            (Goal::ThroughputAtLeast(k), Some(f)) => Some(f.median / mpx.median >= k),
            (Goal::FloorPlus(s), Some(f)) => Some(mpx.median <= f.median + s),
            (Goal::WithinNoLeftovers(s), _) => Some(mpx.median <= s && leftovers == Some(0)),
            (_, None) => None,
        }
    }
}

/// One row of the benchmark.
pub struct Row {
    /// Its name (`rtt1`, `psum`, ...).
    pub name: &'static str,
    /// The mpx operation measured.
    pub operation: &'static str,
    /// What its floor is.
    pub floor_definition: &'static str,
    /// Measures the mpx side.
    pub mpx: fn(&mut Ctx) -> Result<Measured>,
    /// Its floor, from the floors measured in this run.
    pub floor: fn(&Floors) -> Option<Stats>,
    /// Its goal.
    pub goal: Goal,
    /// Bytes moved, for rows that move data (throughput = bytes / time).
    pub bytes: Option<usize>,
}

/// Every row, in the order they run (the shared cluster's rows first, then start/stop cycles).
pub fn rows() -> Vec<Row> {
    let big = Some(BIG_BYTES);
    vec![
        Row {
            name: "rtt1",
            operation: "execute a no-op cell on 1 engine, client round trip",
            floor_definition: "TCP loopback ping-pong RTT, 8 B, TCP_NODELAY",
            mpx: mpx_rtt1,
            floor: |f| Some(f.tcp_rtt),
            goal: Goal::RatioAtMost(4.0),
            bytes: None,
        },
        Row {
            name: "rttN",
            operation: "execute a no-op cell on all engines, client round trip",
            floor_definition: "TCP loopback ping-pong RTT, 8 B, TCP_NODELAY",
            mpx: mpx_rtt_n,
            floor: |f| Some(f.tcp_rtt),
            goal: Goal::RatioAtMost(6.0),
            bytes: None,
        },
        Row {
            name: "psum",
            operation: "psum(a) of a 100-element array on all engines, client round trip",
            floor_definition: "raw MPI_Allreduce of 1 f64 + TCP RTT",
            mpx: mpx_psum,
            floor: |f| Some(f.allreduce1.then(f.tcp_rtt)),
            goal: Goal::RatioAtMost(2.0),
            bytes: None,
        },
        Row {
            name: "allreduce8M",
            operation: "allreduce of 1M f64, timed inside the engines with wtime() (slowest engine)",
            floor_definition: "raw MPI_Allreduce of 1M f64",
            mpx: mpx_allreduce_inside,
            floor: |f| Some(f.allreduce1m),
            goal: Goal::None,
            bytes: None,
        },
        Row {
            name: "allreduce8M-rt",
            operation: "allreduce of 1M f64 on all engines, client round trip",
            floor_definition: "raw MPI_Allreduce of 1M f64 + TCP RTT",
            mpx: mpx_allreduce_round_trip,
            floor: |f| Some(f.allreduce1m.then(f.tcp_rtt)),
            goal: Goal::None,
            bytes: None,
        },
        Row {
            name: "push80M",
            operation: "push 80 MB of f64 to all engines",
            floor_definition: "TCP loopback 80 MB + raw MPI_Bcast 80 MB",
            mpx: mpx_push80m,
            floor: |f| Some(f.tcp_80mb.then(f.bcast80)),
            goal: Goal::ThroughputAtLeast(0.7),
            bytes: big,
        },
        Row {
            name: "pull80M",
            operation: "pull 80 MB of f64 from one engine",
            floor_definition: "TCP loopback 80 MB",
            mpx: mpx_pull80m,
            floor: |f| Some(f.tcp_80mb),
            goal: Goal::ThroughputAtLeast(0.7),
            bytes: big,
        },
        Row {
            name: "scatter80M",
            operation: "scatter 10M f64 over all engines",
            floor_definition: "TCP loopback 80 MB + raw MPI_Scatterv 80 MB",
            mpx: mpx_scatter80m,
            floor: |f| Some(f.tcp_80mb.then(f.scatter80)),
            goal: Goal::ThroughputAtLeast(0.7),
            bytes: big,
        },
        Row {
            name: "gather80M",
            operation: "gather 10M f64 from all engines",
            floor_definition: "raw MPI_Gatherv 80 MB + TCP loopback 80 MB",
            mpx: mpx_gather80m,
            floor: |f| Some(f.gather80.then(f.tcp_80mb)),
            goal: Goal::ThroughputAtLeast(0.7),
            bytes: big,
        },
        Row {
            name: "tasks",
            operation: "load-balanced no-op tasks per second",
            floor_definition: "–",
            mpx: mpx_tasks,
            floor: |_| None,
            goal: Goal::None,
            bytes: None,
        },
        Row {
            name: "start",
            operation: "`mpx cluster start -n 4 --daemonize` until it reports ready",
            floor_definition: "`mpirun -n 4 --oversubscribe true`",
            mpx: mpx_start,
            floor: |f| Some(f.mpirun_true),
            goal: Goal::FloorPlus(0.2),
            bytes: None,
        },
        Row {
            name: "stop",
            operation: "`mpx cluster stop` until every cluster process is gone (by PID)",
            floor_definition: "`mpirun -n 4 --oversubscribe true` (reference)",
            mpx: mpx_stop,
            floor: |f| Some(f.mpirun_true),
            goal: Goal::WithinNoLeftovers(0.5),
            bytes: None,
        },
    ]
}

/// The shared cluster of the latency rows, with its client (dropped before the cluster).
struct Session {
    client: Client,
    cluster: BenchCluster,
}

/// Start and stop samples of the lifecycle rows, measured together (one cycle gives both).
#[derive(Debug, Clone)]
struct Lifecycle {
    start: Vec<f64>,
    stop: Vec<f64>,
    leftovers: usize,
}

/// What the row functions share: the configuration, the shared cluster, the lifecycle samples.
pub struct Ctx {
    cfg: Config,
    session: Option<Session>,
    lifecycle: Option<Lifecycle>,
}

impl Ctx {
    /// A context with nothing started yet.
    pub fn new(cfg: Config) -> Ctx {
        Ctx { cfg, session: None, lifecycle: None }
    }

    /// The shared 4-engine cluster (started on first use, with `psum` defined and the inputs set).
    fn session(&mut self) -> Result<&Session> {
        if self.session.is_none() {
            let (cluster, _) = BenchCluster::start(&self.cfg)?;
            let client = cluster.client()?;
            let all = client.view(Targets::All);
            run_cell(&all, PSUM_RHAI)?;
            run_cell(&all, SETUP)?;
            self.session = Some(Session { client, cluster });
        }
        Ok(self.session.as_ref().expect("just set"))
    }

    /// Stops the shared cluster, if any (before cycles of its own, so only one cluster runs).
    ///
    /// # Errors
    /// The stop fails.
    pub fn end_session(&mut self) -> Result<()> {
        if let Some(Session { client, cluster }) = self.session.take() {
            drop(client);
            let stop = cluster.stop()?;
            ensure!(
                stop.leftovers == 0,
                "{} processes left after stopping the shared cluster",
                stop.leftovers
            );
        }
        Ok(())
    }

    fn lifecycle(&mut self) -> Result<Lifecycle> {
        if let Some(l) = &self.lifecycle {
            return Ok(l.clone());
        }
        self.end_session()?;
        let mut l = Lifecycle { start: Vec::new(), stop: Vec::new(), leftovers: 0 };
        // One warm-up cycle (page cache, first mpirun), then the timed ones.
        for i in 0..1 + self.cfg.lifecycle_samples {
            let (cluster, start) = BenchCluster::start(&self.cfg)?;
            let stop = cluster.stop()?;
            if i >= 1 {
                l.start.push(start);
                l.stop.push(stop.secs);
                l.leftovers += stop.leftovers;
            }
        }
        self.lifecycle = Some(l.clone());
        Ok(l)
    }
}

/// One cell's round trip and per-engine results, with the time the client sent it.
pub struct CellRun {
    /// Client round trip (seconds).
    pub secs: f64,
    /// When the client sent it (seconds since the Unix epoch).
    pub submitted: f64,
    /// Every engine's result.
    pub results: Vec<EngineResult>,
}

/// Runs one cell and waits for it; any engine's error fails.
fn run_cell(view: &View<'_>, code: &str) -> Result<CellRun> {
    let t0 = Instant::now();
    let ar = view.execute(code)?;
    let results = ar.get_ok(CELL_TIMEOUT).with_context(|| format!("cell {code:?}"))?;
    let secs = t0.elapsed().as_secs_f64();
    let submitted = ar.submitted;
    ar.forget();
    Ok(CellRun { secs, submitted, results })
}

/// Where round trips' time goes, from the wall-clock stamps of the client (`submitted`,
/// `received`) and the engines (`started`, `completed`); medians over the runs, in seconds:
/// - `to_first_engine` / `to_last_engine`: client send → first / last engine starts the cell;
/// - `engine_run`: the longest time an engine spent in the cell;
/// - `back_from_last`: the last result's completion on its engine → the client has it;
/// - `client_wakeup`: the last result received → `get` returned (round trip minus the above).
pub fn breakdown(runs: &[CellRun]) -> Option<BTreeMap<String, f64>> {
    let mut parts: BTreeMap<String, Vec<f64>> = BTreeMap::new();
    for run in runs {
        let first = run.results.iter().map(|r| r.outcome.started).fold(f64::INFINITY, f64::min);
        let last = run.results.iter().map(|r| r.outcome.started).fold(f64::NEG_INFINITY, f64::max);
        let exec = run.results.iter().map(|r| r.outcome.completed - r.outcome.started).fold(0.0, f64::max);
        let latest = run.results.iter().max_by(|a, b| a.received.total_cmp(&b.received))?;
        let mut add = |k: &str, v: f64| parts.entry(k.to_string()).or_default().push(v);
        add("to_first_engine", first - run.submitted);
        add("to_last_engine", last - run.submitted);
        add("engine_run", exec);
        add("back_from_last", latest.received - latest.outcome.completed);
        add("client_wakeup", run.secs - (latest.received - run.submitted));
    }
    parts.into_iter().map(|(k, v)| Some((k, Stats::of(&v)?.median))).collect()
}

/// Times `op` `warmup + samples` times; keeps the timed ones.
pub fn time_repeated(warmup: usize, samples: usize, mut op: impl FnMut() -> Result<()>) -> Result<Vec<f64>> {
    let mut out = Vec::with_capacity(samples);
    for i in 0..warmup + samples {
        let t0 = Instant::now();
        op()?;
        if i >= warmup {
            out.push(t0.elapsed().as_secs_f64());
        }
    }
    Ok(out)
}

/// Client round trips of `code` on `targets`, with their [`breakdown`].
fn round_trips(ctx: &mut Ctx, targets: Targets, code: &str) -> Result<Measured> {
    let (warmup, samples) = (ctx.cfg.latency_warmup, ctx.cfg.latency_samples);
    let view = ctx.session()?.client.view(targets);
    let mut runs = Vec::with_capacity(samples);
    for i in 0..warmup + samples {
        let run = run_cell(&view, code)?;
        if i >= warmup {
            runs.push(run);
        }
    }
    let secs: Vec<f64> = runs.iter().map(|r| r.secs).collect();
    Ok(Measured::Done {
        stats: Stats::of(&secs).context("no samples")?,
        leftovers: None,
        breakdown: breakdown(&runs),
    })
}

/// rtt1: a no-op cell on engine 0.
fn mpx_rtt1(ctx: &mut Ctx) -> Result<Measured> {
    round_trips(ctx, Targets::List(vec![0]), NOOP)
}

/// rttN: a no-op cell on every engine.
fn mpx_rtt_n(ctx: &mut Ctx) -> Result<Measured> {
    round_trips(ctx, Targets::All, NOOP)
}

/// psum: the reference session's `let s = psum(a);` on every engine.
fn mpx_psum(ctx: &mut Ctx) -> Result<Measured> {
    round_trips(ctx, Targets::All, "let s = psum(a);")
}

/// allreduce8M inside the engines: each engine times the allreduce with `wtime()` after a
/// barrier; a sample is the slowest engine's time (as the raw MPI floor does).
fn mpx_allreduce_inside(ctx: &mut Ctx) -> Result<Measured> {
    const CELL: &str = "barrier();\nlet t0 = wtime();\nlet r = allreduce(big, SUM);\nwtime() - t0";
    let (warmup, samples) = (ctx.cfg.latency_warmup, ctx.cfg.latency_samples);
    let view = ctx.session()?.client.view(Targets::All);
    let mut out = Vec::with_capacity(samples);
    for i in 0..warmup + samples {
        let run = run_cell(&view, CELL)?;
        let mut slowest = 0.0f64;
        for r in &run.results {
            let v = r.outcome.value.as_deref().context("the timing cell returned no value")?;
            let secs: f64 = v.trim().parse().with_context(|| format!("engine {}: {v:?}", r.engine_id))?;
            slowest = slowest.max(secs);
        }
        if i >= warmup {
            out.push(slowest);
        }
    }
    Measured::of(&out)
}

/// allreduce8M as a client round trip (no barrier, no clock in the cell).
fn mpx_allreduce_round_trip(ctx: &mut Ctx) -> Result<Measured> {
    round_trips(ctx, Targets::All, "let r = allreduce(big, SUM);")
}

/// 80 MB of f64 (10M elements), shared copy-on-write: sending it never copies it.
fn big_array() -> ArrayValue {
    ArrayValue::F64(Arc::new(ArrayD::from_shape_fn(IxDyn(&[BIG_BYTES / 8]), |i| i[0] as f64)))
}

/// push80M: 80 MB to all engines (one TCP transfer to engine 0, then MPI Bcast).
fn mpx_push80m(ctx: &mut Ctx) -> Result<Measured> {
    let n = ctx.cfg.big_samples;
    let data = big_array();
    let view = ctx.session()?.client.view(Targets::All);
    let samples = time_repeated(1, n, || {
        view.push_sync("x", &data, CELL_TIMEOUT)?;
        Ok(())
    })?;
    Measured::of(&samples)
}

/// pull80M: 80 MB from engine 0.
fn mpx_pull80m(ctx: &mut Ctx) -> Result<Measured> {
    let n = ctx.cfg.big_samples;
    let view = ctx.session()?.client.view(Targets::List(vec![0]));
    view.push_sync("x", &big_array(), CELL_TIMEOUT)?;
    let samples = time_repeated(1, n, || {
        let got = view.pull_sync("x", CELL_TIMEOUT)?;
        ensure!(got.len() == 1 && got[0].len() == BIG_BYTES / 8, "pulled the wrong array");
        Ok(())
    })?;
    Measured::of(&samples)
}

/// scatter80M: 10M f64 split over all engines (one TCP transfer, then MPI Scatterv).
fn mpx_scatter80m(ctx: &mut Ctx) -> Result<Measured> {
    let n = ctx.cfg.big_samples;
    let data = big_array();
    let view = ctx.session()?.client.view(Targets::All);
    let samples = time_repeated(1, n, || {
        view.scatter_sync("x", &data, CELL_TIMEOUT)?;
        Ok(())
    })?;
    Measured::of(&samples)
}

/// gather80M: 10M f64 concatenated from all engines (MPI Gatherv, one TCP transfer back).
fn mpx_gather80m(ctx: &mut Ctx) -> Result<Measured> {
    let n = ctx.cfg.big_samples;
    let view = ctx.session()?.client.view(Targets::All);
    view.scatter_sync("x", &big_array(), CELL_TIMEOUT)?;
    let samples = time_repeated(1, n, || {
        let whole = view.gather_sync("x", CELL_TIMEOUT)?;
        ensure!(whole.len() == BIG_BYTES / 8, "gathered the wrong array");
        Ok(())
    })?;
    Measured::of(&samples)
}

/// tasks: mpx has no load-balanced view yet.
fn mpx_tasks(_ctx: &mut Ctx) -> Result<Measured> {
    Ok(Measured::NotImplemented("n/a: not implemented yet"))
}

/// start: `mpx cluster start -n 4 --daemonize` until ready (one warm-up cycle excluded).
fn mpx_start(ctx: &mut Ctx) -> Result<Measured> {
    Measured::of(&ctx.lifecycle()?.start)
}

/// stop: `mpx cluster stop` until every process is gone, with the processes left behind.
fn mpx_stop(ctx: &mut Ctx) -> Result<Measured> {
    let l = ctx.lifecycle()?;
    match Stats::of(&l.stop) {
        Some(stats) => Ok(Measured::Done { stats, leftovers: Some(l.leftovers), breakdown: None }),
        None => bail!("no stop samples"),
    }
}
