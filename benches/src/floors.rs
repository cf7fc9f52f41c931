//! The floors, as real programs measured in the same run: a TCP echo and a TCP bulk transfer
//! on loopback, one memcpy in this process, the raw rsmpi program `mpx-bench-mpi` under
//! `mpirun`, and `mpirun -n N true`.

use std::{
    collections::BTreeMap,
    io::{Read, Write},
    net::{TcpListener, TcpStream},
    process::Command,
    time::{Duration, Instant},
};

use anyhow::{ensure, Context, Result};

use crate::{procs, stats::Stats, Config, MPI_ENV};

/// Bytes of the 8 MB moves (1M f64).
pub const MEDIUM_BYTES: usize = 8_000_000;
/// Bytes of the 80 MB moves (10M f64).
pub const BIG_BYTES: usize = 80_000_000;
/// The sizes of the data rows (push, pull, scatter, gather) and of their floors.
pub const MOVE_SIZES: [usize; 2] = [MEDIUM_BYTES, BIG_BYTES];

/// `bytes` in (decimal) megabytes, as row and floor names spell it (`8`, `80`).
pub fn megabytes(bytes: usize) -> usize {
    bytes / 1_000_000
}

/// The floors of moving one size of f64 data.
#[derive(Debug, Clone, Copy)]
pub struct MoveFloors {
    /// TCP loopback transfer of the bytes (until the receiver's 1-byte acknowledgement).
    pub tcp: Stats,
    /// One memcpy of the bytes in this process, into a buffer already written (see [`memcpy`]).
    pub memcpy: Stats,
    /// The bytes through a relay: sender MACs, two TCP hops, receiver verifies in a fresh
    /// buffer (see [`crate::relay`]): the design's own floor of a move through the controller.
    pub relay: Stats,
    /// MPI_Bcast of the bytes from rank 0.
    pub bcast: Stats,
    /// MPI_Scatterv of the bytes from rank 0.
    pub scatter: Stats,
    /// MPI_Gatherv of the bytes to rank 0.
    pub gather: Stats,
}

/// The Python the engine embeds (`PYO3_PYTHON` in `.cargo/config.toml`), whose numpy and mpi4py
/// the python kernel imports: not whatever `python3` is first on `$PATH` (a pyenv shim, a venv).
const PYTHON: &str = "/usr/bin/python3";

/// Every floor, measured once per run.
#[derive(Debug, Clone)]
pub struct Floors {
    /// TCP loopback round trip of 8 bytes, TCP_NODELAY.
    pub tcp_rtt: Stats,
    /// MPI_Allreduce of 1 f64.
    pub allreduce1: Stats,
    /// MPI_Allreduce of 1M f64.
    pub allreduce1m: Stats,
    /// The moves' floors, by size in bytes (every one of [`MOVE_SIZES`]).
    pub moves: BTreeMap<usize, MoveFloors>,
    /// `mpirun -n N --oversubscribe true`.
    pub mpirun_true: Stats,
    /// A 1000x1000 matmul in one plain `python3` (the engines' Python and numpy).
    pub matmul: Stats,
    /// Seconds per 8-byte Allreduce of a tight loop in plain mpi4py under mpirun (the same code
    /// as the `allreduce_loop` row's cell; slowest rank).
    pub allreduce_loop: Stats,
    /// Not floors of any row: figures that explain where mpx's time goes (see BENCHMARKS.md):
    /// `tcp_rtt_after_1ms_idle` (the same ping-pong with the peers idle 1 ms between pings),
    /// `hop_chain_rtt` (the thread hand-offs of a cell's round trip: [`crate::chain`]),
    /// `mpirun_mpi_init` (`mpirun -n N` of a program that only initialises MPI),
    /// `mpirun_python_numpy_mpi4py` (`mpirun -n N python3 -c "import numpy; from mpi4py import
    /// MPI"`: the python kernel's start without mpx),
    /// `mpi_allreduce_*_thread_multiple` (the raw allreduces under MPI_THREAD_MULTIPLE).
    pub diagnostics: BTreeMap<String, Stats>,
}

