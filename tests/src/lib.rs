//! Test harness: start real clusters (mpirun, 4 ranks) in a private `$MPX_HOME`, run the `mpx`
//! CLI against them, and make sure every process they started is gone afterwards (by PID).
#![deny(missing_docs)]

pub mod arrays;
pub mod memory;
pub mod netns;
pub mod peer;
pub mod slurm;
pub mod tmux;

use std::{
    ffi::OsStr,
    path::{Path, PathBuf},
    process::{Child, Command, ExitStatus, Output, Stdio},
    sync::{Mutex, MutexGuard},
    time::{Duration, Instant},
};

use mpx_controller::files::{self, pid_alive};
/// The cell language of a test cluster's engines: `Kernel::Rhai` or `Kernel::Python`.
pub use mpx_controller::Kernel;

/// One cluster at a time per test binary: 4 busy-waiting ranks per cluster on a 2-core machine.
static SERIAL: Mutex<()> = Mutex::new(());

/// Takes the per-binary cluster lock (poison-tolerant: one failed test must not fail the rest).
pub fn serial() -> MutexGuard<'static, ()> {
    SERIAL.lock().unwrap_or_else(|e| e.into_inner())
}

/// The directory holding the workspace's built binaries (target/debug).
pub fn bin_dir() -> PathBuf {
    let exe = std::env::current_exe().expect("test exe");
    // target/debug/deps/<test> -> target/debug
    exe.parent().and_then(Path::parent).expect("target dir").to_path_buf()
}

/// Path of a workspace binary; panics with a hint if it was not built.
pub fn bin(name: &str) -> PathBuf {
    let p = bin_dir().join(name);
    assert!(
        p.is_file(),
        "{} is not built: run `cargo build --workspace --bins --examples` first",
        p.display()
    );
    p
}

/// The repository root.
pub fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).parent().expect("repo root").to_path_buf()
}

