//! The messages of each channel. Each channel has one enum per direction, tagged adjacently
//! (`{"msg_type": ..., "content": ...}`), so every receiver has one exhaustive `match`.
//!
//! Every message travels as the header of a [`Frame`](crate::codec::Frame) in a session that
//! the connection's handshake opened (both sides proved the cluster key; the session is bound to
//! fresh nonces from both), numbered in sequence and MACed per hop; see [`codec`](crate::codec)
//! for the handshake, the frame layout and why recorded frames and payloads are refused.
//!
//! # One request, one name per hop
//! | hop | asks | answers |
//! |---|---|---|
//! | client → controller | [`SubmitRequest`] with a [`Request`] and [`Targets`] | [`SubmitReply`] (accepted: the engines; or an [`MpxError`]), then one [`EngineReply`] per engine |
//! | controller → engine | [`TaskRequest`] with the engine's [`Task`] | [`TaskReply`] |
//!
//! What one engine did is an [`Outcome`] on both hops (the controller forwards it untouched);
//! its `error` is an [`MpxError`]. The client library keeps each `EngineReply` as an
//! `EngineResult` (the outcome with its decoded array or out-of-band return, and the time it
//! arrived).
//!
//! Every reply says whether it worked: `error: None` or the [`MpxError`]; the replies that
//! cannot fail (info, where, shutdown) have no error.

use serde::{Deserialize, Serialize};

pub use crate::dtype::Dtype;
pub use crate::{
    error::{MpxError, RemoteError},
    ids::{EngineId, PollId, Rank, RequestId, SetId, Targets, TaskId, Ticket},
    work::{Arg, ArrayMeta, Chunk, Request, Returned, ReturnedArray, Task},
};

/// Seconds since the Unix epoch: the clock of every timestamp on the wire (`Outcome`'s
/// `started`/`completed`, the client's submit and receive times).
pub fn unix_time() -> f64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs_f64()).unwrap_or(0.0)
}

/// What one engine did for one request.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
pub struct Outcome {
    /// Lines printed by the cell.
    pub stdout: String,
    /// Diagnostics printed by the engine for the cell.
    pub stderr: String,
    /// Display form of the cell's value (`Out[n]`), if any.
    pub value: Option<String>,
    /// The error, if the request failed on this engine.
    pub error: Option<MpxError>,
    /// An array sent back (pull, gather), its bytes in a buffer of the frame.
    pub array: Option<ArrayMeta>,
    /// What an apply's function returned out of band instead of a displayed value (the Python
    /// client's helper: its result pickled, the numpy arrays in it apart), its bytes in the
    /// buffers of the frame.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub returned: Option<Returned>,
    /// The engine's execution counter after this request.
    pub execution_count: u64,
    /// When the engine started the work (seconds since the Unix epoch).
    pub started: f64,
    /// When the engine finished the work (seconds since the Unix epoch).
    pub completed: f64,
    /// Tokens of memfds lent by the request's client that this engine no longer maps
    /// ([`crate::memfd::lent`]).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub released: Vec<u64>,
}

/// One rank of a world, as rank 0 reports it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RankInfo {
    /// Rank in the world.
    pub rank: Rank,
    /// Process id.
    pub pid: u32,
    /// Host name.
    pub hostname: String,
}

/// An engine's registration (first frame of its connection).
///
/// Rank 0 registers its whole world at once (`world`: every rank's details, gathered over
/// MPI); the controller answers with the world's engine set and ids, which rank 0 broadcasts.
/// Every other rank then attaches its own connection with `set`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RegisterRequest {
    /// Rank in the engine's MPI world.
    pub rank: Rank,
    /// Size of the engine's MPI world.
    pub size: u32,
    /// Process id of the engine.
    pub pid: u32,
    /// Host the engine runs on.
    pub hostname: String,
    /// From rank 0: every rank of the world.
    pub world: Vec<RankInfo>,
    /// From the other ranks: the engine set their world was given.
    pub set: Option<SetId>,
}

/// The controller's answer to a registration.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RegisterReply {
    /// Id given to the engine, or `None` when refused.
    pub engine_id: Option<EngineId>,
    /// The cluster id.
    pub cluster_id: String,
    /// Why the registration was refused.
    pub error: Option<MpxError>,
    /// The controller's heartbeat period in milliseconds (0: none); an engine that hears no
    /// ping for 3 periods considers the controller gone and exits.
    pub heartbeat_ms: u64,
    /// The engine set of the world (to rank 0).
    pub set: Option<SetId>,
}

/// A unit of work for one engine.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TaskRequest {
    /// Controller-wide id of this task.
    pub task_id: TaskId,
    /// What to do.
    pub task: Task,
}

/// An engine's answer to a [`TaskRequest`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TaskReply {
    /// Id of the task answered.
    pub task_id: TaskId,
    /// What happened.
    pub outcome: Outcome,
}

