//! The table of rows: each row is one mpx operation (one function), the floor it is bounded by
//! (one function of the measured [`Floors`]) and the goal from the benchmark issue.

use std::{
    collections::BTreeMap,
    sync::Arc,
    time::{Duration, Instant},
};

use anyhow::{bail, ensure, Context, Result};
use mpx_client::{ArrayValue, Client, EngineResult, RawArray, Targets, View};
use ndarray::{ArrayD, IxDyn};

use crate::{
    cluster::BenchCluster,
    floors::{megabytes, Floors, MOVE_SIZES},
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

/// Measures a row's mpx side.
pub type MpxFn = Box<dyn Fn(&mut Ctx) -> Result<Measured>>;
/// A row's floor, from the floors measured in the run (`None`: the row has none).
pub type FloorFn = Box<dyn Fn(&Floors) -> Option<Stats>>;

/// One row of the benchmark.
pub struct Row {
    /// Its name (`rtt1`, `psum`, `push8M`, ...).
    pub name: String,
    /// The mpx operation measured.
    pub operation: String,
    /// What its floor is.
    pub floor_definition: String,
    /// Measures the mpx side.
    pub mpx: MpxFn,
    /// Its floor, from the floors measured in this run.
    pub floor: FloorFn,
    /// Its goal.
    pub goal: Goal,
    /// Bytes moved, for rows that move data (throughput = bytes / time).
    pub bytes: Option<usize>,
}

impl Row {
    /// A row that moves no data.
    fn new(
        name: impl Into<String>,
        operation: impl Into<String>,
        floor_definition: impl Into<String>,
        mpx: impl Fn(&mut Ctx) -> Result<Measured> + 'static,
        floor: impl Fn(&Floors) -> Option<Stats> + 'static,
        goal: Goal,
    ) -> Row {
        Row {
            name: name.into(),
            operation: operation.into(),
            floor_definition: floor_definition.into(),
            mpx: Box::new(mpx),
            floor: Box::new(floor),
            goal,
            bytes: None,
        }
    }

    /// The same row, moving `bytes` (its throughput is reported).
    fn moving(self, bytes: usize) -> Row {
        Row { bytes: Some(bytes), ..self }
    }
}

/// Every row, in the order they run (the shared cluster's rows first, then start/stop cycles).
pub fn rows() -> Vec<Row> {
    let mut rows = vec![
        Row::new(
            "rtt1",
            "execute a no-op cell on 1 engine, client round trip",
            "TCP loopback ping-pong RTT, 8 B, TCP_NODELAY",
            mpx_rtt1,
            |f| Some(f.tcp_rtt),
            Goal::RatioAtMost(4.0),
        ),
        Row::new(
            "rttN",
            "execute a no-op cell on all engines, client round trip",
            "TCP loopback ping-pong RTT, 8 B, TCP_NODELAY",
            mpx_rtt_n,
            |f| Some(f.tcp_rtt),
            Goal::RatioAtMost(6.0),
        ),
        Row::new(
            "psum",
            "psum(a) of a 100-element array on all engines, client round trip",
            "raw MPI_Allreduce of 1 f64 + TCP RTT",
            mpx_psum,
            |f| Some(f.allreduce1.then(f.tcp_rtt)),
            Goal::RatioAtMost(2.0),
        ),
        Row::new(
            "allreduce8M",
            "allreduce of 1M f64, timed inside the engines with wtime() (slowest engine)",
            "raw MPI_Allreduce of 1M f64",
            mpx_allreduce_inside,
            |f| Some(f.allreduce1m),
            Goal::None,
        ),
        Row::new(
            "allreduce8M-rt",
            "allreduce of 1M f64 on all engines, client round trip",
            "raw MPI_Allreduce of 1M f64 + TCP RTT",
            mpx_allreduce_round_trip,
            |f| Some(f.allreduce1m.then(f.tcp_rtt)),
            Goal::None,
        ),
    ];
    for bytes in MOVE_SIZES {
        rows.extend(move_rows(bytes));
    }
    rows.extend([
        Row::new("tasks", "load-balanced no-op tasks per second", "–", mpx_tasks, |_| None, Goal::None),
        Row::new(
            "start",
            "`mpx cluster start -n 4 --daemonize` until it reports ready",
            "`mpirun -n 4 --oversubscribe true`",
            mpx_start,
            |f| Some(f.mpirun_true),
            Goal::FloorPlus(0.2),
        ),
        Row::new(
            "stop",
            "`mpx cluster stop` until every cluster process is gone (by PID)",
            "`mpirun -n 4 --oversubscribe true` (reference)",
            mpx_stop,
            |f| Some(f.mpirun_true),
            Goal::WithinNoLeftovers(0.5),
        ),
    ]);
    rows
}

/// The data rows of one size (`push8M`, `pull8M`, `scatter8M`, `gather8M` for 8 MB): push to all
/// engines, pull from one, scatter and gather, each with its floor of the same bytes.
fn move_rows(bytes: usize) -> [Row; 4] {
    let mb = megabytes(bytes);
    let elems = format!("{}M f64", bytes / 8 / 1_000_000);
    let goal = Goal::ThroughputAtLeast(0.7);
    let tcp = format!("TCP loopback {mb} MB");
    [
        Row::new(
            format!("push{mb}M"),
            format!("push {mb} MB of f64 to all engines"),
            format!("{tcp} + raw MPI_Bcast {mb} MB"),
            move |ctx| mpx_push(ctx, bytes),
            move |f| f.of_move(bytes).map(|m| m.tcp.then(m.bcast)),
            goal,
        )
        .moving(bytes),
        Row::new(
            format!("pull{mb}M"),
            format!("pull {mb} MB of f64 from one engine"),
            tcp.clone(),
            move |ctx| mpx_pull(ctx, bytes),
            move |f| f.of_move(bytes).map(|m| m.tcp),
            goal,
        )
        .moving(bytes),
        Row::new(
            format!("scatter{mb}M"),
            format!("scatter {elems} over all engines"),
            format!("{tcp} + raw MPI_Scatterv {mb} MB"),
            move |ctx| mpx_scatter(ctx, bytes),
            move |f| f.of_move(bytes).map(|m| m.tcp.then(m.scatter)),
            goal,
        )
        .moving(bytes),
        Row::new(
            format!("gather{mb}M"),
            format!("gather {elems} from all engines"),
            format!("raw MPI_Gatherv {mb} MB + {tcp}"),
            move |ctx| mpx_gather(ctx, bytes),
            move |f| f.of_move(bytes).map(|m| m.gather.then(m.tcp)),
            goal,
        )
        .moving(bytes),
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

/// `bytes` of f64 (`bytes / 8` elements); its bytes are shared: sending it never copies it.
fn f64_array(bytes: usize) -> RawArray {
    let a = ArrayValue::F64(Arc::new(ArrayD::from_shape_fn(IxDyn(&[bytes / 8]), |i| i[0] as f64)));
    RawArray::from(&a)
}

/// push: `bytes` to all engines (one TCP transfer to engine 0, then MPI Bcast).
fn mpx_push(ctx: &mut Ctx, bytes: usize) -> Result<Measured> {
    let (warmup, n) = ctx.cfg.move_samples(bytes);
    let data = f64_array(bytes);
    let view = ctx.session()?.client.view(Targets::All);
    let samples = time_repeated(warmup, n, || {
        view.push_sync("x", &data, CELL_TIMEOUT)?;
        Ok(())
    })?;
    Measured::of(&samples)
}

/// pull: `bytes` from engine 0.
fn mpx_pull(ctx: &mut Ctx, bytes: usize) -> Result<Measured> {
    let (warmup, n) = ctx.cfg.move_samples(bytes);
    let view = ctx.session()?.client.view(Targets::List(vec![0]));
    view.push_sync("x", &f64_array(bytes), CELL_TIMEOUT)?;
    let samples = time_repeated(warmup, n, || {
        let got = view.pull_sync("x", CELL_TIMEOUT)?;
        ensure!(got.len() == 1 && got[0].len() == bytes / 8, "pulled the wrong array");
        Ok(())
    })?;
    Measured::of(&samples)
}

/// scatter: `bytes` of f64 split over all engines (one TCP transfer, then MPI Scatterv).
fn mpx_scatter(ctx: &mut Ctx, bytes: usize) -> Result<Measured> {
    let (warmup, n) = ctx.cfg.move_samples(bytes);
    let data = f64_array(bytes);
    let view = ctx.session()?.client.view(Targets::All);
    let samples = time_repeated(warmup, n, || {
        view.scatter_sync("x", &data, CELL_TIMEOUT)?;
        Ok(())
    })?;
    Measured::of(&samples)
}

/// gather: `bytes` of f64 concatenated from all engines (MPI Gatherv, one TCP transfer back).
fn mpx_gather(ctx: &mut Ctx, bytes: usize) -> Result<Measured> {
    let (warmup, n) = ctx.cfg.move_samples(bytes);
    let view = ctx.session()?.client.view(Targets::All);
    view.scatter_sync("x", &f64_array(bytes), CELL_TIMEOUT)?;
    let samples = time_repeated(warmup, n, || {
        let whole = view.gather_sync("x", CELL_TIMEOUT)?;
        ensure!(whole.len() == bytes / 8, "gathered the wrong array");
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn data_rows_of_both_sizes() {
        let rows = rows();
        let names: Vec<&str> = rows.iter().map(|r| r.name.as_str()).collect();
        let mut unique = names.clone();
        unique.sort_unstable();
        unique.dedup();
        assert_eq!(unique.len(), names.len(), "duplicate row names: {names:?}");
        for (mb, bytes) in [(8, 8_000_000), (80, 80_000_000)] {
            for op in ["push", "pull", "scatter", "gather"] {
                let name = format!("{op}{mb}M");
                let row = rows.iter().find(|r| r.name == name).unwrap_or_else(|| panic!("no row {name}"));
                assert_eq!(row.bytes, Some(bytes), "{name}");
                assert!(
                    row.floor_definition.contains(&format!("{mb} MB")),
                    "{name}: {}",
                    row.floor_definition
                );
                assert!(matches!(row.goal, Goal::ThroughputAtLeast(k) if k == 0.7), "{name}");
            }
        }
    }

    #[test]
    fn move_samples_by_size() {
        let cfg = |quick| Config::new(quick, "bin".into(), "home".into());
        assert_eq!(cfg(false).move_samples(80_000_000), (1, 7));
        assert_eq!(cfg(true).move_samples(80_000_000), (1, 2));
        let (warmup, samples) = cfg(false).move_samples(8_000_000);
        assert!(samples >= 20 && warmup >= 1, "{samples} after {warmup}");
        assert!(cfg(true).move_samples(8_000_000).1 >= 3);
    }
}
