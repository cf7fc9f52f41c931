//! `Hub` is an actor. It owns the [`World`] core and the handles on every connection: it feeds
//! the core the events of engines, clients, the runner and its own timers, and carries out the
//! commands the core returns (write to an engine or a client, close or forget a connection,
//! reap a world's processes, set a timer, ask the runner). Every decision is the core's,
//! load-balanced tasks' included, and the hub is the only one that writes what the core decides.

use std::{collections::HashMap, time::Duration};

use actix::prelude::*;
use mpx_messages::{
    ClusterInfo, ControllerToClient, ControllerToEngine, EngineId, EngineInfo, Payload, RegisterReply,
    RegisterRequest, SubmitRequest,
};
use tokio::sync::{mpsc, oneshot};
use tracing::{debug, warn};

use crate::{
    forward::{Downstream, Upstream},
    reap::reap,
    world::{scheduler::DEFAULT_DEPTH, ClientId, Command, Config, ConnId, Event, RunnerCall, World},
    writer::Link,
};

/// Closes an engine's connection (the core declared it dead).
#[derive(Message)]
#[rtype(result = "()")]
pub struct CloseConn;

/// The handles on an engine's connection.
struct EngineHandle {
    /// Its write queue (tasks go there directly, ahead of their chunks).
    link: Link<ControllerToEngine>,
    /// Its actor, to close it.
    close: Recipient<CloseConn>,
}

/// The core and the handles on every connection.
pub struct Hub {
    world: World,
    /// Connections whose registration is being answered.
    joining: HashMap<ConnId, EngineHandle>,
    engines: HashMap<EngineId, EngineHandle>,
    clients: HashMap<ClientId, Link<ControllerToClient>>,
    waiters: Vec<(usize, oneshot::Sender<()>)>,
    shutdown: Option<oneshot::Sender<()>>,
    runner: Option<mpsc::UnboundedSender<RunnerCall>>,
    /// Where the session's history is saved, if anywhere.
    history_file: Option<std::path::PathBuf>,
    /// A save of the history is scheduled.
    history_saving: bool,
}

/// What a command answers to the handler that fed the event.
#[derive(Default)]
struct Answers {
    registered: Option<RegisterReply>,
    upstream: Option<Upstream>,
    stopped: Option<Vec<EngineInfo>>,
}

/// How long the history may wait to be saved after a request completes.
const HISTORY_SAVE_DELAY: Duration = Duration::from_millis(500);

/// Grace between a torn-down world's `Shutdown` and SIGKILL to its engines left on this host.
const REAP_GRACE: Duration = Duration::from_secs(1);

impl Hub {
    /// A hub for the given cluster; `shutdown` fires when a client asks the cluster to stop.
    pub fn new(cluster_id: String, heartbeat: Duration, shutdown: oneshot::Sender<()>) -> Self {
        let config = Config {
            cluster_id,
            heartbeat,
            restart: false,
            runner: false,
            task_depth: depth_from_env(),
            controller_pid: std::process::id(),
        };
        Hub {
            world: World::new(config),
            joining: HashMap::new(),
            engines: HashMap::new(),
            clients: HashMap::new(),
            waiters: Vec::new(),
            shutdown: Some(shutdown),
            runner: None,
            history_file: None,
            history_saving: false,
        }
    }

    fn feed(&mut self, event: Event, ctx: &mut Context<Self>) -> Answers {
        let commands = self.world.handle(event);
        self.carry_out(commands, ctx)
    }

