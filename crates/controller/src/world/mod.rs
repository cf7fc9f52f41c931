//! The world core: the controller's state as a plain struct, with no actors, sockets or clocks.
//!
//! [`World`] holds the engines and their sets (one set per MPI world), the pending requests,
//! the load-balanced tasks and their [`scheduler`], the `where` polls and the state of each
//! world (up, or dying until its launcher explains a death). [`World::handle`] takes one
//! [`Event`] and returns the [`Command`]s to carry out; the `Hub` actor feeds it the events of
//! every connection and carries the commands out (it is the only one that writes to a
//! connection), and the cluster runner (`cluster.rs`) carries out the [`RunnerCall`]s (ask the
//! launcher, end or restart the job, stop the cluster).
//!
//! ```text
//!  EngineConn ──Register/Ready/Reply/Status/Gone/──────────▶ ┌───────┐ ──Registered/ToEngine/CloseEngine/──▶ engines
//!              HeartbeatMissed/Output/Blocked/...            │       │   Forget (tasks, balanced tasks too)
//!  ClientSession ──Submit/SubmitBalanced/Interrupt/Where/──▶ │ World │ ──ToClient/OpenUpstream─────────────▶ clients
//!              Abort/Restart/Shutdown/Adopt/ClientLeft       │       │   (replies, BalancedResults too)
//!  runner ──RunnerAttached/Launching/Launched/─────────────▶ │       │ ──Runner(ExplainDeath/EndWorld/──────▶ runner
//!              DeathExplained/JobEnded/StopEngines           │       │   StopCluster), EnginesStopped
//!  Hub timers ──Timer(Where/DeathReport/Stuck)/Tick────────▶ └───────┘ ──Reap, Wake, SaveHistory──────────▶ Hub
//! ```
//!
//! # Where each path reads
//! - `registry.rs`: a world registers (rank 0, every rank's details), its
//!   ranks attach; ids and set numbers.
//! - `requests.rs`: a client's request planned over its targets, the
//!   engines' replies routed back, interrupts.
//! - `balanced.rs` (its state: `balanced_state.rs`): load-balanced tasks: each runs on one
//!   targeted engine that the [`scheduler`] picks, and again elsewhere when its engine set dies
//!   (while it has retries); the scheduler hears of engines from the world's own events (ready,
//!   world dying, torn down, cluster stopping).
//! - `deaths.rs`: an engine lost (connection gone, heartbeats missed), the
//!   launcher's explanation, the teardown of one world and its restart, aborts, the cluster's stop.
//! - `wheres.rs`: `where` polls, answered when every engine has or at a deadline.
//! - [`history`]: the session's history (every request, its targets and outcomes, per epoch).
//! - [`stuck`]: ranks stuck in MPI calls told to the client, interrupted calls that
//!   restart the world, and restarts on demand.
//! - `retained.rs`: results that outlive their wait: the requests of a client that went away,
//!   kept (bounded) until a client adopts them by id (`mpx wait ID`).
//!
//! # Files
//! This file imports only leaves, files that import nothing from it: the ids (`ids.rs`), the
//! [`command`]s and [`event`]s, the state it holds ([`history`], [`retained`],
//! `balanced_state.rs`, the [`scheduler`]). The files of the paths above `impl World` and
//! import it; no import goes round in a circle (`tests/no_import_cycles.rs`).
//!
//! # Output while it happens
//! An engine's output pieces (`TaskOutput`) reach the client through its engine connection
//! (which waits for room in the client's queue, see `engine_conn.rs`), so the core sees only the
//! pieces nobody waits for any more ([`Event::EngineOutput`]): those of kept requests.
//!
//! # A death in one engine set
//! An engine set is one MPI world (one mpirun, one `COMM_WORLD`). A death tears down only the
//! dead engine's set: its pending requests fail (the dead engine's with `EngineDied`, the other
//! ranks' with `WorldDown`), its load-balanced tasks run again on other engines while they have
//! retries, its other engines are told to shut down and forgotten. Other sets keep running and
//! the cluster stays up. Only when the set is the cluster's own world (the one its launcher
//! started) does the runner end the job and then restart it (`--restart`) or stop the cluster.

use std::{
    collections::{BTreeMap, HashMap},
    time::Duration,
};

