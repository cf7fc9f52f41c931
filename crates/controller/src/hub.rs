//! `Hub` is an actor. It owns the registry of engines and the table of pending tasks, and routes
//! client submissions to engines and engine results back to the client that asked.

use std::collections::{BTreeMap, HashMap};

use actix::prelude::*;
use mpx_messages::{
    ClusterInfo, ControllerToClient, ControllerToEngine, EngineId, EngineInfo, EngineState, Frame, Outcome,
    Payload, RankInfo, RegisterRequest, RemoteError, SubmitReply, SubmitRequest, Targets, TaskReply,
    TaskRequest, TaskResult,
};
use tokio::sync::{mpsc, oneshot};
use tracing::{info, warn};

use crate::{
    balanced::{is_balanced, Balanced, ClientId},
    forward::{streamed_total, Downstream, Upstream},
    plan::{plan, Place},
    writer::Link,
};

/// A frame for an engine connection to write.
#[derive(Message)]
#[rtype(result = "()")]
pub struct ToEngine(pub Frame<ControllerToEngine>);

/// A frame for a client session to write.
#[derive(Message)]
#[rtype(result = "()")]
pub struct ToClient(pub Frame<ControllerToClient>);

struct EngineEntry {
    info: EngineInfo,
    conn: Recipient<ToEngine>,
    /// The connection's write queue (tasks go there directly, ahead of their chunks).
    link: Link<ControllerToEngine>,
}

struct PendingTask {
    client: Recipient<ToClient>,
    /// The client's write queue, for the chunks of a streamed reply.
    link: Link<ControllerToClient>,
    req_id: u64,
    engine: EngineId,
}

/// The registry of engines and pending tasks.
pub struct Hub {
    cluster_id: String,
    mpirun_pid: Option<u32>,
    engines: BTreeMap<EngineId, EngineEntry>,
    pending: HashMap<u64, PendingTask>,
    next_task: u64,
    waiters: Vec<(usize, oneshot::Sender<()>)>,
    shutdown: Option<oneshot::Sender<()>>,
    /// Deaths and aborts go to whoever runs the engines' job, if anyone does.
    events: Option<mpsc::UnboundedSender<WorldEvent>>,
    /// Set once the world is going down (stop, death, abort): later disconnections are expected.
    world_down: bool,
    wheres: HashMap<u64, PendingWhere>,
    next_where: u64,
    sets: BTreeMap<u32, EngineSet>,
    /// Load-balanced tasks.
    balanced: Balanced,
}

/// What the hub tells the runner of the engines' job.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WorldEvent {
    /// An engine's connection ended unexpectedly (with what is known).
    Died(EngineId, String),
    /// A client asked to tear the world down.
    Abort(String),
}

struct PendingWhere {
    client: Recipient<ToClient>,
    states: BTreeMap<EngineId, Option<EngineState>>,
}

/// How long `where` waits for the engines' answers.
const WHERE_WAIT: std::time::Duration = std::time::Duration::from_millis(1000);

impl Hub {
    /// A hub for the given cluster; `shutdown` fires when a client asks the cluster to stop.
    pub fn new(cluster_id: String, shutdown: oneshot::Sender<()>) -> Self {
        Hub {
            events: None,
            world_down: false,
            wheres: HashMap::new(),
            next_where: 1,
            sets: BTreeMap::new(),
            balanced: Balanced::default(),
            cluster_id,
            mpirun_pid: None,
            engines: BTreeMap::new(),
            pending: HashMap::new(),
            next_task: 1,
            waiters: Vec::new(),
            shutdown: Some(shutdown),
        }
    }

    /// Fails every pending task of the engines matching `which` with `error(engine)`.
    fn fail_pending(&mut self, which: impl Fn(EngineId) -> bool, error: impl Fn(EngineId) -> RemoteError) {
        let lost: Vec<u64> =
            self.pending.iter().filter(|(_, p)| which(p.engine)).map(|(id, _)| *id).collect();
        for task_id in lost {
            if let Some(p) = self.pending.remove(&task_id) {
                let outcome = Outcome { error: Some(error(p.engine)), ..Default::default() };
                let result = TaskResult { req_id: p.req_id, engine_id: p.engine, outcome };
                p.client.do_send(ToClient(Frame::new(ControllerToClient::TaskResult(result))));
            }
        }
    }

