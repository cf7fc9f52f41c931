//! What the controller does: the output of [`World::handle`](super::World::handle). The actors
//! carry commands out in order; engines and clients are named by id, never by handle. A
//! load-balanced task goes to its engine and its result to its client as a frame like any other
//! ([`Command::ToEngine`], [`Command::ToClient`]).

use std::time::Duration;

use mpx_messages::{
    ControllerToClient, ControllerToEngine, EngineId, EngineInfo, Frame, PollId, Rank, RegisterReply,
    RequestId, TaskId, Ticket,
};

use super::ids::{ClientId, ConnId};

/// One thing to do.
#[derive(Debug, Clone, PartialEq)]
pub enum Command {
    /// Answer an engine connection's registration; with an engine id, the connection is that
    /// engine's from now on, otherwise it is closed once the refusal is written.
    Registered {
        /// The connection.
        conn: ConnId,
        /// The answer.
        reply: RegisterReply,
    },
    /// Write a frame to an engine (straight into its connection's queue).
    ToEngine {
        /// The engine.
        engine: EngineId,
        /// The frame.
        frame: Frame<ControllerToEngine>,
    },
    /// Write a frame to a client (straight into its connection's queue).
    ToClient {
        /// The client.
        client: ClientId,
        /// The frame.
        frame: Frame<ControllerToClient>,
    },
    /// The chunks that follow a client's push or scatter go to this engine's task.
    OpenUpstream {
        /// The client.
        client: ClientId,
        /// The route.
        plan: UpstreamPlan,
    },
    /// Close an engine's connection (it missed its heartbeats).
    CloseEngine {
        /// The engine.
        engine: EngineId,
    },
    /// Let go of an engine's connection: it is no longer registered (what was queued is still
    /// written).
    Forget {
        /// The engine.
        engine: EngineId,
    },
    /// Make sure these engines end: a grace period after their `Shutdown`, then SIGKILL to
    /// those on this host (a world the cluster's launcher does not run).
    Reap {
        /// The engines.
        engines: Vec<EngineInfo>,
    },
    /// Answer the runner's [`Event::StopEngines`](super::Event::StopEngines): these engines
    /// were told to shut down and forgotten (their processes are made sure to end).
    EnginesStopped {
        /// The engines.
        engines: Vec<EngineInfo>,
    },
    /// Feed [`Event::Timer`](super::Event::Timer) with `timer` after `after`.
    Wake {
        /// The delay.
        after: Duration,
        /// What goes off.
        timer: Timer,
    },
    /// Ask the cluster runner (who owns the launcher).
    Runner(RunnerCall),
    /// Save the session's history (an entry became complete; see [`super::history`]): what
    /// [`World::history`](super::World::history) gives.
    SaveHistory,
}

/// A route for a streamed array, from a client's request to the root engine's task.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UpstreamPlan {
    /// The client's request.
    pub req_id: RequestId,
    /// The root engine.
    pub engine: EngineId,
    /// Its task.
    pub task_id: TaskId,
    /// Bytes of the whole array.
    pub total: u64,
}

/// What the cluster runner is asked to do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RunnerCall {
    /// Find out from the launcher how rank `rank` of the cluster's world died (a bounded wait),
    /// and answer with [`Event::DeathExplained`](super::Event::DeathExplained).
    ExplainDeath {
        /// The engine.
        engine: EngineId,
        /// Its rank in the launcher's world.
        rank: Rank,
    },
    /// The cluster's world is down (its requests failed, its engines told to stop and
    /// forgotten): end its job at once, then restart it or stop the cluster.
    EndWorld {
        /// The engines it had (their processes are made sure to end).
        engines: Vec<EngineInfo>,
        /// Restart the world; otherwise stop the cluster.
        restart: bool,
        /// What happened, for the log and the cluster's stop reason.
        why: String,
    },
    /// A client asked the cluster to stop.
    StopCluster,
}

/// A timer of the core.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Timer {
    /// The deadline of a `where` poll.
    Where(PollId),
    /// The deadline of the explanation of this engine's death.
    DeathReport(EngineId),
    /// Tell the client of this request which of its ranks are stuck (see [`super::stuck`]).
    Stuck(Ticket),
}
