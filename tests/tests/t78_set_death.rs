//! A death in engine set 1 takes down that set only: its requests fail (`EngineDied` for the
//! dead engine, `WorldDown` for its other rank), its processes end, and set 0 and the cluster
//! go on.

use std::time::Duration;

use mpx_client::{ClientError, EngineId, MpxError, Rank, Targets};
use mpx_tests::{stderr, stdout, Cluster, Kernel};

const T: Duration = Duration::from_secs(60);

#[test]
fn t78_a_death_in_engine_set_1_takes_down_that_set_only() {
    let mut c = Cluster::start(Kernel::Rhai, "setdeath", 2, &[]);
    let out = c.mpx(&["cluster", "engines", "--kernel", "rhai", "-n", "2"]);
    assert!(out.status.success(), "{}{}", stdout(&out), stderr(&out));
    let text = stdout(&out);
    let mpirun1: u32 = text
        .split("mpirun pid ")
        .nth(1)
        .and_then(|rest| rest.split(';').next())
        .and_then(|pid| pid.trim().parse().ok())
        .unwrap_or_else(|| panic!("no mpirun pid in {text}"));
    c.pids = c.read_pids();
    let set1 = c.pids.engines[2..].to_vec();
    let client = c.client();
    let stuck = client.view(Targets::ids([2, 3])).execute("if rank == 1 { loop {} } barrier();").unwrap();
    std::thread::sleep(Duration::from_millis(500));
    // SAFETY: engine 3 (set 1, rank 1) of the cluster this test started.
    unsafe { libc::kill(set1[1] as libc::pid_t, libc::SIGKILL) };
    match stuck.get_ok(T) {
        Err(ClientError::EngineDied { engine: EngineId(3), rank: Rank(1), .. }) => {}
        other => panic!("expected EngineDied of engine 3, got {other:?}"),
    }
    let results = stuck.get(T).unwrap();
    let other = results.iter().find(|r| r.engine_id == EngineId(2)).unwrap();
    match &other.outcome.error {
        Some(MpxError::WorldDown { reason }) => assert!(reason.contains("engine set 1"), "{reason}"),
        error => panic!("expected WorldDown for engine 2, got {error:?}"),
    }

    // Set 1's processes end; set 0 and the controller go on.
    let gone = mpx_tests::ClusterPids { controller: mpirun1, mpirun: None, engines: set1 };
    let left = gone.wait_gone(Duration::from_secs(10));
    assert!(left.is_empty(), "set 1 left {left:?}");
    let info = client.info(T).unwrap();
    assert_eq!(info.engines.iter().map(|e| e.id.get()).collect::<Vec<_>>(), vec![0, 1]);
    let r = client.view(Targets::All).execute_sync("allreduce(1, SUM)", T).unwrap();
    assert!(r.iter().all(|r| r.outcome.value.as_deref() == Some("2")), "{r:?}");
    assert!(mpx_controller::files::pid_alive(c.pids.controller));
    c.pids = c.read_pids();
    c.stop();
}