    fn wake_waiters(&mut self) {
        let n = self.engines.len();
        let (ready, waiting): (Vec<_>, Vec<_>) = self.waiters.drain(..).partition(|(want, _)| n >= *want);
        self.waiters = waiting;
        for (_, tx) in ready {
            let _ = tx.send(());
        }
    }

    /// Resolves the targets of a request to registered engine ids, in order.
    fn resolve(&self, targets: &Targets) -> Result<Vec<EngineId>, String> {
        let ids: Vec<EngineId> = match targets {
            Targets::All => self.engines.keys().copied().collect(),
            Targets::List(list) => {
                let mut ids = list.clone();
                ids.sort_unstable();
                ids.dedup();
                if let Some(bad) = ids.iter().find(|id| !self.engines.contains_key(id)) {
                    return Err(format!(
                        "no engine {bad} (registered: {:?})",
                        self.engines.keys().collect::<Vec<_>>()
                    ));
                }
                ids
            }
        };
        if ids.is_empty() {
            return Err("no engines are registered".into());
        }
        Ok(ids)
    }
}

impl Actor for Hub {
    type Context = Context<Self>;
}

/// An engine asks to join.
#[derive(Message)]
#[rtype(result = "Result<(EngineId, u32), String>")]
pub struct Register {
    /// What the engine said about itself.
    pub req: RegisterRequest,
    /// Where to send its work.
    pub conn: Recipient<ToEngine>,
    /// Its connection's write queue.
    pub link: Link<ControllerToEngine>,
}

/// An MPI world registered with this controller: its ids are `base..base + size`.
#[derive(Debug, Clone)]
struct EngineSet {
    base: EngineId,
    size: u32,
    ranks: BTreeMap<u32, RankInfo>,
}

/// Handler for `Register`: rank 0 registers its whole world (a new engine set, ids allocated
/// for every rank at once), the other ranks attach to it; answers (engine id, set).
impl Handler<Register> for Hub {
    type Result = Result<(EngineId, u32), String>;

    fn handle(&mut self, msg: Register, _: &mut Context<Self>) -> Self::Result {
        let req = msg.req;
        let set = match req.set {
            None if req.rank == 0 && req.world.len() == req.size as usize => {
                // The lowest free set number; ids after the last set still registered.
                let set = (0..).find(|s| !self.sets.contains_key(s)).expect("a free set number");
                let base = self.sets.values().map(|s| s.base + s.size).max().unwrap_or(0);
                let ranks = req.world.iter().map(|r| (r.rank, r.clone())).collect();
                self.sets.insert(set, EngineSet { base, size: req.size, ranks });
                info!(set, base, size = req.size, "engine set registered");
                set
            }
            None => return Err("only rank 0 registers a world, with every rank's details".into()),
            Some(set) => set,
        };
        let Some(world) = self.sets.get(&set) else {
            return Err(format!("no engine set {set}"));
        };
        if req.rank >= world.size {
            return Err(format!("rank {} is outside engine set {set} of {} ranks", req.rank, world.size));
        }
        let id = world.base + req.rank;
        if self.engines.contains_key(&id) {
            return Err(format!("engine {set}:{} is already registered", req.rank));
        }
        let detail = world.ranks.get(&req.rank);
        if detail.is_some_and(|d| d.pid != req.pid || d.hostname != req.hostname) {
            return Err(format!("engine {set}:{} does not match its world's registration", req.rank));
        }
        info!(engine = id, set, rank = req.rank, pid = req.pid, "engine attached");
        self.world_down = false;
        let info = EngineInfo {
            id,
            world_size: req.size,
            pid: req.pid,
            hostname: req.hostname,
            bytes_sent: 0,
            set,
            rank: req.rank,
        };
        self.engines.insert(id, EngineEntry { info, conn: msg.conn, link: msg.link });
        self.wake_waiters();
        Ok((id, set))
    }
}

/// An engine connection closed.
#[derive(Message)]
#[rtype(result = "()")]
pub struct EngineGone {
    /// The engine.
    pub id: EngineId,
    /// What is known about why.
    pub cause: String,
}

/// Handler for `EngineGone`: unregister; an unexpected loss goes to the job's runner, which
/// finds out how the rank died and takes the world down ([`WorldDown`]); without a runner the
/// engine's pending tasks fail at once.
impl Handler<EngineGone> for Hub {
    type Result = ();

