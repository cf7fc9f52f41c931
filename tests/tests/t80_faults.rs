//! Faults: a rank killed or exiting, the controller killed, Ctrl-C, `where`, abort and restart,
//! missed heartbeats. Every fault ends with a clear error and no process left (checked by PID).

use std::{
    process::Stdio,
    time::{Duration, Instant},
};

use mpx_client::{ClientError, EngineId, Rank, Targets};
use mpx_tests::{bin_dir, error_lines, mpx_cmd, out_values, stdout, Cluster, Kernel};

const T: Duration = Duration::from_secs(60);

fn native() -> String {
    bin_dir().join("examples/mpx-engine-native").to_string_lossy().into_owned()
}

/// Waits until the cluster's controller has stopped by itself, then checks nothing is left.
fn assert_all_gone(c: &Cluster, within: Duration) {
    let left = c.pids.wait_gone(within);
    assert!(left.is_empty(), "left after the fault: {left:?}");
}

#[test]
fn t80_kill_9_of_a_rank_in_a_collective_is_reported_and_the_world_torn_down() {
    let c = Cluster::start(Kernel::Rhai, "kill9", 4, &[]);
    let client = c.client();
    let pending = client
        .view(Targets::All)
        .execute("if rank == 2 { let t = 0; loop { t += 1; } } allreduce(1.0, SUM)")
        .unwrap();
    std::thread::sleep(Duration::from_millis(800));
    let victim = c.pids.engines[2];
    let t0 = Instant::now();
    // SAFETY: an engine of the cluster this test started.
    unsafe { libc::kill(victim as libc::pid_t, libc::SIGKILL) };
    let err = pending.get_ok(T).unwrap_err();
    let took = t0.elapsed();
    eprintln!("kill -9 to the client's error: {took:?}");
    match &err {
        ClientError::EngineDied { engine, rank, cause } => {
            assert_eq!((*engine, *rank), (EngineId(2), Rank(2)));
            assert!(cause.contains("signal 9"), "{cause}");
        }
        other => panic!("expected EngineDied, got {other}"),
    }
    assert!(took < Duration::from_secs(10), "the death took {took:?} to be reported");
    assert_all_gone(&c, Duration::from_secs(10));
}

#[test]
fn t81_a_rank_exiting_with_code_3_reports_code_3() {
    let c = Cluster::start(Kernel::Rhai, "exit3", 4, &["--engine", &native()]);
    let client = c.client();
    let err =
        client.view(Targets::All).execute("if rank == 1 { exit_now(3); } barrier();").unwrap().get_ok(T);
    match err {
        Err(ClientError::EngineDied { engine: EngineId(1), cause, .. }) => {
            assert!(cause.contains("code 3"), "{cause}")
        }
        other => panic!("expected EngineDied of engine 1, got {other:?}"),
    }
    assert_all_gone(&c, Duration::from_secs(10));
}

#[test]
fn t82_engines_and_mpirun_exit_when_the_controller_is_killed() {
    let c = Cluster::start(Kernel::Rhai, "ctlkill", 4, &[]);
    let t0 = Instant::now();
    // SAFETY: the controller of the cluster this test started.
    unsafe { libc::kill(c.pids.controller as libc::pid_t, libc::SIGKILL) };
    let mut rest = c.pids.clone();
    rest.controller = rest.engines[0]; // the controller is gone; watch the others only
    let left = rest.wait_gone(Duration::from_secs(15));
    eprintln!("controller killed to engines and mpirun gone: {:?}", t0.elapsed());
    assert!(left.is_empty(), "left after the controller died: {left:?}");
}

