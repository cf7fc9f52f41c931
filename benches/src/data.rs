//! The data rows' mpx side (push, pull, scatter, gather of a given size, on either [`Path`]),
//! against the default (python) kernel's shared cluster.

use std::{collections::BTreeMap, sync::Arc};

use std::{
    sync::atomic::{AtomicBool, Ordering},
    time::{Duration, Instant},
};

use anyhow::{anyhow, ensure, Context, Result};
use mpx_cells::ArrayValue;
use mpx_client::{Client, RawArray, Targets};
use ndarray::{ArrayD, IxDyn};

use crate::{
    cluster::Kernel,
    ctx::{monotonic_secs, print_window, run_cell, time_repeated, Ctx, CELL_TIMEOUT},
    relay::Relay,
    rows::Measured,
    stats::Stats,
};

/// The kernel the data rows run against (the engine's default).
const KERNEL: Kernel = Kernel::Python;

/// Which way a data row's arrays travel (README, "Which path a move takes"). Both paths run
/// against the same cluster, whose engines are on the controller's host.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Path {
    /// The TCP path: a client connected over TCP ([`Ctx::tcp_client`]), though it runs on the
    /// controller's host; every byte goes through sockets. Rows keep their plain names (`push8M`).
    Tcp,
    /// The same-host path: the client `Client::connect` makes on the controller's host, through
    /// its Unix socket; an array of 64 KiB or more moves as a memfd (see [`crate::moves`]).
    /// Rows are named `.shm` (`push8M.shm`).
    SameHost,
}

impl Path {
    /// Both paths, in the order a size's rows run them (see [`crate::moves`]).
    pub const ALL: [Path; 2] = [Path::SameHost, Path::Tcp];

    /// A row name on this path: `push8M` on the TCP path, `push8M.shm` on the same-host path.
    pub fn row_name(self, name: &str) -> String {
        match self {
            Path::Tcp => name.to_string(),
            Path::SameHost => format!("{name}.shm"),
        }
    }
}

/// Why the `.shm` rows are not measured with `MPX_SHM=0`.
pub(crate) const SHM_OFF: &str = "not measured: MPX_SHM=0 keeps every connection on TCP (no same-host path)";

/// The client of `path` (the shared cluster started if need be); `None` when the same-host path
/// is turned off (`MPX_SHM=0`).
///
/// # Errors
/// The cluster or the connection fails, or the client is not on the path it should be on (a
/// same-host client that is not local, a TCP client that is).
pub(crate) fn client_on(ctx: &mut Ctx, path: Path) -> Result<Option<&Client>> {
    let client = match path {
        Path::Tcp => ctx.tcp_client(KERNEL)?,
        Path::SameHost if !mpx_messages::connection::shm_enabled() => return Ok(None),
        Path::SameHost => ctx.client(KERNEL)?,
    };
    ensure!(
        client.is_local() == (path == Path::SameHost),
        "the {path:?} row's client is {}connected through the Unix socket",
        if client.is_local() { "" } else { "not " }
    );
    Ok(Some(client))
}

/// `bytes` of f64 (`bytes / 8` elements), shared copy-on-write: sending it never copies it.
pub(crate) fn f64_array(bytes: usize) -> RawArray {
    let a = ArrayValue::F64(Arc::new(ArrayD::from_shape_fn(IxDyn(&[bytes / 8]), |i| i[0] as f64)));
    RawArray::from(&a)
}

/// CPU seconds (user + system, every thread) of process `pid` so far, from `/proc/PID/stat`.
fn cpu_of(pid: u32) -> Option<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The fields after the command name (which may hold spaces), from field 3 on.
    let rest = &stat[stat.rfind(')')? + 2..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks: f64 = fields.get(11)?.parse::<f64>().ok()? + fields.get(12)?.parse::<f64>().ok()?;
    // SAFETY: sysconf has no preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as f64;
    Some(ticks / hz)
}

/// CPU seconds so far of this process (the client) and of the cluster's processes.
fn cluster_cpu(pids: &[u32]) -> f64 {
    cpu_of(std::process::id()).unwrap_or(0.0) + pids.iter().filter_map(|&p| cpu_of(p)).sum::<f64>()
}

