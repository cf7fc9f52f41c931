//! The rows of a session that survives its accidents (python kernel): the CPU a rank burns
//! while it waits in a Barrier, a tight loop of small Allreduces in a cell against the same loop
//! in plain mpi4py, the time from Ctrl-C to a usable world for ranks blocked in a Barrier, and
//! `mpx restart` until ready. The two last rows restart the shared cluster's world: the
//! session's set-up cells run again after them.

use std::time::{Duration, Instant};

use anyhow::{bail, ensure, Context, Result};
use mpx_client::{AsyncResult, Client, Targets};

use crate::{
    cluster::{EngineMode, Kernel},
    ctx::Ctx,
    rows::Measured,
};

/// Small Allreduces per loop.
pub const LOOP_CALLS: usize = 10_000;

/// The loop: 8-byte Allreduces on numpy buffers, `LOOP_CALLS` of them after a Barrier; its
/// value (and, in plain Python, its printed line) is the seconds per call on this rank.
pub fn allreduce_loop_code() -> String {
    format!(
        "import time, numpy as np\nfrom mpi4py import MPI\n_c = MPI.COMM_WORLD\n_a = np.ones(1); _b = np.zeros(1)\n\
         _c.Barrier()\n_t = time.perf_counter()\nfor _i in range({LOOP_CALLS}): _c.Allreduce(_a, _b)\n\
         _t = (time.perf_counter() - _t) / {LOOP_CALLS}\n_t"
    )
}

/// How long the waiting rank waits.
const WAIT: Duration = Duration::from_secs(5);

/// The CPU seconds (user + system) of process `pid` so far.
fn cpu_secs(pid: u32) -> Result<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))?;
    let after = stat.rsplit_once(')').context("stat")?.1;
    let fields: Vec<&str> = after.split_whitespace().collect();
    // Fields 14 and 15 of the file (utime, stime), counted after the command's ')'.
    let ticks: f64 =
        fields.get(11).context("utime")?.parse::<f64>()? + fields.get(12).context("stime")?.parse::<f64>()?;
    // SAFETY: sysconf has no preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as f64;
    Ok(ticks / hz)
}

/// The engines' pids, by engine id.
fn engine_pids(client: &Client) -> Result<Vec<u32>> {
    Ok(client.info(Duration::from_secs(10))?.engines.iter().map(|e| e.pid).collect())
}

/// wait_cpu: the CPU seconds of a rank blocked 5 s in a Barrier (rank 0 sleeps meanwhile).
pub fn wait_cpu(ctx: &mut Ctx) -> Result<Measured> {
    let samples = if ctx.cfg.quick { 1 } else { 3 };
    let client = ctx.client(Kernel::Python)?;
    let pids = engine_pids(client)?;
    let cell = format!(
        "import time\nfrom mpi4py import MPI\nif MPI.COMM_WORLD.rank == 0: time.sleep({})\nMPI.COMM_WORLD.Barrier()",
        WAIT.as_secs_f64()
    );
    let mut out = Vec::new();
    for _ in 0..samples {
        let before = cpu_secs(pids[1])?;
        client.view(Targets::All).execute_sync(&cell, WAIT * 4)?;
        out.push(cpu_secs(pids[1])? - before);
    }
    Measured::of(&out)
}

/// allreduce_loop: seconds per 8-byte Allreduce of a tight loop in a cell (slowest rank).
pub fn allreduce_loop(ctx: &mut Ctx) -> Result<Measured> {
    let samples = if ctx.cfg.quick { 2 } else { 7 };
    let client = ctx.client(Kernel::Python)?;
    let code = allreduce_loop_code();
    let mut out = Vec::new();
    for _ in 0..samples + 1 {
        let results = client.view(Targets::All).execute_sync(&code, Duration::from_secs(300))?;
        let mut slowest = 0.0f64;
        for r in &results {
            let v = r.outcome.value.as_deref().context("the loop returned no value")?;
            slowest = slowest.max(v.trim().parse::<f64>()?);
        }
        out.push(slowest);
    }
    Measured::of(&out[1..])
}