#[test]
fn t83_ctrl_c_interrupts_a_running_cell_and_the_next_cell_runs() {
    let c = Cluster::start(Kernel::Rhai, "ctrlc", 4, &[]);
    let mut cmd = mpx_cmd(&c.home);
    cmd.args(["px", "--timeout", "60", "let n = 0; loop { n += 1; }"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let child = cmd.spawn().unwrap();
    std::thread::sleep(Duration::from_millis(1500));
    let t0 = Instant::now();
    // SAFETY: the mpx px process this test started.
    unsafe { libc::kill(child.id() as libc::pid_t, libc::SIGINT) };
    let out = child.wait_with_output().unwrap();
    eprintln!("Ctrl-C to px returning: {:?}", t0.elapsed());
    let text = stdout(&out);
    let errors = error_lines(&text);
    assert!(errors.len() == 4 && errors.iter().all(|(_, e)| e.starts_with("KeyboardInterrupt")), "{text}");
    assert_eq!(out.status.code(), Some(130), "Ctrl-C exits 130:\n{text}");
    let vals = out_values(&c.px("rank"));
    assert_eq!(vals.len(), 4);
    c.stop();
}

#[test]
fn t84_where_shows_a_rank_stuck_before_a_barrier_then_abort_restarts_the_world() {
    let c = Cluster::start(Kernel::Rhai, "where", 4, &["--restart"]);
    let client = c.client();
    client.view(Targets::All).execute_sync("let before = 1;", T).unwrap();
    let pending = client.view(Targets::All).execute("if rank == 2 { loop {} } barrier();").unwrap();
    std::thread::sleep(Duration::from_millis(1000));
    let out = c.mpx(&["where"]);
    let text = stdout(&out);
    assert!(text.contains("[0,1,3] in barrier on COMM_WORLD"), "{text}");
    assert!(text.contains("[2] running cell"), "{text}");
    // A timeout does not lose the result: it can be waited for again.
    assert!(matches!(pending.get(Duration::from_millis(200)), Err(ClientError::Timeout(_))));
    client.abort("test", T).unwrap();
    let results = pending.get(T).unwrap();
    assert!(results.iter().all(|r| r
        .outcome
        .error
        .as_ref()
        .is_some_and(|e| e.evalue().contains("restarted"))));
    // The world comes back with 4 fresh engines: variables are gone, collectives work.
    let deadline = Instant::now() + T;
    while client.ids().map(|ids| ids.len()).unwrap_or(0) < 4 {
        assert!(Instant::now() < deadline, "the world did not come back");
        std::thread::sleep(Duration::from_millis(50));
    }
    let r = client.view(Targets::All).execute_sync("allreduce(1, SUM)", T).unwrap();
    assert!(r.iter().all(|r| r.outcome.value.as_deref() == Some("4")), "{r:?}");
    let r = client.view(Targets::All).execute_sync("before", T).unwrap();
    assert!(r.iter().all(|r| r.outcome.error.is_some()), "variables survived a restart: {r:?}");
    let mut c = c;
    c.pids = c.read_pids();
    c.stop();
}

#[test]
fn t85_an_engine_that_misses_heartbeats_is_declared_dead() {
    let c = Cluster::start(Kernel::Rhai, "heartbeat", 4, &["--heartbeat", "0.5"]);
    let client = c.client();
    let pending = client.view(Targets::All).execute("barrier(); rank").unwrap();
    let _ = pending.get(T);
    let pending = client.view(Targets::All).execute("allreduce(rank, SUM)").unwrap();
    // SAFETY: an engine of the cluster this test started; stopped, it answers nothing.
    unsafe { libc::kill(c.pids.engines[3] as libc::pid_t, libc::SIGSTOP) };
    match pending.get_ok(T) {
        Err(ClientError::EngineDied { engine: EngineId(3), cause, .. }) => {
            assert!(cause.contains("heartbeat"), "{cause}")
        }
        Ok(r) => {
            // The allreduce may have finished before the stop landed; then the next one cannot.
            let _ = r;
            let err =
                client.view(Targets::All).execute("allreduce(rank, SUM)").unwrap().get_ok(T).unwrap_err();
            assert!(matches!(err, ClientError::EngineDied { engine: EngineId(3), .. }), "{err}");
        }
        Err(other) => panic!("expected EngineDied of engine 3, got {other}"),
    }
    assert_all_gone(&c, Duration::from_secs(10));
}