impl Floors {
    /// Measures every floor. The raw MPI ones (allreduces, and Bcast/Scatterv/Gatherv of every
    /// size) come from one `mpx-bench-mpi` job.
    ///
    /// # Errors
    /// A floor program fails or times out.
    pub fn measure(cfg: &Config) -> Result<Floors> {
        let tcp_rtt = stats("tcp_rtt", &tcp_rtt(cfg.latency_warmup * 5, cfg.latency_samples * 5)?)?;
        let mpi = mpi_floors(cfg)?;
        let get = |name: &str| stats(name, mpi.get(name).map(Vec::as_slice).unwrap_or_default());
        let mut moves = BTreeMap::new();
        for bytes in MOVE_SIZES {
            let (warmup, samples) = cfg.move_samples(bytes);
            let mb = megabytes(bytes);
            let tcp = stats(&format!("tcp_{mb}mb"), &tcp_transfer(warmup, samples, bytes)?)?;
            let memcpy = stats(&format!("memcpy_{mb}mb"), &memcpy(warmup, samples.max(5), bytes))?;
            let relay =
                stats(&format!("relay_{mb}mb"), &crate::relay::relay_transfer(warmup, samples, bytes)?)?;
            let floors = MoveFloors {
                tcp,
                memcpy,
                relay,
                bcast: get(&format!("bcast{mb}"))?,
                scatter: get(&format!("scatter{mb}"))?,
                gather: get(&format!("gather{mb}"))?,
            };
            moves.insert(bytes, floors);
        }
        let mpirun_true = stats("mpirun_true", &mpirun_true(cfg, 1, cfg.lifecycle_samples)?)?;
        let allreduce_loop = stats("allreduce_loop", &allreduce_loop(cfg)?)?;
        let matmul = stats("matmul", &matmul(cfg)?)?;
        let mut diagnostics = BTreeMap::new();
        let idle = tcp_rtt_idle(cfg.latency_warmup, cfg.latency_samples, Duration::from_millis(1))?;
        diagnostics.insert("tcp_rtt_after_1ms_idle".into(), stats("tcp idle", &idle)?);
        let chain = crate::chain::hop_chain_rtt(cfg.latency_warmup, cfg.latency_samples)?;
        diagnostics.insert("hop_chain_rtt".into(), stats("hop chain", &chain)?);
        let mut init = mpirun(cfg);
        init.args([&cfg.bin("mpx-bench-mpi").to_string_lossy(), "--init-only"]);
        diagnostics.insert(
            "mpirun_mpi_init".into(),
            stats("mpi init", &timed_runs(init, 1, cfg.lifecycle_samples)?)?,
        );
        // The python kernel's start, without mpx: Python, numpy and mpi4py's MPI_Init on every
        // rank. A diagnostic only; skipped (with a note) where python3 lacks numpy or mpi4py.
        let mut py = mpirun(cfg);
        py.args([PYTHON, "-c", "import numpy; from mpi4py import MPI"]);
        match timed_runs(py, 1, cfg.lifecycle_samples) {
            Ok(samples) => {
                diagnostics.insert("mpirun_python_numpy_mpi4py".into(), stats("python init", &samples)?);
            }
            Err(e) => eprintln!("\n  (skipped mpirun of {PYTHON} with numpy and mpi4py: {e:#})"),
        }
        let multiple = mpi_floors_with(cfg, &["--thread-multiple", "--no-big"])?;
        for (name, samples) in &multiple {
            diagnostics.insert(format!("mpi_{name}_thread_multiple"), stats(name, samples)?);
        }
        Ok(Floors {
            tcp_rtt,
            allreduce1: get("allreduce1")?,
            allreduce1m: get("allreduce1m")?,
            moves,
            mpirun_true,
            allreduce_loop,
            matmul,
            diagnostics,
        })
    }

    /// The floors of moving `bytes`; `None` for a size not in [`MOVE_SIZES`].
    pub fn of_move(&self, bytes: usize) -> Option<&MoveFloors> {
        self.moves.get(&bytes)
    }

