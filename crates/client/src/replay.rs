//! Running a session's history again after a restart (`mpx restart --replay`): the cells and
//! runs that succeeded on their targets, in order, and the pushes and scatters whose data can be
//! had again (a `.npy` file whose hash is unchanged); it stops at the first that fails and says
//! where, and lists what it could not replay.

use std::{path::Path, time::Duration};

use mpx_messages::{DataSource, EngineId, HistoryEntry, HistoryItem, Targets};

use crate::{client::Client, error::ClientError, npy};

/// A `.npy` file as a history source: its absolute path and the BLAKE3 hash of its bytes.
///
/// # Errors
/// The file cannot be read.
pub fn file_source(path: &Path) -> std::io::Result<DataSource> {
    let bytes = std::fs::read(path)?;
    let path = std::fs::canonicalize(path)?;
    Ok(DataSource::File {
        path: path.display().to_string(),
        blake3: blake3::hash(&bytes).to_hex().to_string(),
    })
}

/// The entries of the last epoch before `current` that has any: what a replay runs again.
pub fn previous_session(entries: &[HistoryEntry], current: u32) -> Vec<HistoryEntry> {
    let Some(epoch) = entries.iter().map(|e| e.epoch).filter(|&e| e < current).max() else {
        return Vec::new();
    };
    entries.iter().filter(|e| e.epoch == epoch).cloned().collect()
}

/// The entries of epoch `current` (the session since the last restart).
pub fn current_session(entries: &[HistoryEntry], current: u32) -> Vec<HistoryEntry> {
    entries.iter().filter(|e| e.epoch == current).cloned().collect()
}

/// What a replay did.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct Replayed {
    /// The history numbers run again, in order.
    pub ran: Vec<u64>,
    /// What was not replayed, and why (failed originally, a push from memory, a changed file,
    /// a pull).
    pub skipped: Vec<(u64, String)>,
    /// Where it stopped: the history number and what failed.
    pub failed: Option<(u64, String)>,
}

impl Replayed {
    /// A few lines for the user.
    pub fn summary(&self) -> String {
        let mut text = format!("replayed {} of the session's entries", self.ran.len());
        if let (Some(first), Some(last)) = (self.ran.first(), self.ran.last()) {
            text.push_str(&format!(" ([{first}]..[{last}])"));
        }
        text.push('\n');
        for (n, why) in &self.skipped {
            text.push_str(&format!("  not replayed [{n}]: {why}\n"));
        }
        if let Some((n, why)) = &self.failed {
            text.push_str(&format!("  stopped at [{n}], which failed now: {why}\n"));
        }
        text
    }
}

/// The targets an entry ran on.
fn targets_of(entry: &HistoryEntry) -> Targets {
    if entry.all {
        Targets::All
    } else {
        Targets::List(entry.engines.clone())
    }
}

/// Why an entry is not replayed, if it is not.
fn not_replayed(entry: &HistoryEntry) -> Option<String> {
    if !entry.succeeded() {
        let failed: Vec<String> = entry
            .outcomes
            .iter()
            .filter(|(_, o)| *o != mpx_messages::EngineOutcome::Ok)
            .map(|(e, o)| format!("{e}: {}", o.word()))
            .collect();
        return Some(format!("it failed then ({})", failed.join(", ")));
    }
    match &entry.item {
        HistoryItem::Push { source: DataSource::Memory, name, .. }
        | HistoryItem::Scatter { source: DataSource::Memory, name, .. } => {
            Some(format!("`{name}` came from a client's memory, which mpx does not keep"))
        }
        HistoryItem::Push { source: DataSource::File { path, blake3 }, .. }
        | HistoryItem::Scatter { source: DataSource::File { path, blake3 }, .. } => {
            match file_source(Path::new(path)) {
                Ok(DataSource::File { blake3: now, .. }) if &now == blake3 => None,
                Ok(_) => Some(format!("{path} changed since")),
                Err(e) => Some(format!("{path}: {e}")),
            }
        }
        HistoryItem::Pull { .. } | HistoryItem::Gather { .. } => Some("it only fetched data".into()),
        HistoryItem::Apply { function } => Some(format!("a call of {function} (its arguments are not kept)")),
        HistoryItem::Cell { .. } | HistoryItem::Run { .. } => None,
    }
}

/// Runs `entries` again on `client`'s engines (see the module documentation), each waiting at
/// most `timeout`.
///
/// # Errors
/// A lost connection or a refusal (e.g. an engine that no longer exists).
pub fn replay(client: &Client, entries: &[HistoryEntry], timeout: Duration) -> Result<Replayed, ClientError> {
    let mut done = Replayed::default();
    for entry in entries {
        if let Some(why) = not_replayed(entry) {
            // Entries that only fetched data need no mention.
            let fetch = matches!(&entry.item, HistoryItem::Pull { .. } | HistoryItem::Gather { .. })
                || matches!(&entry.item, HistoryItem::Apply { function } if function == "mpx_pull");
            if !fetch {
                done.skipped.push((entry.n, why));
            }
            continue;
        }
        let view = client.view(targets_of(entry));
        let pending = match &entry.item {
            HistoryItem::Cell { code } => view.execute(code)?,
            HistoryItem::Run { code, filename } => view.run(code, filename)?,
            HistoryItem::Push { name, source: source @ DataSource::File { path, .. }, shared, .. } => {
                let array = npy::read(Path::new(path)).map_err(|e| ClientError::Closed(e.to_string()))?;
                if *shared {
                    view.push_shared_from(name, &array, source.clone())?
                } else {
                    view.push_from(name, &array, source.clone())?
                }
            }
            HistoryItem::Scatter { name, source: source @ DataSource::File { path, .. }, .. } => {
                let array = npy::read(Path::new(path)).map_err(|e| ClientError::Closed(e.to_string()))?;
                view.scatter_from(name, &array, source.clone())?
            }
            _ => continue,
        };
        let results = pending.get(timeout)?;
        let failed: Vec<(EngineId, String)> = results
            .iter()
            .filter_map(|r| {
                r.outcome.error.as_ref().map(|e| (r.engine_id, format!("{}: {}", e.ename(), e.evalue())))
            })
            .collect();
        if let Some((engine, why)) = failed.first() {
            done.failed = Some((entry.n, format!("engine {engine}: {why}")));
            return Ok(done);
        }
        done.ran.push(entry.n);
    }
    Ok(done)
}
