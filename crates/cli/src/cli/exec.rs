//! `mpx px` and `mpx run`.

use std::path::PathBuf;

use std::{
    sync::{
        atomic::{AtomicBool, Ordering},
        Arc, OnceLock,
    },
    time::{Duration, Instant},
};

use anyhow::{Context, Result};
use clap::Args;
use mpx_client::{
    display, AsyncResult, Client, ClientError, EngineId, EngineResult, EngineState, Targets, View,
};

use super::Target;

/// What `px` does when its timeout runs out.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum OnTimeout {
    /// Report the timeout; the cell goes on running.
    Wait,
    /// Tear the MPI world down (a cell stuck in a collective cannot be cancelled otherwise).
    Abort,
}

#[derive(Args)]
pub struct PxArgs {
    #[command(flatten)]
    target: Target,
    /// What to do when the timeout runs out.
    #[arg(long, value_enum, default_value = "wait")]
    on_timeout: OnTimeout,
    /// The code to run (`-`: read it from stdin).
    code: String,
}

#[derive(Args)]
pub struct RunArgs {
    #[command(flatten)]
    target: Target,
    /// The file to run, like IPython's `%run`: errors name it (`-`: read the code from stdin).
    file: PathBuf,
}

/// What to run: a cell, or a file's code under its name.
#[derive(Clone, Copy, Debug)]
pub enum Code<'a> {
    /// A cell (`View::execute`).
    Cell(&'a str),
    /// A file's code and its name for tracebacks (`View::run`).
    File(&'a str, &'a str),
}

impl Code<'_> {
    /// Submits it to `view`.
    pub fn submit(self, view: &View) -> Result<AsyncResult, ClientError> {
        match self {
            Code::Cell(code) => view.execute(code),
            Code::File(code, filename) => view.run(code, filename),
        }
    }
}

/// Reads all of stdin (for `-`).
fn read_stdin() -> Result<String> {
    let mut code = String::new();
    std::io::Read::read_to_string(&mut std::io::stdin(), &mut code).context("cannot read stdin")?;
    Ok(code)
}

/// Runs `code` on the target engines, prints the results, and returns the exit code: 130
/// (128 + SIGINT, the shell's convention) if Ctrl-C interrupted it, else 1 if any engine
/// reported an error.
pub fn execute_and_print(
    client: &Client,
    target: &Target,
    code: Code<'_>,
    on_timeout: OnTimeout,
) -> Result<i32> {
    let targets = target.targets(client)?;
    let pending = code.submit(&client.view(targets.clone()))?;
    let (results, interrupted) =
        match wait_interruptible_flagged(client, &targets, &pending, target.timeout()) {
            Err(ClientError::Timeout(t)) if on_timeout == OnTimeout::Abort => {
                eprintln!("mpx: no result after {t:?}: tearing the MPI world down");
                client.abort(&format!("px timed out after {t:?}"), Duration::from_secs(10))?;
                (pending.get(Duration::from_secs(10))?, false)
            }
            other => other?,
        };
    print!("{}", display::render_with(&results, &client.labels()?));
    Ok(if interrupted { 130 } else { i32::from(display::any_error(&results)) })
}

/// Waits for a request; Ctrl-C interrupts the running cells of its engines (they fail with
/// KeyboardInterrupt and their results come back), a second Ctrl-C stops waiting.
pub fn wait_interruptible(
    client: &Client,
    targets: &Targets,
    pending: &AsyncResult,
    timeout: Duration,
) -> Result<Vec<EngineResult>, ClientError> {
    wait_interruptible_flagged(client, targets, pending, timeout).map(|(results, _)| results)
}