/// How a data row samples: its warm-up and timed counts, the cluster's pids, and on the TCP
/// path the design floor's relay for its size.
struct Plan {
    warmup: usize,
    samples: usize,
    pids: Vec<u32>,
    relay: Option<Relay>,
}

/// The plan of moving `bytes` on `path`.
fn plan(ctx: &mut Ctx, bytes: usize, path: Path) -> Result<Plan> {
    let (warmup, samples) = ctx.cfg.move_samples(bytes);
    let relay = match path {
        Path::Tcp => Some(Relay::start(bytes)?),
        Path::SameHost => None,
    };
    Ok(Plan { warmup, samples, pids: ctx.cluster_pids(KERNEL)?, relay })
}

/// Times `op` like [`time_repeated`] and adds to the row the CPU it cost per transfer, summed
/// over the client and every process of the cluster (`cpu per transfer`): a figure that a
/// busy machine changes much less than the wall time. On the TCP path, one move through the
/// design floor's relay is timed before each sample (warm-up included), so that the row and its
/// floor see the same machine (its drift on this VM moves both by tens of percent within a run);
/// the CPU figure leaves the relay's moves out.
fn time_moves(plan: Plan, mut op: impl FnMut() -> Result<()>) -> Result<Measured> {
    let Plan { warmup, samples: n, pids, mut relay } = plan;
    let (mut samples, mut relays, mut cpu) = (Vec::with_capacity(n), Vec::with_capacity(n), 0.0);
    let mut start = 0.0;
    for i in 0..warmup + n {
        if i == warmup {
            start = monotonic_secs();
        }
        let floor = relay.as_mut().map(Relay::once).transpose()?;
        let before = cluster_cpu(&pids);
        let t0 = Instant::now();
        op()?;
        let secs = t0.elapsed().as_secs_f64();
        if i >= warmup {
            cpu += cluster_cpu(&pids) - before;
            samples.push(secs);
            relays.extend(floor);
        }
    }
    print_window(start);
    if let Some(relay) = relay {
        relay.finish()?;
    }
    let mut measured = Measured::of(&samples)?;
    if let Measured::Done { breakdown, relay, .. } = &mut measured {
        let mut parts = BTreeMap::from([("cpu per transfer".to_string(), cpu / n as f64)]);
        *relay = Stats::of(&relays);
        if let Some(r) = relay {
            parts.insert("relay alongside".to_string(), r.median);
        }
        *breakdown = Some(parts);
    }
    Ok(measured)
}

/// push: `bytes` to all engines (TCP path: one transfer to engine 0, then MPI Bcast; same-host
/// path: one memfd that every engine maps).
pub fn push(ctx: &mut Ctx, bytes: usize, path: Path) -> Result<Measured> {
    let plan = plan(ctx, bytes, path)?;
    let data = f64_array(bytes);
    let Some(client) = client_on(ctx, path)? else { return Ok(Measured::Pending(SHM_OFF)) };
    let view = client.view(Targets::All);
    time_moves(plan, || {
        view.push_sync("x", &data, CELL_TIMEOUT)?;
        Ok(())
    })
}

/// pull: `bytes` from engine 0 (same-host path: a memfd the client maps). The array is a
/// cell's result (`x = x + 0.0`), in the engine's own memory, so the same-host path copies it
/// once into a memfd; a pushed array that no cell wrote to would go back as the memfd it came
/// in, without a copy (`mpx_messages::memfd::origin`), which is not what a pull usually moves.
pub fn pull(ctx: &mut Ctx, bytes: usize, path: Path) -> Result<Measured> {
    let plan = plan(ctx, bytes, path)?;
    let Some(client) = client_on(ctx, path)? else { return Ok(Measured::Pending(SHM_OFF)) };
    let view = client.view(Targets::ids([0]));
    view.push_sync("x", &f64_array(bytes), CELL_TIMEOUT)?;
    run_cell(&view, "x = x + 0.0")?;
    time_moves(plan, || {
        let got = view.pull_sync("x", CELL_TIMEOUT)?;
        ensure!(got.len() == 1 && got[0].len() == bytes / 8, "pulled the wrong array");
        Ok(())
    })
}