/// What an engine is doing, as its control thread sees it (answered even while MPI blocks).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EngineState {
    /// `idle`, `running` (a task) or `mpi` (inside an MPI call of a task).
    pub activity: String,
    /// The execution count of the running cell, if any.
    pub cell: Option<u64>,
    /// The MPI call, e.g. `allreduce`, when `activity` is `mpi`.
    pub call: Option<String>,
    /// The communicator of that call, e.g. `COMM_WORLD`.
    pub comm: Option<String>,
    /// Seconds since this state began.
    pub seconds: f64,
    /// Where in the cell (Python kernel): `<cell-7> line 3 in f()`, and the innermost frame
    /// when it is outside the cell.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
}

/// Engine → controller.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "msg_type", content = "content")]
pub enum EngineToController {
    /// First message of an engine connection.
    RegisterRequest(RegisterRequest),
    /// Result of a task.
    TaskReply(TaskReply),
    /// A piece of what a running task wrote to stdout or stderr (sent while it runs, before its
    /// `TaskReply`; see [`crate::output`]).
    Output(crate::TaskOutput),
    /// Answer to a heartbeat.
    Pong {
        /// The ping's sequence number.
        seq: u64,
    },
    /// A piece of an array sent back by the task `chunk.stream` (pull, gather): the reply's
    /// array meta comes in the `TaskReply` after the last chunk, with no buffer.
    Chunk(Chunk),
    /// Answer to a status request.
    Status {
        /// The request's id.
        req: PollId,
        /// The engine's state.
        state: EngineState,
    },
    /// The running cell has been inside one MPI call for a while (see [`crate::stuck`]).
    Blocked(crate::Blocked),
    /// The cell got out of the call it was reported [`Blocked`](Self::Blocked) in.
    Unblocked {
        /// The task.
        task_id: TaskId,
    },
    /// The running cell was interrupted inside an MPI call it cannot leave safely: the world
    /// must restart (see [`crate::stuck`]).
    Abandoned(crate::Abandoned),
}

/// Controller → engine.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "msg_type", content = "content")]
pub enum ControllerToEngine {
    /// Answer to the registration.
    RegisterReply(RegisterReply),
    /// Work to do.
    TaskRequest(TaskRequest),
    /// Leave the loop, finalize MPI and exit.
    Shutdown,
    /// Heartbeat; answer with a `Pong`.
    Ping {
        /// Sequence number.
        seq: u64,
    },
    /// Stop the running cell (it fails with `KeyboardInterrupt`).
    Interrupt,
    /// A piece of the array of the push or scatter task `chunk.stream`.
    Chunk(Chunk),
    /// The array of a push or scatter task will not arrive whole (its client went away or sent
    /// a bad chunk): the task fails and binds nothing.
    StreamAbort {
        /// The task.
        task_id: TaskId,
        /// Why.
        reason: String,
    },
    /// Report the engine's state.
    StatusRequest {
        /// Id echoed in the answer.
        req: PollId,
    },
}

/// A client's request for work on engines.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SubmitRequest {
    /// Client-chosen id, echoed in every reply about this request.
    pub req_id: RequestId,
    /// Engines to run on.
    pub targets: Targets,
    /// The work.
    pub request: Request,
    /// Where a push's or scatter's array came from, for the session's history (`None`: a
    /// client's memory).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source: Option<crate::history::DataSource>,
    /// A request a tool makes for itself (the console's completions, a client's helpers): not
    /// part of the user's session, so not in its history.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub internal: bool,
}

/// The controller's acceptance (or refusal) of a [`SubmitRequest`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SubmitReply {
    /// Id of the request.
    pub req_id: RequestId,
    /// Engines that will each send an [`EngineReply`], in id order; empty when refused.
    pub engines: Vec<EngineId>,
    /// Why the request was refused (unknown engine, no engines, ...).
    pub error: Option<MpxError>,
    /// The request's controller-wide id (`None`, `0` on the wire, when a submission is refused;
    /// a refused adoption names the id asked for): `mpx wait ID` fetches its result once its
    /// client went away ([`ClientToController::Adopt`]).
    #[serde(default, with = "crate::ids::ticket_or_zero")]
    pub id: Option<Ticket>,
}

/// One engine's answer to a client's request (its [`TaskReply`], forwarded).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EngineReply {
    /// Id of the client request.
    pub req_id: RequestId,
    /// Engine that answered.
    pub engine_id: EngineId,
    /// What happened there.
    pub outcome: Outcome,
}

/// A registered engine as reported to clients.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EngineInfo {
    /// Engine id.
    pub id: EngineId,
    /// Size of its MPI world.
    pub world_size: u32,
    /// Process id.
    pub pid: u32,
    /// Host name.
    pub hostname: String,
    /// Payload bytes the controller has sent to this engine over its link.
    pub bytes_sent: u64,
    /// The engine set (MPI world) it belongs to.
    pub set: SetId,
    /// Its rank in that world.
    pub rank: Rank,
    /// It is connected through the controller's Unix socket (it shares the controller's host:
    /// arrays reach it as memfds from clients there too).
    #[serde(default)]
    pub local: bool,
}