use mpx_messages::{
    ClusterInfo, EngineId, EngineInfo, HistoryEntry, HistoryItem, Outcome, PollId, Rank, RankInfo, RequestId,
    SetId, Targets, TaskId, Ticket,
};

mod balanced;
mod balanced_state;
pub mod command;
mod deaths;
pub mod event;
pub mod history;
mod ids;
mod registry;
mod requests;
pub mod retained;
pub mod scheduler;
pub mod stuck;
mod wheres;

#[cfg(test)]
mod tests;
#[cfg(test)]
mod tests_paths;
#[cfg(test)]
mod tests_stuck;
#[cfg(test)]
mod tests_tasks;

pub use command::{Command, RunnerCall, Timer, UpstreamPlan};
pub use event::Event;
pub use ids::{ClientId, ConnId};

/// Settings of the core.
#[derive(Debug, Clone)]
pub struct Config {
    /// The cluster id, told to engines.
    pub cluster_id: String,
    /// The engines' heartbeat period (zero: none), told to engines.
    pub heartbeat: Duration,
    /// Restart the cluster's own world when it goes down, instead of stopping the cluster.
    pub restart: bool,
    /// Whether a runner carries out [`RunnerCall`]s (false for a bare controller: then a
    /// client cannot abort, and a death is not explained by a launcher).
    pub runner: bool,
    /// Load-balanced tasks an engine holds at once (see [`scheduler::DEFAULT_DEPTH`]).
    pub task_depth: usize,
    /// The controller's process id, told to clients.
    pub controller_pid: u32,
}

/// Heartbeats an engine may miss in a row before it is declared dead.
pub const HEARTBEAT_MISSES: u32 = 3;

/// How long `where` waits for the engines' answers.
pub const WHERE_WAIT: Duration = Duration::from_millis(1000);

/// How long a dying world waits for the runner's explanation of the death.
pub const DEATH_REPORT_FALLBACK: Duration = Duration::from_secs(5);

/// A registered engine.
#[derive(Debug, Clone)]
struct Engine {
    info: EngineInfo,
    /// Its connection; `None` once gone while its world is being torn down.
    conn: Option<ConnId>,
}

/// An MPI world registered with this controller: its ids are `base..base + size`, rank `r`
/// is engine `base + r` (the one place that mapping is made: [`EngineSet::engine`],
/// [`EngineSet::rank`]).
#[derive(Debug, Clone)]
struct EngineSet {
    base: EngineId,
    size: u32,
    ranks: BTreeMap<Rank, RankInfo>,
    /// Set when an engine died: the world waits for the launcher's explanation, then goes down.
    dying: Option<Dying>,
}

impl EngineSet {
    /// The engine of `rank`, or `None` when the rank is outside the world.
    fn engine(&self, rank: Rank) -> Option<EngineId> {
        (rank.0 < self.size).then(|| EngineId(self.base.0 + rank.0))
    }

    /// The rank of `engine`, or `None` when it is not one of the set's engines.
    fn rank(&self, engine: EngineId) -> Option<Rank> {
        engine.0.checked_sub(self.base.0).filter(|&r| r < self.size).map(Rank)
    }

    /// Its engines' ids, in rank order.
    fn engines(&self) -> impl Iterator<Item = EngineId> {
        (self.base.0..self.base.0 + self.size).map(EngineId)
    }

    /// The id range `base..base + size` as numbers, to find room for a new set.
    fn id_range(&self) -> (u32, u32) {
        (self.base.0, self.base.0 + self.size)
    }
}

/// A world waiting for the explanation of its first death.
#[derive(Debug, Clone)]
struct Dying {
    engine: EngineId,
    cause: String,
}

/// The world the cluster's launcher runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Launched {
    /// None (engines started by hand or by `mpx cluster engines` only).
    None,
    /// The launcher is starting one: the next world to register is it.
    Expected,
    /// This set.
    Set(SetId),
}

/// One engine's share of a pending client request.
#[derive(Debug, Clone)]
struct Pending {
    /// The client waiting for it; `None` once it went away (the request is kept).
    client: Option<ClientId>,
    req_id: RequestId,
    engine: EngineId,
    /// The request's controller-wide id.
    id: Ticket,
}

/// A pending `where` poll.
#[derive(Debug, Clone)]
struct Poll {
    client: ClientId,
    states: BTreeMap<EngineId, Option<mpx_messages::EngineState>>,
}

