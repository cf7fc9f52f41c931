//! The Slurm launcher against a real one-node Slurm (munged + slurmctld + slurmd started here by
//! `scripts/slurm-local.sh` in a temp dir, stopped by PID on drop, also when the test fails:
//! the harness's `slurm` module).
//! CI installs Slurm; `MPX_SKIP_SLURM=1` skips this test where it is not installed.

use std::{ffi::OsString, time::Duration};

use mpx_tests::{slurm::LocalSlurm, Cluster, Kernel};

#[test]
fn t74_slurm_cluster_on_a_local_slurm() {
    if !LocalSlurm::available("t74", &[], "slurmctld slurmd slurm-client munge") {
        return;
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
    assert_eq!(
        slurm.queue_after_cleanup(Duration::from_secs(30)),
        "",
        "job {job} still in the queue 30 s after the stop"
    );
}
