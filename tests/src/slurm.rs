//! A private one-node Slurm for a test (munged + slurmctld + slurmd started by
//! `scripts/slurm-local.sh` in a temp dir, stopped by PID on drop, also when the test fails).

use std::{
    net::TcpListener,
    path::{Path, PathBuf},
    process::Command,
    time::Duration,
};

use crate::{repo_root, run_with_timeout, stderr, stdout, TempDir};

/// A running private Slurm; its daemons are stopped by PID on drop, then its directory is
/// removed.
pub struct LocalSlurm {
    dir: PathBuf,
    ports: (u16, u16),
    _scratch: TempDir,
}

impl LocalSlurm {
    fn script() -> PathBuf {
        repo_root().join("scripts/slurm-local.sh")
    }

    fn command(&self, action: &str) -> Command {
        let mut cmd = Command::new(Self::script());
        cmd.args([action, self.dir.to_str().expect("utf8")])
            .env("SLURM_LOCAL_CTLD_PORT", self.ports.0.to_string())
            .env("SLURM_LOCAL_SLURMD_PORT", self.ports.1.to_string())
            .env("SLURM_LOCAL_TIMEOUT", "30");
        cmd
    }

    /// Checks that `programs` (and Slurm's daemons) are installed. If some are missing: with
    /// `MPX_SKIP_SLURM=1` prints that the test `test` is skipped and returns false; otherwise
    /// panics with what to install (`packages`).
    pub fn available(test: &str, programs: &[&str], packages: &str) -> bool {
        let daemons = ["slurmctld", "slurmd", "sbatch", "squeue", "scancel", "munged"];
        let missing: Vec<&str> = daemons.iter().chain(programs).copied().filter(|p| !installed(p)).collect();
        if missing.is_empty() {
            return true;
        }
        if std::env::var_os("MPX_SKIP_SLURM").is_some_and(|v| v == "1") {
            eprintln!("SKIPPED {test}: not installed: {missing:?} (and MPX_SKIP_SLURM=1)");
            return false;
        }
        panic!(
            "{test} needs {missing:?}: apt-get install --no-install-recommends {packages} (as .ci/run \
             does), or set MPX_SKIP_SLURM=1 to skip"
        );
    }

    /// Starts the daemons and waits until the node is idle.
    pub fn start() -> LocalSlurm {
        let scratch = TempDir::new("slurm-daemons");
        let ports = (free_port(), free_port());
        let slurm = LocalSlurm { dir: scratch.0.join("slurm"), ports, _scratch: scratch };
        let out = run_with_timeout(slurm.command("start"), Duration::from_secs(120));
        assert!(out.status.success(), "local Slurm did not start:\n{}{}", stdout(&out), stderr(&out));
        slurm
    }

    /// Its `slurm.conf` (clients find the cluster through `SLURM_CONF`).
    pub fn conf(&self) -> PathBuf {
        self.dir.join("slurm.conf")
    }

    /// Runs a Slurm client command against this cluster; its stdout (asserts success).
    pub fn run(&self, program: &str, args: &[&str]) -> String {
        let mut cmd = Command::new(program);
        cmd.args(args).env("SLURM_CONF", self.conf());
        let out = run_with_timeout(cmd, Duration::from_secs(30));
        assert!(out.status.success(), "{program} {args:?}: {}", stderr(&out));
        stdout(&out)
    }

    /// `squeue -h -o %i`: the ids of the jobs in the queue.
    pub fn queue(&self) -> String {
        self.run("squeue", &["-h", "-o", "%i"]).trim().to_string()
    }

    /// The queue once it is empty, or as it is after `timeout`: a job that was cancelled or
    /// ended stays listed (COMPLETING) until slurmd has cleaned it up, which takes a moment.
    pub fn queue_after_cleanup(&self, timeout: Duration) -> String {
        let deadline = std::time::Instant::now() + timeout;
        loop {
            let queue = self.queue();
            if queue.is_empty() || std::time::Instant::now() > deadline {
                return queue;
            }
            std::thread::sleep(Duration::from_millis(200));
        }
    }
}

impl Drop for LocalSlurm {
    fn drop(&mut self) {
        let out = run_with_timeout(self.command("stop"), Duration::from_secs(120));
        if !out.status.success() {
            eprintln!("slurm-local.sh stop: {}{}", stdout(&out), stderr(&out));
        }
    }
}

/// A port free right now (the daemons bind it a moment later).
fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").expect("bind").local_addr().expect("addr").port()
}

/// Whether `program` is on `PATH`.
pub fn installed(program: &str) -> bool {
    std::env::var_os("PATH")
        .map(|paths| std::env::split_paths(&paths).any(|d| Path::new(&d).join(program).is_file()))
        .unwrap_or(false)
}
