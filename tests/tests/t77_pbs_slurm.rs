//! The PBS launcher against a real `qsub`/`qstat`/`qdel`: Debian's `slurm-wlm-torque` (Slurm's
//! Torque-compatibility wrappers) over the private one-node Slurm of the harness's `slurm`
//! module. qsub hands the job script to sbatch, which reads its `#PBS` directives; qstat and qdel
//! ask and tell slurmctld.
//!
//! The job script is a Torque-style template (`-l nodes=1:ppn=N`), as a Torque site would pass
//! with `--launcher-template`: Slurm reads the built-in OpenPBS/PBS Pro `select=N` as N nodes,
//! which a one-node Slurm never has. What the wrappers do not cover (the built-in template,
//! `qstat -x`, `exit_status`, ids like `123.server`) stays with the stand-in test, t72.
//! CI installs the wrappers; `MPX_SKIP_SLURM=1` skips this test where they are not installed.

use std::{
    ffi::OsString,
    time::{Duration, Instant},
};

use mpx_controller::files::pid_alive;
use mpx_tests::{slurm::LocalSlurm, Cluster, Kernel, TempDir};

const TORQUE_TEMPLATE: &str = "#!/bin/sh
#PBS -N {job_name}
#PBS -V
#PBS -l nodes=1:ppn={n}
#PBS -q {queue}
#PBS -l walltime={walltime}
cd \"${PBS_O_WORKDIR:-.}\"
exec {mpirun} -n {n} {engine} --kernel {kernel} --connect {connection_file}
";

/// Starts a 2-engine PBS cluster through the wrappers; returns it and its job id.
fn start(slurm: &LocalSlurm, tag: &str, template: &std::path::Path) -> (Cluster, String) {
    let conf: OsString = slurm.conf().into();
    let args = [
        "--launcher",
        "pbs",
        "--queue",
        "debug",
        "--walltime",
        "00:10:00",
        "--launcher-template",
        template.to_str().unwrap(),
    ];
    let c = Cluster::start_env(Kernel::Rhai, tag, 2, &args, &[("SLURM_CONF", &conf)]);
    assert_eq!(c.pids.mpirun, None, "a batch job has no local mpirun pid");
    let job = slurm.queue();
    assert!(!job.is_empty() && job.chars().all(|ch| ch.is_ascii_digit()), "one job in the queue: {job:?}");
    (c, job)
}

#[test]
fn t77_pbs_cluster_through_slurms_qsub_qstat_qdel() {
    if !LocalSlurm::available("t77", &["qsub", "qstat", "qdel"], "slurm-wlm-torque") {
        return;
    }
    let slurm = LocalSlurm::start();
    let scratch = TempDir::new("pbs-slurm-tmpl");
    let template = scratch.0.join("torque.tmpl");
    std::fs::write(&template, TORQUE_TEMPLATE).unwrap();

    // A cluster through qsub: the #PBS directives reach Slurm, psum works, qdel ends it.
    let (c, job) = start(&slurm, "pbs-slurm", &template);
    let log = std::fs::read_to_string(c.home.join("cluster-default.log")).unwrap_or_default();
    assert!(log.contains("qsub -j oe -o "), "the submission is logged:\n{log}");
    let show = slurm.run("scontrol", &["show", "job", &job]);
    for field in ["JobName=mpx-default", "Partition=debug", "TimeLimit=00:10:00", "NumNodes=1", "NumTasks=2"]
    {
        assert!(show.contains(field), "{field} missing: the job script's #PBS lines\n{show}");
    }
    let qstat = slurm.run("qstat", &["-f", &job]);
    assert!(qstat.lines().any(|l| l.trim() == "job_state = R"), "{qstat}");
    c.check_psum(2);
    let pids = c.pids.clone();
    c.stop();
    assert!(pids.alive().is_empty(), "left: {:?}", pids.alive());
    assert_eq!(
        slurm.queue_after_cleanup(Duration::from_secs(30)),
        "",
        "job {job} still in the queue 30 s after the stop"
    );

    // A job deleted behind mpx's back: the cluster notices and stops by itself.
    let (c, job) = start(&slurm, "pbs-slurm-qdel", &template);
    slurm.run("qdel", &[&job]);
    let deadline = Instant::now() + Duration::from_secs(30);
    while pid_alive(c.pids.controller) && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(!pid_alive(c.pids.controller), "the controller still runs 30 s after qdel {job}");
    let log = std::fs::read_to_string(c.home.join("cluster-default.log")).unwrap_or_default();
    assert!(log.contains("the MPI world goes down"), "{log}");
    let left = c.pids.wait_gone(Duration::from_secs(10));
    assert!(left.is_empty(), "left after qdel: {left:?}");
    assert_eq!(
        slurm.queue_after_cleanup(Duration::from_secs(30)),
        "",
        "job {job} still in the queue 30 s after qdel"
    );
}