impl EngineInfo {
    /// How the engine is shown: its id, or `set:rank` when there are several sets.
    pub fn label(&self, several_sets: bool) -> String {
        if several_sets {
            format!("{}:{}", self.set, self.rank)
        } else {
            self.id.to_string()
        }
    }
}

/// The state of a cluster.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClusterInfo {
    /// Cluster id.
    pub cluster_id: String,
    /// Registered engines, by id.
    pub engines: Vec<EngineInfo>,
    /// Process id of the controller.
    pub controller_pid: u32,
    /// Process id of the mpirun the controller started, if any.
    pub mpirun_pid: Option<u32>,
    /// The batch queue and time limit of the cluster's own job (Slurm, PBS), when it has them:
    /// what an exported session's job script asks for too.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub batch: Option<BatchSettings>,
}

/// A batch job's queue and time limit (empty: the system's default).
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct BatchSettings {
    /// Queue (PBS) or partition (Slurm).
    pub queue: String,
    /// Time limit, `HH:MM:SS`.
    pub walltime: String,
}

/// Client → controller.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "msg_type", content = "content")]
pub enum ClientToController {
    /// Ask for the cluster's state.
    InfoRequest,
    /// Run a request on engines.
    SubmitRequest(SubmitRequest),
    /// A piece of the array of the push or scatter request `chunk.stream` (sent after it).
    Chunk(Chunk),
    /// Stop the whole cluster (engines, mpirun, controller).
    ShutdownRequest,
    /// Interrupt the running cells of these engines.
    InterruptRequest {
        /// Engines.
        targets: Targets,
    },
    /// Ask every engine what it is doing.
    WhereRequest,
    /// Tear the MPI worlds down: the cluster's own world restarts, any other is torn down.
    AbortRequest {
        /// Why, for the logs.
        reason: String,
    },
    /// The session's history (see [`crate::history`]): answered by a `HistoryReply`.
    HistoryRequest,
    /// Restart the cluster's own MPI world (same engine ids; variables are lost): answered by
    /// a `RestartReply` once the new world is ready.
    RestartRequest {
        /// Why, for the logs and the messages of the requests it ends.
        reason: String,
    },
    /// Load-balanced tasks (see [`crate::tasks`]); each answered by a `BalancedResults` entry.
    BalancedRequest(crate::tasks::BalancedRequest),
    /// Take over the request `id`, whose client went away before it ended (kept by the
    /// controller for a while): answered like a submission under the new `req_id` — a
    /// `SubmitReply` (refused when it is not kept), then the output and the `EngineReply`s kept
    /// so far, then the rest as it comes.
    Adopt {
        /// This client's id for it.
        req_id: RequestId,
        /// The request's controller-wide id ([`SubmitReply::id`]).
        id: Ticket,
    },
}

/// Controller → client.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "msg_type", content = "content")]
pub enum ControllerToClient {
    /// Answer to [`ClientToController::InfoRequest`].
    InfoReply(ClusterInfo),
    /// Acceptance of a submission.
    SubmitReply(SubmitReply),
    /// One engine's answer.
    EngineReply(EngineReply),
    /// A piece of what one engine wrote for a request while it runs (before its `EngineReply`).
    Output(crate::EngineOutput),
    /// A piece of the array of one engine's answer (pull, gather), before its `EngineReply`.
    Chunk {
        /// The piece (`stream` is the request id).
        chunk: Chunk,
        /// The engine it comes from.
        engine_id: EngineId,
    },
    /// The cluster is stopping; the connection closes next.
    ShutdownReply,
    /// Answer to an interrupt request: the engines told.
    InterruptReply {
        /// Engines interrupted.
        engines: Vec<EngineId>,
        /// Why none were (unknown engine, no engines).
        error: Option<MpxError>,
    },
    /// Answer to a where request: each engine's state, or `None` if it did not answer in time.
    WhereReply {
        /// By engine id.
        states: Vec<(EngineId, Option<EngineState>)>,
    },
    /// The abort was carried out (or refused).
    AbortReply {
        /// Why it was refused, if it was.
        error: Option<MpxError>,
    },
    /// Results of load-balanced tasks, as they end (see [`crate::tasks`]).
    BalancedResults(Vec<crate::tasks::BalancedResult>),
    /// Ranks of a request are stuck in MPI calls (see [`crate::stuck`]).
    Stuck(crate::Stuck),
    /// The session's history.
    HistoryReply(crate::history::SessionHistory),
    /// The restart asked for is done: the world is ready again (or why not).
    RestartReply {
        /// The engines of the new world.
        engines: Vec<EngineId>,
        /// Why it could not restart.
        error: Option<MpxError>,
    },
}
