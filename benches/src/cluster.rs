//! A benchmark cluster: `mpx cluster start -n N --daemonize` in the run's private `$MPX_HOME`
//! with the engines' kernel and mode of choice (the `mpx-engine` binary, or the user's
//! interpreter with `--python PATH`), its processes (by PID), and a stop timed until every one
//! of them is gone.

use std::{
    path::PathBuf,
    process::Command,
    time::{Duration, Instant},
};

use anyhow::{ensure, Context, Result};
use mpx_client::Client;
use mpx_controller::files;

use crate::{
    cleanup::{self, Guard, Resource},
    procs, Config, MPI_ENV,
};

/// The cluster id every benchmark cluster uses (one at a time, in a private home).
const CLUSTER_ID: &str = "default";

pub use mpx_messages::Kernel;

/// How a cluster's engines run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Default)]
pub enum EngineMode {
    /// The `mpx-engine` binary built next to `mpx`, which embeds the libpython it was built
    /// against (the default of the cargo-built `mpx`).
    #[default]
    Embedding,
    /// The same Rust engine inside the `mpx` package's extension module, run by the user's
    /// interpreter: `mpx cluster start --python PATH` (engines are `PATH -m mpx.engine`), with
    /// PATH from [`Config::python`].
    Interpreter,
}

impl EngineMode {
    /// A row name in this mode: the embedding mode's rows keep their names (`rtt1`), the
    /// interpreter mode's get `.interp` (`rtt1.interp`).
    pub fn row_name(self, name: &str) -> String {
        match self {
            EngineMode::Embedding => name.to_string(),
            EngineMode::Interpreter => format!("{name}.interp"),
        }
    }
}

/// A row name for a kernel: the default kernel's rows keep their plain names (`rtt1`), the
/// others get the kernel as a suffix (`rtt1.rhai`).
pub fn row_name(kernel: Kernel, name: &str) -> String {
    if kernel == Kernel::default() {
        name.to_string()
    } else {
        format!("{name}.{}", kernel.name())
    }
}

/// `mpx` with the run's `$MPX_HOME` and the Open MPI environment (and no `$MPX_ENGINE` or
/// `$MPX_PYTHON` from the caller: the engine is the one built next to `mpx`, or the one given
/// with `--engine` or `--python`).
pub fn mpx_cmd(cfg: &Config) -> Command {
    let mut cmd = Command::new(cfg.bin("mpx"));
    cmd.env("MPX_HOME", &cfg.home).env_remove("MPX_ENGINE").env_remove("MPX_PYTHON").envs(MPI_ENV);
    cmd
}

/// A running cluster; ended by its guard if it is not stopped cleanly.
pub struct BenchCluster {
    /// The controller, mpirun and engine pids.
    pub pids: Vec<u32>,
    /// The controller's session (the daemon calls `setsid`).
    pub session: Option<i32>,
    /// mpirun's process group.
    pub group: Option<i32>,
    connection_file: PathBuf,
    cfg: Config,
    guard: Guard,
}

/// One timed stop.
#[derive(Debug, Clone, Copy)]
pub struct StopSample {
    /// From running `mpx cluster stop` until it returned and every process was gone.
    pub secs: f64,
    /// Cluster processes still alive when `mpx cluster stop` returned.
    pub alive_at_return: usize,
    /// Cluster processes still alive 10 s after the stop began (then killed).
    pub leftovers: usize,
}

