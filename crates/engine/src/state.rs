//! What the engine is doing, written by the MPI thread and read by the control thread, so that
//! `mpx where` is answered even while the MPI thread blocks in a collective.

use std::{
    sync::{Arc, Mutex},
    time::Instant,
};

use mpx_messages::EngineState;

#[derive(Debug, Clone)]
struct Now {
    activity: &'static str,
    cell: Option<u64>,
    call: Option<&'static str>,
    comm: Option<String>,
    since: Instant,
}

/// The engine's current activity, shared between its two threads.
#[derive(Debug, Clone)]
pub struct Board(Arc<Mutex<Now>>);

impl Default for Board {
    fn default() -> Self {
        Board(Arc::new(Mutex::new(Now {
            activity: "idle",
            cell: None,
            call: None,
            comm: None,
            since: Instant::now(),
        })))
    }
}

impl Board {
    fn set(&self, f: impl FnOnce(&mut Now)) {
        let mut now = self.0.lock().unwrap_or_else(|e| e.into_inner());
        f(&mut now);
        now.since = Instant::now();
    }

    /// The MPI thread starts a task (`cell` = the execution count it will have).
    pub fn running(&self, cell: u64) {
        self.set(|n| {
            n.activity = "running";
            n.cell = Some(cell);
            n.call = None;
            n.comm = None;
        });
    }

    /// The MPI thread is waiting for work.
    pub fn idle(&self) {
        self.set(|n| {
            n.activity = "idle";
            n.cell = None;
            n.call = None;
            n.comm = None;
        });
    }

    /// The MPI thread enters an MPI call; the state returns to `running` when the guard drops.
    pub fn mpi(&self, call: &'static str, comm: impl Into<String>) -> MpiGuard<'_> {
        let comm = comm.into();
        self.set(|n| {
            n.activity = "mpi";
            n.call = Some(call);
            n.comm = Some(comm);
        });
        MpiGuard(self)
    }

    /// A cell (not the engine itself) enters an MPI call: noted only while a cell runs and the
    /// engine is not already inside an MPI call of its own.
    pub fn mpi_from_cell(&self, call: &'static str, comm: impl FnOnce() -> String) -> Option<MpiGuard<'_>> {
        let mut now = self.0.lock().unwrap_or_else(|e| e.into_inner());
        if now.activity != "running" {
            return None;
        }
        now.activity = "mpi";
        now.call = Some(call);
        now.comm = Some(comm());
        now.since = Instant::now();
        Some(MpiGuard(self))
    }

    /// A snapshot for the controller.
    pub fn snapshot(&self) -> EngineState {
        let now = self.0.lock().unwrap_or_else(|e| e.into_inner()).clone();
        EngineState {
            activity: now.activity.to_string(),
            cell: now.cell,
            call: now.call.map(str::to_string),
            comm: now.comm,
            seconds: now.since.elapsed().as_secs_f64(),
            detail: None,
        }
    }
}

/// Restores `running` when an MPI call returns.
pub struct MpiGuard<'a>(&'a Board);

impl Drop for MpiGuard<'_> {
    fn drop(&mut self) {
        self.0.set(|n| {
            n.activity = "running";
            n.call = None;
            n.comm = None;
        });
    }
}
