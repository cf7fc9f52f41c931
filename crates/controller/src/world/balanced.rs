//! Load-balanced tasks (ipyparallel's `LoadBalancedView`): each task of a client's
//! [`BalancedRequest`] runs on one engine among those it targets, placed by the
//! [`Scheduler`](super::scheduler::Scheduler); its result goes back alone, as soon as it ends.
//!
//! 1. A client submits tasks ([`Event::SubmitBalanced`](super::Event::SubmitBalanced)): each
//!    gets a task id from the same counter as the direct requests' tasks (an engine's reply is
//!    routed by its task id) and its own buffers; the scheduler runs it on the least loaded
//!    engine with room ([`Command::ToEngine`]), or it waits.
//! 2. The engine's reply ([`Event::EngineReply`](super::Event::EngineReply)) goes to the
//!    client ([`Command::ToClient`] with `BalancedResults`), and a waiting task takes its slot.
//! 3. Engines come and go with the world's own events: an engine is ready (its registration
//!    answer is queued), its world is dying (its engines take no more tasks; waiting tasks wait,
//!    as it may restart), its world is torn down (its tasks run again elsewhere while they have
//!    retries, else fail with `EngineDied`), the cluster stops.
//! 4. A client that goes away gives its tasks up: waiting ones are dropped, running ones'
//!    answers too.

use mpx_messages::{
    tasks::runs_alone, Arg, BalancedRequest, BalancedResult, ControllerToClient, ControllerToEngine,
    EngineId, Frame, MpxError, Outcome, Payload, Request, Targets, Task, TaskId, TaskReply, TaskRequest,
};
use tracing::debug;

use super::{
    balanced_state::BalancedTask,
    scheduler::{Decision, Pool, TaskError},
    ClientId, Command, World,
};

impl World {
    /// A client's load-balanced tasks; `buffers` are its frame's, shared by the tasks' array
    /// arguments.
    pub(super) fn submit_balanced(&mut self, client: ClientId, req: BalancedRequest, buffers: Vec<Payload>) {
        let pool = match req.targets {
            Targets::All => Pool::Any,
            Targets::List(ids) => Pool::only(ids),
        };
        for t in req.tasks {
            let (task, own) = match own_buffers(t.task, &buffers) {
                Ok(own) => own,
                Err(why) => {
                    self.balanced_result(client, BalancedResult::failed(t.id, None, why, 0), Vec::new());
                    continue;
                }
            };
            let key = self.next_task;
            self.next_task = key.next();
            let entry = BalancedTask { client, id: t.id, task, buffers: own, attempts: 0, engine: None };
            self.balanced.tasks.insert(key, entry);
            self.balanced.clients.entry(client).or_default().insert(key);
            let decisions = self.balanced.scheduler.submit(key, pool.clone(), req.retries);
            self.decide(decisions, None);
        }
    }

    /// An engine answered a load-balanced task.
    pub(super) fn balanced_reply(&mut self, engine: EngineId, reply: TaskReply, buffers: Vec<Payload>) {
        let decisions = self.balanced.scheduler.done(reply.task_id, engine);
        self.decide(decisions, Some((reply.outcome, buffers)));
    }

    /// An engine's registration answer is queued: tasks may go to it. Once its whole world is
    /// ready, no more engines are awaited for waiting tasks.
    pub(super) fn balanced_engine_ready(&mut self, engine: EngineId) {
        let Some(rank) = self.engines.get(&engine).filter(|e| e.conn.is_some()).map(|e| e.info.rank) else {
            return;
        };
        self.balanced.ranks.insert(engine, rank);
        let decisions = self.balanced.scheduler.engine_up(engine);
        self.decide(decisions, None);
        if self.world_complete(engine) {
            let decisions = self.balanced.scheduler.expect_engines(false);
            self.decide(decisions, None);
        }
    }