impl BenchCluster {
    /// Starts a cluster whose engines run `kernel` in `mode` and returns it with the time
    /// `mpx cluster start` took to report it ready.
    ///
    /// # Errors
    /// The start fails, times out, or the cluster does not have `cfg.engines` engines; the
    /// interpreter mode without [`Config::python`].
    pub fn start(cfg: &Config, kernel: Kernel, mode: EngineMode) -> Result<(BenchCluster, f64)> {
        let guard = cleanup::register(Resource::Cluster {
            mpx: cfg.bin("mpx"),
            home: cfg.home.clone(),
            pids: Vec::new(),
            session: None,
            group: None,
        });
        let n = cfg.engines.to_string();
        let mut cmd = mpx_cmd(cfg);
        cmd.args([
            "cluster",
            "start",
            "-n",
            &n,
            "--daemonize",
            "--timeout",
            "60",
            "--cluster-id",
            CLUSTER_ID,
            "--kernel",
            kernel.name(),
        ]);
        if mode == EngineMode::Interpreter {
            let python =
                cfg.python.as_ref().context("the interpreter mode needs a Python (--python PATH)")?;
            cmd.arg("--python").arg(python);
        }
        let t0 = Instant::now();
        let out = procs::run(&mut cmd, Duration::from_secs(90))?;
        let secs = t0.elapsed().as_secs_f64();
        let text = String::from_utf8_lossy(&out.stdout);
        ensure!(
            out.status.success() && text.contains(&format!("{n} engines ready")),
            "mpx cluster start failed ({}):\n{text}\n{}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
        let connection_file = files::connection_file(&cfg.home, CLUSTER_ID);
        let info = {
            let client = Client::connect(&connection_file.to_string_lossy()).context("connect")?;
            client.info(Duration::from_secs(10))?
        };
        let mut pids = vec![info.controller_pid];
        pids.extend(info.mpirun_pid);
        pids.extend(info.engines.iter().map(|e| e.pid));
        let session = procs::session_and_group(info.controller_pid).map(|(sid, _)| sid);
        let group = info.mpirun_pid.map(|p| p as i32);
        guard.update(|res| {
            if let Resource::Cluster { pids: p, session: s, group: g, .. } = res {
                (*p, *s, *g) = (pids.clone(), session, group);
            }
        });
        let cluster = BenchCluster { pids, session, group, connection_file, cfg: cfg.clone(), guard };
        ensure!(info.engines.len() == cfg.engines as usize, "{} engines registered", info.engines.len());
        Ok((cluster, secs))
    }

    /// A new client of this cluster.
    ///
    /// # Errors
    /// The connection fails.
    pub fn client(&self) -> Result<Client> {
        Ok(Client::connect(&self.connection_file.to_string_lossy())?)
    }

    /// A new client of this cluster over TCP: the connection file's address and key
    /// (`Client::connect_with`), so it never uses the controller's Unix socket even on its host
    /// (the data rows' TCP path, see [`crate::data::Path`]).
    ///
    /// # Errors
    /// The connection file cannot be read or the connection fails.
    pub fn tcp_client(&self) -> Result<Client> {
        let info = mpx_messages::connection::read_connection_file(&self.connection_file)?;
        let key = mpx_messages::Key::from_hex(&info.key)?;
        let client =
            Client::connect_with(&info.address, key, &info.cluster_id, self.connection_file.clone())?;
        ensure!(!client.is_local(), "a client of {} is local", info.address);
        Ok(client)
    }

    /// Its processes still alive.
    pub fn alive(&self) -> Vec<u32> {
        procs::cluster_members(&self.pids, self.session.as_slice(), self.group)
    }

    /// Runs `mpx cluster stop` and times it until it returned and every process is gone
    /// (polled by PID every millisecond). Whatever outlives 10 s is killed and counted.
    ///
    /// # Errors
    /// `mpx cluster stop` cannot run or fails.
    pub fn stop(self) -> Result<StopSample> {
        let mut cmd = mpx_cmd(&self.cfg);
        cmd.args(["cluster", "stop", "--cluster-id", CLUSTER_ID]);
        let t0 = Instant::now();
        let mut stop = procs::spawn(&mut cmd)?;
        let deadline = t0 + Duration::from_secs(10);
        let mut returned = None;
        let mut alive_at_return = 0;
        let (secs, leftovers) = loop {
            if returned.is_none() {
                if let Some(status) = stop.try_wait() {
                    returned = Some(status);
                    alive_at_return = self.alive().len();
                }
            }
            let alive = self.alive();
            if returned.is_some() && alive.is_empty() {
                break (t0.elapsed().as_secs_f64(), 0);
            }
            if Instant::now() > deadline {
                break (t0.elapsed().as_secs_f64(), alive.len());
            }
            std::thread::sleep(Duration::from_millis(1));
        };
        let out = stop.wait(Duration::from_secs(20))?;
        ensure!(out.status.success(), "mpx cluster stop failed: {}", String::from_utf8_lossy(&out.stderr));
        if leftovers == 0 {
            self.guard.disarm();
        } // else: dropping the guard kills what is left, by PID.
        Ok(StopSample { secs, alive_at_return, leftovers })
    }
}
