//! `Control` is an actor on the engine's second thread. It owns the connection to the controller:
//! it registers, hands tasks to the MPI thread through the job channel, and writes the replies.
//! It never touches MPI, so it stays responsive while the MPI thread blocks in a collective.

use std::{
    collections::HashMap,
    sync::{
        mpsc::{self, Sender, SyncSender},
        Arc,
    },
    time::{Duration, Instant},
};

use actix::prelude::*;
use mpx_messages::{
    Chunk, CodecError, ControllerToEngine, EngineState, EngineToController, Fds, Frame, MpxError, Payload,
    PollId, SetId, TaskId, TaskReply,
};
use tracing::{error, info, warn};

use crate::{
    kernel::{Interrupt, Probe},
    output::{OutputBuffer, BUFFER_LIMIT},
    state::Board,
    stream::{ChunkIn, StreamIn},
    writer::Writer,
};

/// How long a status answer waits for the kernel's probe (which may wait for Python's GIL).
pub const PROBE_WAIT: Duration = Duration::from_millis(300);

/// What a probe of the running cell is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProbeFor {
    /// The status request of this poll.
    Status(PollId),
    /// The blocked report of this task.
    Blocked(TaskId),
}

/// The kernel's probe for a status request or a blocked report, answered.
#[derive(Message)]
#[rtype(result = "()")]
pub struct ProbeDone {
    /// What it was for.
    pub req: ProbeFor,
    /// Where the cell is.
    pub detail: Option<String>,
}

/// A thread that runs the kernel's [`Probe`] (it may block on the GIL, which the control
/// thread must never do) and sends the answer back as [`ProbeDone`].
pub struct Prober {
    requests: SyncSender<ProbeFor>,
}

impl Prober {
    /// Starts the thread.
    pub fn start(probe: Arc<dyn Probe>, control: Addr<Control>) -> Prober {
        let (requests, rx) = mpsc::sync_channel::<ProbeFor>(1);
        let spawned = std::thread::Builder::new().name("mpx-probe".into()).spawn(move || {
            for req in rx {
                control.do_send(ProbeDone { req, detail: probe.probe() });
            }
        });
        if let Err(e) = spawned {
            warn!(error = %e, "no probe thread: mpx where will not show cell lines");
        }
        Prober { requests }
    }

    /// Asks for a probe; false when the thread is still busy with an earlier one.
    fn ask(&self, req: ProbeFor) -> bool {
        self.requests.try_send(req).is_ok()
    }
}

/// Work for the MPI thread.
pub enum Job {
    /// Run a task and send the reply to `reply_to`.
    Task {
        /// Controller's task id.
        task_id: TaskId,
        /// The work (boxed: the job channel's items stay small).
        task: Box<mpx_messages::Task>,
        /// The request's buffers (array bytes), authenticated.
        buffers: Vec<bytes::Bytes>,
        /// The descriptors the request's frame carried (same-host path: sealed memfds, which
        /// the MPI thread checks before mapping).
        fds: Fds,
        /// Why the request's buffers were refused (a payload MAC did not match: an
        /// [`MpxError::Authentication`]): the task then fails with this error, binding nothing
        /// (collectives still agree on the failure).
        refused: Option<Box<MpxError>>,
        /// The chunks of the request's array, when it streams after the request.
        stream: Option<mpsc::Receiver<ChunkIn>>,
        /// Where the reply goes.
        reply_to: Recipient<Done>,
        /// Where the chunks of a streamed reply go.
        chunks_to: Recipient<ChunkOut>,
    },
    /// Registered as this engine id, in this engine set (`None`: the controller named none).
    Registered(mpx_messages::EngineId, Option<SetId>),
    /// Leave the job loop (with a reason when it is an error).
    Exit(Option<String>),
}

/// A finished task, from the MPI thread, with the reply's buffers and descriptors.
#[derive(Message)]
#[rtype(result = "()")]
pub struct Done(pub TaskReply, pub Vec<bytes::Bytes>, pub Fds);

/// A chunk of a streamed reply, from the MPI thread, to write.
#[derive(Message)]
#[rtype(result = "()")]
pub struct ChunkOut(pub Chunk, pub Payload);

/// The shortest silence after which an engine gives up on its controller.
pub const MIN_SILENCE: Duration = Duration::from_secs(3);

/// How long the MPI thread gets to leave on its own after the controller is lost.
pub const EXIT_GRACE: Duration = Duration::from_secs(3);

