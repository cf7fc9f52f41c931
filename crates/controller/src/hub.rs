//! `Hub` is an actor. It owns the registry of engines and the table of pending tasks, and routes
//! client submissions to engines and engine results back to the client that asked.

use std::collections::{BTreeMap, HashMap};

use actix::prelude::*;
use bytes::Bytes;
use mpx_messages::{
    ClusterInfo, ControllerToClient, ControllerToEngine, EngineId, EngineInfo, Frame, Outcome,
    RegisterRequest, RemoteError, SubmitReply, SubmitRequest, Targets, TaskReply, TaskRequest, TaskResult,
};
use tokio::sync::oneshot;
use tracing::{info, warn};

use crate::plan::plan;

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
}

struct PendingTask {
    client: Recipient<ToClient>,
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
}

impl Hub {
    /// A hub for the given cluster; `shutdown` fires when a client asks the cluster to stop.
    pub fn new(cluster_id: String, shutdown: oneshot::Sender<()>) -> Self {
        Hub {
            cluster_id,
            mpirun_pid: None,
            engines: BTreeMap::new(),
            pending: HashMap::new(),
            next_task: 1,
            waiters: Vec::new(),
            shutdown: Some(shutdown),
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
#[rtype(result = "Result<EngineId, String>")]
pub struct Register {
    /// What the engine said about itself.
    pub req: RegisterRequest,
    /// Where to send its work.
    pub conn: Recipient<ToEngine>,
}

/// Handler for `Register`: engine id = MPI rank; a taken rank is refused.
impl Handler<Register> for Hub {
    type Result = Result<EngineId, String>;

    fn handle(&mut self, msg: Register, _: &mut Context<Self>) -> Self::Result {
        let id = msg.req.rank;
        if self.engines.contains_key(&id) {
            return Err(format!("engine id {id} is already registered"));
        }
        info!(engine = id, pid = msg.req.pid, size = msg.req.size, "engine registered");
        let info = EngineInfo {
            id,
            world_size: msg.req.size,
            pid: msg.req.pid,
            hostname: msg.req.hostname,
            bytes_sent: 0,
        };
        self.engines.insert(id, EngineEntry { info, conn: msg.conn });
        self.wake_waiters();
        Ok(id)
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

/// Handler for `EngineGone`: unregister, and fail every task still pending on it.
impl Handler<EngineGone> for Hub {
    type Result = ();

    fn handle(&mut self, msg: EngineGone, _: &mut Context<Self>) {
        if self.engines.remove(&msg.id).is_none() {
            return;
        }
        warn!(engine = msg.id, cause = %msg.cause, "engine lost");
        let lost: Vec<u64> =
            self.pending.iter().filter(|(_, p)| p.engine == msg.id).map(|(id, _)| *id).collect();
        for task_id in lost {
            if let Some(p) = self.pending.remove(&task_id) {
                let outcome = Outcome {
                    error: Some(RemoteError {
                        ename: "EngineDied".into(),
                        evalue: format!("engine {} died: {}", msg.id, msg.cause),
                        line: None,
                    }),
                    ..Default::default()
                };
                let result = TaskResult { req_id: p.req_id, engine_id: p.engine, outcome };
                p.client.do_send(ToClient(Frame::new(ControllerToClient::TaskResult(result))));
            }
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
    /// The answer's buffers (array bytes), forwarded without copying.
    pub buffers: Vec<Bytes>,
}

/// Handler for `EngineReply`: forward to the client that asked.
impl Handler<EngineReply> for Hub {
    type Result = ();

    fn handle(&mut self, msg: EngineReply, _: &mut Context<Self>) {
        match self.pending.remove(&msg.reply.task_id) {
            Some(p) if p.engine == msg.id => {
                let result = TaskResult { req_id: p.req_id, engine_id: msg.id, outcome: msg.reply.outcome };
                let frame = Frame::with_buffers(ControllerToClient::TaskResult(result), msg.buffers);
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

/// A client submits work.
#[derive(Message)]
#[rtype(result = "SubmitReply")]
pub struct Submit {
    /// The request.
    pub req: SubmitRequest,
    /// The request's buffers (array bytes), forwarded without copying.
    pub buffers: Vec<Bytes>,
    /// Where the results go.
    pub client: Recipient<ToClient>,
}

/// Handler for `Submit`: one task per target engine.
impl Handler<Submit> for Hub {
    type Result = MessageResult<Submit>;

    fn handle(&mut self, msg: Submit, _: &mut Context<Self>) -> Self::Result {
        let req_id = msg.req.req_id;
        let planned =
            self.resolve(&msg.req.targets).and_then(|ids| Ok((plan(msg.req.task, &ids, msg.buffers)?, ids)));
        let (assignments, engines) = match planned {
            Ok(p) => p,
            Err(error) => return MessageResult(SubmitReply { req_id, engines: vec![], error: Some(error) }),
        };
        for a in assignments {
            let task_id = self.next_task;
            self.next_task += 1;
            self.pending
                .insert(task_id, PendingTask { client: msg.client.clone(), req_id, engine: a.engine });
            let entry = self.engines.get_mut(&a.engine).expect("resolved engines are registered");
            entry.info.bytes_sent += a.buffers.iter().map(|b| b.len() as u64).sum::<u64>();
            let request = ControllerToEngine::TaskRequest(TaskRequest { task_id, task: a.task });
            entry.conn.do_send(ToEngine(Frame::with_buffers(request, a.buffers)));
        }
        MessageResult(SubmitReply { req_id, engines, error: None })
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

/// Tells every engine to shut down; answers with the pids of the engines told.
#[derive(Message)]
#[rtype(result = "Vec<u32>")]
pub struct StopEngines;

/// Handler for `StopEngines`.
impl Handler<StopEngines> for Hub {
    type Result = MessageResult<StopEngines>;

    fn handle(&mut self, _: StopEngines, _: &mut Context<Self>) -> Self::Result {
        let pids = self.engines.values().map(|e| e.info.pid).collect();
        for e in self.engines.values() {
            e.conn.do_send(ToEngine(Frame::new(ControllerToEngine::Shutdown)));
        }
        MessageResult(pids)
    }
}
