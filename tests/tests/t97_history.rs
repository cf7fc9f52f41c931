//! The session's history (Python kernel, real mpirun): `mpx history` after the client that ran
//! the cells has gone, `mpx export` to a program that `mpirun -n N python3` runs without mpx and
//! that computes what the session computed (also as a Slurm job and a PBS job through the
//! Torque wrappers), and `mpx restart --replay`.

use std::{
    ffi::OsString,
    path::Path,
    process::Command,
    time::{Duration, Instant},
};

use mpx_client::Targets;
use mpx_tests::{
    run_with_timeout, slurm::LocalSlurm, stderr, stdout, stdout_lines, Cluster, Kernel, TempDir,
};

/// The seed's session with reproducible values: psum defined in a cell, `np.random.seed(rank)`.
const SEED: [&str; 5] = [
    "import numpy as np\nfrom mpi4py import MPI\nnp.random.seed(MPI.COMM_WORLD.rank)",
    "def psum(a):\n    s = np.array(np.sum(a), dtype='d')\n    r = np.empty_like(s)\n    \
     MPI.COMM_WORLD.Allreduce(s, r, op=MPI.SUM)\n    return float(r)",
    "a = np.random.rand(100)",
    "s = psum(a)",
    "print(repr(s))",
];

/// The Python the engines embed (numpy and mpi4py), for the exported programs.
const PYTHON: &str = "/usr/bin/python3";

/// Runs `script` under `mpirun -n N` in `dir`; what the ranks printed, one rank after the other
/// (each rank's output in a file of its own: lines of ranks printing at once never mix).
fn mpirun_python(dir: &Path, script: &Path, n: u32) -> String {
    let outputs = dir.join("rank-output");
    let mut cmd = Command::new("mpirun");
    cmd.args(["-n", &n.to_string(), "--oversubscribe", "--output-filename"])
        .arg(&outputs)
        .arg(PYTHON)
        .arg(script)
        .current_dir(dir);
    let out = run_with_timeout(cmd, Duration::from_secs(120));
    assert!(out.status.success(), "{}\n{}", stdout(&out), stderr(&out));
    let mut files = Vec::new();
    let mut dirs = vec![outputs];
    while let Some(d) = dirs.pop() {
        for entry in std::fs::read_dir(&d).unwrap().filter_map(Result::ok) {
            let path = entry.path();
            if path.is_dir() {
                dirs.push(path);
            } else if path.file_name().is_some_and(|n| n == "stdout") {
                files.push(path);
            }
        }
    }
    assert_eq!(files.len(), n as usize, "one stdout per rank");
    files.iter().map(|f| std::fs::read_to_string(f).unwrap()).collect::<Vec<_>>().join("\n")
}

/// The lines a program printed, sorted (ranks print in any order).
fn sorted_lines(text: &str) -> Vec<String> {
    let mut lines: Vec<String> = text.lines().map(str::to_string).filter(|l| !l.is_empty()).collect();
    lines.sort();
    lines
}

#[test]
fn t97_the_seed_session_exports_to_a_program_that_prints_the_same_s() {
    let c = Cluster::start(Kernel::Python, "export", 4, &[]);
    for cell in SEED {
        c.px(cell);
    }
    let printed = stdout_lines(&c.px("print(repr(s))"));
    assert_eq!(printed.len(), 4);
    // The history, read by another process than the ones that ran the cells.
    let out = c.mpx(&["history"]);
    let history = stdout(&out);
    assert!(
        out.status.success() && history.contains("[4] all ok") && history.contains("s = psum(a)"),
        "{history}"
    );
    let dir = TempDir::new("seed-out");
    let script = dir.0.join("seed.py");
    let out = c.mpx(&["export", script.to_str().unwrap()]);
    assert!(out.status.success(), "{}", stderr(&out));
    let ran = sorted_lines(&mpirun_python(&dir.0, &script, 4));
    // Every rank prints the same s as the session, twice (cell 5 and the check above).
    let expected: Vec<String> = printed.iter().flat_map(|(_, v)| [v.clone(), v.clone()]).collect();
    assert_eq!(ran, sorted_lines(&expected.join("\n")), "{}", std::fs::read_to_string(&script).unwrap());
    // The history goes with the cluster.
    let file = c.home.join("cluster-default").join("history.json");
    assert!(file.is_file());
    let home = c.home.clone();
    c.stop();
    assert!(!home.join("cluster-default").join("history.json").exists());
}

#[test]
fn t97_targets_a_failed_cell_a_push_a_scatter_and_a_run_export_and_run_the_same() {
    let c = Cluster::start(Kernel::Python, "export2", 4, &[]);
    let dir = TempDir::new("export2-data");
    let npy = dir.0.join("x.npy");
    let file = dir.0.join("helper.py");
    c.px(&format!(
        "import numpy as np\nnp.save({:?}, np.arange(10.0).reshape(5, 2))\nopen({:?}, 'w').write('def double(v):\\n    return v * 2\\n')",
        npy.to_str().unwrap(),
        file.to_str().unwrap()
    ));
    let script_cells: Vec<String> = vec![
        format!("run {}", file.display()),
        format!("push x {}", npy.display()),
        format!("scatter y {}", npy.display()),
    ];
    for cmd in &script_cells {
        let args: Vec<&str> = cmd.split(' ').collect();
        let out = c.mpx(&args);
        assert!(out.status.success(), "{cmd}: {}", stderr(&out));
    }
    let out = c.mpx(&["px", "--targets", "1,3", "t = 100"]);
    assert!(out.status.success());
    c.px_err("undefined_name + 1");
    let check = "from mpi4py import MPI\nr = MPI.COMM_WORLD.rank\n\
                 print(r, double(x).sum(), y.tolist(), globals().get('t'))";
    let session = c.px(check);
    let dir2 = TempDir::new("export2-out");
    let script = dir2.0.join("session.py");
    let out = c.mpx(&["export", script.to_str().unwrap()]);
    assert!(out.status.success(), "{}", stderr(&out));
    let text = std::fs::read_to_string(&script).unwrap();
    assert!(text.contains("left out: it failed"), "{text}");
    assert!(text.contains("if _rank in (1, 3,):"), "{text}");
    assert!(dir2.0.join("session_data").is_dir());
    let ran = sorted_lines(&mpirun_python(&dir2.0, &script, 4));
    let want =
        sorted_lines(&stdout_lines(&session).into_iter().map(|(_, l)| l).collect::<Vec<_>>().join("\n"));
    assert_eq!(ran, want, "{text}");
    c.stop();
}

