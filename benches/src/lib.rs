//! The mpx benchmark: every mpx operation next to the floor it is bounded by, measured in the
//! same run on the same machine (`scripts/bench.sh`, results in `target/mpx-bench.json`).
//!
//! # Layout
//! - [`rows`]: the table of rows, one function per mpx operation and one per floor; the latency
//!   and start/stop rows for both engine kernels (python, the default, and rhai).
//! - [`latency`], [`data`]: the mpx side of the rows (cells' round trips, allreduces, start/stop
//!   cycles; push, pull, scatter, gather on the TCP and the same-host path), with [`cells`]
//!   (the cells in each kernel's language) and [`ctx`] (the shared cluster of one kernel at a
//!   time, its clients, and the helpers that time cells).
//! - [`moves`]: the data rows on both paths (`push8M` over TCP, `push8M.shm` on the controller's
//!   host), their floors, goals and references (one memcpy, one TCP hop, ipyparallel's
//!   figures); [`shared`]: the host's memory during a `push --shared` of 1 GB.
//! - [`floors`]: the floors as real programs: a TCP echo and bulk transfer on loopback, one
//!   memcpy, the raw rsmpi program `mpx-bench-mpi` under `mpirun`, and `mpirun -n 4 true`.
//! - [`cluster`]: a benchmark cluster (`mpx cluster start --daemonize` in a private `$MPX_HOME`)
//!   of either kernel and either engine mode, its processes, and timed stops.
//! - [`interp`]: the `.interp` rows, the embedding engine's rows again with the engines in the
//!   user's interpreter (`--python PATH`), whose floor is the embedding row of the same run.
//! - [`cleanup`]: every process the benchmark starts is registered here and ended on every path:
//!   `Drop`, a panic (the release profile aborts, so a panic hook does it), SIGINT/SIGTERM/SIGHUP.
//! - [`procs`]: bounded child processes in their own process groups, and `/proc` scans.
//! - [`sim`]: simulated engines (the engines' protocol without MPI) for `mpx-bench-engines`,
//!   which measures how many engines one controller holds.
//! - [`tasks`]: the load-balanced task rows (tasks per second from 1 and 4 clients, one task).
//! - [`stats`], [`report`]: summaries, the printed table, the JSON file, the machine description.
#![deny(missing_docs)]

pub mod cells;
pub mod chain;
pub mod cleanup;
pub mod cluster;
pub mod ctx;
pub mod data;
pub mod fanout;
pub mod floors;
pub mod interp;
pub mod latency;
pub mod moves;
pub mod procs;
pub mod recovery;
pub mod relay;
pub mod report;
pub mod rounds;
pub mod rows;
pub mod shared;
pub mod sim;
pub mod stats;
pub mod tasks;

use std::path::PathBuf;

/// How much to measure, and where the binaries are.
#[derive(Debug, Clone)]
pub struct Config {
    /// Quick mode (fewer samples: a smoke run).
    pub quick: bool,
    /// Timed samples per latency row.
    pub latency_samples: usize,
    /// Untimed warm-up runs per latency row.
    pub latency_warmup: usize,
    /// Timed samples per 80 MB move (after 1 warm-up).
    pub big_samples: usize,
    /// Timed samples per 8 MB move.
    pub medium_samples: usize,
    /// Untimed warm-up runs per 8 MB move.
    pub medium_warmup: usize,
    /// Timed cluster starts and stops (each one a full start/stop cycle).
    pub lifecycle_samples: usize,
    /// Engines (ranks) per cluster.
    pub engines: u32,
    /// The directory with `mpx`, `mpx-engine` and `mpx-bench-mpi`.
    pub bin_dir: PathBuf,
    /// The private `$MPX_HOME` of this run.
    pub home: PathBuf,
    /// The interpreter of the `.interp` rows' engines (`mpx cluster start --python PATH`; its
    /// environment has the mpx package); `None`: those rows are reported pending.
    pub python: Option<PathBuf>,
}

impl Config {
    /// The full run (`quick == false`) or the quick one.
    pub fn new(quick: bool, bin_dir: PathBuf, home: PathBuf) -> Config {
        let (latency_samples, latency_warmup, big_samples, lifecycle_samples) =
            if quick { (20, 5, 2, 3) } else { (300, 20, 7, 20) };
        let (medium_samples, medium_warmup) = if quick { (5, 1) } else { (50, 5) };
        Config {
            quick,
            latency_samples,
            latency_warmup,
            big_samples,
            medium_samples,
            medium_warmup,
            lifecycle_samples,
            engines: 4,
            bin_dir,
            home,
            python: None,
        }
    }

    /// `(warm-up, timed)` runs of a move of `bytes` (one of [`floors::MOVE_SIZES`]): the 80 MB
    /// moves take [`Config::big_samples`] after 1 warm-up, smaller ones [`Config::medium_samples`]
    /// after [`Config::medium_warmup`].
    pub fn move_samples(&self, bytes: usize) -> (usize, usize) {
        if bytes >= floors::BIG_BYTES {
            (1, self.big_samples)
        } else {
            (self.medium_warmup, self.medium_samples)
        }
    }

    /// Path of a sibling binary.
    pub fn bin(&self, name: &str) -> PathBuf {
        self.bin_dir.join(name)
    }
}

/// The environment every `mpirun` of the benchmark needs (Open MPI as root, no CMA in containers).
pub const MPI_ENV: [(&str, &str); 3] = [
    ("OMPI_ALLOW_RUN_AS_ROOT", "1"),
    ("OMPI_ALLOW_RUN_AS_ROOT_CONFIRM", "1"),
    ("OMPI_MCA_btl_vader_single_copy_mechanism", "none"),
];