    fn handle(&mut self, msg: EngineGone, ctx: &mut Context<Self>) {
        let Some(gone) = self.engines.remove(&msg.id) else {
            return;
        };
        if self.world_down {
            return;
        }
        warn!(engine = msg.id, cause = %msg.cause, "engine lost");
        let id = msg.id;
        match &self.events {
            Some(events) if events.send(WorldEvent::Died(id, msg.cause.clone())).is_ok() => {
                // Its world is going down: its engines take no more load-balanced tasks, and
                // their tasks wait for `WorldDown` (with the runner's account of the death) to
                // know whether the world restarts.
                self.balanced.expect_engines(true);
                self.balanced.engine_stopping(id);
                for e in self.engines.values().filter(|e| e.info.set == gone.info.set) {
                    self.balanced.engine_stopping(e.info.id);
                }
                // Fallback, should the runner never explain it.
                ctx.run_later(std::time::Duration::from_secs(5), move |hub, _| {
                    hub.balanced.expect_engines(false);
                    hub.balanced.engines_gone(&[(id, msg.cause.clone())]);
                    hub.fail_pending(|e| e == id, |e| died(e, &msg.cause));
                });
            }
            _ => {
                self.balanced.engines_gone(&[(id, msg.cause.clone())]);
                self.fail_pending(|e| e == id, |e| died(e, &msg.cause));
            }
        }
    }
}

fn died(engine: EngineId, cause: &str) -> RemoteError {
    RemoteError::new("EngineDied", format!("engine {engine} died: {cause}"))
}

/// The world is down: an engine died (`first`), a client aborted, or the job ended. Answers
/// with the engines that were registered (now told to stop and forgotten).
#[derive(Message)]
#[rtype(result = "Vec<EngineInfo>")]
pub struct WorldDown {
    /// The engine whose death took the world down, if one did.
    pub first: Option<EngineId>,
    /// How it died, or why the world went down.
    pub cause: String,
    /// Whether the world is being restarted.
    pub restarting: bool,
}

/// Handler for `WorldDown`: every pending task fails (the dead engine's with `EngineDied`,
/// the others' with `WorldDown`).
impl Handler<WorldDown> for Hub {
    type Result = MessageResult<WorldDown>;

    fn handle(&mut self, msg: WorldDown, _: &mut Context<Self>) -> Self::Result {
        self.world_down = true;
        // Load-balanced tasks of the world's engines run again where retries allow: on the
        // restarted world's engines, or they fail.
        self.balanced.expect_engines(msg.restarting);
        let torn = match msg.first {
            Some(f) => format!("the MPI world was torn down after engine {f} died ({})", msg.cause),
            None => format!("the MPI world was torn down ({})", msg.cause),
        };
        let gone: Vec<(EngineId, String)> = msg
            .first
            .map(|f| (f, msg.cause.clone()))
            .into_iter()
            // Every engine the tasks know: those whose connections closed already too.
            .chain(
                self.balanced
                    .engine_ids()
                    .into_iter()
                    .filter(|&e| Some(e) != msg.first)
                    .map(|e| (e, torn.clone())),
            )
            .collect();
        self.balanced.engines_gone(&gone);
        let note = if msg.restarting {
            "; the MPI world is being restarted (variables are lost)"
        } else {
            "; the MPI world was torn down and the cluster stops"
        };
        let first = msg.first;
        let cause = msg.cause.clone();
        self.fail_pending(
            |_| true,
            |e| match first {
                Some(f) if f == e => died(e, &format!("{cause}{note}")),
                Some(f) => RemoteError {
                    ename: "WorldDown".into(),
                    evalue: format!("engine {f} died ({cause}){note}"),
                    line: None,
                    traceback: String::new(),
                },
                None => RemoteError {
                    ename: "WorldDown".into(),
                    evalue: format!("{cause}{note}"),
                    line: None,
                    traceback: String::new(),
                },
            },
        );
        MessageResult(self.stop_engines())
    }
}

/// Where deaths and aborts are reported (set by the runner of the engines' job).
#[derive(Message)]
#[rtype(result = "()")]
pub struct SetEvents(pub mpsc::UnboundedSender<WorldEvent>);

/// Handler for `SetEvents`.
impl Handler<SetEvents> for Hub {
    type Result = ();

    fn handle(&mut self, msg: SetEvents, _: &mut Context<Self>) {
        self.events = Some(msg.0);
    }
}

/// A client asks to interrupt the running cells of some engines.
#[derive(Message)]
#[rtype(result = "Result<Vec<EngineId>, String>")]
pub struct Interrupt(pub Targets);