/// The control connection.
pub struct Control {
    /// What the MPI thread is doing.
    pub board: Board,
    /// Interrupts the running cell.
    pub interrupt: Arc<dyn Interrupt>,
    /// Looks inside the running cell for `mpx where` (Python kernel).
    pub prober: Option<Prober>,
    /// Status answers waiting for the probe.
    pub pending_status: HashMap<PollId, EngineState>,
    /// When the controller was last heard from.
    pub last_heard: Instant,
    /// Frames to the controller.
    pub writer: Writer,
    /// The channels of the requests whose arrays stream in, by task id.
    pub streams: HashMap<TaskId, StreamIn>,
    /// Jobs to the MPI thread.
    pub jobs: Sender<Job>,
    /// Set once the controller accepted the registration.
    pub registered: bool,
    /// What the running task writes, sent from here.
    pub output: Arc<OutputBuffer>,
    /// A blocked call's report, waiting for the probe's line.
    pub blocked_waiting: Option<mpx_messages::Blocked>,
}

/// How often the control thread looks at the board for a blocked or abandoned MPI call.
pub const REPORT_EVERY: Duration = Duration::from_millis(25);

impl Control {
    /// Tells the MPI thread to leave its job loop (and leaves anyway after [`EXIT_GRACE`]),
    /// then stops this actor.
    pub(crate) fn exit(&mut self, why: Option<String>, ctx: &mut Context<Self>) {
        let _ = self.jobs.send(Job::Exit(why));
        // If the MPI thread is stuck (e.g. in a collective another rank never joins), leave anyway:
        // the rest of the job is torn down by mpirun when this rank exits.
        let watchdog = std::thread::Builder::new().name("mpx-exit-watchdog".into()).spawn(|| {
            std::thread::sleep(EXIT_GRACE);
            error!("the MPI thread did not stop within {EXIT_GRACE:?}; exiting");
            std::process::exit(1);
        });
        if let Err(e) = watchdog {
            warn!(error = %e, "no exit watchdog: a stuck MPI thread will keep this engine alive");
        }
        ctx.stop();
    }
}

impl Control {
    /// Leaves when the controller has been silent for 3 heartbeat periods (at least
    /// [`MIN_SILENCE`]: on an oversubscribed node a rank spinning in a collective can starve
    /// this thread for a while). A controller that is gone is noticed at once by the closed
    /// connection; this catches one that hangs.
    fn watch_heartbeats(&mut self, period: Duration, ctx: &mut Context<Self>) {
        let limit = (period * 3).max(MIN_SILENCE);
        ctx.run_interval(period, move |act, ctx| {
            if act.last_heard.elapsed() > limit {
                warn!(?limit, "no heartbeat from the controller; leaving");
                act.exit(None, ctx);
            }
        });
    }
}

impl Control {
    /// Answers a status request: the board's state, with the cell's line from the probe when
    /// a cell runs (waiting at most [`PROBE_WAIT`] for it).
    fn status(&mut self, req: PollId, ctx: &mut Context<Self>) {
        let state = self.board.snapshot();
        let asked =
            state.activity != "idle" && self.prober.as_ref().is_some_and(|p| p.ask(ProbeFor::Status(req)));
        if !asked {
            self.writer.write(Frame::new(EngineToController::Status { req, state }));
            return;
        }
        self.pending_status.insert(req, state);
        ctx.run_later(PROBE_WAIT, move |act, _| {
            if let Some(mut state) = act.pending_status.remove(&req) {
                state.detail = Some("Python is busy in a call that holds the GIL".into());
                act.writer.write(Frame::new(EngineToController::Status { req, state }));
            }
        });
    }
}

impl Control {
    /// Sends what the board has to report: a call the cell left half way at once, a call it is
    /// blocked in with the cell's line from the probe (waiting at most [`PROBE_WAIT`] for it).
    fn report(&mut self, ctx: &mut Context<Self>) {
        let reports = self.board.take_reports();
        if let Some(abandoned) = reports.abandoned {
            warn!(call = %abandoned.call, comm = %abandoned.comm, "left an MPI call half way; the world must restart");
            self.writer.write(Frame::new(EngineToController::Abandoned(abandoned)));
        }
        if let Some(task_id) = reports.unblocked {
            // A report still waiting for its line is dropped instead.
            if self.blocked_waiting.take_if(|b| b.task_id == task_id).is_none() {
                self.writer.write(Frame::new(EngineToController::Unblocked { task_id }));
            }
        }
        let Some(blocked) = reports.blocked else { return };
        let task = blocked.task_id;
        if !self.prober.as_ref().is_some_and(|p| p.ask(ProbeFor::Blocked(task))) {
            self.writer.write(Frame::new(EngineToController::Blocked(blocked)));
            return;
        }
        self.blocked_waiting = Some(blocked);
        ctx.run_later(PROBE_WAIT, move |act, _| {
            if let Some(blocked) = act.blocked_waiting.take_if(|b| b.task_id == task) {
                act.writer.write(Frame::new(EngineToController::Blocked(blocked)));
            }
        });
    }
}