/// Submits the cell (rank 0 raises, the others wait in a Barrier) and waits until the
/// three are reported blocked.
fn stuck_barrier(client: &Client) -> Result<AsyncResult> {
    let cell = "from mpi4py import MPI\nc = MPI.COMM_WORLD\nif c.rank == 0: 1/0\nc.Barrier()";
    let pending = client.view(Targets::All).execute(cell)?;
    let deadline = Instant::now() + Duration::from_secs(30);
    while pending.stuck().is_empty() {
        ensure!(Instant::now() < deadline, "the blocked ranks were not named within 30 s");
        std::thread::sleep(Duration::from_millis(20));
    }
    Ok(pending)
}

/// A cell on every engine that needs the whole world; `Ok` when every rank gave the right sum.
fn world_usable(client: &Client) -> Result<()> {
    let cell = "from mpi4py import MPI\nMPI.COMM_WORLD.allreduce(1)";
    let results = client.view(Targets::All).execute_sync(cell, Duration::from_secs(120))?;
    let n = results.len().to_string();
    if results.is_empty() || results.iter().any(|r| r.outcome.value.as_deref() != Some(n.as_str())) {
        bail!("the world is not usable: {results:?}");
    }
    Ok(())
}

/// ctrlc_free: from the interrupt of ranks blocked in a Barrier (waiting for a rank that raised)
/// to the answer of the next cell on every rank (sent once the interrupted cell's results came,
/// as `mpx px` and the console do).
pub fn ctrlc_free(ctx: &mut Ctx) -> Result<Measured> {
    let samples = if ctx.cfg.quick { 1 } else { 5 };
    let mut out = Vec::new();
    for _ in 0..samples {
        let client = ctx.client(Kernel::Python)?;
        let pending = stuck_barrier(client)?;
        let t0 = Instant::now();
        client.interrupt(Targets::All, Duration::from_secs(10))?;
        // As `mpx px` does: the interrupted cell's results, then the next cell.
        pending.get(Duration::from_secs(30))?;
        world_usable(client)?;
        out.push(t0.elapsed().as_secs_f64());
        ctx.set_up_again(Kernel::Python)?;
    }
    Measured::of(&out)
}

/// restart: `Client::restart` until the new world is ready.
pub fn restart(ctx: &mut Ctx) -> Result<Measured> {
    let samples = if ctx.cfg.quick { 1 } else { 5 };
    let mut out = Vec::new();
    for _ in 0..samples {
        let client = ctx.client(Kernel::Python)?;
        let t0 = Instant::now();
        client.restart("benchmark", Duration::from_secs(120))?;
        out.push(t0.elapsed().as_secs_f64());
        ctx.set_up_again(Kernel::Python)?;
    }
    Measured::of(&out)
}

/// The plain-mpi4py loop's seconds per call (slowest rank), from its printed lines.
pub fn parse_loop_lines(text: &str) -> Option<f64> {
    text.lines().filter_map(|l| l.trim().parse::<f64>().ok()).reduce(f64::max)
}

/// The matmul of the `matmul` row: a 1000x1000 product timed inside Python (after one untimed
/// product); its value (and, in plain Python, its printed line) is the seconds it took.
pub const MATMUL_CODE: &str = "import time, numpy as np\n_m = np.random.rand(1000, 1000)\n_m @ _m\n\
_t = time.perf_counter()\n_m @ _m\n_t = time.perf_counter() - _t\n_t";

/// matmul: a 1000x1000 matmul in a cell on every engine of a cluster with as many engines as
/// this host has cores (slowest engine), BLAS threads as the engines default them.
pub fn matmul(ctx: &mut Ctx) -> Result<Measured> {
    let samples = if ctx.cfg.quick { 3 } else { 15 };
    ctx.end_session()?;
    let mut cfg = ctx.cfg.clone();
    cfg.engines = std::thread::available_parallelism().map_or(1, |n| n.get()) as u32;
    let (cluster, _) = crate::cluster::BenchCluster::start(&cfg, Kernel::Python, EngineMode::Embedding)?;
    let measured = (|| {
        let client = cluster.client()?;
        let mut out = Vec::new();
        for _ in 0..samples {
            let results = client.view(Targets::All).execute_sync(MATMUL_CODE, Duration::from_secs(120))?;
            let mut slowest = 0.0f64;
            for r in &results {
                let v = r.outcome.value.as_deref().context("the matmul returned no value")?;
                slowest = slowest.max(v.trim().parse::<f64>()?);
            }
            out.push(slowest);
        }
        Measured::of(&out)
    })();
    cluster.stop()?;
    measured
}
