//! `Balanced`: the hub's load-balanced tasks. It feeds the hub's events to the pure
//! [`Scheduler`] and carries out its decisions: a task's request to the engine chosen, an
//! engine's answer (or a failure) to the client that asked.
//!
//! Load-balanced task ids have [`BALANCED_BIT`] set, so an engine's answer is routed here
//! rather than to the hub's direct requests.

use std::collections::{HashMap, HashSet};

use mpx_messages::{
    tasks::runs_alone, Arg, BalancedRequest, BalancedResult, ControllerToClient, ControllerToEngine,
    EngineId, Frame, MpxError, Outcome, Payload, Rank, Request, Targets, Task, TaskReply, TaskRequest,
};
use tracing::debug;

use crate::{
    scheduler::{Decision, Pool, Scheduler, TaskError, TaskKey, DEFAULT_DEPTH},
    writer::Link,
};

/// The bit set in the task ids of load-balanced tasks.
pub const BALANCED_BIT: u64 = 1 << 63;

/// Whether `task_id` is a load-balanced task's.
pub fn is_balanced(task_id: u64) -> bool {
    task_id & BALANCED_BIT != 0
}

pub use crate::world::ClientId;

/// A task until it ends: what to send again should its engine die.
struct Pending {
    client: ClientId,
    /// The client's id for it.
    id: u64,
    task: Task,
    buffers: Vec<Payload>,
    attempts: u32,
    engine: Option<EngineId>,
}

/// The load-balanced tasks of every client, and the engines they run on.
pub struct Balanced {
    scheduler: Scheduler,
    engines: HashMap<EngineId, Link<ControllerToEngine>>,
    /// Each engine's rank, for the `EngineDied` of its tasks (kept after it is gone).
    ranks: HashMap<EngineId, Rank>,
    tasks: HashMap<TaskKey, Pending>,
    clients: HashMap<ClientId, (Link<ControllerToClient>, HashSet<TaskKey>)>,
    next: u64,
}

impl Default for Balanced {
    fn default() -> Self {
        Balanced::new(depth_from_env())
    }
}

/// The depth per engine: `$MPX_TASK_DEPTH`, else [`DEFAULT_DEPTH`].
fn depth_from_env() -> usize {
    std::env::var("MPX_TASK_DEPTH").ok().and_then(|v| v.parse().ok()).unwrap_or(DEFAULT_DEPTH)
}

impl Balanced {
    /// No tasks, no engines; each engine holds up to `depth` tasks.
    pub fn new(depth: usize) -> Self {
        Balanced {
            scheduler: Scheduler::new(depth),
            engines: HashMap::new(),
            ranks: HashMap::new(),
            tasks: HashMap::new(),
            clients: HashMap::new(),
            next: 1,
        }
    }

    /// Tasks waiting or running.
    pub fn len(&self) -> usize {
        self.tasks.len()
    }

    /// Whether no task waits or runs.
    pub fn is_empty(&self) -> bool {
        self.tasks.is_empty()
    }

    /// The engines tasks may have gone to (registered, not yet reported gone).
    pub fn engine_ids(&self) -> Vec<EngineId> {
        self.engines.keys().copied().collect()
    }

    /// An engine registered (rank `rank` of its world): tasks may go to it through `link`.
    pub fn engine_up(&mut self, engine: EngineId, rank: Rank, link: Link<ControllerToEngine>) {
        self.engines.insert(engine, link);
        self.ranks.insert(engine, rank);
        let decisions = self.scheduler.engine_up(engine);
        self.carry_out(decisions, None);
    }

    /// An engine's world is going down: it takes no more tasks.
    pub fn engine_stopping(&mut self, engine: EngineId) {
        let decisions = self.scheduler.engine_stopping(engine);
        self.carry_out(decisions, None);
    }

    /// Engines went away, each with what is known of why.
    pub fn engines_gone(&mut self, gone: &[(EngineId, String)]) {
        for (engine, _) in gone {
            self.engines.remove(engine);
        }
        let decisions = self.scheduler.engines_gone(gone.iter().map(|(e, c)| (*e, c.as_str())));
        self.carry_out(decisions, None);
    }

    /// Whether engines are expected (a world restarting): meanwhile tasks wait for them.
    pub fn expect_engines(&mut self, expecting: bool) {
        let decisions = self.scheduler.expect_engines(expecting);
        self.carry_out(decisions, None);
    }

