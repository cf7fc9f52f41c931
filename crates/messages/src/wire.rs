//! The messages of each channel. Each channel has one enum per direction, tagged adjacently
//! (`{"msg_type": ..., "content": ...}`), so every receiver has one exhaustive `match`.
//!
//! Every message travels as the header of a [`Frame`](crate::codec::Frame) in a session that
//! the connection's handshake opened (both sides proved the cluster key; the session is bound to
//! fresh nonces from both), numbered in sequence and MACed per hop; see [`codec`](crate::codec)
//! for the handshake, the frame layout and why recorded frames and payloads are refused.

use serde::{Deserialize, Serialize};

pub use crate::dtype::Dtype;

/// Engine id (equals the MPI rank in its world).
pub type EngineId = u32;

/// Which engines a request is for.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub enum Targets {
    /// Every registered engine.
    #[default]
    All,
    /// These engine ids.
    List(Vec<EngineId>),
}

impl Targets {
    /// The engines with ids in `range`, e.g. `Targets::range(1..3)` for engines 1 and 2.
    pub fn range(range: std::ops::Range<EngineId>) -> Targets {
        Targets::List(range.collect())
    }
}

impl From<std::ops::Range<EngineId>> for Targets {
    fn from(range: std::ops::Range<EngineId>) -> Targets {
        Targets::range(range)
    }
}

impl From<Vec<EngineId>> for Targets {
    fn from(ids: Vec<EngineId>) -> Targets {
        Targets::List(ids)
    }
}

/// Describes an array whose raw little-endian bytes travel in a buffer of the frame.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ArrayMeta {
    /// Element type.
    pub dtype: Dtype,
    /// Shape (row-major, C order); empty for a 0-d array.
    pub shape: Vec<usize>,
    /// Index of the buffer holding the bytes.
    pub buffer: usize,
}

/// One piece of a streamed array: an array larger than one chunk travels as a request (or reply)
/// without its bytes plus one `Chunk` frame per piece, each carrying one payload buffer (MACed by
/// the original sender together with its binding, the stream's origin and the chunk's number;
/// checked by the final receiver, which takes each chunk only in its place), in order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Chunk {
    /// The stream: the request id between client and controller, the task id between
    /// controller and engine.
    pub stream: u64,
    /// Where the chunk's bytes go in the array (byte offset).
    pub offset: u64,
    /// Bytes of the whole array.
    pub total: u64,
}

/// An argument of [`Task::Apply`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum Arg {
    /// A float.
    Float(f64),
    /// An integer.
    Int(i64),
    /// A boolean.
    Bool(bool),
    /// A string.
    Str(String),
    /// An array in a buffer of the frame.
    Array(ArrayMeta),
}

/// The work an engine is asked to do.
///
/// For the collective kinds, `group` lists the engines taking part, lowest first; the lowest
/// is the root, and only the root's frame carries the array bytes. A client leaves `group`
/// (and `rows`) empty: the controller fills them in from the targets.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", content = "args")]
pub enum Task {
    /// Run a cell of code in the engine's persistent namespace.
    Execute {
        /// Source of the cell.
        code: String,
    },
    /// Run a file's code in the engine's persistent namespace, like IPython's `%run`:
    /// tracebacks name `filename`.
    Run {
        /// Source of the file.
        code: String,
        /// The file's name, as the user gave it.
        filename: String,
    },
    /// Bind `name` to an array; with several engines the root broadcasts it (MPI Bcast). The
    /// bytes are in the root's frame, or, when that frame has no buffer, in [`Chunk`] frames
    /// that follow it (the same holds for [`Task::Scatter`]).
    Push {
        /// Variable name.
        name: String,
        /// The array (bytes in the root's frame).
        array: ArrayMeta,
        /// Engines taking part.
        group: Vec<EngineId>,
    },
    /// Send back the array bound to `name`.
    Pull {
        /// Variable name.
        name: String,
    },
    /// Split an array along axis 0 over the group (MPI Scatterv from the root).
    Scatter {
        /// Variable name.
        name: String,
        /// The whole array (bytes in the root's frame).
        array: ArrayMeta,
        /// Engines taking part.
        group: Vec<EngineId>,
        /// Rows for each engine of the group, in group order.
        rows: Vec<usize>,
    },
    /// Concatenate `name` along axis 0 over the group (MPI Gatherv to the root, which replies
    /// with the whole array).
    Gather {
        /// Variable name.
        name: String,
        /// Engines taking part.
        group: Vec<EngineId>,
    },
    /// Call a native or cell-defined function with arguments.
    Apply {
        /// Function name.
        function: String,
        /// Arguments.
        args: Vec<Arg>,
    },
}

/// An error raised on an engine, as it travels (ipyparallel's `wrap_exception`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RemoteError {
    /// Error class, e.g. `RuntimeError`, `ParseError`, `EngineDied`.
    pub ename: String,
    /// Human-readable message.
    pub evalue: String,
    /// 1-based line of the cell where it happened, when known.
    pub line: Option<usize>,
    /// The kernel's traceback (Python: the `File "<cell-N>", line L, in f` lines with their
    /// source), empty when the kernel has none.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub traceback: String,
}