/// Submits a job script with `submit` (sbatch or qsub) from `dir` and returns its output file's
/// text once the job ended.
fn run_job(slurm: &LocalSlurm, submit: &str, dir: &Path, job: &Path) -> String {
    let mut cmd = Command::new(submit);
    cmd.arg(job).current_dir(dir).env("SLURM_CONF", slurm.conf());
    if submit == "sbatch" {
        cmd.args(["--output", "job.out"]);
    }
    let out = run_with_timeout(cmd, Duration::from_secs(30));
    assert!(out.status.success(), "{submit}: {}", stderr(&out));
    let deadline = Instant::now() + Duration::from_secs(120);
    while !slurm.queue().is_empty() {
        assert!(Instant::now() < deadline, "the job did not end");
        std::thread::sleep(Duration::from_millis(200));
    }
    // sbatch --output names the file; the Torque wrappers write NAME.oJOBID or slurm-ID.out.
    let found = std::fs::read_dir(dir)
        .unwrap()
        .filter_map(Result::ok)
        .map(|e| e.path())
        .find(|p| {
            let name = p.file_name().unwrap().to_string_lossy().into_owned();
            name == "job.out" || name.starts_with("slurm-") || name.contains(".o")
        })
        .unwrap_or_else(|| panic!("no job output in {}", dir.display()));
    std::fs::read_to_string(found).unwrap()
}

#[test]
fn t97_the_export_runs_as_a_slurm_job_and_as_a_pbs_job() {
    if !LocalSlurm::available(
        "t97",
        &["qsub", "qstat"],
        "slurmctld slurmd slurm-client munge slurm-wlm-torque",
    ) {
        return;
    }
    let c = Cluster::start(Kernel::Python, "export-jobs", 2, &[]);
    for cell in SEED {
        c.px(cell);
    }
    let printed: Vec<String> = stdout_lines(&c.px("print(repr(s))")).into_iter().map(|(_, v)| v).collect();
    let slurm = LocalSlurm::start();
    let conf: OsString = slurm.conf().into();
    for (flag, submit) in [("--sbatch", "sbatch"), ("--pbs", "qsub")] {
        let dir = TempDir::new("export-job");
        let script = dir.0.join("seed.py");
        let out = c.mpx(&["export", script.to_str().unwrap(), flag, "--python", PYTHON]);
        assert!(out.status.success(), "{}", stderr(&out));
        let job = script.with_extension(&flag[2..]);
        let text = run_job(&slurm, submit, &dir.0, &job);
        // Each rank prints s twice (cell 5 and the check above): the same as the session. (The
        // ranks' lines share one file: counted as text, in case two writes interleave.)
        assert!(printed.iter().all(|v| *v == printed[0]), "{printed:?}");
        assert_eq!(text.matches(printed[0].as_str()).count(), 4, "{submit}: {printed:?}\n{text}");
    }
    drop(conf);
    c.stop();
}

#[test]
fn t97_restart_replay_restores_the_session_stops_at_a_failure_and_names_what_it_cannot_replay() {
    let mut c = Cluster::start(Kernel::Python, "replay", 4, &[]);
    let dir = TempDir::new("replay-data");
    let marker = dir.0.join("marker.txt");
    std::fs::write(&marker, "5").unwrap();
    c.px("import math\nk = 3\ndef f(v):\n    return v * k");
    // A push from a client's memory cannot be replayed.
    let client = c.client();
    let bytes: Vec<u8> = [1.0f64, 2.0].iter().flat_map(|v| v.to_le_bytes()).collect();
    let array = mpx_client::RawArray::new(mpx_client::Dtype::F64, vec![2], bytes.into()).unwrap();
    client.view(Targets::All).push_sync("mem", &array, Duration::from_secs(30)).unwrap();
    c.px(&format!("m = int(open({:?}).read())", marker.to_str().unwrap()));
    c.px("z = f(m) + math.floor(2.5)");
    std::fs::remove_file(&marker).unwrap();
    let out = c.mpx(&["restart", "--replay"]);
    let text = format!("{}{}", stdout(&out), stderr(&out));
    assert_eq!(out.status.code(), Some(1), "it stops at the failure:\n{text}");
    assert!(text.contains("stopped at [3]") && text.contains("FileNotFoundError"), "{text}");
    assert!(text.contains("not replayed [2]") && text.contains("memory"), "{text}");
    // What ran before the failure is back: variables, functions, imports.
    let values = stdout_lines(&c.px("print(f(2), math.floor(1.5), 'mem' in globals())"));
    assert!(values.iter().all(|(_, v)| v == "6 1 False"), "{values:?}");
    c.pids = c.read_pids();
    c.stop();
}
