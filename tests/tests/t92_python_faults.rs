//! Python faults: an exception on one rank, a syntax error, `SystemExit` and `MPI.Finalize()` in
//! a cell, Ctrl-C of a busy loop and of a sleep, `mpx where` during a sleep, and kill -9 of a rank
//! inside an mpi4py Allreduce. Every fault ends with a clear error; no process is left.

use std::{
    process::Stdio,
    time::{Duration, Instant},
};

use mpx_client::{ClientError, EngineId, Rank, Targets};
use mpx_tests::{error_lines, mpx_cmd, out_values, stdout, Cluster, Kernel};

const T: Duration = Duration::from_secs(60);

/// `(rank, value)` for ranks 0..4.
fn all4(values: &[&str]) -> Vec<(u32, String)> {
    values.iter().enumerate().map(|(r, v)| (r as u32, v.to_string())).collect()
}

/// Every engine answers and an allreduce over all of them works.
fn assert_world_works(c: &Cluster) {
    let text = c.px("from mpi4py import MPI\nMPI.COMM_WORLD.allreduce(MPI.COMM_WORLD.rank + 1)");
    assert_eq!(out_values(&text), all4(&["10"; 4]), "{text}");
    assert_eq!(c.pids.alive(), c.pids.all(), "a process of the cluster is gone");
}

#[test]
fn t92_an_exception_on_one_rank_is_reported_with_its_traceback_and_the_rank_goes_on() {
    let c = Cluster::start(Kernel::Python, "pyerr", 4, &[]);
    let cell = "from mpi4py import MPI\nrank = MPI.COMM_WORLD.rank\ndef f():\n    return 1 / 0\nif rank == 1:\n    f()\n";
    let text = c.px_err(cell);
    assert_eq!(text.matches(":error]").count(), 1, "only rank 1 fails:\n{text}");
    let head = text.lines().find(|l| l.starts_with("[1:error]")).unwrap_or_else(|| panic!("{text}"));
    assert!(head.starts_with("[1:error] ZeroDivisionError: division by zero"), "{text}");
    // The traceback lines follow, indented, naming the cell and the lines (6: the call, 4: f).
    let tb: Vec<&str> = text.lines().skip_while(|l| !l.starts_with("[1:error]")).skip(1).collect();
    assert!(
        tb.iter().any(|l| l.starts_with("    ") && l.contains("<cell-") && l.contains("line 6")),
        "{text}"
    );
    assert!(tb.iter().any(|l| l.contains("<cell-") && l.contains("line 4") && l.contains("in f")), "{text}");
    // Rank 1 keeps its state and runs the next cell.
    assert_eq!(out_values(&c.px("rank")), all4(&["0", "1", "2", "3"]));
    // A syntax error, on every rank, and then the engines go on.
    let text = c.px_err("def g(:\n    pass\n");
    assert!(error_lines(&text).iter().all(|(_, e)| e.starts_with("SyntaxError")), "{text}");
    assert_eq!(error_lines(&text).len(), 4, "{text}");
    assert_world_works(&c);
    c.stop();
}

#[test]
fn t92_system_exit_and_mpi_finalize_in_a_cell_are_errors_and_the_engines_stay() {
    let c = Cluster::start(Kernel::Python, "pyexit", 4, &[]);
    c.px("kept = 42");
    let text = c.px_err("raise SystemExit(3)");
    assert_eq!(error_lines(&text).len(), 4, "{text}");
    assert!(text.contains("SystemExit"), "{text}");
    assert_world_works(&c);
    let text = c.px_err("from mpi4py import MPI\nMPI.Finalize()");
    assert_eq!(error_lines(&text).len(), 4, "{text}");
    assert_world_works(&c);
    assert_eq!(out_values(&c.px("kept")), all4(&["42"; 4]));
    c.stop();
}

#[test]
fn t92_ctrl_c_interrupts_a_busy_loop_and_a_sleep_quickly_and_the_next_cell_runs() {
    let c = Cluster::start(Kernel::Python, "pyctrlc", 4, &[]);
    c.px("import time\nn = 0");
    for code in ["while True:\n    n += 1\n", "time.sleep(100)"] {
        let mut cmd = mpx_cmd(&c.home);
        cmd.args(["px", "--timeout", "60", code]).stdout(Stdio::piped()).stderr(Stdio::piped());
        let child = cmd.spawn().unwrap();
        std::thread::sleep(Duration::from_millis(2000));
        let t0 = Instant::now();
        // SAFETY: the mpx px process this test started.
        unsafe { libc::kill(child.id() as libc::pid_t, libc::SIGINT) };
        let out = child.wait_with_output().unwrap();
        let took = t0.elapsed();
        eprintln!("{code:?}: Ctrl-C to px returning: {took:?}");
        let text = stdout(&out);
        let errors = error_lines(&text);
        assert!(
            errors.len() == 4 && errors.iter().all(|(_, e)| e.starts_with("KeyboardInterrupt")),
            "{code:?}:\n{text}"
        );
        assert!(!text.contains("KeyboardInterrupt: "), "no message, so no colon:\n{text}");
        assert_eq!(out.status.code(), Some(130), "Ctrl-C exits 130 {code:?}:\n{text}");
        assert!(took < Duration::from_secs(3), "{code:?}: px took {took:?} to end after Ctrl-C");
        assert_eq!(out_values(&c.px("n >= 0")), all4(&["True"; 4]));
    }
    assert_world_works(&c);
    c.stop();
}

