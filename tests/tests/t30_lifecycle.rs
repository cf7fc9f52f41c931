//! Start and stop: no process of a cluster outlives a stop, by any path.

use std::{
    process::{Command, Stdio},
    time::{Duration, Instant},
};

use mpx_controller::files;
use mpx_tests::{mpx_cmd, run_with_timeout, serial, stderr, stdout, temp_home, Cluster, ClusterPids, Kernel};

#[test]
fn t30_stop_leaves_nothing_running() {
    let c = Cluster::start(Kernel::Rhai, "stop", 4, &[]);
    let pids = c.pids.clone();
    assert!(pids.mpirun.is_some());
    assert_eq!(pids.alive().len(), 6, "controller + mpirun + 4 engines: {pids:?}");
    let t0 = Instant::now();
    c.stop();
    eprintln!("stop took {:?}", t0.elapsed());
    assert!(pids.alive().is_empty());
}

/// Starts a foreground cluster, waits for its ready line, returns the child and its pids.
fn foreground(tag: &str) -> (std::process::Child, std::path::PathBuf, ClusterPids) {
    let home = temp_home(tag);
    let mut cmd: Command = mpx_cmd(&home);
    cmd.args(["cluster", "start", "--kernel", "rhai", "-n", "4", "--timeout", "60"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null());
    let mut child = cmd.spawn().unwrap();
    let path = files::connection_file(&home, "default");
    let deadline = Instant::now() + Duration::from_secs(60);
    let pids = loop {
        assert!(Instant::now() < deadline, "foreground cluster not ready");
        assert!(child.try_wait().unwrap().is_none(), "foreground cluster exited early");
        if let Ok(client) = mpx_client::Client::connect(path.to_str().unwrap()) {
            let info = client.info(Duration::from_secs(5)).unwrap();
            if info.engines.len() == 4 {
                break ClusterPids {
                    controller: info.controller_pid,
                    mpirun: info.mpirun_pid,
                    engines: info.engines.iter().map(|e| e.pid).collect(),
                };
            }
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    assert_eq!(pids.controller, child.id());
    (child, home, pids)
}

fn signal_stops_everything(sig: i32, tag: &str) {
    let _guard = serial();
    let (mut child, home, pids) = foreground(tag);
    // SAFETY: the foreground cluster this test started.
    unsafe { libc::kill(child.id() as libc::pid_t, sig) };
    let deadline = Instant::now() + Duration::from_secs(20);
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        if Instant::now() > deadline {
            pids.kill_all();
            panic!("foreground cluster did not exit after signal {sig}");
        }
        std::thread::sleep(Duration::from_millis(10));
    };
    assert!(status.success(), "exit status after signal {sig}: {status}");
    let left = pids.wait_gone(Duration::from_secs(5));
    pids.kill_all();
    assert!(left.is_empty(), "left after signal {sig}: {left:?}");
    assert!(!files::connection_file(&home, "default").exists(), "connection file left");
    let _ = std::fs::remove_dir_all(home);
}

#[test]
fn t31_sigint_to_foreground_start_stops_everything() {
    signal_stops_everything(libc::SIGINT, "sigint");
}

#[test]
fn t32_sigterm_to_foreground_start_stops_everything() {
    signal_stops_everything(libc::SIGTERM, "sigterm");
}

#[test]
fn t33_failed_start_reports_mpiruns_error_and_leaves_nothing() {
    let _guard = serial();
    let home = temp_home("badstart");
    let mut cmd = mpx_cmd(&home);
    cmd.args([
        "cluster",
        "start",
        "--kernel",
        "rhai",
        "-n",
        "2",
        "--timeout",
        "30",
        "--engine",
        "/nonexistent/mpx-engine",
    ]);
    let out = run_with_timeout(cmd, Duration::from_secs(60));
    assert!(!out.status.success());
    let err = stderr(&out);
    assert!(err.contains("mpirun exited with code"), "{err}");
    assert!(err.contains("/nonexistent/mpx-engine"), "mpirun's own text is shown: {err}");
    assert!(!files::connection_file(&home, "default").exists());
    // Daemonized: same, through the daemon's report.
    let mut cmd = mpx_cmd(&home);
    cmd.args([
        "cluster",
        "start",
        "--kernel",
        "rhai",
        "-n",
        "2",
        "--daemonize",
        "--engine",
        "/nonexistent/mpx-engine",
    ]);
    let out = run_with_timeout(cmd, Duration::from_secs(60));
    assert!(!out.status.success(), "{}", stdout(&out));
    assert!(stderr(&out).contains("mpirun exited with code"), "{}", stderr(&out));
    assert!(!files::connection_file(&home, "default").exists());
    let _ = std::fs::remove_dir_all(home);
}

#[test]
fn t34_engines_not_registering_in_time_is_a_timeout_with_nothing_left() {
    let _guard = serial();
    let home = temp_home("slowstart");
    // An "engine" that never registers: it ignores its arguments and sleeps; the start times out.
    let fake = home.join("silent-engine.sh");
    std::fs::write(&fake, "#!/bin/sh\nsleep 60\n").unwrap();
    std::fs::set_permissions(&fake, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    let mut cmd = mpx_cmd(&home);
    cmd.args([
        "cluster",
        "start",
        "--kernel",
        "rhai",
        "-n",
        "2",
        "--timeout",
        "2",
        "--engine",
        fake.to_str().unwrap(),
    ]);
    let out = run_with_timeout(cmd, Duration::from_secs(60));
    assert!(!out.status.success());
    assert!(stderr(&out).contains("did not all register within"), "{}", stderr(&out));
    assert!(!files::connection_file(&home, "default").exists());
    // The silent engines were in mpirun's process group and are gone too.
    let ps = Command::new("ps").args(["-eo", "args="]).output().unwrap();
    let fake_running =
        String::from_utf8_lossy(&ps.stdout).lines().any(|l| l.contains(fake.to_str().unwrap()));
    assert!(!fake_running, "a silent engine outlived the failed start");
    let _ = std::fs::remove_dir_all(home);
}

#[test]
fn t35_stop_with_a_stale_file_leaves_an_unrelated_process_alone() {
    let home = temp_home("stale");
    // An unrelated live process whose pid a stale connection file names (as after a crash and
    // pid reuse): once with a controller start time that does not match, once without one.
    let mut stranger = Command::new("sleep").arg("30").spawn().unwrap();
    let pid = stranger.id();
    for started in [Some(1), None] {
        let info = mpx_messages::ConnectionInfo {
            cluster_id: "default".into(),
            address: "127.0.0.1:9".into(),
            key: "00".repeat(32),
            controller_pid: pid,
            engines: 4,
            controller_started: started,
            unix: None,
            host: None,
        };
        let path = files::connection_file(&home, "default");
        files::write_connection_file(&path, &info).unwrap();
        assert!(!files::controller_running(&info));
        let t0 = Instant::now();
        let out = run_with_timeout(
            {
                let mut c = mpx_cmd(&home);
                c.args(["cluster", "stop"]);
                c
            },
            Duration::from_secs(30),
        );
        assert!(out.status.success(), "{}{}", stdout(&out), stderr(&out));
        assert!(stdout(&out).contains("was not running"), "{}", stdout(&out));
        assert!(t0.elapsed() < Duration::from_secs(5), "stop waited for a stranger: {:?}", t0.elapsed());
        assert!(stranger.try_wait().unwrap().is_none(), "the unrelated process was signalled");
        assert!(!path.exists(), "the stale file is removed");
    }
    let _ = stranger.kill();
    let _ = stranger.wait();
    let _ = std::fs::remove_dir_all(&home);
}

#[test]
fn t36_two_simultaneous_starts_of_one_id_give_one_cluster_and_one_clear_error() {
    let guard = serial();
    let home = temp_home("twostarts");
    let start = || {
        let mut c = mpx_cmd(&home);
        c.args(["cluster", "start", "--kernel", "rhai", "-n", "2", "--daemonize", "--timeout", "60"])
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        c.spawn().unwrap()
    };
    let (a, b) = (start(), start());
    let finish = |mut child: std::process::Child| {
        let deadline = Instant::now() + Duration::from_secs(90);
        while child.try_wait().unwrap().is_none() {
            if Instant::now() > deadline {
                let _ = child.kill();
                panic!("cluster start did not finish");
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        child.wait_with_output().unwrap()
    };
    let (oa, ob) = (finish(a), finish(b));
    let winners = [&oa, &ob].iter().filter(|o| o.status.success()).count();
    let text = format!("{}{}\n{}{}", stdout(&oa), stderr(&oa), stdout(&ob), stderr(&ob));
    assert_eq!(winners, 1, "exactly one start succeeds:\n{text}");
    let loser = if oa.status.success() { &ob } else { &oa };
    assert!(
        format!("{}{}", stdout(loser), stderr(loser)).contains("already running or starting"),
        "the other says why:\n{text}"
    );
    let c = Cluster::adopt(home, "default", 2, guard);
    assert_eq!(c.pids.alive().len(), 4, "controller + mpirun + 2 engines: {:?}", c.pids);
    c.stop();
}