/// Handler for `ProbeDone`: the status answer (or blocked report), with the cell's line.
impl Handler<ProbeDone> for Control {
    type Result = ();

    fn handle(&mut self, msg: ProbeDone, _: &mut Context<Self>) {
        match msg.req {
            ProbeFor::Blocked(task) => {
                if let Some(mut blocked) = self.blocked_waiting.take_if(|b| b.task_id == task) {
                    blocked.detail = msg.detail;
                    self.writer.write(Frame::new(EngineToController::Blocked(blocked)));
                }
            }
            ProbeFor::Status(req) => {
                if let Some(mut state) = self.pending_status.remove(&req) {
                    state.detail = msg.detail;
                    self.writer.write(Frame::new(EngineToController::Status { req, state }));
                }
            }
        }
    }
}

impl Actor for Control {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        ctx.run_interval(REPORT_EVERY, |act, ctx| act.report(ctx));
    }

    fn stopped(&mut self, _: &mut Context<Self>) {
        // Nobody will send the output any more: a cell waiting for room goes on.
        self.output.close();
        System::current().stop();
    }
}

impl Control {
    /// Sends what running tasks wrote, while the connection's queue of unsent output is under
    /// [`BUFFER_LIMIT`] (so a slow link slows the writer down instead of filling memory).
    pub(crate) fn flush_output(&mut self) {
        let room = BUFFER_LIMIT.saturating_sub(self.writer.backlog());
        if room > 0 {
            self.send_output(self.output.drain_some(room));
        }
    }

    fn send_output(&mut self, pieces: Vec<mpx_messages::TaskOutput>) {
        for piece in pieces {
            let n = piece.text.len();
            self.writer.write_output(Frame::new(EngineToController::Output(piece)), n);
        }
    }
}

/// A writer found the output buffer full: send now.
#[derive(Message)]
#[rtype(result = "()")]
pub struct FlushOutput;

/// Handler for `FlushOutput`.
impl Handler<FlushOutput> for Control {
    type Result = ();

    fn handle(&mut self, _: FlushOutput, _: &mut Context<Self>) {
        self.flush_output();
    }
}

/// Handler for `Done`: send what the task wrote, then the reply.
impl Handler<Done> for Control {
    type Result = ();

    fn handle(&mut self, msg: Done, _: &mut Context<Self>) {
        let rest = self.output.drain();
        self.send_output(rest);
        self.streams.remove(&msg.0.task_id);
        // The reply's descriptors (a pulled memfd) go with its frame over the Unix socket.
        let Done(reply, buffers, fds) = msg;
        self.writer.write(Frame::with_buffers(EngineToController::TaskReply(reply), buffers).with_fds(fds));
    }
}

/// Handler for `ChunkOut`: send the chunk.
impl Handler<ChunkOut> for Control {
    type Result = ();

    fn handle(&mut self, msg: ChunkOut, _: &mut Context<Self>) {
        self.writer.write(Frame::with_payloads(EngineToController::Chunk(msg.0), vec![msg.1]));
    }
}

impl Control {
    /// Hands a chunk of a streamed request to the MPI thread (its MAC was checked by the codec;
    /// a refused one breaks the stream).
    fn chunk_in(&mut self, chunk: Chunk, mut buffers: Vec<Payload>, refused: Option<mpx_messages::Refused>) {
        let task = TaskId(chunk.stream);
        let Some(stream) = self.streams.get_mut(&task) else {
            warn!(task = chunk.stream, "chunk of no streaming task dropped");
            return;
        };
        let item = match refused {
            None if buffers.len() == 1 && !stream.in_place(buffers[0].binding()) => {
                warn!(
                    task = chunk.stream,
                    offset = chunk.offset,
                    "refused a chunk out of its place in the stream"
                );
                Err(MpxError::authentication(format!(
                    "refused the chunk at byte {}: it is not the next chunk of this array (another \
                     array's, or sent again); nothing was bound",
                    chunk.offset
                )))
            }
            None if buffers.len() == 1 => {
                Ok((chunk.offset, chunk.total, buffers.pop().expect("one buffer").into_bytes()))
            }
            None => Err(MpxError::stream("a chunk frame carries exactly one buffer")),
            Some(refused) => {
                warn!(task = chunk.stream, offset = chunk.offset, "refused a chunk: {refused}");
                Err(MpxError::authentication(format!(
                    "refused the chunk at byte {} of the array: {refused}; nothing was bound",
                    chunk.offset
                )))
            }
        };
        let broken = item.is_err();
        if stream.tx.send(item).is_err() || broken {
            self.streams.remove(&task);
        }
    }
}

