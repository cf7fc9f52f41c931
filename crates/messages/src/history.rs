//! The session's history, kept by the controller: every request that reached the engines, in
//! order, with its targets and what each engine made of it. `mpx history` shows it, `mpx
//! restart --replay` runs its cells again, and `mpx export` turns it into a batch program.
//!
//! Entries are numbered from 1 for the cluster's life. Each restart of the world begins a new
//! *epoch*: replay runs again what succeeded in the epoch before.

use serde::{Deserialize, Serialize};

use crate::{dtype::Dtype, ids::EngineId};

/// Where a pushed or scattered array came from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum DataSource {
    /// A `.npy` file: its path (absolute) and the BLAKE3 hash (hex) of its contents then.
    File {
        /// The file.
        path: String,
        /// BLAKE3 of its bytes, hex.
        blake3: String,
    },
    /// A client's memory (a Python client's array): it cannot be had again.
    Memory,
}

/// What a request did, as the history keeps it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum HistoryItem {
    /// A cell.
    Cell {
        /// Its code.
        code: String,
    },
    /// `run` of a file: its text at the time.
    Run {
        /// The file's name as given.
        filename: String,
        /// Its code.
        code: String,
    },
    /// A push (the same array to every target).
    Push {
        /// The variable.
        name: String,
        /// The array's dtype.
        dtype: Dtype,
        /// Its shape.
        shape: Vec<usize>,
        /// Where it came from.
        source: DataSource,
        /// Pushed `--shared`: one read-only copy for the host's engines.
        #[serde(default, skip_serializing_if = "std::ops::Not::not")]
        shared: bool,
    },
    /// A scatter (split along axis 0 over the targets).
    Scatter {
        /// The variable.
        name: String,
        /// The whole array's dtype.
        dtype: Dtype,
        /// Its shape.
        shape: Vec<usize>,
        /// Where it came from.
        source: DataSource,
    },
    /// A pull of each target's array.
    Pull {
        /// The variable.
        name: String,
    },
    /// A gather along axis 0.
    Gather {
        /// The variable.
        name: String,
    },
    /// A call of a function.
    Apply {
        /// The function.
        function: String,
    },
}

/// What one engine made of a request.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum EngineOutcome {
    /// It worked.
    Ok,
    /// It failed with this error class (`ZeroDivisionError`).
    Error(String),
    /// It was interrupted (`KeyboardInterrupt`, or a cancelled MPI call).
    Interrupted,
    /// The engine died, or its world went down.
    Died,
}

impl EngineOutcome {
    /// A short word for tables: `ok`, the error's class, `interrupted`, `died`.
    pub fn word(&self) -> &str {
        match self {
            EngineOutcome::Ok => "ok",
            EngineOutcome::Error(e) => e,
            EngineOutcome::Interrupted => "interrupted",
            EngineOutcome::Died => "died",
        }
    }
}

/// One request of the session.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HistoryEntry {
    /// Its number (from 1).
    pub n: u64,
    /// The world's epoch it ran in (restarts count up).
    pub epoch: u32,
    /// What it did.
    pub item: HistoryItem,
    /// Its engines, in id order.
    pub engines: Vec<EngineId>,
    /// Whether it was for every engine (`Targets::All`).
    pub all: bool,
    /// Each engine's outcome, once known, in engine order.
    pub outcomes: Vec<(EngineId, EngineOutcome)>,
    /// When the first engine started it (seconds since the Unix epoch; 0 until known).
    pub started: f64,
    /// When the last engine finished it (0 until known).
    pub completed: f64,
}

impl HistoryEntry {
    /// Whether every engine answered and each one succeeded.
    pub fn succeeded(&self) -> bool {
        self.outcomes.len() == self.engines.len()
            && self.outcomes.iter().all(|(_, o)| *o == EngineOutcome::Ok)
    }

    /// Whether every engine answered.
    pub fn done(&self) -> bool {
        self.outcomes.len() == self.engines.len()
    }
}

/// The history as a client gets it.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct SessionHistory {
    /// The current world's epoch (entries of earlier epochs ran in worlds since restarted).
    pub epoch: u32,
    /// The entries kept, oldest first.
    pub entries: Vec<HistoryEntry>,
}