    /// Every floor by name (`tcp_rtt`, `tcp_8mb`, `mpi_bcast_80mb`, ...), then the diagnostics:
    /// what the report lists and the JSON file records.
    pub fn named(&self) -> Vec<(String, Stats)> {
        let mut out = vec![("tcp_rtt".to_string(), self.tcp_rtt)];
        for (&bytes, m) in &self.moves {
            out.push((format!("tcp_{}mb", megabytes(bytes)), m.tcp));
            out.push((format!("memcpy_{}mb", megabytes(bytes)), m.memcpy));
            out.push((format!("relay_{}mb", megabytes(bytes)), m.relay));
        }
        out.push(("mpi_allreduce_1_f64".into(), self.allreduce1));
        out.push(("mpi_allreduce_1m_f64".into(), self.allreduce1m));
        for (&bytes, m) in &self.moves {
            let mb = megabytes(bytes);
            out.push((format!("mpi_bcast_{mb}mb"), m.bcast));
            out.push((format!("mpi_scatterv_{mb}mb"), m.scatter));
            out.push((format!("mpi_gatherv_{mb}mb"), m.gather));
        }
        out.push(("mpirun_true".into(), self.mpirun_true));
        out.push(("mpi4py_allreduce_loop_8b".into(), self.allreduce_loop));
        out.push(("python_matmul_1000".into(), self.matmul));
        out.extend(self.diagnostics.clone());
        out
    }
}

/// The `allreduce_loop` row's loop in plain mpi4py under mpirun: seconds per call (slowest
/// rank, printed by rank 0), one sample per run.
fn allreduce_loop(cfg: &Config) -> Result<Vec<f64>> {
    let runs = if cfg.quick { 2 } else { 7 };
    // One line, from rank 0 (the slowest rank's time), flushed at once: what a rank leaves in
    // Python's buffer is written at exit, after mpi4py has finalized MPI, when mpirun may no
    // longer forward it (seen once, under load: mpirun succeeded and printed no time).
    let code = format!(
        "{}\n_t = _c.allreduce(_t, op=MPI.MAX)\nif _c.rank == 0:\n    print(repr(_t), flush=True)",
        crate::recovery::allreduce_loop_code()
    );
    let mut out = Vec::new();
    for _ in 0..runs {
        let mut cmd = mpirun(cfg);
        cmd.args([PYTHON, "-c", &code]);
        let run = cmd.output().context("mpirun of the mpi4py Allreduce loop")?;
        anyhow::ensure!(
            run.status.success(),
            "the mpi4py loop failed: {}",
            String::from_utf8_lossy(&run.stderr)
        );
        let text = String::from_utf8_lossy(&run.stdout);
        out.push(crate::recovery::parse_loop_lines(&text).context("the mpi4py loop printed no time")?);
    }
    Ok(out)
}

/// The `matmul` row's product in one plain `python3` with one engine's share of the host's
/// cores as its BLAS threads (the row's engines, as many as cores, get one each): what a rank's
/// product costs without mpx.
fn matmul(cfg: &Config) -> Result<Vec<f64>> {
    let runs = if cfg.quick { 3 } else { 15 };
    let share = "1";
    let code = format!(
        "{}\nfor _ in range({runs}):\n    _t = time.perf_counter(); _m @ _m; print(time.perf_counter() - _t)",
        crate::recovery::MATMUL_CODE
    );
    let mut cmd = Command::new(PYTHON);
    cmd.args(["-c", &code]);
    for var in ["OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"] {
        cmd.env(var, share);
    }
    let run = cmd.output().context("python3 matmul")?;
    anyhow::ensure!(
        run.status.success(),
        "the plain matmul failed: {}",
        String::from_utf8_lossy(&run.stderr)
    );
    Ok(String::from_utf8_lossy(&run.stdout).lines().filter_map(|l| l.trim().parse::<f64>().ok()).collect())
}

fn stats(name: &str, samples: &[f64]) -> Result<Stats> {
    Stats::of(samples).with_context(|| format!("no samples for the {name} floor"))
}

/// A loopback listener and a connected client/server pair, both with TCP_NODELAY.
pub(crate) fn loopback_pair() -> Result<(TcpStream, TcpStream)> {
    let listener = TcpListener::bind("127.0.0.1:0")?;
    let client = TcpStream::connect(listener.local_addr()?)?;
    let (server, _) = listener.accept()?;
    for s in [&client, &server] {
        s.set_nodelay(true)?;
        s.set_read_timeout(Some(Duration::from_secs(30)))?;
    }
    Ok((client, server))
}

