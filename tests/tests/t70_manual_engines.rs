//! `mpx controller start` alone, engines started by hand with `mpirun ... mpx-engine --connect`,
//! before or after the controller; `mpx cluster stop` leaves nothing running (by PID).

use std::time::{Duration, Instant};

use mpx_controller::files;
use mpx_tests::{
    mpx_cmd, run_with_timeout, serial, stderr, stdout, temp_home, Cluster, Kernel, ManualEngines,
};

fn controller_start(home: &std::path::Path, id: &str) {
    let mut cmd = mpx_cmd(home);
    cmd.args(["controller", "start", "--daemonize", "--cluster-id", id]);
    let out = run_with_timeout(cmd, Duration::from_secs(30));
    assert!(out.status.success(), "controller start failed:\n{}\n{}", stdout(&out), stderr(&out));
    assert!(stdout(&out).contains("mpirun -n N mpx-engine --connect"), "{}", stdout(&out));
}

/// Stops the cluster, then checks that the user's mpirun exited by itself.
fn stop_and_check(mut c: Cluster, mut engines: ManualEngines) {
    c.pids.mpirun = Some(engines.pid());
    let pids = c.pids.clone();
    assert_eq!(pids.alive().len(), 4, "controller + mpirun + 2 engines: {pids:?}");
    let t0 = Instant::now();
    c.stop();
    let status = engines.wait_exit(Duration::from_secs(20));
    assert!(status.is_some(), "mpirun still running after the stop");
    eprintln!("stopped in {:?}; mpirun: {status:?}", t0.elapsed());
    assert!(pids.alive().is_empty(), "left: {:?}", pids.alive());
}

#[test]
fn t70_engines_started_by_hand_join_a_controller() {
    let guard = serial();
    let home = temp_home("manual");
    controller_start(&home, "default");
    let path = files::connection_file(&home, "default");
    let engines = ManualEngines::spawn(Kernel::Rhai, 2, &path);
    Cluster::wait_engines(&home, "default", 2, Duration::from_secs(60));
    let c = Cluster::adopt(home, "default", 2, guard);
    assert_eq!(c.pids.mpirun, None, "the controller started no mpirun");
    c.check_psum(2);
    stop_and_check(c, engines);
}

#[test]
fn t71_engines_started_before_the_controller_wait_for_it() {
    let guard = serial();
    let home = temp_home("early");
    let path = files::connection_file(&home, "early");
    assert!(!path.exists());
    let mut engines = ManualEngines::spawn(Kernel::Rhai, 2, &path);
    std::thread::sleep(Duration::from_millis(1500));
    assert!(engines.running(), "the engines gave up before the controller appeared");
    controller_start(&home, "early");
    Cluster::wait_engines(&home, "early", 2, Duration::from_secs(60));
    let c = Cluster::adopt(home, "early", 2, guard);
    c.check_psum(2);
    stop_and_check(c, engines);
}
