//! A failed or stuck rank never wedges the session (Python kernel, 4 ranks under mpirun): the
//! failed rank's traceback comes while the others still wait, the blocked ranks are named,
//! Ctrl-C frees ranks inside MPI calls (a cancelled receive keeps the world; an abandoned
//! collective restarts it with the same ids), `mpx restart`, and the console on a Python
//! cluster.

use std::{
    io::{BufRead, BufReader},
    process::{Child, Stdio},
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use mpx_client::{EngineId, MpxError, Targets};
use mpx_tests::{mpx_cmd, out_values, stderr, stdout, stdout_lines, tmux::Tmux, Cluster, Kernel};

/// The issue's cell: rank 0 raises, the others wait in a Barrier for it.
const RAISE_THEN_BARRIER: &str =
    "from mpi4py import MPI\nc = MPI.COMM_WORLD\nif c.rank == 0: 1/0\nc.Barrier()";

/// A running `mpx` command whose stdout and stderr lines are read as they come.
struct Watched {
    child: Child,
    lines: Arc<Mutex<Vec<String>>>,
}

impl Watched {
    fn spawn(c: &Cluster, args: &[&str]) -> Watched {
        let mut cmd = mpx_cmd(&c.home);
        cmd.args(args).stdout(Stdio::piped()).stderr(Stdio::piped());
        let mut child = cmd.spawn().expect("mpx");
        let lines = Arc::new(Mutex::new(Vec::new()));
        let out = child.stdout.take().expect("stdout");
        let err = child.stderr.take().expect("stderr");
        for pipe in [Box::new(out) as Box<dyn std::io::Read + Send>, Box::new(err)] {
            let lines = lines.clone();
            std::thread::spawn(move || {
                for line in BufReader::new(pipe).lines().map_while(Result::ok) {
                    lines.lock().unwrap().push(line);
                }
            });
        }
        Watched { child, lines }
    }

    fn text(&self) -> String {
        self.lines.lock().unwrap().join("\n")
    }

    /// Waits (bounded) for a line containing every one of `parts`; returns its index.
    fn wait_line(&self, parts: &[&str], timeout: Duration) -> usize {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(i) =
                self.lines.lock().unwrap().iter().position(|l| parts.iter().all(|p| l.contains(p)))
            {
                return i;
            }
            assert!(Instant::now() < deadline, "no line with {parts:?} after {timeout:?}:\n{}", self.text());
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn ctrl_c(&self) {
        // SAFETY: kill with a pid of our own child.
        assert_eq!(unsafe { libc::kill(self.child.id() as i32, libc::SIGINT) }, 0);
    }

    /// Waits (bounded) for the command to end; returns its exit code.
    fn finish(mut self, timeout: Duration) -> (Option<i32>, String) {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = self.child.try_wait().expect("wait") {
                // Let the readers take the last lines.
                std::thread::sleep(Duration::from_millis(100));
                return (status.code(), self.text());
            }
            if Instant::now() > deadline {
                let _ = self.child.kill();
                panic!("mpx did not end after {timeout:?}:\n{}", self.text());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

/// A cell on all 4 ranks gives the right sum on each (the world is usable).
fn world_usable(c: &Cluster) {
    let out = c.px("from mpi4py import MPI\nMPI.COMM_WORLD.allreduce(MPI.COMM_WORLD.rank + 1)");
    let values = out_values(&out);
    assert_eq!(values, (0..4).map(|id| (id, "10".to_string())).collect::<Vec<_>>(), "{out}");
}

#[test]
fn t96_the_failed_rank_is_shown_the_blocked_named_and_ctrl_c_restarts_the_world() {
    let shm_before = mpx_tests::memory::dev_shm();
    let mut c = Cluster::start(Kernel::Python, "stuck", 4, &[]);
    let before = std::fs::read_to_string(c.connection_file()).unwrap();
    let px = Watched::spawn(&c, &["px", "--timeout", "120", RAISE_THEN_BARRIER]);
    // Rank 0's traceback while ranks 1-3 still wait, then the blocked ranks named.
    let traceback = px.wait_line(&["[0:error] ZeroDivisionError"], Duration::from_secs(30));
    let named = px.wait_line(
        &[
            "ranks 1-3 are blocked in Barrier on COMM_WORLD (<cell-1> line 4)",
            "waiting for rank 0",
            "ZeroDivisionError",
        ],
        Duration::from_secs(30),
    );
    assert!(traceback < named, "{}", px.text());
    px.ctrl_c();
    let (code, text) = px.finish(Duration::from_secs(60));
    assert_eq!(code, Some(130), "{text}");
    // The traceback was shown once; the others' outcome says the world restarts.
    assert_eq!(text.matches("[0:error] ZeroDivisionError").count(), 1, "{text}");
    assert!(text.contains("[1-3:error] WorldDown"), "{text}");
    assert!(text.contains("the MPI world is being restarted (variables are lost)"), "{text}");
    // Same cluster, same connection file, same ids; the next cell runs on all 4.
    world_usable(&c);
    assert_eq!(std::fs::read_to_string(c.connection_file()).unwrap(), before);
    c.pids = c.read_pids();
    c.stop();
    // The broken world's job was ended whole: mpirun removed its ranks' shared-memory files.
    assert_eq!(mpx_tests::memory::dev_shm(), shm_before, "files left in /dev/shm");
}

#[test]
fn t96_ranks_in_different_collectives_are_named_and_the_timeout_frees_them() {
    let mut c = Cluster::start(Kernel::Python, "branch", 4, &[]);
    let cell = "from mpi4py import MPI\nimport numpy as np\nc = MPI.COMM_WORLD\nb = np.zeros(1)\n\
                if c.rank == 0: c.Allreduce(np.ones(1), b)\nelse: c.Barrier()";
    let px = Watched::spawn(&c, &["px", "--timeout", "20", "--on-timeout", "interrupt", cell]);
    px.wait_line(
        &[
            "rank 0 is blocked in Allreduce on COMM_WORLD (<cell-1> line 5)",
            "ranks 1-3 are blocked in Barrier on COMM_WORLD (<cell-1> line 6)",
            "do not match",
        ],
        Duration::from_secs(30),
    );
    let (code, text) = px.finish(Duration::from_secs(90));
    assert_eq!(code, Some(130), "{text}");
    assert!(text.contains("[0-3:error] WorldDown"), "{text}");
    world_usable(&c);
    c.pids = c.read_pids();
    c.stop();
}

#[test]
fn t96_a_recv_from_a_rank_that_finished_is_named_and_cancelled_without_a_restart() {
    let c = Cluster::start(Kernel::Python, "recv", 4, &[]);
    c.px("kept = 7");
    let pids = c.read_pids();
    let px = Watched::spawn(
        &c,
        &[
            "px",
            "--timeout",
            "120",
            "from mpi4py import MPI\nc = MPI.COMM_WORLD\nif c.rank == 1: c.recv(source=0)",
        ],
    );
    px.wait_line(
        &["rank 1 is blocked in", "waiting for rank 0, which already finished the cell"],
        Duration::from_secs(30),
    );
    px.ctrl_c();
    let (code, text) = px.finish(Duration::from_secs(60));
    assert_eq!(code, Some(130), "{text}");
    assert!(text.contains("[1:error]") && text.contains("mpx: interrupted (Ctrl-C)"), "{text}");
    // No restart: the same processes, the variables kept, the world usable.
    assert_eq!(c.read_pids().engines, pids.engines);
    assert_eq!(
        stdout_lines(&c.px("print(kept)")),
        (0..4).map(|id| (id, "7".to_string())).collect::<Vec<_>>()
    );
    world_usable(&c);
    c.stop();
}

/// Rank 0 sleeps while the others block in `call`; an interrupt frees them all.
fn interrupt_blocked(c: &Cluster, call: &str) -> Vec<mpx_client::EngineResult> {
    let client = c.client();
    let cell = format!(
        "import time, numpy as np\nfrom mpi4py import MPI\nc = MPI.COMM_WORLD\nbuf = np.zeros(4)\n\
         if c.rank == 0: time.sleep(600)\nelse: {call}"
    );
    let pending = client.view(Targets::All).execute(&cell).unwrap();
    // Every rank is inside its call (or sleep) before the interrupt.
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let states = client.engine_states(Duration::from_secs(10)).unwrap();
        let inside = states.iter().filter(|(_, s)| s.as_ref().is_some_and(|s| s.activity == "mpi")).count();
        if inside == 3 {
            break;
        }
        assert!(Instant::now() < deadline, "{call}: not blocked: {states:?}");
        std::thread::sleep(Duration::from_millis(50));
    }
    client.interrupt(Targets::All, Duration::from_secs(10)).unwrap();
    let results = pending.get(Duration::from_secs(60)).expect("every rank freed");
    assert_eq!(results.len(), 4);
    let zero = results[0].outcome.error.as_ref().map(|e| e.ename().to_string());
    assert!(matches!(zero.as_deref(), Some("KeyboardInterrupt") | Some("WorldDown")), "{call}: {results:?}");
    results
}

#[test]
fn t96_ctrl_c_frees_ranks_blocked_in_barrier_allreduce_and_recv() {
    let shm_before = mpx_tests::memory::dev_shm();
    let mut c = Cluster::start(Kernel::Python, "free", 4, &[]);
    for call in ["c.Barrier()", "c.Allreduce(np.ones(4), buf)"] {
        let results = interrupt_blocked(&c, call);
        for r in &results[1..] {
            assert!(matches!(r.outcome.error, Some(MpxError::WorldDown { .. })), "{call}: {results:?}");
        }
        world_usable(&c);
    }
    // A receive is cancelled: the world goes on.
    c.px("kept = 3");
    let results = interrupt_blocked(&c, "c.Recv(buf, source=0)");
    for r in &results[1..] {
        let e = r.outcome.error.as_ref().expect("interrupted");
        assert!(e.evalue().contains("mpx: interrupted (Ctrl-C)"), "{results:?}");
    }
    // Rank 0 was interrupted in its sleep; nothing restarted.
    assert_eq!(
        results[0].outcome.error.as_ref().map(|e| e.ename().to_string()).as_deref(),
        Some("KeyboardInterrupt")
    );
    assert_eq!(stdout_lines(&c.px("print(kept)")).len(), 4);
    world_usable(&c);
    c.pids = c.read_pids();
    c.stop();
    // Two broken worlds' jobs were ended whole: nothing of theirs is left in /dev/shm.
    assert_eq!(mpx_tests::memory::dev_shm(), shm_before, "files left in /dev/shm");
}

#[test]
fn t96_an_interrupted_collective_then_50_cells_of_mixed_collectives() {
    let mut c = Cluster::start(Kernel::Python, "mixed", 4, &[]);
    interrupt_blocked(&c, "c.Barrier()");
    c.px("from mpi4py import MPI\nimport numpy as np\nc = MPI.COMM_WORLD\nr = c.rank");
    let cells = [
        ("b = np.zeros(3); c.Allreduce(np.full(3, r + 1.0), b); b.tolist()", "[10.0, 10.0, 10.0]"),
        ("c.bcast(r * 10 + 5, root=2)", "25"),
        ("c.Barrier(); 'ok'", "'ok'"),
        ("sorted(c.allgather(r))", "[0, 1, 2, 3]"),
        ("m = c.reduce(r, op=MPI.MAX, root=0); m if r == 0 else 3", "3"),
        ("c.sendrecv(r, dest=(r + 1) % 4, source=(r - 1) % 4) == (r - 1) % 4", "True"),
        ("c.scatter([i * i for i in range(4)] if r == 0 else None, root=0) == r * r", "True"),
        ("c.alltoall([r] * 4) == [0, 1, 2, 3]", "True"),
        ("x = np.arange(2.0) if r == 1 else np.empty(2); c.Bcast(x, root=1); x.tolist()", "[0.0, 1.0]"),
        ("g = c.gather(r, root=3); (g == [0, 1, 2, 3]) if r == 3 else g is None", "True"),
    ];
    for i in 0..50 {
        let (cell, expected) = cells[i % cells.len()];
        let out = c.px(cell);
        let values = out_values(&out);
        assert_eq!(values.len(), 4, "cell {i} {cell:?}:\n{out}");
        for (id, value) in values {
            assert_eq!(value, expected, "cell {i} {cell:?} on engine {id}:\n{out}");
        }
    }
    c.pids = c.read_pids();
    c.stop();
}

#[test]
fn t96_mpx_restart_keeps_ids_the_connection_file_and_a_connected_client() {
    let mut c = Cluster::start(Kernel::Python, "restart", 4, &[]);
    let client = c.client();
    let before = std::fs::read_to_string(c.connection_file()).unwrap();
    let old = c.read_pids();
    client.view(Targets::All).execute_sync("v = 11", Duration::from_secs(30)).unwrap();
    let out = c.mpx(&["restart"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(stdout(&out).contains("the MPI world is ready: 4 engines"), "{}", stdout(&out));
    c.pids = c.read_pids();
    assert!(c.pids.engines.iter().all(|p| !old.engines.contains(p)), "new processes: {:?} {:?}", old, c.pids);
    assert_eq!(c.pids.controller, old.controller);
    assert_eq!(std::fs::read_to_string(c.connection_file()).unwrap(), before);
    // The client connected before still works; the variables are gone.
    assert_eq!(client.ids().unwrap(), (0..4).map(EngineId).collect::<Vec<_>>());
    let results = client.view(Targets::All).execute_sync("v", Duration::from_secs(30)).unwrap();
    assert!(results.iter().all(|r| r.outcome.error.as_ref().is_some_and(|e| e.ename() == "NameError")));
    // And the library's own restart.
    let engines = client.restart("test", Duration::from_secs(120)).unwrap();
    assert_eq!(engines, (0..4).map(EngineId).collect::<Vec<_>>());
    world_usable(&c);
    c.pids = c.read_pids();
    c.stop();
}

#[test]
fn t96_the_console_on_a_python_cluster_runs_lines_on_the_engines_and_ctrl_c_frees_them() {
    let mut c = Cluster::start(Kernel::Python, "pyconsole", 4, &[]);
    let t = Tmux::start(&c.home, "stuck");
    let banner = t.screen();
    assert!(banner.contains("lines run on the engines"), "{banner}");
    t.cell(&["from mpi4py import MPI; c = MPI.COMM_WORLD", "Enter"], "[px]> from mpi4py");
    t.cell(&["1/0 if c.rank == 0 else c.Barrier()", "Enter"], "[0:error] ZeroDivisionError");
    t.wait_for("ranks 1-3 are blocked in Barrier on COMM_WORLD", Duration::from_secs(30));
    t.keys(&["C-c"]);
    t.wait_for("the MPI world is restarting", Duration::from_secs(60));
    t.cell(&["x = 5", "Enter"], "[px]> x = 5");
    let screen = t.cell(&["print(x * 2)", "Enter"], "[stdout:0-3] 10");
    assert!(screen.contains("[1-3:error] WorldDown"), "{screen}");
    // %autopx off: lines run in the local rhai interpreter.
    t.cell(&["%autopx", "Enter"], "%autopx disabled");
    t.cell(&["40 + 2", "Enter"], "\n42");
    t.idle();
    t.keys(&["%quit", "Enter"]);
    t.wait_gone(Duration::from_secs(10));
    c.pids = c.read_pids();
    c.stop();
}
