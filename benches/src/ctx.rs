//! What the row functions share: the configuration, one benchmark cluster at a time (of either
//! kernel, in either engine mode) with its client and its session set up, the start/stop cycles
//! of each kernel and mode, and the helpers that run and time cells.

use std::{
    collections::BTreeMap,
    time::{Duration, Instant},
};

use anyhow::{ensure, Context, Result};
use mpx_client::{Client, EngineResult, Targets, View};

use crate::{
    cells::Cells,
    cluster::{BenchCluster, EngineMode, Kernel},
    rows::Measured,
    stats::Stats,
    Config,
};

/// How long one cell may take before the row fails.
pub const CELL_TIMEOUT: Duration = Duration::from_secs(60);

/// The shared cluster of the latency and data rows, with its clients (dropped before the
/// cluster).
struct Session {
    kernel: Kernel,
    mode: EngineMode,
    /// The client `Client::connect` makes: through the controller's Unix socket on its host
    /// (unless `MPX_SHM=0`).
    client: Client,
    /// A client over TCP, made on first use ([`Ctx::tcp_client`]).
    tcp_client: Option<Client>,
    cluster: BenchCluster,
}

/// Start and stop samples of one kernel's lifecycle rows, measured together (one cycle gives
/// both).
#[derive(Debug, Clone)]
pub struct Lifecycle {
    /// `mpx cluster start` until ready (seconds).
    pub start: Vec<f64>,
    /// `mpx cluster stop` until every process is gone (seconds).
    pub stop: Vec<f64>,
    /// Processes left behind over all stops.
    pub leftovers: usize,
}

/// Why the `.interp` rows are not measured when the run has no interpreter.
pub const NO_PYTHON: &str = "not measured: no Python environment with the mpx package (mpx-bench \
    --python PATH; scripts/bench.sh passes target/plain-venv or target/pyenv when `import mpx` works \
    there: scripts/plain-venv.sh makes one)";

/// What the row functions share: the configuration, the shared cluster, the lifecycle samples.
pub struct Ctx {
    /// How much to measure.
    pub cfg: Config,
    /// The engine mode of the clusters the row functions get (see [`Ctx::in_interpreter`]).
    mode: EngineMode,
    session: Option<Session>,
    lifecycles: BTreeMap<(Kernel, EngineMode), Lifecycle>,
}

impl Ctx {
    /// A context with nothing started yet, in the embedding mode.
    pub fn new(cfg: Config) -> Ctx {
        Ctx { cfg, mode: EngineMode::Embedding, session: None, lifecycles: BTreeMap::new() }
    }

    /// Runs a row function with the engines in the user's interpreter ([`Config::python`]): its
    /// clusters (the shared one, the start/stop cycles) are started with `--python PATH`, and
    /// the shared cluster of the other mode is stopped first. Without an interpreter the row is
    /// [`Measured::Pending`] ([`NO_PYTHON`]), not an error.
    ///
    /// # Errors
    /// `row` fails.
    pub fn in_interpreter(&mut self, row: impl FnOnce(&mut Ctx) -> Result<Measured>) -> Result<Measured> {
        if self.cfg.python.is_none() {
            return Ok(Measured::Pending(NO_PYTHON));
        }
        let before = std::mem::replace(&mut self.mode, EngineMode::Interpreter);
        let measured = row(self);
        self.mode = before;
        measured
    }

    /// The shared 4-engine cluster of `kernel` in the current engine mode (started on first use,
    /// with `psum` defined and the inputs set). A cluster of the other kernel or mode is stopped
    /// first: only one runs at a time.
    ///
    /// # Errors
    /// The start, the stop of the other cluster or the set-up cells fail.
    pub fn client(&mut self, kernel: Kernel) -> Result<&Client> {
        let mode = self.mode;
        if self.session.as_ref().is_some_and(|s| (s.kernel, s.mode) != (kernel, mode)) {
            self.end_session()?;
        }
        if self.session.is_none() {
            let (cluster, _) = BenchCluster::start(&self.cfg, kernel, mode)?;
            let client = cluster.client()?;
            let all = client.view(Targets::All);
            for code in Cells::of(kernel).setup {
                run_cell(&all, code)?;
            }
            self.session = Some(Session { kernel, mode, client, tcp_client: None, cluster });
        }
        Ok(&self.session.as_ref().expect("just set").client)
    }

    /// A client of the same shared cluster as [`Ctx::client`] connected over TCP (made on first
    /// use, kept with the cluster): it never uses the controller's Unix socket, so every byte it
    /// moves goes through sockets.
    ///
    /// # Errors
    /// As [`Ctx::client`], or the TCP connection fails.
    pub fn tcp_client(&mut self, kernel: Kernel) -> Result<&Client> {
        self.client(kernel)?;
        let session = self.session.as_mut().expect("started above");
        if session.tcp_client.is_none() {
            session.tcp_client = Some(session.cluster.tcp_client()?);
        }
        Ok(session.tcp_client.as_ref().expect("just set"))
    }

