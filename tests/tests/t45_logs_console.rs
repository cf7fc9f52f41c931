//! Logs (`mpx logs`, the controller's and each engine's file) and the console on a terminal
//! (tmux): tab completion of magics and engine names, saved history, reconnecting after a
//! cluster restart, `%timeout`.

use std::{
    path::Path,
    process::{Command, Stdio},
    time::{Duration, Instant},
};

use mpx_tests::{mpx_cmd, run_with_timeout, stderr, stdout, tmux::Tmux, Cluster, Kernel};

#[test]
fn t45_logs_of_the_controller_and_of_each_engine() {
    let c = Cluster::start(Kernel::Python, "logs", 4, &[]);
    // Engine 2's log has its lines and no other engine's.
    let out = c.mpx(&["logs", "--engine", "2"]);
    let text = stdout(&out);
    assert!(out.status.success(), "{text}{}", stderr(&out));
    assert!(text.contains("registered engine=2"), "{text}");
    for other in [0, 1, 3] {
        assert!(!text.contains(&format!("engine={other}")), "engine {other} in engine 2's log:\n{text}");
    }
    assert!(c.home.join("cluster-default/engine-3.log").is_file());
    let out = c.mpx(&["logs", "--engine", "7"]);
    assert!(!out.status.success() && stderr(&out).contains("engine logs: 0-3"), "{}", stderr(&out));

    // The controller's log: the ready line and the engines, without colour codes.
    let out = c.mpx(&["logs"]);
    let text = stdout(&out);
    assert!(text.contains("4 engines ready"), "{text}");
    assert!(text.contains("engine attached engine=3"), "{text}");
    assert!(!text.contains('\x1b'), "colour codes in the log:\n{text:?}");

    // `-f` follows the log until the cluster stops, stop included.
    let mut follow = mpx_cmd(&c.home);
    follow.args(["logs", "-f"]).stdout(Stdio::piped()).stderr(Stdio::piped());
    let follower = follow.spawn().expect("mpx logs -f");
    std::thread::sleep(Duration::from_millis(300));
    let out = c.mpx(&["cluster", "stop"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut follower = follower;
    while follower.try_wait().expect("try_wait").is_none() {
        if Instant::now() > deadline {
            let _ = follower.kill();
            panic!("mpx logs -f did not end after the cluster stopped");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let out = follower.wait_with_output().expect("output");
    let text = stdout(&out);
    assert!(text.contains("cluster default stopped on request"), "{text}");
    // After the stop the logs stay readable.
    let out = c.mpx(&["logs", "--engine", "0"]);
    assert!(stdout(&out).contains("registered engine=0"), "{}", stderr(&out));
}

/// A foreground `cluster start` writes the log file too (not only `--daemonize`).
#[test]
fn t45_a_foreground_cluster_logs_to_its_file() {
    let _serial = mpx_tests::serial();
    let home = mpx_tests::temp_home("logs-fg");
    // An earlier run's log of an engine this run does not have goes once this run is ready.
    std::fs::create_dir_all(home.join("cluster-fg")).unwrap();
    std::fs::write(home.join("cluster-fg/engine-7.log"), "old\n").unwrap();
    std::thread::sleep(Duration::from_millis(20));
    let mut cmd = mpx_cmd(&home);
    cmd.args(["cluster", "start", "-n", "2", "--kernel", "rhai", "--cluster-id", "fg"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = cmd.spawn().expect("cluster start");
    Cluster::wait_engines(&home, "fg", 2, Duration::from_secs(60));
    let out = run_with_timeout(
        logs_cmd(&home, &["cluster", "stop", "--cluster-id", "fg"]),
        Duration::from_secs(30),
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let deadline = Instant::now() + Duration::from_secs(20);
    while child.try_wait().expect("try_wait").is_none() {
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("the foreground cluster did not stop");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let log = std::fs::read_to_string(home.join("cluster-fg.log")).expect("log");
    assert!(log.contains("2 engines ready") && log.contains("stopped on request"), "{log}");
    assert!(home.join("cluster-fg/engine-1.log").is_file());
    assert!(!home.join("cluster-fg/engine-7.log").exists(), "an earlier run's engine log is left");
    let _ = std::fs::remove_dir_all(&home);
}

fn logs_cmd(home: &Path, args: &[&str]) -> Command {
    let mut cmd = mpx_cmd(home);
    cmd.args(args);
    cmd
}

#[test]
fn t46_console_completes_keeps_history_and_reconnects() {
    let mut c = Cluster::start(Kernel::Python, "console-tty", 2, &[]);
    let t = Tmux::start(&c.home, "console");
    // A name defined on the engines completes.
    t.cell(&["%px a_long_name = 41", "Enter"], "> %px a_long_name = 41");
    t.idle();
    t.keys(&["%px a_long_n", "Tab"]);
    t.wait_for("> %px a_long_name", Duration::from_secs(10));
    t.keys(&[" + 1", "Enter"]);
    let screen = t.wait_for("Out[0-1]: 42", Duration::from_secs(30));
    // A magic completes; %timeout says what it set.
    t.idle();
    t.keys(&["%tim", "Tab"]);
    t.wait_for("> %timeout", Duration::from_secs(10));
    t.keys(&[" 2", "Enter"]);
    t.wait_for("timeout: 2 s", Duration::from_secs(10));
    // A comment ending in `{` ends the cell; a Python block waits for an empty line.
    t.cell(&["%px b = 1  # {", "Enter"], "> %px b = 1  # {");
    t.cell(&["%px def f(x):", "Enter", "    return x * 2", "Enter", "Enter"], "    return x * 2");
    t.cell(&["%px f(b)", "Enter"], "Out[0-1]: 2\n");

    // The cluster restarts: the next cell connects again.
    t.idle();
    let out = c.mpx(&["cluster", "stop"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let mut start = mpx_cmd(&c.home);
    start.args(["cluster", "start", "-n", "2", "--daemonize", "--kernel", "python"]);
    let out = run_with_timeout(start, Duration::from_secs(90));
    assert!(out.status.success(), "{}", stderr(&out));
    c.pids = c.read_pids();
    let screen_after = t.cell(&["%px 'again'", "Enter"], "Out[0-1]: 'again'");
    assert!(screen_after.contains("connected again"), "{screen_after}");
    t.idle();
    t.keys(&["%quit", "Enter"]);
    t.wait_gone(Duration::from_secs(10));

    // The history was saved, one entry per cell, and a new console loads it.
    let history = std::fs::read_to_string(c.home.join("console_history")).expect("history file");
    for line in ["%px a_long_name = 41", "%timeout 2", "%px b = 1  # {", "%quit"] {
        assert!(history.contains(line), "{line:?} not in the history:\n{history}");
    }
    let t = Tmux::start(&c.home, "console2");
    t.keys(&["Up"]);
    t.wait_for("> %quit", Duration::from_secs(10));
    t.keys(&["C-u", "%quit", "Enter"]);
    t.wait_gone(Duration::from_secs(10));
    assert!(screen.contains("a_long_name + 1"), "{screen}");
    c.stop();
}

/// Python-style targets on a real cluster, and an empty list refused.
#[test]
fn t47_python_style_targets() {
    let c = Cluster::start(Kernel::Rhai, "targets", 4, &[]);
    let ids = |targets: &str| -> Vec<u32> {
        let out = c.mpx(&["px", "--targets", targets, "rank"]);
        assert!(out.status.success(), "{targets}: {}", stderr(&out));
        mpx_tests::out_values(&stdout(&out)).into_iter().map(|(id, _)| id).collect()
    };
    assert_eq!(ids("::2"), vec![0, 2]);
    assert_eq!(ids("-1"), vec![3]);
    assert_eq!(ids("1:3"), vec![1, 2]);
    assert_eq!(ids("0,-1"), vec![0, 3]);
    assert_eq!(ids("all"), vec![0, 1, 2, 3]);
    let out = c.mpx(&["px", "--targets", "", "rank"]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(stderr(&out).contains("empty target list") && stdout(&out).is_empty(), "{}", stderr(&out));
    let out = c.mpx(&["px", "--targets", "7:", "rank"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("select no engine (engine ids: 0-3)"), "{}", stderr(&out));
    c.stop();
}

/// Help says what people type, and completion scripts are generated for each shell.
#[test]
fn t47_help_text_and_shell_completions() {
    let home = mpx_tests::temp_home("help");
    let run = |args: &[&str]| {
        let mut cmd = mpx_cmd(&home);
        cmd.args(args);
        run_with_timeout(cmd, Duration::from_secs(20))
    };
    let help = stdout(&run(&["cluster", "start", "--help"]));
    assert!(help.contains("-n, --engines <N>"), "{help}");
    assert!(help.contains("(`{queue}`)"), "{help}");
    let help = stdout(&run(&["px", "--help"]));
    assert!(!help.contains("[default: \"\"]") && help.contains("::2"), "{help}");
    let help = stdout(&run(&["gather", "--help"]));
    assert!(help.contains("concatenated along axis 0"), "{help}");
    let help = stdout(&run(&["--help"]));
    assert!(help.contains("-v, --verbose") && help.contains("MPX_LOG"), "{help}");
    for shell in ["bash", "zsh", "fish"] {
        let out = run(&["completions", shell]);
        let script = stdout(&out);
        assert!(out.status.success() && script.contains("targets") && script.contains("console"), "{shell}");
    }
    let _ = std::fs::remove_dir_all(&home);
}