    fn carry_out(&mut self, commands: Vec<Command>, ctx: &mut Context<Self>) -> Answers {
        let mut answers = Answers::default();
        for command in commands {
            match command {
                Command::Registered { conn, reply } => {
                    if let (Some(id), Some(handle)) = (reply.engine_id, self.joining.remove(&conn)) {
                        self.engines.insert(id, handle);
                    }
                    self.joining.remove(&conn);
                    answers.registered = Some(reply);
                }
                Command::ToEngine { engine, frame } => match self.engines.get(&engine) {
                    Some(e) => {
                        let _ = e.link.write(frame);
                    }
                    None => debug!(%engine, "frame for an engine without a connection dropped"),
                },
                Command::ToClient { client, frame } => {
                    if let Some(link) = self.clients.get(&client) {
                        let _ = link.write(frame);
                    }
                }
                Command::OpenUpstream { plan, .. } => {
                    answers.upstream = self.engines.get(&plan.engine).map(|e| Upstream {
                        link: e.link.clone(),
                        task_id: plan.task_id,
                        total: plan.total,
                        next: 0,
                    });
                }
                Command::CloseEngine { engine } => {
                    if let Some(e) = self.engines.get(&engine) {
                        e.close.do_send(CloseConn);
                    }
                }
                Command::Forget { engine } => {
                    self.engines.remove(&engine);
                }
                Command::Reap { engines } => {
                    actix::spawn(reap(engines, REAP_GRACE));
                }
                Command::EnginesStopped { engines } => answers.stopped = Some(engines),
                Command::Wake { after, timer } => {
                    ctx.run_later(after, move |hub, ctx| {
                        hub.feed(Event::Timer(timer), ctx);
                    });
                }
                Command::SaveHistory if self.history_file.is_some() && !self.history_saving => {
                    // At most one write per HISTORY_SAVE_DELAY, of the history as it is then: a
                    // busy session must not serialize its whole history after every cell.
                    self.history_saving = true;
                    ctx.run_later(HISTORY_SAVE_DELAY, |hub, _| {
                        hub.history_saving = false;
                        if let Some(path) = &hub.history_file {
                            if let Err(e) = crate::files::write_history(path, &hub.world.history()) {
                                warn!(path = %path.display(), error = %e, "cannot save the session's history");
                            }
                        }
                    });
                }
                Command::SaveHistory => {}
                Command::Runner(RunnerCall::StopCluster) => {
                    if let Some(tx) = self.shutdown.take() {
                        let _ = tx.send(());
                    }
                }
                Command::Runner(call) => {
                    let sent = self.runner.as_ref().is_some_and(|r| r.send(call.clone()).is_ok());
                    if let (false, RunnerCall::ExplainDeath { engine, .. }) = (sent, call) {
                        ctx.notify(Feed(Event::DeathExplained { engine, cause: None }));
                    }
                }
            }
        }
        self.wake_waiters();
        answers
    }

    fn wake_waiters(&mut self) {
        // Counting the engines is O(N): not after every event when nobody waits.
        if self.waiters.is_empty() {
            return;
        }
        let n = self.world.launched_engines();
        let (ready, waiting): (Vec<_>, Vec<_>) = self.waiters.drain(..).partition(|(want, _)| n >= *want);
        self.waiters = waiting;
        for (_, tx) in ready {
            let _ = tx.send(());
        }
    }
}

/// The load-balanced tasks an engine holds at once: `$MPX_TASK_DEPTH`, else [`DEFAULT_DEPTH`].
fn depth_from_env() -> usize {
    std::env::var("MPX_TASK_DEPTH").ok().and_then(|v| v.parse().ok()).unwrap_or(DEFAULT_DEPTH)
}

/// How often the core hears the time (kept results past their time are dropped).
const TICK: Duration = Duration::from_secs(60);

impl Actor for Hub {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        ctx.run_interval(TICK, |act, ctx| {
            act.feed(Event::Tick { now: mpx_messages::unix_time() }, ctx);
        });
    }
}

/// An event for the core, with nothing to answer.
#[derive(Message)]
#[rtype(result = "()")]
pub struct Feed(pub Event);

/// Handler for `Feed`.
impl Handler<Feed> for Hub {
    type Result = ();

    fn handle(&mut self, msg: Feed, ctx: &mut Context<Self>) {
        self.feed(msg.0, ctx);
    }
}

/// An engine connection's registration.
#[derive(Message)]
#[rtype(result = "RegisterReply")]
pub struct Register {
    /// The connection.
    pub conn: ConnId,
    /// What the engine said about itself.
    pub req: RegisterRequest,
    /// Its write queue.
    pub link: Link<ControllerToEngine>,
    /// Its actor.
    pub close: Recipient<CloseConn>,
    /// It connected through the Unix socket (same host).
    pub local: bool,
}

/// Handler for `Register`: answers with the engine id and set, or the refusal.
impl Handler<Register> for Hub {
    type Result = MessageResult<Register>;

    fn handle(&mut self, msg: Register, ctx: &mut Context<Self>) -> Self::Result {
        self.joining.insert(msg.conn, EngineHandle { link: msg.link, close: msg.close });
        let answers = self.feed(Event::Register { conn: msg.conn, req: msg.req, local: msg.local }, ctx);
        MessageResult(answers.registered.expect("a registration is always answered"))
    }
}

/// A client connection opened: where its replies go.
#[derive(Message)]
#[rtype(result = "()")]
pub struct ClientJoined {
    /// The client.
    pub client: ClientId,
    /// Its write queue.
    pub link: Link<ControllerToClient>,
}

