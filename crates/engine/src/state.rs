//! What the engine is doing, written by the MPI thread and read by the control thread, so that
//! `mpx where` is answered even while the MPI thread blocks in a collective.
//!
//! The board also carries what the two threads tell each other about a cell's MPI calls (see
//! [`crate::intercept`]): the control thread asks for an interrupt ([`Board::interrupt`]), the
//! MPI thread, waiting inside a call, notices it ([`Board::interrupted`]), and it reports a call
//! it has been blocked in for a while ([`Board::blocked_for`]) or one it had to leave half way
//! ([`Board::abandon`]), which the control thread sends on ([`Board::take_reports`]).

use std::{
    sync::{
        atomic::{AtomicBool, Ordering},
        Arc, Mutex,
    },
    time::Instant,
};

use mpx_messages::{Abandoned, Blocked, EngineState, Rank, TaskId};

#[derive(Debug, Clone)]
struct Now {
    activity: &'static str,
    cell: Option<u64>,
    task: Option<TaskId>,
    call: Option<&'static str>,
    comm: Option<String>,
    since: Instant,
    /// The communicator's members and peer of the call the cell is blocked in, once known.
    blocked: Option<(Vec<Rank>, Option<Rank>)>,
    /// Whether that blocked call was reported.
    reported: bool,
    /// A reported call that returned, by task, not yet taken back.
    unblocked: Option<TaskId>,
    /// A call the cell left half way, not yet reported.
    abandoned: Option<Abandoned>,
}

#[derive(Debug)]
struct Inner {
    now: Mutex<Now>,
    /// An interrupt was asked for while the current task runs.
    interrupt: AtomicBool,
}

/// The engine's current activity, shared between its two threads.
#[derive(Debug, Clone)]
pub struct Board(Arc<Inner>);

impl Default for Board {
    fn default() -> Self {
        Board(Arc::new(Inner {
            now: Mutex::new(Now {
                activity: "idle",
                cell: None,
                task: None,
                call: None,
                comm: None,
                since: Instant::now(),
                blocked: None,
                reported: false,
                unblocked: None,
                abandoned: None,
            }),
            interrupt: AtomicBool::new(false),
        }))
    }
}

/// What the control thread should send for the running cell.
#[derive(Debug, Default)]
pub struct Reports {
    /// A call the cell is blocked in (the detail is filled in by the kernel's probe).
    pub blocked: Option<Blocked>,
    /// A call the cell left half way.
    pub abandoned: Option<Abandoned>,
    /// The task of a reported call that returned.
    pub unblocked: Option<TaskId>,
}

impl Board {
    fn lock(&self) -> std::sync::MutexGuard<'_, Now> {
        self.0.now.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn set(&self, f: impl FnOnce(&mut Now)) {
        let mut now = self.lock();
        f(&mut now);
        now.since = Instant::now();
    }

    /// The MPI thread starts task `task` (`cell` = the execution count it will have).
    pub fn running(&self, cell: u64, task: TaskId) {
        self.0.interrupt.store(false, Ordering::SeqCst);
        self.set(|n| {
            n.activity = "running";
            n.cell = Some(cell);
            n.task = Some(task);
            n.call = None;
            n.comm = None;
            n.blocked = None;
            n.reported = false;
        });
    }

    /// The MPI thread is waiting for work.
    pub fn idle(&self) {
        self.0.interrupt.store(false, Ordering::SeqCst);
        self.set(|n| {
            n.activity = "idle";
            n.cell = None;
            n.task = None;
            n.call = None;
            n.comm = None;
            n.blocked = None;
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
        let mut now = self.lock();
        if now.activity != "running" {
            return None;
        }
        now.activity = "mpi";
        now.call = Some(call);
        now.comm = Some(comm());
        now.since = Instant::now();
        now.blocked = None;
        now.reported = false;
        Some(MpiGuard(self))
    }

    /// The control thread asks to interrupt the running task; returns whether its cell is inside
    /// an MPI call (which notices the request itself: no signal must be sent then).
    pub fn interrupt(&self) -> bool {
        let now = self.lock();
        self.0.interrupt.store(true, Ordering::SeqCst);
        now.activity == "mpi" && now.call.is_some() && now.task.is_some()
    }

    /// Whether an interrupt was asked for during the running task.
    pub fn interrupted(&self) -> bool {
        self.0.interrupt.load(Ordering::Relaxed)
    }

    /// The cell has been blocked in its current MPI call long enough to report it: on a
    /// communicator of these `COMM_WORLD` ranks, waiting for `peer`.
    pub fn blocked_for(&self, members: Vec<Rank>, peer: Option<Rank>) {
        self.lock().blocked = Some((members, peer));
    }

    /// The cell left its current MPI call half way: reported to the controller, which restarts
    /// the world.
    pub fn abandon(&self) {
        let mut now = self.lock();
        let (Some(task), Some(call)) = (now.task, now.call) else { return };
        let comm = now.comm.clone().unwrap_or_default();
        now.abandoned = Some(Abandoned { task_id: task, call: call.into(), comm });
    }

    /// What the control thread has to report (each thing once).
    pub fn take_reports(&self) -> Reports {
        let mut now = self.lock();
        let abandoned = now.abandoned.take();
        let unblocked = now.unblocked.take();
        let blocked = match (&now.blocked, now.reported, now.task, now.call) {
            (Some((members, peer)), false, Some(task_id), Some(call)) => Some(Blocked {
                task_id,
                call: call.into(),
                comm: now.comm.clone().unwrap_or_default(),
                detail: None,
                members: members.clone(),
                peer: *peer,
            }),
            _ => None,
        };
        if blocked.is_some() {
            now.reported = true;
        }
        Reports { blocked, abandoned, unblocked }
    }

    /// A snapshot for the controller.
    pub fn snapshot(&self) -> EngineState {
        let now = self.lock().clone();
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
            n.blocked = None;
            if std::mem::take(&mut n.reported) {
                n.unblocked = n.task;
            }
        });
    }
}