/// Like [`wait_interruptible`], also saying whether Ctrl-C interrupted the cells.
pub fn wait_interruptible_flagged(
    client: &Client,
    targets: &Targets,
    pending: &AsyncResult,
    timeout: Duration,
) -> Result<(Vec<EngineResult>, bool), ClientError> {
    let flag = ctrl_c_flag();
    flag.store(false, Ordering::SeqCst);
    let deadline = Instant::now() + timeout;
    let mut interrupted = false;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if pending.wait(left.min(Duration::from_millis(50)))? {
            return Ok((pending.get(Duration::ZERO)?, interrupted));
        }
        if left.is_zero() {
            return Err(ClientError::Timeout(timeout));
        }
        if flag.swap(false, Ordering::SeqCst) {
            if interrupted {
                return Err(ClientError::Refused("interrupted twice: stopped waiting".into()));
            }
            interrupted = true;
            eprintln!("^C: interrupting the running cell");
            client.interrupt(targets.clone(), Duration::from_secs(5))?;
        }
    }
}

/// A flag set by SIGINT (registered once per process).
fn ctrl_c_flag() -> &'static Arc<AtomicBool> {
    static FLAG: OnceLock<Arc<AtomicBool>> = OnceLock::new();
    FLAG.get_or_init(|| {
        let flag = Arc::new(AtomicBool::new(false));
        if let Err(e) = signal_hook::flag::register(signal_hook::consts::SIGINT, flag.clone()) {
            tracing::warn!("cannot catch Ctrl-C: {e}");
        }
        flag
    })
}

pub fn px(args: PxArgs) -> Result<i32> {
    let code = if args.code == "-" { read_stdin()? } else { args.code };
    let client = Client::connect(&args.target.cluster_id)?;
    execute_and_print(&client, &args.target, Code::Cell(&code), args.on_timeout)
}

pub fn run_file(args: RunArgs) -> Result<i32> {
    let (code, filename) = if args.file.as_os_str() == "-" {
        (read_stdin()?, "<stdin>".to_string())
    } else {
        let code = std::fs::read_to_string(&args.file)
            .with_context(|| format!("cannot read {}", args.file.display()))?;
        (code, args.file.display().to_string())
    };
    let client = Client::connect(&args.target.cluster_id)?;
    execute_and_print(&client, &args.target, Code::File(&code, &filename), OnTimeout::Wait)
}

#[derive(Args)]
pub struct WhereArgs {
    /// Cluster id or connection file [default: the only running cluster].
    #[arg(long, default_value = "", hide_default_value = true)]
    cluster_id: String,
}

/// `mpx where`: what every engine is doing, grouped.
pub fn where_(args: WhereArgs) -> Result<i32> {
    let client = Client::connect(&args.cluster_id)?;
    print!("{}", render_states(&client.engine_states(Duration::from_secs(10))?));
    Ok(0)
}

/// Groups engine states: `[0,1,3] in allreduce on COMM_WORLD (12.4 s)`.
pub fn render_states(states: &[(EngineId, Option<EngineState>)]) -> String {
    let mut groups: Vec<(String, Vec<EngineId>, f64)> = Vec::new();
    for (id, state) in states {
        let (what, secs) = match state {
            None => ("no answer".to_string(), 0.0),
            Some(s) => {
                let mut what = match (s.activity.as_str(), &s.call, &s.comm, s.cell) {
                    ("mpi", Some(call), Some(comm), _) => format!("in {call} on {comm}"),
                    ("running", _, _, Some(cell)) => format!("running cell {cell}"),
                    (other, ..) => other.to_string(),
                };
                if let Some(at) = &s.detail {
                    what = format!("{what} at {at}");
                }
                (what, s.seconds)
            }
        };
        match groups.iter_mut().find(|(w, ..)| *w == what) {
            Some((_, ids, max)) => {
                ids.push(*id);
                *max = max.max(secs);
            }
            None => groups.push((what, vec![*id], secs)),
        }
    }
    groups
        .into_iter()
        .map(|(what, ids, secs)| {
            let ids = ids.iter().map(|i| i.to_string()).collect::<Vec<_>>().join(",");
            format!("[{ids}] {what} ({secs:.1} s)\n")
        })
        .collect()
}