/// Handler for `Interrupt`.
impl Handler<Interrupt> for Hub {
    type Result = Result<Vec<EngineId>, String>;

    fn handle(&mut self, msg: Interrupt, _: &mut Context<Self>) -> Self::Result {
        let ids = self.resolve(&msg.0)?;
        for id in &ids {
            self.engines[id].conn.do_send(ToEngine(Frame::new(ControllerToEngine::Interrupt)));
        }
        Ok(ids)
    }
}

/// A client asks what every engine is doing; the answer goes to `client` within a second.
#[derive(Message)]
#[rtype(result = "()")]
pub struct Where {
    /// Where the answer goes.
    pub client: Recipient<ToClient>,
}

/// Handler for `Where`.
impl Handler<Where> for Hub {
    type Result = ();

    fn handle(&mut self, msg: Where, ctx: &mut Context<Self>) {
        let req = self.next_where;
        self.next_where += 1;
        let states = self.engines.keys().map(|&id| (id, None)).collect();
        for e in self.engines.values() {
            e.conn.do_send(ToEngine(Frame::new(ControllerToEngine::StatusRequest { req })));
        }
        self.wheres.insert(req, PendingWhere { client: msg.client, states });
        ctx.run_later(WHERE_WAIT, move |hub, _| hub.answer_where(req));
        self.answer_where_if_complete(req);
    }
}

impl Hub {
    fn answer_where_if_complete(&mut self, req: u64) {
        if self.wheres.get(&req).is_some_and(|w| w.states.values().all(Option::is_some)) {
            self.answer_where(req);
        }
    }

    fn answer_where(&mut self, req: u64) {
        if let Some(w) = self.wheres.remove(&req) {
            let states = w.states.into_iter().collect();
            w.client.do_send(ToClient(Frame::new(ControllerToClient::WhereReply { states })));
        }
    }
}

/// An engine's state, for a pending `where`.
#[derive(Message)]
#[rtype(result = "()")]
pub struct EngineStatus {
    /// The engine.
    pub id: EngineId,
    /// The `where` request.
    pub req: u64,
    /// Its state.
    pub state: EngineState,
}

/// Handler for `EngineStatus`.
impl Handler<EngineStatus> for Hub {
    type Result = ();

    fn handle(&mut self, msg: EngineStatus, _: &mut Context<Self>) {
        if let Some(slot) = self.wheres.get_mut(&msg.req).and_then(|w| w.states.get_mut(&msg.id)) {
            *slot = Some(msg.state);
        }
        self.answer_where_if_complete(msg.req);
    }
}

/// A client asks to tear the world down.
#[derive(Message)]
#[rtype(result = "Result<(), String>")]
pub struct Abort(pub String);

/// Handler for `Abort`: the runner of the job does it.
impl Handler<Abort> for Hub {
    type Result = Result<(), String>;

    fn handle(&mut self, msg: Abort, _: &mut Context<Self>) -> Self::Result {
        match &self.events {
            Some(events) if events.send(WorldEvent::Abort(msg.0)).is_ok() => Ok(()),
            _ => Err(
                "this controller did not start its engines (they were started by hand); stop them yourself"
                    .into(),
            ),
        }
    }
}

/// An engine answered a task.
#[derive(Message)]
#[rtype(result = "()")]
pub struct EngineReply {
    /// The engine.
    pub id: EngineId,
    /// Its answer.
    pub reply: TaskReply,
    /// The answer's buffers (array bytes) with their MACs, forwarded without copying or hashing.
    pub buffers: Vec<Payload>,
}

/// Handler for `EngineReply`: forward to the client that asked.
impl Handler<EngineReply> for Hub {
    type Result = ();

    fn handle(&mut self, msg: EngineReply, _: &mut Context<Self>) {
        if is_balanced(msg.reply.task_id) {
            self.balanced.reply(msg.id, msg.reply, msg.buffers);
            return;
        }
        match self.pending.remove(&msg.reply.task_id) {
            Some(p) if p.engine == msg.id => {
                let result = TaskResult { req_id: p.req_id, engine_id: msg.id, outcome: msg.reply.outcome };
                let frame = Frame::with_payloads(ControllerToClient::TaskResult(result), msg.buffers);
                p.client.do_send(ToClient(frame));
            }
            Some(p) => {
                warn!(engine = msg.id, task = msg.reply.task_id, "reply from the wrong engine dropped");
                self.pending.insert(msg.reply.task_id, p);
            }
            None => warn!(engine = msg.id, task = msg.reply.task_id, "reply to an unknown task dropped"),
        }
    }
}