    /// A world is dying: its engines take no more tasks, and waiting tasks wait (it may
    /// restart).
    pub(super) fn balanced_world_dying(&mut self, engines: &[EngineId]) {
        let decisions = self.balanced.scheduler.expect_engines(true);
        self.decide(decisions, None);
        for &engine in engines {
            let decisions = self.balanced.scheduler.engine_stopping(engine);
            self.decide(decisions, None);
        }
    }

    /// Engines are gone, each with what is known of why; `restarting`: the cluster's own world
    /// comes back (waiting tasks wait for it).
    pub(super) fn balanced_engines_gone(&mut self, gone: &[(EngineId, String)], restarting: bool) {
        let decisions = self.balanced.scheduler.expect_engines(restarting);
        self.decide(decisions, None);
        let decisions = self.balanced.scheduler.engines_gone(gone.iter().map(|(e, c)| (*e, c.as_str())));
        self.decide(decisions, None);
    }

    /// A client went away: its waiting tasks are dropped, its running ones' answers too.
    pub(super) fn balanced_client_left(&mut self, client: ClientId) {
        let Some(keys) = self.balanced.clients.remove(&client) else { return };
        let keys: Vec<TaskId> = keys.into_iter().collect();
        for key in &keys {
            self.balanced.tasks.remove(key);
        }
        debug!(%client, tasks = keys.len(), "a client with load-balanced tasks left");
        let decisions = self.balanced.scheduler.cancel(&keys);
        self.decide(decisions, None);
    }

    /// Turns the scheduler's decisions into commands; `answer` is the engine's answer a
    /// [`Decision::Reply`] passes on.
    fn decide(&mut self, decisions: Vec<Decision>, mut answer: Option<(Outcome, Vec<Payload>)>) {
        for d in decisions {
            match d {
                Decision::Run { task, engine, attempt } => {
                    let Some(t) = self.balanced.tasks.get_mut(&task) else { continue };
                    t.attempts = attempt;
                    t.engine = Some(engine);
                    let request =
                        ControllerToEngine::TaskRequest(TaskRequest { task_id: task, task: t.task.clone() });
                    let frame = Frame::with_payloads(request, t.buffers.clone());
                    self.emit(Command::ToEngine { engine, frame });
                }
                Decision::Reply { task, engine } => {
                    let Some(t) = self.forget_balanced(task) else { continue };
                    let (outcome, buffers) = answer.take().unwrap_or_default();
                    let result =
                        BalancedResult { id: t.id, engine_id: Some(engine), outcome, attempts: t.attempts };
                    self.balanced_result(t.client, result, buffers);
                }
                Decision::Fail { task, error } => {
                    let Some(t) = self.forget_balanced(task) else { continue };
                    let (engine, error) = match error {
                        TaskError::EngineDied { engine, cause } => {
                            let rank = self.balanced.ranks.get(&engine).copied().unwrap_or_default();
                            (Some(engine), MpxError::EngineDied { engine, rank, cause })
                        }
                        TaskError::NoEngines(why) => (t.engine, MpxError::NoEngines { reason: why }),
                    };
                    let result = BalancedResult::failed(t.id, engine, error, t.attempts);
                    self.balanced_result(t.client, result, Vec::new());
                }
            }
        }
    }

    /// Forgets a task that ended.
    fn forget_balanced(&mut self, task: TaskId) -> Option<BalancedTask> {
        let t = self.balanced.tasks.remove(&task)?;
        if let Some(keys) = self.balanced.clients.get_mut(&t.client) {
            keys.remove(&task);
            if keys.is_empty() {
                self.balanced.clients.remove(&t.client);
            }
        }
        Some(t)
    }

    fn balanced_result(&mut self, client: ClientId, result: BalancedResult, buffers: Vec<Payload>) {
        let frame = Frame::with_payloads(ControllerToClient::BalancedResults(vec![result]), buffers);
        self.emit(Command::ToClient { client, frame });
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
