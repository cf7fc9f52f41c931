//! The table of rows: each row is one mpx operation (one function, in [`latency`] or
//! [`data`]), the floor it is bounded by (one function of the measured [`Floors`]) and the goal
//! from the benchmark issue. The latency and lifecycle rows exist for both kernels: plain names
//! (`rtt1`) for the default python kernel, `.rhai` names (`rtt1.rhai`) for rhai. Some python
//! rows also exist with the engines in the user's interpreter (`rtt1.interp`, see [`crate::interp`]):
//! their floor is another row of the same run ([`Row::floor_row`]). The data rows (see
//! [`crate::moves`]) exist on both paths a move can take: plain names (`push8M`) for the TCP
//! path, `.shm` names (`push8M.shm`) for the same-host path; some also have
//! [`Row::references`].

use std::collections::BTreeMap;

use anyhow::{Context, Result};

use crate::{
    cells::Cells,
    cluster::{row_name, Kernel},
    ctx::Ctx,
    data,
    floors::{megabytes, Floors, BIG_BYTES, MOVE_SIZES},
    interp::with_interp,
    latency,
    moves::move_rows,
    recovery,
    stats::Stats,
    tasks,
};

/// A row's mpx measurement.
#[derive(Debug, Clone)]
pub enum Measured {
    /// Timed samples (seconds), and for stops the processes left behind.
    Done {
        /// The summary.
        stats: Stats,
        /// Processes still alive 10 s after a stop began (stop row only).
        leftovers: Option<usize>,
        /// Where a round trip's time goes (medians in seconds, see [`crate::ctx::breakdown`]).
        breakdown: Option<BTreeMap<String, f64>>,
        /// The design floor's relay (`relay_8mb`, ...), timed alternately with this row's
        /// samples (TCP data rows; see [`crate::relay::Relay`]): the machine's drift reaches
        /// both alike.
        relay: Option<Stats>,
    },
    /// A process's memory during one operation (the controller's, during a big push).
    Memory {
        /// Resident set size before (bytes).
        idle: u64,
        /// Peak resident set size above `idle` during the operation (bytes).
        peak_above_idle: u64,
        /// Resident set size above `idle` one second after the operation (bytes).
        after_above_idle: u64,
        /// How long the operation took (seconds).
        secs: f64,
    },
    /// Operations per second, one figure per sample of `per_sample` operations.
    Rate {
        /// The summary of the samples' rates (operations per second, not seconds).
        per_second: Stats,
        /// Operations in each sample.
        per_sample: usize,
    },
    /// The mpx side cannot run in this build yet.
    Pending(&'static str),
    /// mpx has no such operation yet.
    NotImplemented(&'static str),
}

impl Measured {
    /// The summary of rates (operations per second), each over `per_sample` operations.
    ///
    /// # Errors
    /// There are no samples.
    pub fn rate(rates: &[f64], per_sample: usize) -> Result<Measured> {
        Ok(Measured::Rate { per_second: Stats::of(rates).context("no samples")?, per_sample })
    }

    /// The summary of timed samples (seconds).
    ///
    /// # Errors
    /// There are no samples.
    pub fn of(samples: &[f64]) -> Result<Measured> {
        Ok(Measured::Done {
            stats: Stats::of(samples).context("no samples")?,
            leftovers: None,
            breakdown: None,
            relay: None,
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
    /// Peak memory above idle ≤ this many bytes.
    MemoryAtMost(u64),
    /// At least this many operations per second (median).
    RateAtLeast(f64),
    /// mpx median ≤ this many seconds.
    AtMost(f64),
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
            Goal::MemoryAtMost(b) => Some(format!("≤ {} MB above idle", b / 1_000_000)),
            Goal::RateAtLeast(r) => Some(format!("≥ {r:.0}/s")),
            Goal::AtMost(s) => Some(format!("≤ {s} s")),
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
            (Goal::AtMost(s), _) => Some(mpx.median <= s),
            (Goal::MemoryAtMost(_) | Goal::RateAtLeast(_), _) | (_, None) => None,
        }
    }
}

/// A figure a row is compared with besides its floor, printed under the table and recorded in
/// the JSON: a floor of the run that is not the row's own (one memcpy of the bytes), or a fixed
/// figure measured elsewhere (ipyparallel's, from the benchmark issue), with or without a goal
/// of being some times faster than it.
pub struct Reference {
    /// What it is, as printed (`memcpy_80mb`, `ipyparallel 9.2, 80 MB push to one engine`).
    pub name: String,
    /// Its time (seconds), from the run's floors or fixed; `None`: not measured in this run.
    pub secs: ReferenceFn,
    /// The goal: the row's median at least this many times faster (`None`: a reference only).
    pub faster_by: Option<f64>,
}

/// A reference's time (seconds) from the run's floors, or fixed (see [`Reference::secs`]).
pub type ReferenceFn = Box<dyn Fn(&Floors) -> Option<f64>>;

/// Measures a row's mpx side.
pub type MpxFn = Box<dyn Fn(&mut Ctx) -> Result<Measured>>;
/// A row's floor, from the floors measured in the run (`None`: the row has none).
pub type FloorFn = Box<dyn Fn(&Floors) -> Option<Stats>>;
/// A TCP data row's design floor from the run's floors and the relay timed alongside the row.
pub type RelayFloorFn = Box<dyn Fn(&Floors, Stats) -> Option<Stats>>;

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
    /// A row whose mpx median is this row's floor instead of [`Row::floor`] (a row of the same
    /// run that comes earlier; the `.interp` rows' embedding rows).
    pub floor_row: Option<String>,
    /// Its goal.
    pub goal: Goal,
    /// Bytes moved, for rows that move data (throughput = bytes / time).
    pub bytes: Option<usize>,
    /// Figures it is compared with besides its floor (see [`Reference`]).
    pub references: Vec<Reference>,
    /// Its floor when its measurement brings its own relay timings ([`Measured::Done`]'s
    /// `relay`), instead of [`Row::floor`].
    pub floor_with_relay: Option<RelayFloorFn>,
}

impl Row {
    /// A row that moves no data.
    pub(crate) fn new(
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
            floor_row: None,
            goal,
            bytes: None,
            references: Vec::new(),
            floor_with_relay: None,
        }
    }

    /// The same row, whose floor is `floor` of the relay timed alongside it when its
    /// measurement has one.
    pub(crate) fn with_relay_floor(self, floor: impl Fn(&Floors, Stats) -> Option<Stats> + 'static) -> Row {
        Row { floor_with_relay: Some(Box::new(floor)), ..self }
    }

    /// The same row, moving `bytes` (its throughput is reported).
    pub(crate) fn moving(self, bytes: usize) -> Row {
        Row { bytes: Some(bytes), ..self }
    }

    /// The same row, compared with `reference` too.
    pub(crate) fn with_reference(mut self, reference: Reference) -> Row {
        self.references.push(reference);
        self
    }
}

/// Every row, in the order they run: the python kernel's latency, allreduce and data rows on
/// one shared cluster, the rhai latency rows on another, then start/stop cycles of each kernel.
/// The `.interp` rows follow their group (see [`crate::interp`] for why).
pub fn rows() -> Vec<Row> {
    let mut rows = with_interp(|| latency_rows(Kernel::Python).into());
    rows.extend(allreduce_rows(Kernel::Python));
    for bytes in MOVE_SIZES {
        rows.extend(with_interp(|| move_rows(bytes)));
    }
    rows.push(
        Row::new(
            format!("mac{}M", megabytes(BIG_BYTES)),
            format!(
                "keyed BLAKE3 MAC of {} MB, one core (sender and final receiver each pay it)",
                megabytes(BIG_BYTES)
            ),
            "– (HMAC-SHA256, the MAC before: 63 ms, 1.25 GB/s)",
            |ctx| data::mac(ctx, BIG_BYTES),
            |_| None,
            Goal::None,
        )
        .moving(BIG_BYTES),
    );
    for path in data::Path::ALL {
        rows.push(Row::new(
            path.row_name(&format!("rss{}G", RSS_PUSH_BYTES / 1_000_000_000)),
            format!(
                "the controller's peak RSS above idle during one push of {} GB of f64 to all engines ({})",
                RSS_PUSH_BYTES / 1_000_000_000,
                match path {
                    data::Path::Tcp => "TCP path: the bytes stream through the controller",
                    data::Path::SameHost => "same-host path: one memfd passed on",
                }
            ),
            "–",
            move |ctx| data::push_memory(ctx, RSS_PUSH_BYTES, path),
            |_| None,
            Goal::MemoryAtMost(64_000_000),
        ));
    }
    rows.push(Row::new(
        format!("shared{}G.shm", RSS_PUSH_BYTES / 1_000_000_000),
        format!(
            "the host's memory (summed Pss of client and cluster) above idle once one `push --shared` \
             of {} GB of f64 to all engines was read whole by each (one read-only memfd)",
            RSS_PUSH_BYTES / 1_000_000_000
        ),
        "–",
        |ctx| crate::shared::shared_push_memory(ctx, RSS_PUSH_BYTES),
        |_| None,
        Goal::MemoryAtMost(1_200_000_000),
    ));
    rows.extend(latency_rows(Kernel::Rhai));
    rows.extend(task_rows());
    rows.extend(recovery_rows());
    rows.extend(with_interp(|| Kernel::ALL.map(start_row).into()));
    rows.extend(Kernel::ALL.map(stop_row));
    rows
}

/// The push whose controller memory the `rss1G` row watches.
const RSS_PUSH_BYTES: usize = 1_000_000_000;

/// The latency rows' reference: the diagnostic `hop_chain_rtt` ([`crate::chain`]), the thread
/// hand-offs of a cell's round trip with nothing else.
fn hop_chain() -> Reference {
    Reference {
        name: "hop_chain_rtt (the 7 thread hand-offs of a cell's round trip, no protocol)".into(),
        secs: Box::new(|f| f.diagnostics.get("hop_chain_rtt").map(|s| s.median)),
        faster_by: None,
    }
}

/// rtt1, rttN and psum of `kernel`.
fn latency_rows(k: Kernel) -> [Row; 3] {
    let cells = Cells::of(k);
    let tcp = "TCP loopback ping-pong RTT, 8 B, TCP_NODELAY";
    [
        Row::new(
            row_name(k, "rtt1"),
            format!("execute a no-op cell (`{}`, {k} kernel) on 1 engine, client round trip", cells.noop),
            tcp,
            move |ctx| latency::rtt1(ctx, k),
            |f| Some(f.tcp_rtt),
            Goal::RatioAtMost(4.0),
        )
        .with_reference(hop_chain()),
        Row::new(
            row_name(k, "rttN"),
            format!("execute a no-op cell (`{}`, {k} kernel) on all engines, client round trip", cells.noop),
            tcp,
            move |ctx| latency::rtt_n(ctx, k),
            |f| Some(f.tcp_rtt),
            Goal::RatioAtMost(6.0),
        )
        .with_reference(hop_chain()),
        Row::new(
            row_name(k, "psum"),
            format!("`{}` of a 100-element array on all engines ({k} kernel), client round trip", cells.psum),
            "raw MPI_Allreduce of 1 f64 + TCP RTT",
            move |ctx| latency::psum(ctx, k),
            |f| Some(f.allreduce1.then(f.tcp_rtt)),
            Goal::RatioAtMost(2.0),
        ),
    ]
}

/// allreduce8M (timed inside the engines) and allreduce8M-rt (client round trip) of `kernel`.
fn allreduce_rows(k: Kernel) -> [Row; 2] {
    let clock = match k {
        Kernel::Python => "MPI.Wtime()",
        Kernel::Rhai => "wtime()",
    };
    [
        Row::new(
            row_name(k, "allreduce8M"),
            format!(
                "allreduce of 1M f64 ({k} kernel), timed inside the engines with {clock} (slowest engine)"
            ),
            "raw MPI_Allreduce of 1M f64",
            move |ctx| latency::allreduce_inside(ctx, k),
            |f| Some(f.allreduce1m),
            Goal::None,
        ),
        Row::new(
            row_name(k, "allreduce8M-rt"),
            format!("allreduce of 1M f64 on all engines ({k} kernel), client round trip"),
            "raw MPI_Allreduce of 1M f64 + TCP RTT",
            move |ctx| latency::allreduce_round_trip(ctx, k),
            |f| Some(f.allreduce1m.then(f.tcp_rtt)),
            Goal::None,
        ),
    ]
}

/// The rows of a session that survives its accidents (python kernel, see [`recovery`]).
fn recovery_rows() -> [Row; 5] {
    [
        Row::new(
            "wait_cpu",
            "CPU seconds of a rank waiting 5 s in a cell's Barrier for a rank that sleeps (goal: ≤ 10 % of a core)",
            "–",
            recovery::wait_cpu,
            |_| None,
            Goal::AtMost(0.5),
        ),
        Row::new(
            "allreduce_loop",
            format!("seconds per 8-byte Allreduce of a loop of {} in a cell (slowest rank)", recovery::LOOP_CALLS),
            "the same loop in plain mpi4py under mpirun",
            recovery::allreduce_loop,
            |f| Some(f.allreduce_loop),
            Goal::RatioAtMost(1.1),
        ),
        Row::new(
            "ctrlc_free",
            "interrupt of ranks blocked in a Barrier for a rank that raised, until the next cell answers on every rank",
            "–",
            recovery::ctrlc_free,
            |_| None,
            Goal::AtMost(2.0),
        ),
        Row::new(
            "restart",
            "`mpx restart` (Client::restart) until the new world is ready",
            "`mpirun -n 4 --oversubscribe true` (reference)",
            recovery::restart,
            |f| Some(f.mpirun_true),
            Goal::None,
        ),
        Row::new(
            "matmul",
            "a 1000x1000 matmul in a cell on every engine, as many engines as cores (slowest engine)",
            "the same matmul in one plain python3 with one engine's share of the cores as BLAS threads",
            recovery::matmul,
            |f| Some(f.matmul),
            Goal::RatioAtMost(1.2),
        ),
    ]
}

/// start of `kernel`: `mpx cluster start` until ready.
fn start_row(k: Kernel) -> Row {
    let what = match k {
        Kernel::Python => "python kernel: CPython, numpy and mpi4py imported at engine start",
        Kernel::Rhai => "rhai kernel",
    };
    Row::new(
        row_name(k, "start"),
        format!("`mpx cluster start -n 4 --daemonize` until it reports ready ({what})"),
        "`mpirun -n 4 --oversubscribe true`",
        move |ctx| latency::start(ctx, k),
        |f| Some(f.mpirun_true),
        Goal::FloorPlus(0.2),
    )
}

/// stop of `kernel`: `mpx cluster stop` until every process is gone.
fn stop_row(k: Kernel) -> Row {
    Row::new(
        row_name(k, "stop"),
        format!("`mpx cluster stop` until every cluster process is gone (by PID; {k} kernel)"),
        "`mpirun -n 4 --oversubscribe true` (reference)",
        move |ctx| latency::stop(ctx, k),
        |f| Some(f.mpirun_true),
        Goal::WithinNoLeftovers(0.5),
    )
}

/// The load-balanced task rows: tasks/s from one client and from 4, one task's round trip.
fn task_rows() -> [Row; 3] {
    let goal = Goal::RateAtLeast(20_000.0);
    [
        Row::new(
            "tasks",
            "load-balanced no-op tasks (`pass`, python kernel) per second, 1 client, 4 engines",
            "–",
            tasks::one_client,
            |_| None,
            goal,
        ),
        Row::new(
            "tasks4",
            format!("load-balanced no-op tasks per second, {} clients at once, 4 engines", tasks::CLIENTS),
            "–",
            tasks::four_clients,
            |_| None,
            goal,
        ),
        Row::new(
            "task1",
            "one load-balanced no-op task (python kernel), client round trip (goal: ≤ rtt1's)",
            "TCP loopback ping-pong RTT, 8 B, TCP_NODELAY",
            tasks::one_task,
            |f| Some(f.tcp_rtt),
            Goal::RatioAtMost(4.0),
        ),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Config;

    #[test]
    fn latency_and_lifecycle_rows_of_both_kernels() {
        let rows = rows();
        for name in ["rtt1", "rttN", "psum", "start", "stop"] {
            for wanted in [name.to_string(), format!("{name}.rhai")] {
                assert!(rows.iter().any(|r| r.name == wanted), "no row {wanted}");
            }
        }
        assert_eq!(row_name(Kernel::Python, "rtt1"), "rtt1");
        assert_eq!(row_name(Kernel::Rhai, "rtt1"), "rtt1.rhai");
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
