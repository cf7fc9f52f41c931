//! The state of the load-balanced tasks (the [`Balanced`] that [`World`](super::World) holds):
//! a leaf, importing nothing from the core's `mod.rs`; what the core does with it is in
//! `balanced.rs`.

use std::collections::{BTreeSet, HashMap};

use mpx_messages::{EngineId, Payload, Rank, Task, TaskId};

use super::{ids::ClientId, scheduler::Scheduler};

/// A load-balanced task until it ends: what to send again should its engine die.
#[derive(Debug)]
pub(super) struct BalancedTask {
    pub(super) client: ClientId,
    /// The client's id for it.
    pub(super) id: TaskId,
    pub(super) task: Task,
    pub(super) buffers: Vec<Payload>,
    pub(super) attempts: u32,
    pub(super) engine: Option<EngineId>,
}

/// The load-balanced tasks of every client and their scheduler.
#[derive(Debug)]
pub(super) struct Balanced {
    pub(super) scheduler: Scheduler,
    /// Each engine's rank, for the `EngineDied` of its tasks (kept after it is gone).
    pub(super) ranks: HashMap<EngineId, Rank>,
    /// By task id.
    pub(super) tasks: HashMap<TaskId, BalancedTask>,
    /// Each client's tasks (a client without any is not listed).
    pub(super) clients: HashMap<ClientId, BTreeSet<TaskId>>,
}

impl Balanced {
    /// No tasks, no engines; each engine holds up to `depth` tasks.
    pub(super) fn new(depth: usize) -> Self {
        Balanced {
            scheduler: Scheduler::new(depth),
            ranks: HashMap::new(),
            tasks: HashMap::new(),
            clients: HashMap::new(),
        }
    }

    /// Whether `task_id` is a load-balanced task the scheduler still counts (running, or given
    /// up by its client while it runs).
    pub(super) fn knows(&self, task_id: TaskId) -> bool {
        self.scheduler.engine_of(task_id).is_some()
    }
}
