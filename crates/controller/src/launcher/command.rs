//! Running the batch system's commands (`sbatch`, `squeue`, `qsub`, ...) with a deadline, logging
//! each one and what it answered.

use std::{
    io::Read,
    path::Path,
    process::Stdio,
    time::{Duration, Instant},
};

use thiserror::Error;
use tracing::{debug, info, warn};
use wait_timeout::ChildExt;

/// Why a batch-system command gave no answer (or an answer that says nothing of the job).
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum CommandError {
    /// No program was given.
    #[error("empty command")]
    Empty,
    /// The program could not be started, or waited for.
    #[error("cannot run {program}: {why}")]
    Spawn {
        /// The program.
        program: String,
        /// The system's error.
        why: String,
    },
    /// It did not end within its deadline, and was killed.
    #[error("{command} did not answer within {after:?}")]
    Timeout {
        /// The command line.
        command: String,
        /// How long it ran.
        after: Duration,
    },
    /// It answered, but its answer says nothing about the job: the query itself failed (what it
    /// printed).
    #[error("{0}")]
    Failed(String),
}

/// How long one batch-system command may take before it is killed.
pub const COMMAND_TIMEOUT: Duration = Duration::from_secs(30);

/// What a command printed and whether it succeeded.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CmdOutput {
    /// Exit code 0.
    pub success: bool,
    /// The exit code (`None`: ended by a signal).
    pub code: Option<i32>,
    /// Its stdout.
    pub stdout: String,
    /// Its stderr.
    pub stderr: String,
}

impl CmdOutput {
    /// stderr and stdout, trimmed, for messages.
    pub fn text(&self) -> String {
        format!("{} {}", self.stderr.trim(), self.stdout.trim()).trim().to_string()
    }
}

/// `argv` as one line, for logs and messages.
pub fn command_line(argv: &[String]) -> String {
    argv.iter().map(|a| super::template::shell_quote(a)).collect::<Vec<_>>().join(" ")
}

fn output_of(out: std::process::Output) -> CmdOutput {
    CmdOutput {
        success: out.status.success(),
        code: out.status.code(),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

/// Runs `argv` and blocks until it ends or `timeout` passes (then it is killed by pid).
/// `loud` logs the command at info level (submissions, cancellations), else at debug (polls).
///
/// # Errors
/// [`CommandError`] if the command cannot be run or overruns.
pub fn run_blocking(argv: &[String], timeout: Duration, loud: bool) -> Result<CmdOutput, CommandError> {
    run_blocking_in(argv, None, timeout, loud)
}

/// [`run_blocking`] in directory `cwd` (`None`: the current one).
///
/// # Errors
/// [`CommandError`] if the command cannot be run or overruns.
pub fn run_blocking_in(
    argv: &[String],
    cwd: Option<&Path>,
    timeout: Duration,
    loud: bool,
) -> Result<CmdOutput, CommandError> {
    log_command(argv, loud);
    let (program, args) = argv.split_first().ok_or(CommandError::Empty)?;
    let spawn = |e: std::io::Error| CommandError::Spawn { program: program.clone(), why: e.to_string() };
    let mut cmd = std::process::Command::new(program);
    if let Some(dir) = cwd {
        cmd.current_dir(dir);
    }
    let mut child = cmd
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(spawn)?;
    // Readers drain the pipes while the child runs (a full pipe would stall it).
    let read = |pipe: Option<Box<dyn Read + Send>>| {
        std::thread::spawn(move || {
            let mut text = Vec::new();
            if let Some(mut pipe) = pipe {
                let _ = pipe.read_to_end(&mut text);
            }
            text
        })
    };
    let stdout = read(child.stdout.take().map(|p| Box::new(p) as Box<dyn Read + Send>));
    let stderr = read(child.stderr.take().map(|p| Box::new(p) as Box<dyn Read + Send>));
    let status = match child.wait_timeout(timeout) {
        Ok(Some(status)) => status,
        Ok(None) => {
            // Our own child, not yet reaped.
            let _ = child.kill();
            let _ = child.wait();
            return Err(CommandError::Timeout { command: command_line(argv), after: timeout });
        }
        Err(e) => return Err(spawn(e)),
    };
    let out = output_of(std::process::Output {
        status,
        stdout: stdout.join().unwrap_or_default(),
        stderr: stderr.join().unwrap_or_default(),
    });
    log_output(argv, &out, loud);
    Ok(out)
}

/// Runs `argv` without blocking the event loop; killed if it overruns `timeout`.
///
/// # Errors
/// [`CommandError`] if the command cannot be run or overruns.
pub async fn run(argv: &[String], timeout: Duration, loud: bool) -> Result<CmdOutput, CommandError> {
    log_command(argv, loud);
    let (program, args) = argv.split_first().ok_or(CommandError::Empty)?;
    let t0 = Instant::now();
    let child = tokio::process::Command::new(program)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .output();
    let out = match tokio::time::timeout(timeout, child).await {
        Ok(Ok(out)) => output_of(out),
        Ok(Err(e)) => return Err(CommandError::Spawn { program: program.clone(), why: e.to_string() }),
        Err(_) => return Err(CommandError::Timeout { command: command_line(argv), after: t0.elapsed() }),
    };
    log_output(argv, &out, loud);
    Ok(out)
}

fn log_command(argv: &[String], loud: bool) {
    if loud {
        info!(target: "mpx::batch", command = %command_line(argv), "running");
    } else {
        debug!(target: "mpx::batch", command = %command_line(argv), "running");
    }
}

fn log_output(argv: &[String], out: &CmdOutput, loud: bool) {
    if loud && !out.success {
        warn!(target: "mpx::batch", command = %command_line(argv), output = %out.text(), "command failed");
    } else if loud {
        info!(target: "mpx::batch", command = %command_line(argv), output = %out.text(), "done");
    } else {
        debug!(target: "mpx::batch", success = out.success, output = %out.text(), "answer");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn argv(a: &[&str]) -> Vec<String> {
        a.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn blocking_run_captures_output_and_status() {
        let out = run_blocking(&argv(&["sh", "-c", "echo hi; echo err >&2; exit 3"]), COMMAND_TIMEOUT, false)
            .unwrap();
        assert_eq!(
            out,
            CmdOutput { success: false, code: Some(3), stdout: "hi\n".into(), stderr: "err\n".into() }
        );
    }

    #[test]
    fn blocking_run_kills_an_overrunning_command() {
        let t0 = Instant::now();
        let err = run_blocking(&argv(&["sleep", "10"]), Duration::from_millis(200), false).unwrap_err();
        assert!(matches!(err, CommandError::Timeout { .. }), "{err}");
        assert!(err.to_string().contains("did not answer"), "{err}");
        assert!(t0.elapsed() < Duration::from_secs(5));
    }

    #[test]
    fn blocking_run_in_a_directory() {
        let dir = std::env::temp_dir();
        let out = run_blocking_in(&argv(&["pwd"]), Some(&dir), COMMAND_TIMEOUT, false).unwrap();
        assert_eq!(Path::new(out.stdout.trim()).canonicalize().unwrap(), dir.canonicalize().unwrap());
    }

    #[test]
    fn a_missing_program_is_an_error() {
        let err = run_blocking(&argv(&["/nonexistent/sbatch"]), COMMAND_TIMEOUT, false).unwrap_err();
        assert!(
            matches!(&err, CommandError::Spawn { program, .. } if program == "/nonexistent/sbatch"),
            "{err}"
        );
        assert_eq!(run_blocking(&[], COMMAND_TIMEOUT, false), Err(CommandError::Empty));
    }
}