/// scatter: `bytes` of f64 split over all engines (one transfer, then MPI Scatterv).
pub fn scatter(ctx: &mut Ctx, bytes: usize, path: Path) -> Result<Measured> {
    let plan = plan(ctx, bytes, path)?;
    let data = f64_array(bytes);
    let Some(client) = client_on(ctx, path)? else { return Ok(Measured::Pending(SHM_OFF)) };
    let view = client.view(Targets::All);
    time_moves(plan, || {
        view.scatter_sync("x", &data, CELL_TIMEOUT)?;
        Ok(())
    })
}

/// gather: `bytes` of f64 concatenated from all engines (MPI Gatherv, one transfer back).
pub fn gather(ctx: &mut Ctx, bytes: usize, path: Path) -> Result<Measured> {
    let plan = plan(ctx, bytes, path)?;
    let Some(client) = client_on(ctx, path)? else { return Ok(Measured::Pending(SHM_OFF)) };
    let view = client.view(Targets::All);
    view.scatter_sync("x", &f64_array(bytes), CELL_TIMEOUT)?;
    time_moves(plan, || {
        let whole = view.gather_sync("x", CELL_TIMEOUT)?;
        ensure!(whole.len() == bytes / 8, "gathered the wrong array");
        Ok(())
    })
}

/// The resident set size of process `pid` (bytes), from `/proc/PID/status`.
fn rss_of(pid: u32) -> Result<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    let kb = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        .context("no VmRSS line")?;
    Ok(kb * 1024)
}

/// rss: the controller's resident memory while `bytes` of f64 are pushed to all engines on
/// `path` (one push, sampled every millisecond by a second thread): its idle RSS before, the
/// peak above idle during the push, and what is left above idle one second after. The
/// engines' copy is dropped afterwards (`x = None`).
pub fn push_memory(ctx: &mut Ctx, bytes: usize, path: Path) -> Result<Measured> {
    let pid = ctx.controller_pid(KERNEL)?;
    let data = f64_array(bytes);
    let Some(client) = client_on(ctx, path)? else { return Ok(Measured::Pending(SHM_OFF)) };
    let view = client.view(Targets::All);
    let idle = rss_of(pid)?;
    let done = Arc::new(AtomicBool::new(false));
    let sampler = {
        let done = Arc::clone(&done);
        std::thread::spawn(move || {
            let mut peak = 0;
            while !done.load(Ordering::Relaxed) {
                peak = peak.max(rss_of(pid).unwrap_or(0));
                std::thread::sleep(Duration::from_millis(1));
            }
            peak
        })
    };
    let t0 = Instant::now();
    let pushed = view.push_sync("x", &data, CELL_TIMEOUT);
    let secs = t0.elapsed().as_secs_f64();
    done.store(true, Ordering::Relaxed);
    let peak = sampler.join().map_err(|_| anyhow!("the RSS sampler panicked"))?;
    pushed?;
    drop(data);
    std::thread::sleep(Duration::from_secs(1));
    let after = rss_of(pid)?;
    run_cell(&view, "x = None")?;
    Ok(Measured::Memory {
        idle,
        peak_above_idle: peak.saturating_sub(idle),
        after_above_idle: after.saturating_sub(idle),
        secs,
    })
}

/// mac: the keyed BLAKE3 MAC of `bytes` alone, on one core (what each end of a transfer pays per
/// payload; the controller no longer hashes payloads). No cluster involved.
pub fn mac(ctx: &mut Ctx, bytes: usize) -> Result<Measured> {
    let (warmup, n) = ctx.cfg.move_samples(bytes);
    let key = mpx_messages::Key::new(b"mpx bench key".to_vec());
    let data = vec![7u8; bytes];
    let samples = time_repeated(warmup, n.max(3), || {
        std::hint::black_box(key.payload_mac(mpx_messages::Binding::default(), std::hint::black_box(&data)));
        Ok(())
    })?;
    Measured::of(&samples)
}