/// A fresh private `$MPX_HOME`.
pub fn temp_home(tag: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("mpx-test-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("temp home");
    dir
}

/// `mpx` with the test environment (private home, Open MPI allowed as root).
pub fn mpx_cmd(home: &Path) -> Command {
    let mut cmd = Command::new(bin("mpx"));
    cmd.env("MPX_HOME", home)
        .env("OMPI_ALLOW_RUN_AS_ROOT", "1")
        .env("OMPI_ALLOW_RUN_AS_ROOT_CONFIRM", "1")
        .env("OMPI_MCA_btl_vader_single_copy_mechanism", "none")
        .stdin(Stdio::null());
    cmd
}

/// Runs a command with a deadline; kills it (by PID) if it overruns. Its stdout and stderr are
/// read while it runs (by two threads), so output larger than a pipe holds cannot stall it.
pub fn run_with_timeout(mut cmd: Command, timeout: Duration) -> Output {
    let mut child = cmd.stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().expect("spawn");
    let drain = |pipe: Option<Box<dyn std::io::Read + Send>>| {
        std::thread::spawn(move || {
            let mut bytes = Vec::new();
            if let Some(mut pipe) = pipe {
                let _ = pipe.read_to_end(&mut bytes);
            }
            bytes
        })
    };
    let out_reader = drain(child.stdout.take().map(|p| Box::new(p) as Box<dyn std::io::Read + Send>));
    let err_reader = drain(child.stderr.take().map(|p| Box::new(p) as Box<dyn std::io::Read + Send>));
    let deadline = Instant::now() + timeout;
    let status = loop {
        if let Some(status) = child.try_wait().expect("try_wait") {
            break Some(status);
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        std::thread::sleep(Duration::from_millis(10));
    };
    let stdout = out_reader.join().expect("stdout reader");
    let stderr = err_reader.join().expect("stderr reader");
    match status {
        Some(status) => Output { status, stdout, stderr },
        None => {
            let tail = |b: &[u8]| String::from_utf8_lossy(&b[b.len().saturating_sub(4000)..]).into_owned();
            panic!(
                "command timed out after {timeout:?}: {cmd:?}\nstdout (end):\n{}\nstderr (end):\n{}",
                tail(&stdout),
                tail(&stderr)
            );
        }
    }
}

/// Text of an output's stdout.
pub fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Text of an output's stderr.
pub fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// Every process of a running cluster, from its connection file and the controller's info.
#[derive(Debug, Clone, Default)]
pub struct ClusterPids {
    /// The controller.
    pub controller: u32,
    /// mpirun.
    pub mpirun: Option<u32>,
    /// The engines.
    pub engines: Vec<u32>,
}

impl ClusterPids {
    /// All pids. Pid 0 (a cluster whose pids were never read) is left out: signalling it would
    /// signal the test's own process group.
    pub fn all(&self) -> Vec<u32> {
        let mut v = vec![self.controller];
        v.extend(self.mpirun);
        v.extend(&self.engines);
        v.retain(|&p| p != 0);
        v
    }

    /// Pids still alive (zombies count as gone).
    pub fn alive(&self) -> Vec<u32> {
        self.all().into_iter().filter(|&p| pid_alive(p)).collect()
    }

    /// Waits up to `timeout` for every process to be gone; returns the survivors.
    pub fn wait_gone(&self, timeout: Duration) -> Vec<u32> {
        let deadline = Instant::now() + timeout;
        loop {
            let alive = self.alive();
            if alive.is_empty() || Instant::now() > deadline {
                return alive;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// SIGKILLs whatever is left (test cleanup, by PID only).
    pub fn kill_all(&self) {
        for pid in self.alive() {
            // SAFETY: these pids belong to the cluster this test started.
            unsafe { libc::kill(pid as libc::pid_t, libc::SIGKILL) };
        }
    }
}

/// A daemonized cluster for one test; stopped (and checked gone) on drop.
pub struct Cluster {
    /// Its `$MPX_HOME`.
    pub home: PathBuf,
    /// Its id.
    pub id: String,
    /// Its processes.
    pub pids: ClusterPids,
    _serial: MutexGuard<'static, ()>,
}

impl Cluster {
    /// Starts `mpx cluster start -n N --daemonize --kernel KERNEL` with extra arguments.
    pub fn start(kernel: Kernel, tag: &str, n: u32, extra: &[&str]) -> Cluster {
        Cluster::start_full(kernel, tag, n, extra, &[], None)
    }

    /// Like [`Cluster::start`], with extra environment variables for the cluster (e.g. `PATH`).
    pub fn start_env(kernel: Kernel, tag: &str, n: u32, extra: &[&str], env: &[(&str, &OsStr)]) -> Cluster {
        Cluster::start_full(kernel, tag, n, extra, env, None)
    }

    /// Like [`Cluster::start`], run from directory `dir`: the engines run there (cells import
    /// its modules).
    pub fn start_in(kernel: Kernel, tag: &str, n: u32, extra: &[&str], dir: &Path) -> Cluster {
        Cluster::start_full(kernel, tag, n, extra, &[], Some(dir))
    }

    fn start_full(
        kernel: Kernel,
        tag: &str,
        n: u32,
        extra: &[&str],
        env: &[(&str, &OsStr)],
        dir: Option<&Path>,
    ) -> Cluster {
        let guard = serial();
        let home = temp_home(tag);
        let mut cmd = mpx_cmd(&home);
        cmd.args(["cluster", "start", "-n", &n.to_string(), "--daemonize", "--timeout", "60"])
            .args(["--kernel", kernel.name()])
            .args(extra);
        cmd.envs(env.iter().copied());
        if let Some(dir) = dir {
            cmd.current_dir(dir);
        }
        let out = run_with_timeout(cmd, Duration::from_secs(90));
        assert!(out.status.success(), "cluster start failed:\n{}\n{}", stdout(&out), stderr(&out));
        assert!(stdout(&out).contains(&format!("{n} engines ready")), "{}", stdout(&out));
        Cluster::adopt(home, "default", n, guard)
    }

    /// Takes charge of a running cluster `id` under `home` with `n` engines registered: reads
    /// its pids; it is stopped (and `home` removed) on drop.
    pub fn adopt(home: PathBuf, id: &str, n: u32, guard: MutexGuard<'static, ()>) -> Cluster {
        let mut cluster = Cluster { home, id: id.into(), pids: ClusterPids::default(), _serial: guard };
        cluster.pids = cluster.read_pids();
        assert_eq!(cluster.pids.engines.len(), n as usize, "engine pids: {:?}", cluster.pids);
        cluster
    }

    /// Waits (bounded) until `n` engines are registered.
    pub fn wait_engines(home: &Path, id: &str, n: usize, timeout: Duration) {
        let path = files::connection_file(home, id);
        let deadline = Instant::now() + timeout;
        loop {
            let registered = mpx_client::Client::connect(path.to_str().expect("utf8"))
                .and_then(|c| c.info(Duration::from_secs(5)))
                .map(|info| info.engines.len())
                .unwrap_or(0);
            if registered >= n {
                return;
            }
            assert!(Instant::now() < deadline, "{registered} of {n} engines registered after {timeout:?}");
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Runs the rhai psum session (`rand`, `examples/psum.rhai`, `psum`) and checks that every
    /// engine got the same total, the sum of the local sums.
    pub fn check_psum(&self, n: u32) {
        self.px("let a = rand(100);");
        let psum = repo_root().join("examples/psum.rhai");
        let out = self.mpx(&["run", psum.to_str().expect("utf8")]);
        assert!(out.status.success(), "{}{}", stdout(&out), stderr(&out));
        self.px("let s = psum(a);");
        let floats = |pairs: Vec<(u32, String)>| -> Vec<(u32, f64)> {
            pairs
                .into_iter()
                .map(|(id, v)| (id, v.parse().unwrap_or_else(|_| panic!("not a number: {v}"))))
                .collect()
        };
        let locals = floats(out_values(&self.px("sum(a)")));
        let totals = floats(out_values(&self.px("s")));
        let ids: Vec<u32> = (0..n).collect();
        assert_eq!(locals.iter().map(|(id, _)| *id).collect::<Vec<_>>(), ids);
        assert_eq!(totals.iter().map(|(id, _)| *id).collect::<Vec<_>>(), ids);
        let expected: f64 = locals.iter().map(|(_, v)| v).sum();
        for (id, total) in &totals {
            assert!((total - expected).abs() < 1e-9 * expected.abs(), "engine {id}: {total} != {expected}");
        }
    }

    /// Reads the pids from the controller.
    pub fn read_pids(&self) -> ClusterPids {
        let path = files::connection_file(&self.home, &self.id);
        let client = mpx_client::Client::connect(path.to_str().expect("utf8 path")).expect("connect");
        let info = client.info(Duration::from_secs(10)).expect("info");
        ClusterPids {
            controller: info.controller_pid,
            mpirun: info.mpirun_pid,
            engines: info.engines.iter().map(|e| e.pid).collect(),
        }
    }

    /// The connection file.
    pub fn connection_file(&self) -> PathBuf {
        files::connection_file(&self.home, &self.id)
    }

    /// The controller's address and the cluster key, for tests that speak the protocol
    /// themselves.
    pub fn address_and_key(&self) -> (String, mpx_messages::Key) {
        let text = std::fs::read_to_string(self.connection_file()).expect("connection file");
        let info: mpx_messages::ConnectionInfo = serde_json::from_str(&text).expect("connection info");
        (info.address, mpx_messages::Key::from_hex(&info.key).expect("key"))
    }

    /// A client connected to this cluster.
    pub fn client(&self) -> mpx_client::Client {
        mpx_client::Client::connect(self.connection_file().to_str().expect("utf8")).expect("connect")
    }

    /// Runs `mpx ARGS` against this cluster.
    pub fn mpx(&self, args: &[&str]) -> Output {
        let mut cmd = mpx_cmd(&self.home);
        cmd.args(args);
        run_with_timeout(cmd, Duration::from_secs(60))
    }

    /// Runs `mpx px CODE` and asserts it succeeded; returns stdout.
    pub fn px(&self, code: &str) -> String {
        let out = self.mpx(&["px", code]);
        assert!(out.status.success(), "px {code:?} failed:\n{}\n{}", stdout(&out), stderr(&out));
        stdout(&out)
    }

    /// Runs `mpx px CODE` expecting it to fail (exit code 1, an engine error); returns stdout.
    pub fn px_err(&self, code: &str) -> String {
        let out = self.mpx(&["px", code]);
        assert_eq!(out.status.code(), Some(1), "px {code:?}:\n{}\n{}", stdout(&out), stderr(&out));
        stdout(&out)
    }

    /// Stops the cluster with `mpx cluster stop` and asserts every process is gone.
    pub fn stop(self) {
        let out = self.mpx(&["cluster", "stop"]);
        assert!(out.status.success(), "stop failed:\n{}\n{}", stdout(&out), stderr(&out));
        let left = self.pids.wait_gone(Duration::from_secs(5));
        assert!(left.is_empty(), "processes left after stop: {left:?}");
        assert!(!self.connection_file().exists(), "connection file left after stop");
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        if !self.pids.alive().is_empty() {
            let mut cmd = mpx_cmd(&self.home);
            cmd.args(["cluster", "stop", "--all"]);
            let _ = cmd.stdout(Stdio::null()).stderr(Stdio::null()).status();
            if !self.pids.wait_gone(Duration::from_secs(5)).is_empty() {
                self.pids.kill_all();
            }
        }
        // MPX_TEST_KEEP=1 keeps the cluster's home (and its log) for debugging.
        if std::env::var_os("MPX_TEST_KEEP").is_none() {
            let _ = std::fs::remove_dir_all(&self.home);
        }
    }
}

/// Engine ids of a collapsed label: `0-3,5` → `[0, 1, 2, 3, 5]` (`None` if it is not a list
/// of ids, e.g. a `set:rank` label).
pub fn rank_list(label: &str) -> Option<Vec<u32>> {
    let mut ids = Vec::new();
    for part in label.split(',') {
        match part.split_once('-') {
            Some((a, b)) => ids.extend(a.parse::<u32>().ok()?..=b.parse::<u32>().ok()?),
            None => ids.push(part.parse().ok()?),
        }
    }
    Some(ids)
}

/// `(engine, text)` of the lines `PREFIX<engines><sep>text`, a collapsed line (`0-3`) counted for
/// each of its engines; consecutive such lines (one cell's) sorted by engine, each engine's in
/// order.
fn labelled(text: &str, prefix: &str, sep: &str) -> Vec<(u32, String)> {
    let mut found = Vec::new();
    let mut run: Vec<(u32, String)> = Vec::new();
    for line in text.lines() {
        let parsed = line.strip_prefix(prefix).and_then(|rest| {
            let (ids, value) = rest.split_once(sep)?;
            Some((rank_list(ids)?, value.to_string()))
        });
        match parsed {
            Some((ids, value)) => run.extend(ids.into_iter().map(|id| (id, value.clone()))),
            None => {
                run.sort_by_key(|(id, _)| *id);
                found.append(&mut run);
            }
        }
    }
    run.sort_by_key(|(id, _)| *id);
    found.append(&mut run);
    found
}

/// Values of `Out[R]: v` lines (also collapsed ones, `Out[0-3]: v`), by engine.
pub fn out_values(text: &str) -> Vec<(u32, String)> {
    labelled(text, "Out[", "]: ")
}

/// Lines of `[stdout:R] text` (also collapsed ones, `[stdout:0-3] text`), by engine.
pub fn stdout_lines(text: &str) -> Vec<(u32, String)> {
    labelled(text, "[stdout:", "] ")
}

/// Engines of `[R:error]` lines (also collapsed ones, `[0-3:error]`), with the error line.
pub fn error_lines(text: &str) -> Vec<(u32, String)> {
    text.lines()
        .filter_map(|l| {
            let rest = l.strip_prefix('[')?;
            let (ids, value) = rest.split_once(":error] ")?;
            Some(rank_list(ids)?.into_iter().map(move |id| (id, value.to_string())))
        })
        .flatten()
        .collect()
}

/// `mpirun -n N mpx-engine --connect FILE` started by a test, as a user would type it, in its own
/// process group; killed (by process group) and reaped on drop if still running.
pub struct ManualEngines {
    child: Child,
    status: Option<ExitStatus>,
}

impl ManualEngines {
    /// Starts `n` engines running `kernel` that connect with `connection_file` (which may not
    /// exist yet).
    pub fn spawn(kernel: Kernel, n: u32, connection_file: &Path) -> ManualEngines {
        use std::os::unix::process::CommandExt;
        let mut cmd = Command::new("mpirun");
        cmd.args(["-n", &n.to_string(), "--oversubscribe"])
            .arg(bin("mpx-engine"))
            .args(["--kernel", kernel.name()])
            .arg("--connect")
            .arg(connection_file)
            .env("OMPI_ALLOW_RUN_AS_ROOT", "1")
            .env("OMPI_ALLOW_RUN_AS_ROOT_CONFIRM", "1")
            .env("OMPI_MCA_btl_vader_single_copy_mechanism", "none")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .process_group(0);
        ManualEngines { child: cmd.spawn().expect("spawn mpirun"), status: None }
    }

    /// mpirun's pid (also its process group).
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Whether mpirun is still running.
    pub fn running(&mut self) -> bool {
        if self.status.is_none() {
            self.status = self.child.try_wait().expect("try_wait");
        }
        self.status.is_none()
    }

    /// Waits up to `timeout` for mpirun to exit; its status, or None if it is still running.
    pub fn wait_exit(&mut self, timeout: Duration) -> Option<ExitStatus> {
        let deadline = Instant::now() + timeout;
        while self.running() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(10));
        }
        self.status
    }
}

impl Drop for ManualEngines {
    fn drop(&mut self) {
        if self.running() {
            // SAFETY: the process group of the mpirun this test started.
            unsafe { libc::kill(-(self.child.id() as libc::pid_t), libc::SIGKILL) };
            let _ = self.child.wait();
        }
    }
}

/// A private temp directory ([`temp_home`]) removed on drop, also when the test fails.
pub struct TempDir(pub PathBuf);

impl TempDir {
    /// A fresh directory tagged `tag`.
    pub fn new(tag: &str) -> TempDir {
        TempDir(temp_home(tag))
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}
