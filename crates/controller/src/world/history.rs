//! The session's history (see [`mpx_messages::history`]): every accepted request is recorded
//! with its targets, each engine's outcome as its reply passes, and the world's epoch (a restart
//! of the cluster's own world begins the next). Bounded like the retained results: at most
//! [`HISTORY_ENTRIES`] entries and [`HISTORY_BYTES`] of code, the oldest go first. When an
//! entry is complete the core asks for the history to be saved ([`Command::SaveHistory`](super::command::Command::SaveHistory)), so
//! `$MPX_HOME/cluster-ID/history.json` holds it while the cluster lives.
//!
//! A leaf: it imports nothing from the core's `mod.rs`, which holds a [`History`] (and, in
//! `World`'s methods, records to it).

use std::collections::{BTreeMap, VecDeque};

use mpx_messages::{
    DataSource, EngineId, EngineOutcome, HistoryEntry, HistoryItem, MpxError, Outcome, Request, Targets,
    Ticket,
};

/// Entries kept, at most.
pub const HISTORY_ENTRIES: usize = 1000;

/// Bytes of code (cells and files) kept, at most.
pub const HISTORY_BYTES: usize = 16 << 20;

/// The history and where its entries are, by request id.
#[derive(Debug, Default)]
pub struct History {
    entries: VecDeque<HistoryEntry>,
    /// Request id → entry number, while the request runs.
    open: BTreeMap<Ticket, u64>,
    next: u64,
    bytes: usize,
    /// The world's epoch.
    pub epoch: u32,
}

fn code_bytes(item: &HistoryItem) -> usize {
    match item {
        HistoryItem::Cell { code } | HistoryItem::Run { code, .. } => code.len(),
        _ => 0,
    }
}

/// The history's form of a request (without its data).
pub fn item_of(request: &Request, source: Option<DataSource>) -> HistoryItem {
    let source = || source.clone().unwrap_or(DataSource::Memory);
    match request {
        Request::Execute { code } => HistoryItem::Cell { code: code.clone() },
        Request::Run { code, filename } => {
            HistoryItem::Run { filename: filename.clone(), code: code.clone() }
        }
        Request::Push { name, array, shared } => HistoryItem::Push {
            name: name.clone(),
            dtype: array.dtype,
            shape: array.shape.clone(),
            source: source(),
            shared: *shared,
        },
        Request::Scatter { name, array } => HistoryItem::Scatter {
            name: name.clone(),
            dtype: array.dtype,
            shape: array.shape.clone(),
            source: source(),
        },
        Request::Pull { name, .. } => HistoryItem::Pull { name: name.clone() },
        Request::Gather { name, .. } => HistoryItem::Gather { name: name.clone() },
        Request::Apply { function, .. } => HistoryItem::Apply { function: function.clone() },
    }
}

/// How an engine's reply reads in the history.
pub fn outcome_of(outcome: &Outcome) -> EngineOutcome {
    match &outcome.error {
        None => EngineOutcome::Ok,
        Some(MpxError::EngineDied { .. } | MpxError::WorldDown { .. }) => EngineOutcome::Died,
        Some(e) if e.ename() == "KeyboardInterrupt" || e.evalue().starts_with("mpx: interrupted") => {
            EngineOutcome::Interrupted
        }
        Some(e) => EngineOutcome::Error(e.ename().to_string()),
    }
}

impl History {
    /// Records accepted request `id`.
    pub fn record(&mut self, id: Ticket, item: HistoryItem, engines: Vec<EngineId>, targets: &Targets) {
        self.next += 1;
        let n = self.next;
        self.bytes += code_bytes(&item);
        let all = matches!(targets, Targets::All);
        let entry = HistoryEntry {
            n,
            epoch: self.epoch,
            item,
            engines,
            all,
            outcomes: Vec::new(),
            started: 0.0,
            completed: 0.0,
        };
        self.entries.push_back(entry);
        self.open.insert(id, n);
        while self.entries.len() > HISTORY_ENTRIES || (self.bytes > HISTORY_BYTES && self.entries.len() > 1) {
            if let Some(old) = self.entries.pop_front() {
                self.bytes -= code_bytes(&old.item);
                self.open.retain(|_, n| *n != old.n);
            }
        }
    }

    /// Records `engine`'s answer to request `id`; true when the entry became complete.
    pub fn answered(&mut self, id: Ticket, engine: EngineId, outcome: &Outcome) -> bool {
        let Some(&n) = self.open.get(&id) else { return false };
        let Some(entry) = self.entries.iter_mut().rev().find(|e| e.n == n) else { return false };
        // Kept in engine order: a binary search and an insertion (at the end, mostly), not a
        // scan and a sort per reply, which made a cell on N engines cost O(N²) here.
        match entry.outcomes.binary_search_by_key(&engine, |(e, _)| *e) {
            Ok(_) => return false,
            Err(at) => entry.outcomes.insert(at, (engine, outcome_of(outcome))),
        }
        if outcome.started > 0.0 {
            entry.started =
                if entry.started > 0.0 { entry.started.min(outcome.started) } else { outcome.started };
        }
        entry.completed = entry.completed.max(outcome.completed);
        let done = entry.done();
        if done {
            self.open.remove(&id);
        }
        done
    }

    /// Every entry kept, oldest first.
    pub fn entries(&self) -> Vec<HistoryEntry> {
        self.entries.iter().cloned().collect()
    }
}

#[cfg(test)]
mod tests {
    use mpx_messages::{EngineId, EngineOutcome, HistoryItem, Outcome, Targets, Ticket};

    use super::History;

    #[test]
    fn answers_in_any_order_are_kept_in_engine_order_once_each() {
        let mut h = History::default();
        let engines: Vec<EngineId> = (1..=6).map(EngineId).collect();
        h.record(Ticket(7), HistoryItem::Cell { code: "pass".into() }, engines.clone(), &Targets::All);
        let ok = Outcome::default();
        for id in [3, 4, 1, 6, 4, 2] {
            assert!(!h.answered(Ticket(7), EngineId(id), &ok), "complete too early at {id}");
        }
        assert!(h.answered(Ticket(7), EngineId(5), &ok), "complete after the sixth engine");
        let entry = &h.entries()[0];
        assert_eq!(entry.outcomes, engines.iter().map(|&e| (e, EngineOutcome::Ok)).collect::<Vec<_>>());
        assert!(!h.answered(Ticket(7), EngineId(5), &ok), "a closed entry takes nothing more");
    }
}