/// Round trips of 8 bytes to an echo server thread over loopback TCP (TCP_NODELAY).
///
/// # Errors
/// A socket error.
pub fn tcp_rtt(warmup: usize, samples: usize) -> Result<Vec<f64>> {
    let (mut client, mut server) = loopback_pair()?;
    let echo = std::thread::spawn(move || -> std::io::Result<()> {
        let mut buf = [0u8; 8];
        loop {
            match server.read_exact(&mut buf) {
                Ok(()) => server.write_all(&buf)?,
                Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => return Ok(()),
                Err(e) => return Err(e),
            }
        }
    });
    let mut out = Vec::with_capacity(samples);
    let mut buf = [0u8; 8];
    for i in 0..warmup + samples {
        let t0 = Instant::now();
        client.write_all(&(i as u64).to_le_bytes())?;
        client.read_exact(&mut buf)?;
        let dt = t0.elapsed().as_secs_f64();
        ensure!(u64::from_le_bytes(buf) == i as u64, "echo mismatch");
        if i >= warmup {
            out.push(dt);
        }
    }
    drop(client);
    echo.join().map_err(|_| anyhow::anyhow!("echo thread panicked"))??;
    Ok(out)
}

/// Like [`tcp_rtt`], with both ends idle for `gap` before each ping: the round trip a request
/// sees when its processes have been asleep (CPU idle states, wake-up IPIs) rather than spinning.
///
/// # Errors
/// A socket error.
pub fn tcp_rtt_idle(warmup: usize, samples: usize, gap: Duration) -> Result<Vec<f64>> {
    let (mut client, mut server) = loopback_pair()?;
    let echo = std::thread::spawn(move || -> std::io::Result<()> {
        let mut buf = [0u8; 8];
        while server.read_exact(&mut buf).is_ok() {
            server.write_all(&buf)?;
        }
        Ok(())
    });
    let mut out = Vec::with_capacity(samples);
    let mut buf = [0u8; 8];
    for i in 0..warmup + samples {
        std::thread::sleep(gap);
        let t0 = Instant::now();
        client.write_all(&buf)?;
        client.read_exact(&mut buf)?;
        if i >= warmup {
            out.push(t0.elapsed().as_secs_f64());
        }
    }
    drop(client);
    echo.join().map_err(|_| anyhow::anyhow!("echo thread panicked"))??;
    Ok(out)
}

/// Transfers of `bytes` to a receiver thread over loopback TCP, each timed until the receiver
/// has read everything and its 1-byte acknowledgement is back.
///
/// # Errors
/// A socket error.
pub fn tcp_transfer(warmup: usize, samples: usize, bytes: usize) -> Result<Vec<f64>> {
    let (mut client, mut server) = loopback_pair()?;
    let receiver = std::thread::spawn(move || -> std::io::Result<()> {
        let mut chunk = vec![0u8; 1 << 20];
        let mut len = [0u8; 8];
        loop {
            match server.read_exact(&mut len) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => return Ok(()),
                Err(e) => return Err(e),
            }
            let mut left = u64::from_le_bytes(len) as usize;
            while left > 0 {
                let n = server.read(&mut chunk[..left.min(1 << 20)])?;
                if n == 0 {
                    return Err(std::io::ErrorKind::UnexpectedEof.into());
                }
                left -= n;
            }
            server.write_all(&[1])?;
        }
    });
    // f64 data, as a push would carry.
    let data: Vec<u8> = (0..bytes / 8).flat_map(|i| (i as f64).to_le_bytes()).collect();
    let mut out = Vec::with_capacity(samples);
    let mut ack = [0u8; 1];
    for i in 0..warmup + samples {
        let t0 = Instant::now();
        client.write_all(&(data.len() as u64).to_le_bytes())?;
        client.write_all(&data)?;
        client.read_exact(&mut ack)?;
        if i >= warmup {
            out.push(t0.elapsed().as_secs_f64());
        }
    }
    drop(client);
    receiver.join().map_err(|_| anyhow::anyhow!("receiver thread panicked"))??;
    Ok(out)
}

