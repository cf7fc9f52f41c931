//! The session's history: `mpx history`, `mpx replay`, `mpx restart --replay` and `mpx export`.

use std::{
    path::{Path, PathBuf},
    time::Duration,
};

use anyhow::{bail, Context, Result};
use clap::Args;
use mpx_client::{
    export,
    replay::{self, Replayed},
    Client, EngineId,
};
use mpx_messages::{EngineOutcome, HistoryEntry, HistoryItem};

#[derive(Args)]
pub struct HistoryArgs {
    /// Cluster id or connection file [default: the only running cluster].
    #[arg(long, default_value = "", hide_default_value = true)]
    cluster_id: String,
    /// Only the last N entries.
    #[arg(short = 'n', long)]
    n: Option<usize>,
    /// Only the entries that failed somewhere.
    #[arg(long)]
    errors: bool,
}

/// `0-3`, `0,2`: engine ids in short form.
fn ids_text(ids: &[EngineId]) -> String {
    let ranks: Vec<mpx_messages::Rank> = ids.iter().map(|e| mpx_messages::Rank(e.0)).collect();
    mpx_messages::stuck::ranks_text(&ranks)
        .split_once(' ')
        .map_or_else(String::new, |(_, r)| r.replace(", ", ","))
}

/// The outcomes at a glance: `ok`, `0: ZeroDivisionError; 1-3: died`, `running`.
fn outcomes_text(entry: &HistoryEntry) -> String {
    if entry.outcomes.is_empty() {
        return "running".into();
    }
    let mut groups: Vec<(&EngineOutcome, Vec<EngineId>)> = Vec::new();
    for (engine, outcome) in &entry.outcomes {
        match groups.iter_mut().find(|(o, _)| *o == outcome) {
            Some((_, ids)) => ids.push(*engine),
            None => groups.push((outcome, vec![*engine])),
        }
    }
    let mut text = if groups.len() == 1 && !entry.done() {
        format!("{} so far", groups[0].0.word())
    } else if groups.len() == 1 {
        groups[0].0.word().to_string()
    } else {
        groups
            .iter()
            .map(|(o, ids)| format!("{}: {}", ids_text(ids), o.word()))
            .collect::<Vec<_>>()
            .join("; ")
    };
    if !entry.done() && groups.len() > 1 {
        text.push_str("; others running");
    }
    text
}

/// What the entry did, as the user typed it (the first lines of a cell).
fn item_text(item: &HistoryItem) -> String {
    match item {
        HistoryItem::Cell { code } => code.trim_end().to_string(),
        HistoryItem::Run { filename, .. } => format!("%run {filename}"),
        HistoryItem::Push { name, dtype, shape, source, .. }
        | HistoryItem::Scatter { name, dtype, shape, source } => {
            let verb = match item {
                HistoryItem::Push { shared: true, .. } => "push --shared",
                HistoryItem::Push { .. } => "push",
                _ => "scatter",
            };
            let from = match source {
                mpx_messages::DataSource::File { path, .. } => path.clone(),
                mpx_messages::DataSource::Memory => "a Python client's memory".into(),
            };
            format!("%{verb} {name} ({dtype} {shape:?}) from {from}")
        }
        HistoryItem::Pull { name } => format!("%pull {name}"),
        HistoryItem::Gather { name } => format!("%gather {name}"),
        HistoryItem::Apply { function } => format!("apply {function}(...)"),
    }
}

/// The history as the user reads it: numbered like IPython's, with targets, outcomes and time.
pub fn render_history(entries: &[HistoryEntry]) -> String {
    let mut out = String::new();
    let mut epoch = entries.first().map_or(0, |e| e.epoch);
    for entry in entries {
        if entry.epoch != epoch {
            out.push_str("--- the MPI world restarted (variables were lost) ---\n");
            epoch = entry.epoch;
        }
        let secs = if entry.completed > 0.0 && entry.started > 0.0 {
            format!("{:.2} s", entry.completed - entry.started)
        } else {
            "-".into()
        };
        let targets = if entry.all { "all".to_string() } else { ids_text(&entry.engines) };
        let text = item_text(&entry.item);
        let mut lines = text.lines();
        out.push_str(&format!(
            "[{}] {targets} {} ({secs}): {}\n",
            entry.n,
            outcomes_text(entry),
            lines.next().unwrap_or("")
        ));
        for line in lines {
            out.push_str(&format!("    {line}\n"));
        }
    }
    out
}

/// The entries a `-n`/`--errors` selection keeps.
pub fn select(entries: Vec<HistoryEntry>, n: Option<usize>, errors: bool) -> Vec<HistoryEntry> {
    let mut kept: Vec<HistoryEntry> =
        entries.into_iter().filter(|e| !errors || (e.done() && !e.succeeded())).collect();
    if let Some(n) = n {
        let skip = kept.len().saturating_sub(n);
        kept.drain(..skip);
    }
    kept
}