    /// A client's tasks; `buffers` are its frame's, shared by the tasks' array arguments.
    pub fn submit(
        &mut self,
        client: ClientId,
        link: Link<ControllerToClient>,
        req: BalancedRequest,
        buffers: Vec<Payload>,
    ) {
        self.clients.entry(client).or_insert_with(|| (link, HashSet::new()));
        let pool = match req.targets {
            Targets::All => Pool::Any,
            Targets::List(ids) => Pool::only(ids),
        };
        for t in req.tasks {
            let (task, task_buffers) = match own_buffers(t.task, &buffers) {
                Ok(own) => own,
                Err(why) => {
                    self.send_result(client, BalancedResult::failed(t.id, None, why, 0), Vec::new());
                    continue;
                }
            };
            let key = BALANCED_BIT | self.next;
            self.next += 1;
            let pending =
                Pending { client, id: t.id, task, buffers: task_buffers, attempts: 0, engine: None };
            self.tasks.insert(key, pending);
            if let Some((_, keys)) = self.clients.get_mut(&client) {
                keys.insert(key);
            }
            let decisions = self.scheduler.submit(key, pool.clone(), req.retries);
            self.carry_out(decisions, None);
        }
    }

    /// An engine answered a load-balanced task (`reply.task_id` has [`BALANCED_BIT`]).
    pub fn reply(&mut self, engine: EngineId, reply: TaskReply, buffers: Vec<Payload>) {
        let decisions = self.scheduler.done(reply.task_id, engine);
        self.carry_out(decisions, Some((reply.outcome, buffers)));
    }

    /// A client went away: its waiting tasks are dropped, its running ones' answers too.
    pub fn client_gone(&mut self, client: ClientId) {
        let Some((_, keys)) = self.clients.remove(&client) else { return };
        let keys: Vec<TaskKey> = keys.into_iter().collect();
        for key in &keys {
            self.tasks.remove(key);
        }
        debug!(client, tasks = keys.len(), "a client with load-balanced tasks left");
        let decisions = self.scheduler.cancel(&keys);
        self.carry_out(decisions, None);
    }

    /// Carries out the scheduler's decisions; `answer` is the engine's answer a `Reply` passes on.
    fn carry_out(&mut self, decisions: Vec<Decision>, mut answer: Option<(Outcome, Vec<Payload>)>) {
        for d in decisions {
            match d {
                Decision::Run { task, engine, attempt } => {
                    let (Some(p), Some(link)) = (self.tasks.get_mut(&task), self.engines.get(&engine)) else {
                        continue;
                    };
                    p.attempts = attempt;
                    p.engine = Some(engine);
                    let request = TaskRequest { task_id: task, task: p.task.clone() };
                    // A closed link means the engine is going: its loss comes as an event.
                    let _ = link.write(Frame::with_payloads(
                        ControllerToEngine::TaskRequest(request),
                        p.buffers.clone(),
                    ));
                }
                Decision::Reply { task, engine } => {
                    let Some(p) = self.forget(task) else { continue };
                    let (outcome, buffers) = answer.take().unwrap_or_default();
                    let result =
                        BalancedResult { id: p.id, engine_id: Some(engine), outcome, attempts: p.attempts };
                    self.send_result(p.client, result, buffers);
                }
                Decision::Fail { task, error } => {
                    let Some(p) = self.forget(task) else { continue };
                    let (engine, error) = match error {
                        TaskError::EngineDied { engine, cause } => {
                            let rank = self.ranks.get(&engine).copied().unwrap_or_default();
                            (Some(engine), MpxError::EngineDied { engine, rank, cause })
                        }
                        TaskError::NoEngines(why) => (p.engine, MpxError::NoEngines { reason: why }),
                    };
                    let result = BalancedResult::failed(p.id, engine, error, p.attempts);
                    self.send_result(p.client, result, Vec::new());
                }
            }
        }
    }

    /// Forgets a task that ended.
    fn forget(&mut self, task: TaskKey) -> Option<Pending> {
        let p = self.tasks.remove(&task)?;
        if let Some((_, keys)) = self.clients.get_mut(&p.client) {
            keys.remove(&task);
        }
        Some(p)
    }

    fn send_result(&self, client: ClientId, result: BalancedResult, buffers: Vec<Payload>) {
        if let Some((link, _)) = self.clients.get(&client) {
            let frame = Frame::with_payloads(ControllerToClient::BalancedResults(vec![result]), buffers);
            let _ = link.write(frame);
        }
    }
}

/// The task with its own buffers (those its array arguments use, renumbered from 0), or why it
/// cannot run as a load-balanced task.
fn own_buffers(request: Request, buffers: &[Payload]) -> Result<(Task, Vec<Payload>), MpxError> {
    let refused = || {
        MpxError::refused(
            "a load-balanced task runs code on one engine (execute, run or apply); data moves and \
             collectives go to every engine of a world (a direct view)",
        )
    };
    if !runs_alone(&request) {
        return Err(refused());
    }
    let mut task = request.alone().map_err(|_| refused())?;
    let mut own = Vec::new();
    if let Task::Apply { args, .. } = &mut task {
        for arg in args.iter_mut() {
            if let Arg::Array(meta) = arg {
                let b = buffers
                    .get(meta.buffer)
                    .ok_or_else(|| MpxError::refused(format!("array buffer {} is missing", meta.buffer)))?;
                own.push(b.clone());
                meta.buffer = own.len() - 1;
            }
        }
    }
    Ok((task, own))
}