/// The controller's state: see the [module documentation](self).
#[derive(Debug)]
pub struct World {
    config: Config,
    engines: BTreeMap<EngineId, Engine>,
    sets: BTreeMap<SetId, EngineSet>,
    /// By task id.
    pending: HashMap<TaskId, Pending>,
    /// The next task id (of a direct request's task or of a load-balanced task).
    next_task: TaskId,
    /// Load-balanced tasks.
    balanced: balanced_state::Balanced,
    /// The next request's controller-wide id.
    next_request: Ticket,
    /// Requests whose client went away.
    retained: retained::Retained,
    /// The last time an event told (seconds since the Unix epoch): the core has no clock.
    now: f64,
    polls: BTreeMap<PollId, Poll>,
    next_poll: PollId,
    launched: Launched,
    mpirun_pid: Option<u32>,
    out: Vec<Command>,
    /// The engines whose cells report a blocked MPI call.
    blocked: BTreeMap<EngineId, mpx_messages::Blocked>,
    /// By request id: how many of its tasks are pending (a request with none is not listed).
    tasks_left: HashMap<Ticket, usize>,
    /// By request id: the engines that left it while others still run, with their error's class.
    left: HashMap<Ticket, BTreeMap<EngineId, Option<String>>>,
    /// By request id: the engines its client was told are stuck.
    stuck_told: HashMap<Ticket, std::collections::BTreeSet<EngineId>>,
    /// Requests with a [`Timer::Stuck`] set.
    stuck_timers: std::collections::BTreeSet<Ticket>,
    /// The engines whose registration answer is queued (work may follow it).
    ready: std::collections::BTreeSet<EngineId>,
    /// The cluster's own world is restarting.
    restarting: bool,
    /// Clients waiting for the restart to be done.
    restart_waiters: Vec<ClientId>,
    /// The session's history.
    history: history::History,
    /// The batch job's queue and time limit, if the cluster's world is a batch job.
    batch: Option<mpx_messages::BatchSettings>,
    /// Requests waiting for the restarting world.
    deferred: Vec<(ClientId, mpx_messages::SubmitRequest, Vec<mpx_messages::Payload>, mpx_messages::Fds)>,
}

impl World {
    /// An empty world.
    pub fn new(config: Config) -> Self {
        World {
            balanced: balanced_state::Balanced::new(config.task_depth),
            config,
            engines: BTreeMap::new(),
            sets: BTreeMap::new(),
            pending: HashMap::new(),
            next_task: TaskId(1),
            next_request: Ticket(1),
            retained: retained::Retained::default(),
            now: 0.0,
            polls: BTreeMap::new(),
            next_poll: PollId(1),
            launched: Launched::None,
            mpirun_pid: None,
            out: Vec::new(),
            blocked: BTreeMap::new(),
            tasks_left: HashMap::new(),
            left: HashMap::new(),
            stuck_told: HashMap::new(),
            stuck_timers: Default::default(),
            ready: Default::default(),
            restarting: false,
            restart_waiters: Vec::new(),
            deferred: Vec::new(),
            history: history::History::default(),
            batch: None,
        }
    }