/// Where the chunks of an engine's streamed reply to `task_id` go (`None`: nobody waits for it).
#[derive(Message)]
#[rtype(result = "Option<Downstream>")]
pub struct RouteOf {
    /// The engine.
    pub engine: EngineId,
    /// Its task.
    pub task_id: u64,
}

/// Handler for `RouteOf`.
impl Handler<RouteOf> for Hub {
    type Result = Option<Downstream>;

    fn handle(&mut self, msg: RouteOf, _: &mut Context<Self>) -> Self::Result {
        let p = self.pending.get(&msg.task_id).filter(|p| p.engine == msg.engine)?;
        Some(Downstream { link: p.link.clone(), req_id: p.req_id })
    }
}

/// The answer to a [`Submit`]: the reply for the client and, when the request's array streams
/// after it, where its chunks go.
pub struct Submitted {
    /// The reply.
    pub reply: SubmitReply,
    /// The root engine's task, for a streamed push or scatter.
    pub upstream: Option<Upstream>,
}

/// A client submits work.
#[derive(Message)]
#[rtype(result = "Submitted")]
pub struct Submit {
    /// The request.
    pub req: SubmitRequest,
    /// The request's buffers (array bytes) with their MACs, forwarded without copying or hashing.
    pub buffers: Vec<Payload>,
    /// Where the results go.
    pub client: Recipient<ToClient>,
    /// The client's write queue, for streamed replies.
    pub link: Link<ControllerToClient>,
}

/// Handler for `Submit`: one task per target engine.
impl Handler<Submit> for Hub {
    type Result = MessageResult<Submit>;

    fn handle(&mut self, msg: Submit, _: &mut Context<Self>) -> Self::Result {
        let req_id = msg.req.req_id;
        let streamed = streamed_total(&msg.req.task, &msg.buffers);
        let planned = self.resolve(&msg.req.targets).and_then(|ids| {
            let places: Vec<Place> = ids
                .iter()
                .map(|id| {
                    let info = &self.engines[id].info;
                    Place { engine: *id, set: info.set, rank: info.rank }
                })
                .collect();
            Ok((plan(msg.req.task, &places, msg.buffers)?, ids))
        });
        let (assignments, engines) = match planned {
            Ok(p) => p,
            Err(error) => {
                let reply = SubmitReply { req_id, engines: vec![], error: Some(error) };
                return MessageResult(Submitted { reply, upstream: None });
            }
        };
        let mut upstream = None;
        for a in assignments {
            let task_id = self.next_task;
            self.next_task += 1;
            self.pending.insert(
                task_id,
                PendingTask { client: msg.client.clone(), link: msg.link.clone(), req_id, engine: a.engine },
            );
            let entry = self.engines.get_mut(&a.engine).expect("resolved engines are registered");
            entry.info.bytes_sent += a.buffers.iter().map(|b| b.len() as u64).sum::<u64>();
            if let (Some(total), None) = (streamed, &upstream) {
                // The root (first assignment) receives the chunks.
                entry.info.bytes_sent += total;
                upstream = Some(Upstream { link: entry.link.clone(), task_id, total, next: 0 });
            }
            let request = ControllerToEngine::TaskRequest(TaskRequest { task_id, task: a.task });
            // Straight into the connection's queue: ahead of the chunks that follow.
            let _ = entry.link.write(Frame::with_payloads(request, a.buffers));
        }
        MessageResult(Submitted { reply: SubmitReply { req_id, engines, error: None }, upstream })
    }
}

/// Asks for the cluster's state.
#[derive(Message)]
#[rtype(result = "ClusterInfo")]
pub struct Info;

/// Handler for `Info`.
impl Handler<Info> for Hub {
    type Result = MessageResult<Info>;

    fn handle(&mut self, _: Info, _: &mut Context<Self>) -> Self::Result {
        MessageResult(ClusterInfo {
            cluster_id: self.cluster_id.clone(),
            engines: self.engines.values().map(|e| e.info.clone()).collect(),
            controller_pid: std::process::id(),
            mpirun_pid: self.mpirun_pid,
        })
    }
}

/// Records the pid of the mpirun started for this cluster.
#[derive(Message)]
#[rtype(result = "()")]
pub struct SetMpirunPid(pub Option<u32>);

/// Handler for `SetMpirunPid`.
impl Handler<SetMpirunPid> for Hub {
    type Result = ();

