//! The session as a plain Python program for a batch job (`mpx export FILE.py`): it runs
//! without mpx under `mpirun -n N python3 FILE.py` and computes what the session computed.
//!
//! - Cells and runs that succeeded, in order, each under a comment with its history number;
//!   a cell for some targets only runs under a guard on the rank (`if _rank in (0, 2):`).
//! - A push loads its `.npy` file, copied beside the script (`FILE_data/N_name.npy`); a scatter
//!   loads it and keeps this rank's rows, split exactly as mpx splits (`np.array_split`: the
//!   first ranks get one row more). An array pushed from a client's memory cannot be had again:
//!   the script says so in a comment and binds the name to `None`, for the user to fill in.
//! - A pull becomes `np.save` of each target's array (`pull-N-name-rank-R.npy`), a gather a
//!   gather to rank 0 saved as `gather-N-name.npy`: what the client received.
//! - Entries that failed are left out, with a comment.

use std::path::{Path, PathBuf};

use mpx_messages::{DataSource, HistoryEntry, HistoryItem};

/// An exported program: its text and the data files to copy beside it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Export {
    /// The Python program.
    pub script: String,
    /// `(source .npy file, path relative to the script's directory)`.
    pub data: Vec<(PathBuf, PathBuf)>,
}

/// Why an export is refused.
#[derive(Debug, thiserror::Error)]
pub enum ExportError {
    /// The history has nothing that ran.
    #[error("the session's history has no entry to export")]
    Empty,
}

fn indent(code: &str) -> String {
    code.lines()
        .map(|l| if l.is_empty() { String::new() } else { format!("    {l}") })
        .collect::<Vec<_>>()
        .join("\n")
}

/// A guard on the rank for an entry's targets (`None`: every rank), as engine ids are ranks of
/// the one world a batch job runs.
fn guard(entry: &HistoryEntry) -> Option<String> {
    if entry.all {
        return None;
    }
    let ranks: Vec<String> = entry.engines.iter().map(|e| e.0.to_string()).collect();
    Some(format!("if _rank in ({},):", ranks.join(", ")))
}

fn guarded(entry: &HistoryEntry, code: &str) -> String {
    match guard(entry) {
        None => code.trim_end().to_string(),
        // Code with triple-quoted strings would change if indented: it runs through exec.
        Some(g) if code.contains("\"\"\"") || code.contains("'''") => {
            format!("{g}\n    exec(compile({:?}, \"<mpx-{}>\", \"exec\"), globals())", code, entry.n)
        }
        Some(g) => format!("{g}\n{}", indent(code.trim_end())),
    }
}

fn header(entry: &HistoryEntry, what: &str) -> String {
    let on = if entry.all {
        String::new()
    } else {
        let ids: Vec<String> = entry.engines.iter().map(|e| e.0.to_string()).collect();
        format!(" (ranks {})", ids.join(","))
    };
    format!("# [{}] {what}{on}", entry.n)
}

