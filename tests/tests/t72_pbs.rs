//! The PBS launcher against stand-in `qsub`/`qstat`/`qdel` scripts (Debian has no PBS server):
//! qsub records its arguments and runs the job script here in the background, in its own
//! session; qstat reports the job while its process lives; qdel kills its process group.
//!
//! t77 runs the launcher through a real qsub (Slurm's Torque wrappers); this test keeps what
//! those do not cover: the built-in OpenPBS/PBS Pro template (`-l select=N:ncpus=1:mpiprocs=1`,
//! which Slurm reads as N nodes), job ids of the form `N.server`, and the exact qsub/qstat/qdel
//! command lines the launcher runs.

use std::{
    ffi::OsString,
    os::unix::fs::PermissionsExt,
    path::{Path, PathBuf},
};

use mpx_controller::files::pid_alive;
use mpx_tests::{Cluster, Kernel, TempDir};

const QSUB: &str = r#"#!/bin/sh
# stand-in qsub: record the call, run the script here in its own session, print a job id
echo "qsub $*" >> "$STATE/calls"
out=/dev/null
while [ $# -gt 1 ]; do
    case $1 in
        -o) out=$2; shift 2 ;;
        -j|-q|-l|-N) shift 2 ;;
        *) shift ;;
    esac
done
n=$(( $(cat "$STATE/next" 2>/dev/null || echo 100) + 1 )); echo $n > "$STATE/next"
id=$n.standin
setsid sh "$1" > "$out" 2>&1 < /dev/null &
echo $! > "$STATE/$id.pid"
echo $id
"#;

const QSTAT: &str = r#"#!/bin/sh
# stand-in qstat [-f] [-x] ID: the job is listed while its process lives (zombies count as gone)
echo "qstat $*" >> "$STATE/calls"
for id; do :; done
pid=$(cat "$STATE/$id.pid" 2>/dev/null)
st=$( [ -n "$pid" ] && ps -o stat= -p "$pid" 2>/dev/null )
case $st in
    ""|Z*) echo "qstat: Unknown Job Id $id" >&2; exit 153 ;;
esac
printf 'Job Id: %s\n    Job_Name = stand-in\n    job_state = R\n' "$id"
"#;

const QDEL: &str = r#"#!/bin/sh
# stand-in qdel ID: SIGTERM to the job's process group
echo "qdel $*" >> "$STATE/calls"
pid=$(cat "$STATE/$1.pid" 2>/dev/null) || { echo "qdel: Unknown Job Id $1" >&2; exit 153; }
kill -TERM -- "-$pid" 2>/dev/null
exit 0
"#;

/// Writes the stand-ins to `home/bin` (with their state in `home/pbs`); returns the `PATH` and
/// `STATE` to run the cluster with.
fn stand_ins(home: &Path) -> (OsString, PathBuf) {
    let bin = home.join("bin");
    let state = home.join("pbs");
    std::fs::create_dir_all(&bin).unwrap();
    std::fs::create_dir_all(&state).unwrap();
    for (name, text) in [("qsub", QSUB), ("qstat", QSTAT), ("qdel", QDEL)] {
        let p = bin.join(name);
        std::fs::write(&p, text).unwrap();
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o755)).unwrap();
    }
    let mut path = OsString::from(&bin);
    path.push(":");
    path.push(std::env::var_os("PATH").unwrap_or_default());
    (path, state)
}

/// Starts a PBS cluster of 2 with the stand-ins, checks psum and that stop removes the job.
fn pbs_cluster(tag: &str, extra: &[&str], template: Option<&str>) -> String {
    // The stand-ins live in a directory of their own: the cluster's home is removed on drop.
    let scratch = TempDir::new(&format!("{tag}-bin"));
    let (path, state) = stand_ins(&scratch.0);
    let mut args = vec!["--launcher", "pbs"];
    args.extend(extra);
    let template_path = scratch.0.join("job.tmpl");
    if let Some(t) = template {
        std::fs::write(&template_path, t).unwrap();
        args.extend(["--launcher-template", template_path.to_str().unwrap()]);
    }
    let c = Cluster::start_env(Kernel::Rhai, tag, 2, &args, &[("PATH", &path), ("STATE", state.as_os_str())]);
    assert_eq!(c.pids.mpirun, None, "a batch job has no local mpirun pid");
    let job_pid: u32 =
        std::fs::read_to_string(state.join("101.standin.pid")).unwrap().trim().parse().unwrap();
    assert!(pid_alive(job_pid));
    c.check_psum(2);
    let script = std::fs::read_to_string(c.home.join("cluster-default.pbs.sh")).unwrap();
    let job_output = c.home.join("cluster-default.pbs.out");
    let pids = c.pids.clone();
    c.stop();
    assert!(!pid_alive(job_pid), "the job's process outlived the stop");
    assert!(pids.alive().is_empty());
    let calls = std::fs::read_to_string(state.join("calls")).unwrap();
    assert!(calls.lines().any(|l| l == "qdel 101.standin"), "qdel not called:\n{calls}");
    assert!(calls.lines().any(|l| l.starts_with("qstat -f 101.standin")), "{calls}");
    let qsub = calls.lines().find(|l| l.starts_with("qsub ")).unwrap();
    assert!(qsub.contains(&format!("-o {}", job_output.display())), "{qsub}");
    script
}

#[test]
fn t72_pbs_cluster_with_stand_in_qsub_qstat_qdel() {
    let script = pbs_cluster("pbs", &["--queue", "workq", "--walltime", "00:10:00"], None);
    for line in [
        "#PBS -q workq",
        "#PBS -l walltime=00:10:00",
        "#PBS -l select=2:ncpus=1:mpiprocs=1",
        "#PBS -N mpx-default",
    ] {
        assert!(script.lines().any(|l| l == line), "{line:?} missing from\n{script}");
    }
    assert!(script.contains("-n 2 "), "{script}");
    assert!(
        script.contains(" --kernel rhai --connect "),
        "the built-in template passes the kernel\n{script}"
    );
}

#[test]
fn t73_pbs_cluster_from_a_template_file() {
    let template = "#!/bin/sh\n#PBS -N custom-{job_name}\n#PBS -q {queue}\n# engines: {n}\n\
                    {mpirun} -n {n} {engine} --kernel {kernel} --connect {connection_file}\n";
    let script = pbs_cluster("pbs-tmpl", &[], Some(template));
    assert!(script.contains("#PBS -N custom-mpx-default\n"), "{script}");
    assert!(!script.contains("#PBS -q"), "no queue given: the directive is left out\n{script}");
    assert!(script.contains("# engines: 2\n"), "{script}");
    assert!(script.contains(" --kernel rhai --connect "), "{script}");
}