// `mpx where` shows a Python cell's place: `[0] running cell 2 at <cell-2> line 4 (1.5 s)` and
// `[1,2,3] in Barrier on COMM_WORLD at <cell-2> line 5 (1.5 s)`.
#[test]
fn t92_where_shows_the_line_a_python_cell_is_at() {
    let c = Cluster::start(Kernel::Python, "pywhere", 4, &[]);
    let client = c.client();
    client.view(Targets::All).execute_sync("import time\nfrom mpi4py import MPI", T).unwrap();
    let cell = "comm = MPI.COMM_WORLD\nx = 1\nif comm.rank == 0:\n    time.sleep(5)\ncomm.Barrier()\n";
    let pending = client.view(Targets::All).execute(cell).unwrap();
    std::thread::sleep(Duration::from_millis(1500));
    let text = stdout(&c.mpx(&["where"]));
    eprintln!("mpx where:\n{text}");
    let line_of = |ranks: &str| text.lines().find(|l| l.starts_with(ranks)).unwrap_or("").to_string();
    let rank0 = line_of("[0] ");
    assert!(rank0.contains("running cell") && rank0.contains("<cell-"), "{text}");
    assert!(rank0.contains(" line 4"), "rank 0 sleeps at line 4 of its cell:\n{text}");
    // Ranks 1-3 wait in mpi4py's Barrier, on line 5.
    let others = line_of("[1,2,3] ");
    assert!(others.contains("in Barrier on COMM_WORLD") && others.contains(" line 5"), "{text}");
    let results = pending.get(T).unwrap();
    assert!(results.iter().all(|r| r.outcome.error.is_none()), "{results:?}");
    c.stop();
}

#[test]
fn t92_kill_9_of_a_rank_during_an_mpi4py_allreduce_is_reported() {
    let c = Cluster::start(Kernel::Python, "pykill9", 4, &[]);
    let client = c.client();
    client
        .view(Targets::All)
        .execute_sync("import time\nimport numpy as np\nfrom mpi4py import MPI", T)
        .unwrap();
    let cell = "comm = MPI.COMM_WORLD\nif comm.rank == 2:\n    time.sleep(100)\n\
                total = np.zeros(1)\ncomm.Allreduce(np.ones(1), total, op=MPI.SUM)\n";
    let pending = client.view(Targets::All).execute(cell).unwrap();
    std::thread::sleep(Duration::from_millis(1000));
    let t0 = Instant::now();
    // SAFETY: an engine of the cluster this test started.
    unsafe { libc::kill(c.pids.engines[2] as libc::pid_t, libc::SIGKILL) };
    let err = pending.get_ok(T).unwrap_err();
    let took = t0.elapsed();
    match &err {
        ClientError::EngineDied { engine, rank, cause } => {
            assert_eq!((*engine, *rank), (EngineId(2), Rank(2)));
            assert!(cause.contains("signal 9"), "{cause}");
        }
        other => panic!("expected EngineDied, got {other}"),
    }
    assert!(took < Duration::from_secs(10), "the death took {took:?} to be reported");
    let left = c.pids.wait_gone(Duration::from_secs(10));
    assert!(left.is_empty(), "left after the fault: {left:?}");
}

/// An mpi4py on another MPI library than the engine's (a stand-in package that says it is
/// MPICH, first on the engines' PYTHONPATH): the cluster does not start, and says why, naming
/// both libraries; nothing is left running.
#[test]
fn t92_an_mpi4py_on_another_mpi_is_refused_with_both_libraries_named() {
    let _serial = mpx_tests::serial();
    let fake = mpx_tests::TempDir::new("fake-mpi4py");
    let package = fake.0.join("mpi4py");
    std::fs::create_dir_all(&package).unwrap();
    std::fs::write(package.join("__init__.py"), "class _RC:\n    pass\n\nrc = _RC()\n").unwrap();
    std::fs::write(
        package.join("MPI.py"),
        "def Get_library_version():\n    return 'MPICH Version:\\t4.0.2\\nMPICH Release date: a stand-in'\n",
    )
    .unwrap();
    let home = mpx_tests::temp_home("other-mpi");
    let mut cmd = mpx_cmd(&home);
    cmd.args(["cluster", "start", "-n", "2", "--daemonize", "--timeout", "60"]).env("PYTHONPATH", &fake.0);
    let out = mpx_tests::run_with_timeout(cmd, Duration::from_secs(90));
    let text = format!("{}{}", stdout(&out), mpx_tests::stderr(&out));
    assert!(!out.status.success(), "{text}");
    assert!(text.contains("mpi4py uses another MPI library than the engine"), "{text}");
    assert!(
        text.contains("the engine runs on \"Open MPI") && text.contains("mpi4py on \"MPICH Version:"),
        "{text}"
    );
    assert!(!mpx_controller::files::connection_file(&home, "default").exists(), "nothing left: {text}");
    let _ = std::fs::remove_dir_all(&home);
}
