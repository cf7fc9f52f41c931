//! What happens to the controller: the input of [`World::handle`](super::World::handle).

use mpx_messages::{
    BalancedRequest, BatchSettings, EngineId, EngineState, Fds, Payload, PollId, RegisterRequest, RequestId,
    SubmitRequest, Targets, TaskId, TaskReply, Ticket,
};

use super::{
    command::Timer,
    ids::{ClientId, ConnId},
};

/// One thing that happened, from a connection, the runner or a timer.
#[derive(Debug, Clone, PartialEq)]
pub enum Event {
    /// An engine connection's first frame: a registration.
    Register {
        /// The connection.
        conn: ConnId,
        /// What the engine said about itself.
        req: RegisterRequest,
        /// It connected through the controller's Unix socket (it shares the controller's host).
        local: bool,
    },
    /// An engine answered a task (of a direct request, or a load-balanced one).
    EngineReply {
        /// The engine.
        engine: EngineId,
        /// Its answer.
        reply: TaskReply,
        /// The answer's buffers with their MACs (forwarded untouched).
        buffers: Vec<Payload>,
        /// The descriptors passed with it (a pulled array's memfd).
        fds: Fds,
    },
    /// An engine answered a `where` poll.
    EngineStatus {
        /// The engine.
        engine: EngineId,
        /// The poll.
        poll: PollId,
        /// What it is doing.
        state: EngineState,
    },
    /// An engine's connection ended (closed, bad frame, or closed after missed heartbeats).
    EngineGone {
        /// The engine.
        engine: EngineId,
        /// Its connection (a late report about a replaced connection is ignored).
        conn: ConnId,
        /// What is known about why.
        cause: String,
    },
    /// An engine has been silent for `missed` heartbeat periods in a row.
    HeartbeatMissed {
        /// The engine.
        engine: EngineId,
        /// Its connection.
        conn: ConnId,
        /// Periods missed.
        missed: u32,
    },
    /// A client submits work.
    Submit {
        /// The client.
        client: ClientId,
        /// The request.
        req: SubmitRequest,
        /// Its buffers with their MACs (forwarded untouched).
        buffers: Vec<Payload>,
        /// The descriptors passed with it (a pushed array's memfd; only from a client on the
        /// Unix socket).
        fds: Fds,
    },
    /// A client submits load-balanced tasks: each runs on one engine of its targets (see
    /// `balanced.rs`).
    SubmitBalanced {
        /// The client.
        client: ClientId,
        /// The tasks.
        req: BalancedRequest,
        /// The frame's buffers, shared by the tasks' array arguments.
        buffers: Vec<Payload>,
    },
    /// A client asks to interrupt the running cells of some engines.
    Interrupt {
        /// The client.
        client: ClientId,
        /// The engines.
        targets: Targets,
    },
    /// An engine wrote output for a task nobody waits for on the connection's route (its
    /// client went away: the request is kept).
    EngineOutput {
        /// The engine.
        engine: EngineId,
        /// The piece.
        output: mpx_messages::TaskOutput,
        /// Seconds since the Unix epoch.
        now: f64,
    },
    /// A client's connection closed: its pending requests are kept for `mpx wait`.
    ClientLeft {
        /// The client.
        client: ClientId,
        /// Seconds since the Unix epoch.
        now: f64,
    },
    /// A client takes over a kept request.
    Adopt {
        /// The client.
        client: ClientId,
        /// Its id for the request.
        req_id: RequestId,
        /// The request's controller-wide id.
        id: Ticket,
        /// Seconds since the Unix epoch.
        now: f64,
    },
    /// The clock, now and then: kept requests past their time are dropped.
    Tick {
        /// Seconds since the Unix epoch.
        now: f64,
    },
    /// A client asks what every engine is doing.
    Where {
        /// The client.
        client: ClientId,
    },
    /// A client asks to tear the MPI worlds down (the cluster's own world restarts with
    /// `--restart`).
    Abort {
        /// The client.
        client: ClientId,
        /// Why, for the logs and the failed requests.
        reason: String,
    },
    /// A client asks the cluster to stop.
    Shutdown {
        /// The client.
        client: ClientId,
    },
    /// A runner now carries out [`RunnerCall`](super::RunnerCall)s: the cluster's own world
    /// restarts when it goes down if `restart`.
    RunnerAttached {
        /// Restart instead of stopping the cluster.
        restart: bool,
        /// The queue and time limit of its batch job, if it has one (told to clients).
        batch: Option<BatchSettings>,
    },
    /// The cluster stops: every engine is told to shut down and forgotten, answered with
    /// [`Command::EnginesStopped`](super::Command::EnginesStopped).
    StopEngines,
    /// The runner is about to start the cluster's own world: the next world that registers is it.
    Launching,
    /// The runner started it, under this mpirun (if on this machine).
    Launched {
        /// The mpirun's pid.
        mpirun_pid: Option<u32>,
    },
    /// The runner's answer to [`RunnerCall::ExplainDeath`](super::RunnerCall::ExplainDeath):
    /// how the engine died, as the launcher reported it (`None`: it did not say).
    DeathExplained {
        /// The engine.
        engine: EngineId,
        /// Signal or exit code.
        cause: Option<String>,
    },
    /// The job of the cluster's own world ended by itself.
    JobEnded {
        /// How it ended.
        status: String,
    },
    /// A timer set by [`Command::Wake`](super::Command::Wake) went off.
    Timer(Timer),
    /// An engine's cell has been in one MPI call for a while.
    EngineBlocked {
        /// The engine.
        engine: EngineId,
        /// Its report.
        report: mpx_messages::Blocked,
    },
    /// An engine's cell got out of the MPI call it was reported blocked in.
    EngineUnblocked {
        /// The engine.
        engine: EngineId,
        /// The task.
        task_id: TaskId,
    },
    /// An engine's cell was interrupted inside an MPI call it cannot leave safely.
    EngineAbandoned {
        /// The engine.
        engine: EngineId,
        /// Its report.
        report: mpx_messages::Abandoned,
    },
    /// An engine's registration answer is queued: work may follow it.
    EngineReady {
        /// The engine.
        engine: EngineId,
    },
    /// A client asks for the session's history.
    History {
        /// The client.
        client: ClientId,
    },
    /// A client asks to restart the cluster's own world.
    Restart {
        /// The client.
        client: ClientId,
        /// Why.
        reason: String,
    },
}