/// The program for `entries` (one session), run by `size` ranks; data files are named after
/// `stem` (the script's file name without `.py`).
///
/// # Errors
/// [`ExportError::Empty`] when there is nothing to export.
pub fn script(entries: &[HistoryEntry], size: usize, stem: &str) -> Result<Export, ExportError> {
    if entries.is_empty() {
        return Err(ExportError::Empty);
    }
    let first = entries.first().map_or(0, |e| e.n);
    let last = entries.last().map_or(0, |e| e.n);
    let mut out = vec![
        format!("# Exported by `mpx export` from the session's history [{first}]..[{last}]."),
        format!("# Run it as the session ran: mpirun -n {size} python3 {stem}.py"),
        "import os, sys".to_string(),
        "# The engines imported modules from the directory they ran in: run this from there too.".to_string(),
        "sys.path.insert(0, os.getcwd())".to_string(),
        "# Lines out as they are printed: what waits in a buffer until exit comes after MPI has".to_string(),
        "# finalized, when mpirun may no longer forward it.".to_string(),
        "sys.stdout.reconfigure(line_buffering=True)".to_string(),
        "import numpy as np".to_string(),
        "from mpi4py import MPI".to_string(),
        "_comm = MPI.COMM_WORLD".to_string(),
        "_rank = _comm.rank".to_string(),
        format!(
            "if _comm.size != {size}:\n    raise SystemExit(f\"this session ran on {size} ranks, not {{_comm.size}}: \
             mpirun -n {size} python3 {stem}.py\")"
        ),
        String::new(),
    ];
    let mut data = Vec::new();
    for entry in entries {
        if !entry.succeeded() {
            let how: Vec<String> = entry.outcomes.iter().map(|(e, o)| format!("{e}: {}", o.word())).collect();
            out.push(format!("# [{}] left out: it failed ({})\n", entry.n, how.join(", ")));
            continue;
        }
        let block = match &entry.item {
            HistoryItem::Cell { code } => format!("{}\n{}", header(entry, "cell"), guarded(entry, code)),
            HistoryItem::Run { filename, code } => {
                format!(
                    "{}\n{}",
                    header(entry, &format!("mpx run {filename} (inlined)")),
                    guarded(entry, code)
                )
            }
            // (A shared push is a plain np.load on each rank of the exported program.)
            HistoryItem::Push { name, source, dtype, shape, .. }
            | HistoryItem::Scatter { name, source, dtype, shape } => {
                let scatter = matches!(entry.item, HistoryItem::Scatter { .. });
                let verb = if scatter { "scatter" } else { "push" };
                let what = format!("{verb} {name}: {dtype} {shape:?}");
                match source {
                    DataSource::Memory => format!(
                        "{}\n# {name} came from a Python client's memory, which mpx does not keep: bind it \
                         here yourself.\n{name} = None  # was {dtype} {shape:?}",
                        header(entry, &what)
                    ),
                    DataSource::File { path, .. } => {
                        let rel =
                            PathBuf::from(format!("{stem}_data")).join(format!("{}_{name}.npy", entry.n));
                        data.push((PathBuf::from(path), rel.clone()));
                        let load = format!(
                            "np.load(os.path.join(os.path.dirname(os.path.abspath(__file__)), {:?}))",
                            rel.display().to_string()
                        );
                        let ranks = if entry.all {
                            "_comm.size".to_string()
                        } else {
                            entry.engines.len().to_string()
                        };
                        let code = if scatter {
                            let index = if entry.all {
                                "_rank".to_string()
                            } else {
                                let ids: Vec<String> =
                                    entry.engines.iter().map(|e| e.0.to_string()).collect();
                                format!("[{}].index(_rank)", ids.join(", "))
                            };
                            format!("{name} = np.array_split({load}, {ranks})[{index}]")
                        } else {
                            format!("{name} = {load}")
                        };
                        format!("{}  (from {path})\n{}", header(entry, &what), guarded(entry, &code))
                    }
                }
            }
            HistoryItem::Pull { name } => format!(
                "{}: what the client received, saved per rank\n{}",
                header(entry, &format!("pull {name}")),
                guarded(
                    entry,
                    &format!("np.save(f\"pull-{}-{name}-rank-{{_rank}}.npy\", np.asarray({name}))", entry.n)
                )
            ),
            HistoryItem::Gather { name } => {
                let comm = if entry.all {
                    "_comm".to_string()
                } else {
                    let ids: Vec<String> = entry.engines.iter().map(|e| e.0.to_string()).collect();
                    format!("_comm.Split(0 if _rank in ({},) else MPI.UNDEFINED, _rank)", ids.join(", "))
                };
                format!(
                    "{}: gathered to the lowest rank, saved as the client received it\n_g = {comm}\n\
                     if _g != MPI.COMM_NULL:\n    _parts = _g.gather(np.asarray({name}), root=0)\n    \
                     if _g.rank == 0:\n        np.save(\"gather-{}-{name}.npy\", np.concatenate(_parts))",
                    header(entry, &format!("gather {name}")),
                    entry.n
                )
            }
            HistoryItem::Apply { function } if function == "mpx_pull" => {
                format!("# [{}] left out: a pull of Python values to the client", entry.n)
            }
            HistoryItem::Apply { function } => {
                format!("# [{}] left out: a call of {function} (its arguments are not kept)", entry.n)
            }
        };
        out.push(block);
        out.push(String::new());
    }
    Ok(Export { script: out.join("\n"), data })
}

/// A job script's settings: the ranks, the Python that runs the program, the queue and the time
/// limit (when given).
#[derive(Debug, Clone, Copy)]
pub struct Job<'a> {
    /// Ranks.
    pub size: usize,
    /// The Python interpreter (`python3`, or the path of the engines' one).
    pub python: &'a str,
    /// The queue (partition).
    pub queue: Option<&'a str>,
    /// The time limit.
    pub walltime: Option<&'a str>,
}

/// A Slurm job script that runs `script` (submitted from its directory).
pub fn sbatch(script: &Path, job: Job<'_>) -> String {
    let Job { size, python, queue, walltime } = job;
    let mut s = format!("#!/bin/sh\n#SBATCH --job-name=mpx-export\n#SBATCH --ntasks={size}\n");
    if let Some(q) = queue {
        s.push_str(&format!("#SBATCH --partition={q}\n"));
    }
    if let Some(w) = walltime {
        s.push_str(&format!("#SBATCH --time={w}\n"));
    }
    s.push_str(&format!("mpirun -n {size} {python} {}\n", script.display()));
    s
}

/// A PBS (Torque-style) job script that runs `script` (submitted from its directory).
pub fn pbs(script: &Path, job: Job<'_>) -> String {
    let Job { size, python, queue, walltime } = job;
    let mut s = format!("#!/bin/sh\n#PBS -N mpx-export\n#PBS -V\n#PBS -l nodes=1:ppn={size}\n");
    if let Some(q) = queue {
        s.push_str(&format!("#PBS -q {q}\n"));
    }
    if let Some(w) = walltime {
        s.push_str(&format!("#PBS -l walltime={w}\n"));
    }
    s.push_str(&format!("cd \"${{PBS_O_WORKDIR:-.}}\"\nmpirun -n {size} {python} {}\n", script.display()));
    s
}