/// Copies of `bytes` of f64 (`copy_from_slice`) from a freshly written buffer into a warm one
/// (written once before: its pages are mapped), one timed copy per sample. The least any move
/// of the bytes from one buffer to another costs on this machine: the same-host path copies a
/// pushed array once, into a memfd (whose pages are fresh, so it also pays their faults).
pub fn memcpy(warmup: usize, samples: usize, bytes: usize) -> Vec<f64> {
    let src: Vec<u8> = (0..bytes / 8).flat_map(|i| (i as f64).to_le_bytes()).collect();
    let mut dst = vec![0u8; bytes];
    // `vec![0; n]` maps zero pages lazily: write them so that no copy pays their faults.
    dst.fill(1);
    let mut out = Vec::with_capacity(samples);
    for i in 0..warmup + samples {
        let t0 = Instant::now();
        dst.copy_from_slice(std::hint::black_box(&src));
        std::hint::black_box(&mut dst);
        if i >= warmup {
            out.push(t0.elapsed().as_secs_f64());
        }
    }
    out
}

/// `mpirun -n N --oversubscribe` with the Open MPI environment.
pub fn mpirun(cfg: &Config) -> Command {
    let mut cmd = Command::new("mpirun");
    cmd.args(["-n", &cfg.engines.to_string(), "--oversubscribe"]).envs(MPI_ENV);
    cmd
}

/// Runs `mpx-bench-mpi` under mpirun and returns its samples by name.
///
/// # Errors
/// mpirun fails, times out, or prints no JSON.
pub fn mpi_floors(cfg: &Config) -> Result<BTreeMap<String, Vec<f64>>> {
    mpi_floors_with(cfg, &[])
}

/// [`mpi_floors`] with extra arguments to `mpx-bench-mpi`.
///
/// # Errors
/// As [`mpi_floors`].
pub fn mpi_floors_with(cfg: &Config, extra: &[&str]) -> Result<BTreeMap<String, Vec<f64>>> {
    let mut cmd = mpirun(cfg);
    cmd.arg(cfg.bin("mpx-bench-mpi")).args([
        "--latency-samples",
        &cfg.latency_samples.to_string(),
        "--big-samples",
        &cfg.big_samples.to_string(),
        "--medium-samples",
        &cfg.medium_samples.to_string(),
        "--medium-warmup",
        &cfg.medium_warmup.to_string(),
        "--warmup",
        &cfg.latency_warmup.to_string(),
    ]);
    cmd.args(extra);
    let out = procs::run(&mut cmd, Duration::from_secs(300))?;
    let stdout = String::from_utf8_lossy(&out.stdout);
    ensure!(
        out.status.success(),
        "mpx-bench-mpi failed ({}):\n{stdout}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    let line = stdout.lines().find(|l| l.starts_with('{')).context("mpx-bench-mpi printed no results")?;
    Ok(serde_json::from_str(line)?)
}

/// Wall times of `mpirun -n N --oversubscribe true`, from spawn to exit.
///
/// # Errors
/// mpirun fails or times out.
pub fn mpirun_true(cfg: &Config, warmup: usize, samples: usize) -> Result<Vec<f64>> {
    let mut cmd = mpirun(cfg);
    cmd.arg("true");
    timed_runs(cmd, warmup, samples)
}

/// Wall times of running `cmd` to completion, from spawn to exit.
///
/// # Errors
/// It fails or times out.
pub fn timed_runs(mut cmd: Command, warmup: usize, samples: usize) -> Result<Vec<f64>> {
    let mut out = Vec::with_capacity(samples);
    for i in 0..warmup + samples {
        let t0 = Instant::now();
        let res = procs::run(&mut cmd, Duration::from_secs(60))?;
        let dt = t0.elapsed().as_secs_f64();
        ensure!(res.status.success(), "{cmd:?} failed: {}", String::from_utf8_lossy(&res.stderr));
        if i >= warmup {
            out.push(dt);
        }
    }
    Ok(out)
}