/// `mpx history`.
pub fn history(args: HistoryArgs) -> Result<i32> {
    let client = Client::connect(&args.cluster_id)?;
    let history = client.history(Duration::from_secs(10))?;
    print!("{}", render_history(&select(history.entries, args.n, args.errors)));
    Ok(0)
}

/// Replays the session before the current world (see `mpx_client::replay`) and prints what it
/// did; exit code 1 when it stopped at a failure.
pub fn replay_previous(client: &Client) -> Result<i32> {
    let history = client.history(Duration::from_secs(10))?;
    let session = replay::previous_session(&history.entries, history.epoch);
    if session.is_empty() {
        println!("nothing to replay: no session before the current MPI world");
        return Ok(0);
    }
    let done: Replayed = replay::replay(client, &session, Duration::from_secs(600))?;
    print!("{}", done.summary());
    Ok(i32::from(done.failed.is_some()))
}

#[derive(Args)]
pub struct ReplayArgs {
    /// Cluster id or connection file [default: the only running cluster].
    #[arg(long, default_value = "", hide_default_value = true)]
    cluster_id: String,
}

/// `mpx replay`: run the session before the last restart again.
pub fn replay(args: ReplayArgs) -> Result<i32> {
    replay_previous(&Client::connect(&args.cluster_id)?)
}

#[derive(Args)]
pub struct ExportArgs {
    /// Cluster id or connection file [default: the only running cluster].
    #[arg(long, default_value = "", hide_default_value = true)]
    cluster_id: String,
    /// Also write a Slurm job script (FILE.sbatch) that runs it.
    #[arg(long)]
    sbatch: bool,
    /// Also write a PBS job script (FILE.pbs) that runs it.
    #[arg(long)]
    pbs: bool,
    /// The batch queue (partition) for the job script [default: the cluster's, if it runs as a
    /// batch job].
    #[arg(long)]
    queue: Option<String>,
    /// The job script's time limit (HH:MM:SS) [default: the cluster's job's, if any].
    #[arg(long)]
    walltime: Option<String>,
    /// The Python interpreter the job scripts run (with numpy and mpi4py: the one the
    /// engines use).
    #[arg(long, default_value = "python3")]
    python: String,
    /// The Python program to write.
    file: PathBuf,
}

/// `mpx export FILE.py`: the session since the last restart as a program for mpirun.
pub fn export(args: ExportArgs) -> Result<i32> {
    let client = Client::connect(&args.cluster_id)?;
    let info = client.info(Duration::from_secs(10))?;
    let size = info.engines.iter().map(|e| e.world_size as usize).max().unwrap_or(0);
    if info.engines.iter().any(|e| e.set != info.engines[0].set) {
        bail!("the cluster has several engine sets: an export is for one MPI world");
    }
    let probe =
        client.view(mpx_client::Targets::All).execute_internal("true")?.get(Duration::from_secs(10))?;
    if probe.iter().all(|r| r.outcome.error.is_none()) {
        bail!("this cluster runs the rhai kernel: export writes a Python program, for Python clusters only");
    }
    let history = client.history(Duration::from_secs(10))?;
    let entries = replay::current_session(&history.entries, history.epoch);
    let stem = args.file.file_stem().context("the file needs a name")?.to_string_lossy().into_owned();
    let made = export::script(&entries, size, &stem)?;
    let dir = args.file.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
    for (from, rel) in &made.data {
        let to = dir.join(rel);
        if let Some(parent) = to.parent() {
            std::fs::create_dir_all(parent)?;
        }
        std::fs::copy(from, &to)
            .with_context(|| format!("cannot copy {} to {}", from.display(), to.display()))?;
    }
    std::fs::write(&args.file, &made.script)
        .with_context(|| format!("cannot write {}", args.file.display()))?;
    println!(
        "wrote {} ({} entries; run it with mpirun -n {size} python3 {})",
        args.file.display(),
        entries.len(),
        args.file.display()
    );
    // The cluster's own batch job's queue and time limit, unless given here.
    let batch = info.batch.clone().unwrap_or_default();
    let or_cluster =
        |given: &Option<String>, cluster: String| given.clone().or((!cluster.is_empty()).then_some(cluster));
    let (queue, walltime) =
        (or_cluster(&args.queue, batch.queue), or_cluster(&args.walltime, batch.walltime));
    let job =
        export::Job { size, python: &args.python, queue: queue.as_deref(), walltime: walltime.as_deref() };
    let name = args.file.file_name().map(PathBuf::from).unwrap_or_default();
    if args.sbatch {
        let script = export::sbatch(&name, job);
        let job = args.file.with_extension("sbatch");
        std::fs::write(&job, script)?;
        println!("wrote {} (sbatch {})", job.display(), job.display());
    }
    if args.pbs {
        let script = export::pbs(&name, job);
        let job = args.file.with_extension("pbs");
        std::fs::write(&job, script)?;
        println!("wrote {} (qsub {})", job.display(), job.display());
    }
    Ok(0)
}