    /// Takes one event; returns what to do, in order.
    pub fn handle(&mut self, event: Event) -> Vec<Command> {
        match event {
            Event::Register { conn, req, local } => self.register(conn, req, local),
            Event::EngineReady { engine } => {
                self.ready.insert(engine);
                self.restart_done_if_complete();
                self.balanced_engine_ready(engine);
            }
            Event::EngineBlocked { engine, report } => self.engine_blocked(engine, report),
            Event::EngineUnblocked { engine, task_id } => self.engine_unblocked(engine, task_id),
            Event::EngineAbandoned { engine, report } => self.engine_abandoned(engine, report),
            Event::Restart { client, reason } => self.restart(client, reason),
            Event::History { client } => {
                let history = mpx_messages::SessionHistory {
                    epoch: self.history.epoch,
                    entries: self.history.entries(),
                };
                self.reply(client, mpx_messages::ControllerToClient::HistoryReply(history));
            }
            Event::EngineReply { engine, reply, buffers, fds } => {
                self.engine_reply(engine, reply, buffers, fds)
            }
            Event::EngineStatus { engine, poll, state } => self.engine_status(engine, poll, state),
            Event::EngineGone { engine, conn, cause } => self.engine_gone(engine, conn, cause),
            Event::HeartbeatMissed { engine, conn, missed } => self.heartbeat_missed(engine, conn, missed),
            Event::Submit { client, req, buffers, fds } => self.submit(client, req, buffers, fds),
            Event::SubmitBalanced { client, req, buffers } => self.submit_balanced(client, req, buffers),
            Event::EngineOutput { engine, output, now } => {
                self.now = now;
                self.engine_output(engine, output);
            }
            Event::ClientLeft { client, now } => {
                self.now = now;
                self.balanced_client_left(client);
                self.client_left(client);
            }
            Event::Adopt { client, req_id, id, now } => {
                self.now = now;
                self.adopt(client, req_id, id);
            }
            Event::Tick { now } => {
                self.now = now;
                self.retained.trim(now);
            }
            Event::Interrupt { client, targets } => self.interrupt(client, &targets),
            Event::Where { client } => self.start_poll(client),
            Event::Abort { client, reason } => self.abort(client, reason),
            Event::Shutdown { client } => self.shutdown(client),
            Event::RunnerAttached { restart, batch } => {
                self.config.runner = true;
                self.config.restart = restart;
                self.batch = batch;
            }
            Event::StopEngines => self.stop_engines(),
            Event::Launching => self.launched = Launched::Expected,
            Event::Launched { mpirun_pid } => self.mpirun_pid = mpirun_pid,
            Event::DeathExplained { engine, cause } => self.death_explained(engine, cause),
            Event::JobEnded { status } => self.job_ended(status),
            Event::Timer(Timer::Where(poll)) => self.answer_poll(poll),
            Event::Timer(Timer::DeathReport(engine)) => self.death_explained(engine, None),
            Event::Timer(Timer::Stuck(id)) => self.tell_stuck(id),
        }
        std::mem::take(&mut self.out)
    }

    /// The cluster's state, for clients.
    pub fn info(&self) -> ClusterInfo {
        ClusterInfo {
            cluster_id: self.config.cluster_id.clone(),
            engines: self.engines.values().map(|e| e.info.clone()).collect(),
            controller_pid: self.config.controller_pid,
            mpirun_pid: self.mpirun_pid,
            batch: self.batch.clone(),
        }
    }

    /// How many engines of the cluster's own world are attached (0 while it is not registered).
    pub fn launched_engines(&self) -> usize {
        match self.launched {
            Launched::Set(set) => self.engines.values().filter(|e| e.info.set == set).count(),
            _ => 0,
        }
    }

    /// Where the chunks of `engine`'s streamed reply to `task_id` go: the client and its
    /// request id (`None`: nobody waits for it).
    pub fn route_of(&self, engine: EngineId, task_id: TaskId) -> Option<(ClientId, RequestId)> {
        let p = self.pending.get(&task_id).filter(|p| p.engine == engine)?;
        Some((p.client?, p.req_id))
    }

    /// Whether `engine`'s world has all its engines attached.
    fn world_complete(&self, engine: EngineId) -> bool {
        let Some(set) = self.engines.get(&engine).map(|e| e.info.set) else { return false };
        let attached = self.engines.values().filter(|e| e.info.set == set && e.conn.is_some()).count();
        self.sets.get(&set).is_some_and(|s| attached == s.size as usize)
    }

    fn emit(&mut self, command: Command) {
        self.out.push(command);
    }

    /// Queues `Shutdown` for a connected engine and lets go of its connection.
    fn shut_down(&mut self, engine: EngineId, connected: bool) {
        self.ready.remove(&engine);
        if connected {
            let frame = mpx_messages::Frame::new(mpx_messages::ControllerToEngine::Shutdown);
            self.emit(Command::ToEngine { engine, frame });
        }
        self.emit(Command::Forget { engine });
    }

    /// Records an accepted request in the history.
    fn record_history(&mut self, id: Ticket, item: HistoryItem, engines: Vec<EngineId>, targets: &Targets) {
        self.history.record(id, item, engines, targets);
    }

    /// An engine's answer passes: the history notes it, and is saved once the entry is complete.
    fn history_answer(&mut self, id: Ticket, engine: EngineId, outcome: &Outcome) {
        if self.history.answered(id, engine, outcome) {
            self.emit(Command::SaveHistory);
        }
    }

    /// The history, for a client.
    pub fn history(&self) -> Vec<HistoryEntry> {
        self.history.entries()
    }
}