    fn handle(&mut self, msg: SetMpirunPid, _: &mut Context<Self>) {
        self.mpirun_pid = msg.0;
    }
}

/// Resolves once at least `n` engines are registered.
#[derive(Message)]
#[rtype(result = "()")]
pub struct WaitForEngines {
    /// How many.
    pub n: usize,
    /// Fired when they are there.
    pub ready: oneshot::Sender<()>,
}

/// Handler for `WaitForEngines`.
impl Handler<WaitForEngines> for Hub {
    type Result = ();

    fn handle(&mut self, msg: WaitForEngines, _: &mut Context<Self>) {
        self.waiters.push((msg.n, msg.ready));
        self.wake_waiters();
    }
}

/// A client asked the cluster to stop.
#[derive(Message)]
#[rtype(result = "()")]
pub struct RequestShutdown;

/// Handler for `RequestShutdown`: tell whoever runs the cluster.
impl Handler<RequestShutdown> for Hub {
    type Result = ();

    fn handle(&mut self, _: RequestShutdown, _: &mut Context<Self>) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
    }
}

/// Tells every engine to shut down and forgets them; answers with the engines told.
#[derive(Message)]
#[rtype(result = "Vec<EngineInfo>")]
pub struct StopEngines;

/// Handler for `StopEngines`.
impl Handler<StopEngines> for Hub {
    type Result = MessageResult<StopEngines>;

    fn handle(&mut self, _: StopEngines, _: &mut Context<Self>) -> Self::Result {
        let stopped = self.stop_engines();
        // The cluster stops: no engine will come for the tasks still waiting.
        self.balanced.expect_engines(false);
        MessageResult(stopped)
    }
}

impl Hub {
    /// Tells every engine to shut down and empties the registry (a restarted world registers
    /// afresh); returns the engines told.
    fn stop_engines(&mut self) -> Vec<EngineInfo> {
        self.world_down = true;
        let gone: Vec<(EngineId, String)> = self
            .balanced
            .engine_ids()
            .into_iter()
            .map(|e| (e, "the cluster is stopping".to_string()))
            .collect();
        self.balanced.engines_gone(&gone);
        for e in self.engines.values() {
            e.conn.do_send(ToEngine(Frame::new(ControllerToEngine::Shutdown)));
        }
        self.sets.clear();
        std::mem::take(&mut self.engines).into_values().map(|e| e.info).collect()
    }
}

/// A client submits load-balanced tasks.
#[derive(Message)]
#[rtype(result = "()")]
pub struct SubmitBalanced {
    /// The client's connection.
    pub client: ClientId,
    /// Where its results go.
    pub link: Link<ControllerToClient>,
    /// The tasks.
    pub req: mpx_messages::BalancedRequest,
    /// The frame's buffers, shared by the tasks' array arguments.
    pub buffers: Vec<Payload>,
}

/// Handler for `SubmitBalanced`: the scheduler places each task on an engine (see
/// [`crate::scheduler`]).
impl Handler<SubmitBalanced> for Hub {
    type Result = ();

    fn handle(&mut self, msg: SubmitBalanced, _: &mut Context<Self>) {
        self.balanced.submit(msg.client, msg.link, msg.req, msg.buffers);
    }
}

/// A client connection closed.
#[derive(Message)]
#[rtype(result = "()")]
pub struct ClientGone(pub ClientId);

/// Handler for `ClientGone`: its load-balanced tasks are dropped.
impl Handler<ClientGone> for Hub {
    type Result = ();

    fn handle(&mut self, msg: ClientGone, _: &mut Context<Self>) {
        self.balanced.client_gone(msg.0);
    }
}

/// An engine was told its registration succeeded: tasks may follow that answer.
#[derive(Message)]
#[rtype(result = "()")]
pub struct EngineReady(pub EngineId);

/// Handler for `EngineReady`: load-balanced tasks may go to the engine.
impl Handler<EngineReady> for Hub {
    type Result = ();

    fn handle(&mut self, msg: EngineReady, _: &mut Context<Self>) {
        let Some(entry) = self.engines.get(&msg.0) else { return };
        let set = entry.info.set;
        self.balanced.engine_up(msg.0, entry.link.clone());
        let size = self.sets.get(&set).map_or(0, |s| s.size as usize);
        if self.engines.values().filter(|e| e.info.set == set).count() == size {
            // A whole world is here: no more engines are awaited for waiting tasks.
            self.balanced.expect_engines(false);
        }
    }
}
