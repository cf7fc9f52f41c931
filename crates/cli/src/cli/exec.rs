//! `mpx px` and `mpx run`.

use std::path::PathBuf;

use std::{
    sync::{
        atomic::{AtomicBool, Ordering},
        Arc, OnceLock,
    },
    time::{Duration, Instant},
};

use anyhow::{bail, Context, Result};
use clap::Args;
use mpx_client::{
    display, printer::CellPrinter, AsyncResult, Client, ClientError, EngineId, EngineResult, EngineState,
    Targets, View,
};

use super::{progress::Progress, Target};

/// What `px` does when its timeout runs out.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum OnTimeout {
    /// Report the timeout; the cell goes on running.
    Wait,
    /// Interrupt the cell, as Ctrl-C does (ranks inside an MPI call that cannot be cancelled
    /// make the world restart).
    Interrupt,
    /// Restart the MPI world at once (variables are lost; the cluster stays).
    Abort,
}

#[derive(Args)]
pub struct PxArgs {
    #[command(flatten)]
    target: Target,
    /// What to do when the timeout runs out.
    #[arg(long, value_enum, default_value = "wait")]
    on_timeout: OnTimeout,
    #[command(flatten)]
    show: Show,
    /// The code to run (`-`: read it from stdin).
    code: String,
}

/// How results are shown.
#[derive(Args, Clone, Copy, Debug, Default)]
pub struct Show {
    /// Show every engine's output on its own, even where several printed the same.
    #[arg(long)]
    pub no_collapse: bool,
}

#[derive(Args)]
pub struct RunArgs {
    #[command(flatten)]
    target: Target,
    #[command(flatten)]
    show: Show,
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
    show: Show,
) -> Result<i32> {
    let targets = target.targets(client)?;
    let pending = code.submit(&client.view(targets.clone()))?;
    show_request(client, &targets, &pending, target.timeout(), on_timeout, show, "mpx wait")
}

/// Waits for `pending` and shows it as [`CellPrinter`] says: a quick cell's output when it
/// ends, per engine in engine order; a long cell's output as it arrives (the rule is in
/// `mpx_client::output`); a progress line on a terminal after 2 s, then the values and errors,
/// collapsed unless `show.no_collapse`. Returns the exit code (130 after Ctrl-C, 1 when an
/// engine failed).
///
/// # Errors
/// A timeout ([`StillRunning`], naming the request's id and `again`, the command that waits for
/// it again), a refusal or a lost connection.
pub fn show_request(
    client: &Client,
    targets: &Targets,
    pending: &AsyncResult,
    timeout: Duration,
    on_timeout: OnTimeout,
    show: Show,
    again: &str,
) -> Result<i32> {
    // The stream first: output is then streamed from now on (what came before is in it too).
    let stream = pending.output();
    let collapse = !show.no_collapse;
    let labels = client.labels()?;
    let mut progress = Progress::new("cell");
    let engines = pending.engines(Duration::from_secs(10)).unwrap_or_default();
    let total = engines.len();
    let mut printer = CellPrinter::new(collapse, labels, engines);
    // The stuck notices already shown.
    let mut told = 0;
    let mut tick = |printer: &mut CellPrinter, progress: &mut Progress| {
        let now = Instant::now();
        for piece in stream.next(Duration::ZERO) {
            printer.piece(&piece, now);
        }
        let partial = pending.partial();
        let stuck = pending.stuck();
        if stuck.len() > told {
            // Stuck ranks: the cell runs long, and what was held (the traceback of a rank
            // that raised, most likely) comes before the notice.
            printer.running_long();
        }
        let text = printer.tick(&partial, now);
        if !text.is_empty() {
            progress.suspend(|| print_now(&text));
        }
        for s in stuck.iter().skip(told) {
            progress.suspend(|| eprintln!("mpx: {}", s.message()));
        }
        told = stuck.len();
        progress.update(partial.len(), total, "engines done", None);
    };
    let waited = wait_ticking(client, targets, pending, timeout, &mut || tick(&mut printer, &mut progress));
    progress.finish();
    // Every engine's output comes before its reply: what is left is in the stream now.
    for piece in stream.next(Duration::ZERO) {
        printer.piece(&piece, Instant::now());
    }
    print_now(&printer.finish_output());
    let (results, interrupted) = match waited {
        Err(ClientError::Timeout(t)) if on_timeout == OnTimeout::Abort => {
            eprintln!("mpx: no result after {t:?}: restarting the MPI world (variables are lost)");
            client.abort(&format!("px timed out after {t:?}"), Duration::from_secs(10))?;
            (pending.get(Duration::from_secs(10))?, false)
        }
        Err(ClientError::Timeout(t)) if on_timeout == OnTimeout::Interrupt => {
            eprintln!("mpx: no result after {t:?}: interrupting the cell");
            client.interrupt(targets.clone(), Duration::from_secs(5))?;
            (pending.get(Duration::from_secs(10))?, true)
        }
        Err(ClientError::Timeout(after)) => {
            return Err(StillRunning { after, id: pending.id(), again: again.to_string() }.into());
        }
        other => other?,
    };
    print_now(&printer.finish_results(&results));
    if let Some(note) = restart_note(&results) {
        eprintln!("mpx: {note}");
    }
    Ok(if interrupted { 130 } else { i32::from(display::any_error(&results)) })
}

