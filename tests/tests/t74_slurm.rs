//! The Slurm launcher against a real one-node Slurm (munged + slurmctld + slurmd started here by
//! `scripts/slurm-local.sh` in a temp dir, stopped by PID on drop, also when the test fails).
//! CI installs Slurm; `MPX_SKIP_SLURM=1` skips this test where it is not installed.

use std::{
    ffi::OsString,
    net::TcpListener,
    path::{Path, PathBuf},
    process::Command,
    time::Duration,
};

use mpx_tests::{repo_root, run_with_timeout, stderr, stdout, Cluster, Kernel, TempDir};

/// A private Slurm for one test; its daemons are stopped by PID on drop, then its directory
/// is removed.
struct LocalSlurm {
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

    /// Starts the daemons and waits until the node is idle.
    fn start() -> LocalSlurm {
        let scratch = TempDir::new("slurm-daemons");
        let ports = (free_port(), free_port());
        let slurm = LocalSlurm { dir: scratch.0.join("slurm"), ports, _scratch: scratch };
        let out = run_with_timeout(slurm.command("start"), Duration::from_secs(120));
        assert!(out.status.success(), "local Slurm did not start:\n{}{}", stdout(&out), stderr(&out));
        slurm
    }

    fn conf(&self) -> PathBuf {
        self.dir.join("slurm.conf")
    }

    /// `squeue -h -o %i`: the ids of the jobs in the queue.
    fn queue(&self) -> String {
        let mut cmd = Command::new("squeue");
        cmd.args(["-h", "-o", "%i"]).env("SLURM_CONF", self.conf());
        let out = run_with_timeout(cmd, Duration::from_secs(30));
        assert!(out.status.success(), "squeue: {}", stderr(&out));
        stdout(&out).trim().to_string()
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

fn installed(program: &str) -> bool {
    std::env::var_os("PATH")
        .map(|paths| std::env::split_paths(&paths).any(|d| Path::new(&d).join(program).is_file()))
        .unwrap_or(false)
}

#[test]
fn t74_slurm_cluster_on_a_local_slurm() {
    let missing: Vec<&str> = ["slurmctld", "slurmd", "sbatch", "squeue", "scancel", "munged"]
        .into_iter()
        .filter(|p| !installed(p))
        .collect();
    if !missing.is_empty() {
        if std::env::var_os("MPX_SKIP_SLURM").is_some_and(|v| v == "1") {
            eprintln!("skipped: Slurm is not installed ({missing:?}) and MPX_SKIP_SLURM=1");
            return;
        }
        panic!(
            "Slurm is not installed (missing {missing:?}): apt-get install --no-install-recommends \
             slurmctld slurmd slurm-client munge (as .ci/run does), or set MPX_SKIP_SLURM=1 to skip"
        );
    }
    let slurm = LocalSlurm::start();
    assert_eq!(slurm.queue(), "", "a fresh Slurm has no jobs");
    let conf: OsString = slurm.conf().into();
    let c = Cluster::start_env(Kernel::Rhai, "slurm", 2, &["--launcher", "slurm"], &[("SLURM_CONF", &conf)]);
    assert_eq!(c.pids.mpirun, None, "a batch job has no local mpirun pid");
    let job = slurm.queue();
    assert!(!job.is_empty() && job.chars().all(|ch| ch.is_ascii_digit()), "one job in the queue: {job:?}");
    let log = std::fs::read_to_string(c.home.join("cluster-default.log")).unwrap_or_default();
    assert!(log.contains("sbatch --parsable"), "the submission is logged:\n{log}");
    // The job runs where `mpx cluster start` ran (the test's working directory).
    let here = std::env::current_dir().unwrap();
    assert!(log.contains(&format!("--chdir {}", here.display())), "sbatch --chdir:\n{log}");
    c.check_psum(2);
    let pids = c.pids.clone();
    c.stop();
    assert!(pids.alive().is_empty());
    assert_eq!(slurm.queue(), "", "job {job} still in the queue after the stop");
}