    /// Runs the set-up cells of `kernel`'s shared cluster again (after its world restarted).
    ///
    /// # Errors
    /// A cell fails.
    pub fn set_up_again(&mut self, kernel: Kernel) -> Result<()> {
        let all = self.client(kernel)?.view(Targets::All);
        for code in Cells::of(kernel).setup {
            run_cell(&all, code)?;
        }
        Ok(())
    }

    /// The pid of the shared cluster's controller (starting the cluster of `kernel` if needed).
    ///
    /// # Errors
    /// The cluster cannot be started.
    pub fn controller_pid(&mut self, kernel: Kernel) -> Result<u32> {
        self.client(kernel)?;
        let session = self.session.as_ref().expect("started above");
        session.cluster.pids.first().copied().context("the cluster has no controller pid")
    }

    /// The pids of `kernel`'s shared cluster (controller, mpirun, engines), started if need be.
    ///
    /// # Errors
    /// The cluster cannot start.
    pub fn cluster_pids(&mut self, kernel: Kernel) -> Result<Vec<u32>> {
        self.client(kernel)?;
        Ok(self.session.as_ref().expect("started above").cluster.pids.clone())
    }

    /// Stops the shared cluster, if any (before cycles of their own, so only one cluster runs).
    ///
    /// # Errors
    /// The stop fails or leaves processes behind.
    pub fn end_session(&mut self) -> Result<()> {
        if let Some(Session { client, tcp_client, cluster, .. }) = self.session.take() {
            drop((client, tcp_client));
            let stop = cluster.stop()?;
            ensure!(
                stop.leftovers == 0,
                "{} processes left after stopping the shared cluster",
                stop.leftovers
            );
        }
        Ok(())
    }

    /// Starts another round of rows (`mpx-bench --rounds`, see [`crate::rounds`]): the
    /// start/stop cycles are measured again in it (within a round, the `start` and `stop` rows
    /// share one set of cycles).
    pub fn new_round(&mut self) {
        self.lifecycles.clear();
    }

    /// `kernel`'s start/stop cycles in the current engine mode (run on first use in a round,
    /// after one untimed warm-up cycle).
    ///
    /// # Errors
    /// A start or stop fails.
    pub fn lifecycle(&mut self, kernel: Kernel) -> Result<Lifecycle> {
        let key = (kernel, self.mode);
        if let Some(l) = self.lifecycles.get(&key) {
            return Ok(l.clone());
        }
        self.end_session()?;
        let mut l = Lifecycle { start: Vec::new(), stop: Vec::new(), leftovers: 0 };
        // One warm-up cycle (page cache, first mpirun), then the timed ones.
        for i in 0..1 + self.cfg.lifecycle_samples {
            let (cluster, start) = BenchCluster::start(&self.cfg, kernel, key.1)?;
            let stop = cluster.stop()?;
            if i >= 1 {
                l.start.push(start);
                l.stop.push(stop.secs);
                l.leftovers += stop.leftovers;
            }
        }
        self.lifecycles.insert(key, l.clone());
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
///
/// # Errors
/// The cell cannot be sent, times out, or fails on an engine.
pub fn run_cell(view: &View<'_>, code: &str) -> Result<CellRun> {
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
///
/// With `MPX_BENCH_WINDOWS` set, prints `window START END` on stderr: the CLOCK_MONOTONIC
/// seconds around the timed samples, so `scripts/profile-data.sh` can cut a `perf record -k
/// CLOCK_MONOTONIC` profile to them.
///
/// # Errors
/// `op` fails.
pub fn time_repeated(warmup: usize, samples: usize, mut op: impl FnMut() -> Result<()>) -> Result<Vec<f64>> {
    let mut out = Vec::with_capacity(samples);
    let mut start = None;
    for i in 0..warmup + samples {
        if i == warmup {
            start = Some(monotonic_secs());
        }
        let t0 = Instant::now();
        op()?;
        if i >= warmup {
            out.push(t0.elapsed().as_secs_f64());
        }
    }
    if let Some(start) = start {
        print_window(start);
    }
    Ok(out)
}

/// With `MPX_BENCH_WINDOWS` set, prints the window of a row's timed samples, from `start`
/// (`monotonic_secs`) to now, for `scripts/profile_windows.py`.
pub(crate) fn print_window(start: f64) {
    if std::env::var_os("MPX_BENCH_WINDOWS").is_some() {
        eprintln!("window {start:.6} {:.6}", monotonic_secs());
    }
}

/// CLOCK_MONOTONIC now, in seconds (the clock `perf record -k CLOCK_MONOTONIC` stamps samples with).
pub(crate) fn monotonic_secs() -> f64 {
    let mut ts = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    // SAFETY: `ts` is a valid timespec for clock_gettime to write.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    ts.tv_sec as f64 + ts.tv_nsec as f64 * 1e-9
}

/// Runs `code` on `view` `warmup + samples` times; keeps the timed runs.
///
/// # Errors
/// A cell fails.
pub fn cell_runs(view: &View<'_>, code: &str, warmup: usize, samples: usize) -> Result<Vec<CellRun>> {
    let mut runs = Vec::with_capacity(samples);
    for i in 0..warmup + samples {
        let run = run_cell(view, code)?;
        if i >= warmup {
            runs.push(run);
        }
    }
    Ok(runs)
}