/// Handler for `ClientJoined`.
impl Handler<ClientJoined> for Hub {
    type Result = ();

    fn handle(&mut self, msg: ClientJoined, _: &mut Context<Self>) {
        self.clients.insert(msg.client, msg.link);
    }
}

/// A client connection closed: its results have nowhere to go.
#[derive(Message)]
#[rtype(result = "()")]
pub struct ClientLeft(pub ClientId);

/// Handler for `ClientLeft`.
impl Handler<ClientLeft> for Hub {
    type Result = ();

    fn handle(&mut self, msg: ClientLeft, ctx: &mut Context<Self>) {
        self.clients.remove(&msg.0);
        self.feed(Event::ClientLeft { client: msg.0, now: mpx_messages::unix_time() }, ctx);
    }
}

/// An engine was told its registration succeeded: tasks may follow that answer.
#[derive(Message)]
#[rtype(result = "()")]
pub struct EngineReady(pub EngineId);

/// Handler for `EngineReady`: work, load-balanced tasks included, may go to the engine.
impl Handler<EngineReady> for Hub {
    type Result = ();

    fn handle(&mut self, msg: EngineReady, ctx: &mut Context<Self>) {
        self.feed(Event::EngineReady { engine: msg.0 }, ctx);
    }
}

/// A client submits work; answers with the route of its streamed array, if it has one.
#[derive(Message)]
#[rtype(result = "Option<Upstream>")]
pub struct Submit {
    /// The client.
    pub client: ClientId,
    /// The request.
    pub req: SubmitRequest,
    /// Its buffers with their MACs, forwarded without copying or hashing.
    pub buffers: Vec<Payload>,
    /// The descriptors passed with it.
    pub fds: mpx_messages::Fds,
}

/// Handler for `Submit`.
impl Handler<Submit> for Hub {
    type Result = Option<Upstream>;

    fn handle(&mut self, msg: Submit, ctx: &mut Context<Self>) -> Self::Result {
        let Submit { client, req, buffers, fds } = msg;
        self.feed(Event::Submit { client, req, buffers, fds }, ctx).upstream
    }
}

/// Where the chunks of an engine's streamed reply to `task_id` go (`None`: nobody waits).
#[derive(Message)]
#[rtype(result = "Option<Downstream>")]
pub struct RouteOf {
    /// The engine.
    pub engine: EngineId,
    /// Its task.
    pub task_id: mpx_messages::TaskId,
}

/// Handler for `RouteOf`.
impl Handler<RouteOf> for Hub {
    type Result = Option<Downstream>;

    fn handle(&mut self, msg: RouteOf, _: &mut Context<Self>) -> Self::Result {
        let (client, req_id) = self.world.route_of(msg.engine, msg.task_id)?;
        Some(Downstream { link: self.clients.get(&client)?.clone(), req_id })
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
        MessageResult(self.world.info())
    }
}

/// The runner of the engines' job: where [`RunnerCall`]s go, and whether the cluster's own
/// world restarts when it goes down.
#[derive(Message)]
#[rtype(result = "()")]
pub struct SetRunner {
    /// Where calls go.
    pub calls: mpsc::UnboundedSender<RunnerCall>,
    /// Restart instead of stopping.
    pub restart: bool,
    /// Where the session's history is saved (see `world::history`).
    pub history_file: Option<std::path::PathBuf>,
    /// The batch job's queue and time limit, told to clients.
    pub batch: Option<mpx_messages::BatchSettings>,
}

/// Handler for `SetRunner`.
impl Handler<SetRunner> for Hub {
    type Result = ();

    fn handle(&mut self, msg: SetRunner, ctx: &mut Context<Self>) {
        self.runner = Some(msg.calls);
        self.history_file = msg.history_file;
        self.feed(Event::RunnerAttached { restart: msg.restart, batch: msg.batch }, ctx);
    }
}

/// Resolves once the cluster's own world has at least `n` engines attached (at once for 0).
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

/// Tells every engine to shut down and forgets them (the cluster stops); answers with the
/// engines told.
#[derive(Message)]
#[rtype(result = "Vec<EngineInfo>")]
pub struct StopEngines;

/// Handler for `StopEngines`.
impl Handler<StopEngines> for Hub {
    type Result = MessageResult<StopEngines>;

    fn handle(&mut self, _: StopEngines, ctx: &mut Context<Self>) -> Self::Result {
        let answers = self.feed(Event::StopEngines, ctx);
        MessageResult(answers.stopped.expect("a stop is always answered"))
    }
}
