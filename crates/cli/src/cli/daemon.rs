//! Running a controller (with or without engines) in the foreground, or as a detached daemon
//! that reports `ready: LINE` or `error: TEXT` on its stdout to the `mpx` that started it.

use std::{
    ffi::OsString,
    io::{BufRead, BufReader, Write},
    process::{Command, Stdio},
};

use anyhow::{bail, Context, Result};
use mpx_controller::{files, run_cluster, ClusterOptions, Launcher, Ready, StopReason};

/// Runs a cluster until it stops; prints `ready_line(ready)` when it is ready (as the `ready:`
/// report when `daemon_child`). Returns the exit code.
pub fn run_foreground(
    opts: ClusterOptions,
    launcher: Box<dyn Launcher>,
    daemon_child: bool,
    ready_line: impl FnOnce(&Ready) -> String,
) -> Result<i32> {
    let id = opts.cluster_id.clone();
    let system = actix::System::new();
    let result = system.block_on(run_cluster(opts, launcher, |ready| {
        let line = ready_line(ready);
        if daemon_child {
            // The parent reads this line and exits; nothing is printed on stdout after it.
            let mut out = std::io::stdout();
            let _ = writeln!(out, "ready: {line}");
            let _ = out.flush();
            tracing::info!("{line}");
        } else {
            println!("{line}");
        }
    }));
    match result {
        Ok(StopReason::WorldDown(why)) => {
            let msg = format!("the MPI world went down ({why}); cluster stopped");
            tracing::error!("{msg}");
            if !daemon_child {
                eprintln!("mpx: {msg}");
            }
            Ok(1)
        }
        Ok(reason) => {
            if !daemon_child {
                println!("cluster {id} stopped ({reason:?})");
            }
            Ok(0)
        }
        Err(e) => {
            if daemon_child {
                let _ = writeln!(std::io::stdout(), "error: {e}");
            }
            Err(e.into())
        }
    }
}

/// Re-runs `mpx ARGS` as a detached child (own session, log file `cluster-ID.log`), waits for
/// its ready line, and returns. `args` must make the child run with `--daemon-child`.
pub fn daemonize(cluster_id: &str, args: Vec<OsString>) -> Result<i32> {
    let home = files::mpx_home();
    std::fs::create_dir_all(&home).with_context(|| format!("cannot create {}", home.display()))?;
    let log_path = files::log_file(&home, cluster_id);
    let log =
        std::fs::File::create(&log_path).with_context(|| format!("cannot create {}", log_path.display()))?;
    let exe = std::env::current_exe().context("cannot find the mpx executable")?;
    let mut cmd = Command::new(exe);
    cmd.args(args).stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::from(log));
    // The child leaves our session so a Ctrl-C in this terminal does not reach the daemon.
    super::new_session(&mut cmd);
    let mut child = cmd.spawn().context("cannot start the cluster daemon")?;
    let stdout = child.stdout.take().expect("piped stdout");
    let mut lines = BufReader::new(stdout).lines();
    while let Some(line) = lines.next() {
        let line = line.unwrap_or_default();
        if let Some(ready) = line.strip_prefix("ready: ") {
            println!("{ready}");
            println!("(running in the background, pid {}; log {})", child.id(), log_path.display());
            return Ok(0);
        }
        if let Some(err) = line.strip_prefix("error: ") {
            // The rest of the report (e.g. the job's output) follows until the daemon exits.
            let rest: Vec<String> = lines.map_while(Result::ok).collect();
            let _ = child.wait();
            bail!("{}", std::iter::once(err.to_string()).chain(rest).collect::<Vec<_>>().join("\n"));
        }
    }
    let status = child.wait()?;
    let log = std::fs::read_to_string(&log_path).unwrap_or_default();
    bail!("the cluster daemon exited ({status}) before it was ready; its log:\n{log}")
}