/// What to tell the user when the request's world restarts: the next cell waits for it.
fn restart_note(results: &[EngineResult]) -> Option<&'static str> {
    let restarting = results.iter().any(|r| {
        matches!(&r.outcome.error, Some(mpx_client::MpxError::WorldDown { reason }) if reason.contains("being restarted"))
    });
    restarting.then_some(
        "the MPI world is restarting with the same engine ids; its variables are gone. The next cell \
         waits until it is ready; `mpx replay` (%replay in the console) runs the session's cells again.",
    )
}

/// A request whose wait ran out: it goes on, and `again ID` waits for it again.
#[derive(Debug)]
pub struct StillRunning {
    /// How long it was waited for.
    pub after: Duration,
    /// Its id (`None`: the controller had not even accepted it).
    pub id: Option<mpx_messages::Ticket>,
    /// The command that waits again (`mpx wait`, `%result`).
    pub again: String,
}

impl std::fmt::Display for StillRunning {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.id {
            Some(id) => write!(
                f,
                "no result after {:?}: request {id} is still running; `{} {id}` to get it",
                self.after, self.again
            ),
            None => {
                write!(f, "no result after {:?}: the controller has not accepted the request yet", self.after)
            }
        }
    }
}

impl std::error::Error for StillRunning {}

/// Prints `text` to stdout at once.
fn print_now(text: &str) {
    use std::io::Write;
    let mut out = std::io::stdout().lock();
    let _ = out.write_all(text.as_bytes());
    let _ = out.flush();
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
    wait_ticking(client, targets, pending, timeout, &mut || {})
}

/// Like [`wait_interruptible_flagged`], calling `tick` every 50 ms while it waits.
pub fn wait_ticking(
    client: &Client,
    targets: &Targets,
    pending: &AsyncResult,
    timeout: Duration,
    tick: &mut dyn FnMut(),
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
        tick();
        if left.is_zero() {
            return Err(ClientError::Timeout(timeout));
        }
        if flag.swap(false, Ordering::SeqCst) {
            if interrupted {
                return Err(ClientError::Refused(mpx_client::MpxError::refused(
                    "interrupted twice: stopped waiting",
                )));
            }
            interrupted = true;
            eprintln!("^C: interrupting the running cell (again to stop waiting)");
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
    execute_and_print(&client, &args.target, Code::Cell(&code), args.on_timeout, args.show)
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
    execute_and_print(&client, &args.target, Code::File(&code, &filename), OnTimeout::Wait, args.show)
}

#[derive(Args)]
pub struct WaitArgs {
    /// Cluster id or connection file [default: the only running cluster].
    #[arg(long, default_value = "", hide_default_value = true)]
    cluster_id: String,
    /// Seconds to wait for the result.
    #[arg(long, default_value_t = 60.0)]
    timeout: f64,
    #[command(flatten)]
    show: Show,
    /// The request's id (`mpx px` names it when its timeout runs out).
    id: u64,
}

/// `mpx wait ID`: the result of a request whose client stopped waiting, kept by the controller.
pub fn wait(args: WaitArgs) -> Result<i32> {
    let client = Client::connect(&args.cluster_id)?;
    let pending = client.adopt(mpx_messages::Ticket(args.id))?;
    let targets = match pending.engines(Duration::from_secs(10)) {
        Ok(engines) => Targets::List(engines),
        Err(ClientError::Refused(why)) => bail!("{why}"),
        Err(e) => return Err(e.into()),
    };
    let timeout = Duration::from_secs_f64(args.timeout.max(0.0));
    show_request(&client, &targets, &pending, timeout, OnTimeout::Wait, args.show, "mpx wait")
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