/// The controller's frames: the one dispatch point of this channel.
impl StreamHandler<Result<Frame<ControllerToEngine>, CodecError>> for Control {
    fn handle(&mut self, item: Result<Frame<ControllerToEngine>, CodecError>, ctx: &mut Context<Self>) {
        self.last_heard = Instant::now();
        let frame = match item {
            Ok(frame) => frame,
            Err(e) => {
                warn!(error = %e, "bad frame from the controller; leaving");
                return self.exit(Some(format!("bad frame from the controller: {e}")), ctx);
            }
        };
        match frame.header {
            ControllerToEngine::RegisterReply(reply) => match (reply.engine_id, reply.error) {
                (Some(id), _) => {
                    info!(engine = %id, cluster = %reply.cluster_id, "registered");
                    self.registered = true;
                    let _ = self.jobs.send(Job::Registered(id, reply.set));
                    if reply.heartbeat_ms > 0 {
                        self.watch_heartbeats(Duration::from_millis(reply.heartbeat_ms), ctx);
                    }
                }
                (None, error) => {
                    let why = error.map_or_else(|| "refused".to_string(), |e| e.to_string());
                    error!(%why, "registration refused");
                    self.exit(Some(format!("registration refused: {why}")), ctx);
                }
            },
            ControllerToEngine::TaskRequest(req) => {
                // The codec verified every payload MAC (`Verify::All`); a refused payload leaves
                // no buffers and says which one failed.
                let refused = frame.refused.map(|r| {
                    warn!(task = %req.task_id, "refused a request: {r}");
                    Box::new(MpxError::authentication(format!(
                        "refused this request: {r}; nothing was bound"
                    )))
                });
                // A push or scatter without buffers: its array streams in chunks after it
                // (unless it is in one of the frame's descriptors: the same-host path).
                let streamed = match &req.task {
                    mpx_messages::Task::Push { array, shared, .. } => array.fd.is_none() && !shared,
                    mpx_messages::Task::Scatter { array, .. } => array.fd.is_none(),
                    _ => false,
                } && frame.buffers.is_empty()
                    && refused.is_none();
                let stream = streamed.then(|| {
                    let (tx, rx) = mpsc::channel();
                    self.streams.insert(req.task_id, StreamIn::new(tx));
                    rx
                });
                let job = Job::Task {
                    task_id: req.task_id,
                    task: Box::new(req.task),
                    buffers: frame.buffers.into_iter().map(mpx_messages::Payload::into_bytes).collect(),
                    fds: frame.fds,
                    refused,
                    stream,
                    reply_to: ctx.address().recipient(),
                    chunks_to: ctx.address().recipient(),
                };
                if self.jobs.send(job).is_err() {
                    self.exit(None, ctx);
                }
            }
            ControllerToEngine::Ping { seq } => {
                self.writer.write(Frame::new(EngineToController::Pong { seq }));
            }
            ControllerToEngine::Interrupt => {
                info!("interrupt requested");
                // A cell inside an MPI call notices the request itself (see `intercept`); a
                // signal would reach Python only after the call.
                if !self.board.interrupt() {
                    self.interrupt.interrupt();
                }
            }
            ControllerToEngine::StatusRequest { req } => self.status(req, ctx),
            ControllerToEngine::Chunk(chunk) => {
                self.chunk_in(chunk, frame.buffers, frame.refused);
            }
            ControllerToEngine::StreamAbort { task_id, reason } => {
                warn!(task = %task_id, %reason, "stream aborted");
                if let Some(stream) = self.streams.remove(&task_id) {
                    let _ = stream.tx.send(Err(MpxError::stream(reason)));
                }
            }
            ControllerToEngine::Shutdown => {
                info!("shutdown requested by the controller");
                let _ = self.jobs.send(Job::Exit(None));
                ctx.stop();
            }
        }
    }

    fn finished(&mut self, ctx: &mut Context<Self>) {
        warn!("the controller closed the connection; leaving");
        let why = if self.registered {
            None
        } else {
            Some("the controller closed the connection (wrong key?)".into())
        };
        self.exit(why, ctx);
    }
}