impl RemoteError {
    /// An error without a line or traceback.
    pub fn new(ename: impl Into<String>, evalue: impl Into<String>) -> Self {
        RemoteError { ename: ename.into(), evalue: evalue.into(), line: None, traceback: String::new() }
    }
}

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
    pub error: Option<RemoteError>,
    /// An array sent back (pull, gather, apply), its bytes in a buffer of the frame.
    pub array: Option<ArrayMeta>,
    /// The engine's execution counter after this request.
    pub execution_count: u64,
    /// When the engine started the work (seconds since the Unix epoch).
    pub started: f64,
    /// When the engine finished the work (seconds since the Unix epoch).
    pub completed: f64,
}

/// One rank of a world, as rank 0 reports it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RankInfo {
    /// Rank in the world.
    pub rank: u32,
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
    pub rank: u32,
    /// Size of the engine's MPI world.
    pub size: u32,
    /// Process id of the engine.
    pub pid: u32,
    /// Host the engine runs on.
    pub hostname: String,
    /// From rank 0: every rank of the world.
    pub world: Vec<RankInfo>,
    /// From the other ranks: the engine set their world was given.
    pub set: Option<u32>,
}

/// The controller's answer to a registration.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RegisterReply {
    /// Id given to the engine, or `None` when refused.
    pub engine_id: Option<EngineId>,
    /// The cluster id.
    pub cluster_id: String,
    /// Why the registration was refused.
    pub error: Option<String>,
    /// The controller's heartbeat period in milliseconds (0: none); an engine that hears no
    /// ping for 3 periods considers the controller gone and exits.
    pub heartbeat_ms: u64,
    /// The engine set of the world (to rank 0).
    pub set: Option<u32>,
}

/// A unit of work for one engine.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TaskRequest {
    /// Controller-wide id of this task.
    pub task_id: u64,
    /// What to do.
    pub task: Task,
}

/// An engine's answer to a [`TaskRequest`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TaskReply {
    /// Id of the task answered.
    pub task_id: u64,
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
        req: u64,
        /// The engine's state.
        state: EngineState,
    },
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
        task_id: u64,
        /// Why.
        reason: String,
    },
    /// Report the engine's state.
    StatusRequest {
        /// Id echoed in the answer.
        req: u64,
    },
}

/// A request from a client to run a task on engines.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SubmitRequest {
    /// Client-chosen id, echoed in every reply about this request.
    pub req_id: u64,
    /// Engines to run on.
    pub targets: Targets,
    /// The work.
    pub task: Task,
}

/// The controller's acceptance (or refusal) of a [`SubmitRequest`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SubmitReply {
    /// Id of the request.
    pub req_id: u64,
    /// Engines that will each send a [`TaskResult`], in id order; empty when refused.
    pub engines: Vec<EngineId>,
    /// Why the request was refused (unknown engine, no engines, ...).
    pub error: Option<String>,
}

/// One engine's result for a client request.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TaskResult {
    /// Id of the client request.
    pub req_id: u64,
    /// Engine that answered.
    pub engine_id: EngineId,
    /// What happened there.
    pub outcome: Outcome,
}

/// A registered engine as reported to clients.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EngineInfo {
    /// Engine id (MPI rank).
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
    pub set: u32,
    /// Its rank in that world.
    pub rank: u32,
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
}

/// Client → controller.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "msg_type", content = "content")]
pub enum ClientToController {
    /// Ask for the cluster's state.
    InfoRequest,
    /// Run a task on engines.
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
    /// Tear the MPI world down (restarting it when the cluster was started with `--restart`).
    AbortRequest {
        /// Why, for the logs.
        reason: String,
    },
    /// Load-balanced tasks (see [`crate::tasks`]); each answered by a `BalancedResults` entry.
    BalancedRequest(crate::tasks::BalancedRequest),
}

/// Controller → client.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "msg_type", content = "content")]
pub enum ControllerToClient {
    /// Answer to [`ClientToController::InfoRequest`].
    InfoReply(ClusterInfo),
    /// Acceptance of a submission.
    SubmitReply(SubmitReply),
    /// One engine's result.
    TaskResult(TaskResult),
    /// A piece of the array of one engine's result (pull, gather), before its `TaskResult`.
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
    },
    /// Answer to a where request: each engine's state, or `None` if it did not answer in time.
    WhereReply {
        /// By engine id.
        states: Vec<(EngineId, Option<EngineState>)>,
    },
    /// The abort was carried out (or refused).
    AbortReply {
        /// Why it was refused, if it was.
        error: Option<String>,
    },
    /// Results of load-balanced tasks, as they end (see [`crate::tasks`]).
    BalancedResults(Vec<crate::tasks::BalancedResult>),
}
