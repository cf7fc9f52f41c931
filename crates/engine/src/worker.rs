//! The MPI thread: start MPI and the control thread, then run jobs until told to exit.

use std::{
    path::{Path, PathBuf},
    sync::{mpsc, Arc},
    time::{Duration, Instant},
};

use actix::prelude::*;
use mpi::{collective::SystemOperation, traits::*};
use mpx_cells::Collectives;
use mpx_messages::codec::{
    fd_stream::split_with_fds,
    fds::{FdInbox, FdOutbox},
};
use mpx_messages::{
    codec, ConnectionInfo, ControllerToEngine, EngineId, EngineToController, Frame, FrameCodec, Key, Rank,
    RankInfo, RegisterRequest, Session, SetId, StreamName, TaskReply, Verify, DEFAULT_MAX_FRAME,
};
use thiserror::Error;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio_util::codec::FramedRead;
use tracing::{error, info};

use crate::{
    control::{Control, Done, Job},
    data::Groups,
    kernel::{python::PythonKernel, rhai::RhaiKernel, Interrupt, Kernel, Probe},
    mpi_comm::MpiComm,
    output::OutputBuffer,
    state::Board,
    stream::Sink,
    task::{run_task, TaskDone, TaskIo},
    writer::Writer,
    Registry,
};

/// Settings of an engine process.
#[derive(Debug, Clone)]
pub struct EngineOptions {
    /// The controller's connection file.
    pub connection_file: PathBuf,
    /// How long to wait for the connection file to appear.
    pub wait: Duration,
    /// The kernel that runs cells.
    pub kernel: mpx_messages::Kernel,
}

impl EngineOptions {
    /// Options for the connection file at `path`: wait 30 s for it, Python kernel.
    pub fn new(path: impl Into<PathBuf>) -> Self {
        EngineOptions {
            connection_file: path.into(),
            wait: Duration::from_secs(30),
            kernel: mpx_messages::Kernel::default(),
        }
    }
}

/// Why an engine stopped abnormally.
#[derive(Debug, Error)]
pub enum EngineError {
    /// MPI could not be initialised.
    #[error("MPI could not be initialised (already initialised?)")]
    MpiInit,
    /// The MPI library does not grant `MPI_THREAD_MULTIPLE`, which the engine needs.
    #[error("the MPI library grants the thread level {0}, the engine needs MPI_THREAD_MULTIPLE")]
    ThreadLevel(String),
    /// The connection file is missing or bad.
    #[error("connection file {path}: {why}")]
    ConnectionFile {
        /// Its path.
        path: PathBuf,
        /// What is wrong.
        why: String,
    },
    /// The controller could not be reached or refused us.
    #[error("controller: {0}")]
    Controller(String),
    /// The kernel could not start on some rank (e.g. Python is missing).
    #[error("the {kernel} kernel could not start: {why}")]
    Kernel {
        /// Which kernel.
        kernel: mpx_messages::Kernel,
        /// Why (this rank's reason, or that another rank failed).
        why: String,
    },
}

/// Reads the connection file, waiting up to `wait` for it to appear (engines may start
/// before the controller).
fn read_connection_file(path: &Path, wait: Duration) -> Result<ConnectionInfo, EngineError> {
    let deadline = Instant::now() + wait;
    loop {
        let exists = path.exists();
        if exists || Instant::now() >= deadline {
            return mpx_messages::connection::read_connection_file(path).map_err(|e| match e {
                mpx_messages::connection::ConnectionFileError::Bad { path, why } => {
                    EngineError::ConnectionFile { path, why }
                }
                other => EngineError::ConnectionFile { path: path.to_path_buf(), why: other.to_string() },
            });
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Makes every panic abort the whole MPI job instead of unwinding into a hang.
fn install_panic_hook() {
    let default = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        default(info);
        // SAFETY: MPI is initialised before the hook is installed; MPI_Abort is callable from
        // any thread at the Multiple thread level and does not return.
        unsafe {
            mpi::ffi::MPI_Abort(mpi::ffi::RSMPI_COMM_WORLD, 101);
        }
    }));
}

/// Runs an engine with the given native functions: the whole life of an `mpx-engine` process.
/// A custom engine binary calls this from `main` after filling its [`Registry`].
///
/// # Errors
/// [`EngineError`] when MPI, the connection file or the controller fail.
pub fn main_with(opts: EngineOptions, registry: Registry) -> Result<(), EngineError> {
    // Before any thread exists and before numpy loads its BLAS: one share of the host each.
    let blas_threads = crate::threads::apply_defaults();
    if opts.kernel == mpx_messages::Kernel::Python && std::env::var_os("MPI4PY_RC_FAST_REDUCE").is_none() {
        // mpi4py's lowercase allreduce holds the GIL while it waits unless this is off, which
        // would keep `mpx where` from seeing inside the cell. Set while this process has one
        // thread.
        std::env::set_var("MPI4PY_RC_FAST_REDUCE", "false");
    }
    let (universe, level) =
        mpi::initialize_with_threading(mpi::Threading::Multiple).ok_or(EngineError::MpiInit)?;
    // More than one thread may call MPI at once: the MPI thread, the cells' own threads and
    // native functions, and the panic hook's MPI_Abort on whichever thread panics (its SAFETY
    // note relies on this level). The control, probe and watchdog threads never call MPI.
    // Multiple or nothing.
    if level != mpi::Threading::Multiple {
        return Err(EngineError::ThreadLevel(format!("{level:?}")));
    }
    install_panic_hook();
    let world = universe.world();
    let (rank, size) = (world.rank() as u32, world.size() as u32);
    // The engine's own duplicates of COMM_WORLD, made before any cell code runs: whatever
    // mpi4py does to COMM_WORLD (it sets MPI_ERRORS_RETURN on import), these keep
    // MPI_ERRORS_ARE_FATAL, which rsmpi relies on (it does not check return codes).
    let board = Board::default();
    crate::intercept::install(board.clone());
    let comm = MpiComm::world(world.duplicate(), board.clone());
    let mut groups = Groups::new(world.duplicate(), board.clone());

    let (rhai_registry, py_steps) = registry.into_parts();
    let output = Arc::new(OutputBuffer::default());
    let made: Result<Box<dyn Kernel>, crate::kernel::python::KernelStartError> = match opts.kernel {
        mpx_messages::Kernel::Rhai => Ok(Box::new(RhaiKernel::new(
            Box::new(MpiComm::world(world.duplicate(), board.clone())),
            rhai_registry,
        ))),
        mpx_messages::Kernel::Python => {
            PythonKernel::new(rank as usize, size as usize, &py_steps, output.clone())
                .map(|k| Box::new(k) as Box<dyn Kernel>)
        }
    };
    // Every rank learns whether every kernel started, so none waits for a rank that left.
    let mut all_ok = 0i32;
    comm.comm().all_reduce_into(&i32::from(made.is_ok()), &mut all_ok, SystemOperation::min());
    let mut kernel = match (made, all_ok) {
        (Ok(k), 1) => k,
        (Err(why), _) => return Err(EngineError::Kernel { kernel: opts.kernel, why: why.to_string() }),
        (Ok(_), _) => {
            return Err(EngineError::Kernel { kernel: opts.kernel, why: "it failed on another rank".into() })
        }
    };

    let info = read_connection_file(&opts.connection_file, opts.wait)?;
    let key = Key::from_hex(&info.key).map_err(|e| EngineError::ConnectionFile {
        path: opts.connection_file.clone(),
        why: e.to_string(),
    })?;

    let (jobs_tx, jobs) = mpsc::channel::<Job>();
    let me = RankInfo {
        rank: Rank(rank),
        pid: std::process::id(),
        hostname: mpx_messages::connection::hostname(),
    };

    // The whole world registers in one message: rank 0 gathers every rank's details over MPI,
    // registers them, and broadcasts the engine set it got; then each rank attaches.
    // As JSON, like every small control value the engines exchange over MPI.
    let details = comm
        .allgather_bytes(&serde_json::to_vec(&me).expect("a rank's details serialize"))
        .map_err(|e| EngineError::Controller(e.0))?;
    let world_info = details
        .iter()
        .map(|d| serde_json::from_slice::<RankInfo>(d))
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| EngineError::Controller(format!("bad details from a rank: {e}")))?;
    let register = |set: Option<SetId>, world: Vec<RankInfo>| RegisterRequest {
        rank: Rank(rank),
        size,
        pid: me.pid,
        hostname: me.hostname.clone(),
        world,
        set,
    };
    // Streamed replies' chunks are MACed on this thread (see `Sink`).
    let payload_key = Arc::new(key.clone());
    let control = ControlStart {
        address: info.address.clone(),
        unix: info.local_socket().map(Path::to_path_buf),
        key,
        jobs: jobs_tx,
        board: board.clone(),
        interrupt: kernel.interrupter(),
        probe: kernel.prober(),
        output: output.clone(),
    };
    let (control_thread, registered) = if rank == 0 {
        let thread = control.spawn(register(None, world_info))?;
        let registered = wait_registered(&jobs);
        // `[1, set]`, or `[0, 0]` when the world was not registered.
        let mut set = registered.as_ref().map_or([0u32, 0], |(_, set)| [1, set.get()]);
        comm.comm().process_at_rank(0).broadcast_into(&mut set[..]);
        (thread, registered)
    } else {
        let mut set = [0u32; 2];
        comm.comm().process_at_rank(0).broadcast_into(&mut set[..]);
        if set[0] == 0 {
            return Err(EngineError::Controller("rank 0 could not register this world".into()));
        }
        let thread = control.spawn(register(Some(SetId(set[1])), Vec::new()))?;
        (thread, wait_registered(&jobs))
    };
    let (id, set) = registered?;
    crate::log::attach(&opts.connection_file, id.get());
    info!(engine = %id, %set, rank, kernel = %opts.kernel, ?blas_threads, "registered");
    drop(comm);

    let mut result = Ok(());
    for job in jobs {
        match job {
            Job::Registered(..) => {}
            Job::Task { task_id, task, buffers, fds, refused, stream, reply_to, chunks_to } => {
                board.running(kernel.execution_count() + 1, task_id);
                output.begin(task_id);
                let refused = refused.map(|why| *why);
                let io = TaskIo {
                    buffers,
                    fds,
                    refused,
                    stream,
                    sink: Sink::new(task_id, chunks_to, payload_key.clone()),
                };
                let TaskDone { mut outcome, buffers, fds } =
                    run_task(kernel.as_mut(), &mut groups, id, *task, io);
                // Output the kernel kept until the end (rhai) is streamed like the rest: the
                // reply never carries it, so it cannot grow past a frame.
                output.write(StreamName::Stdout, &std::mem::take(&mut outcome.stdout));
                output.write(StreamName::Stderr, &std::mem::take(&mut outcome.stderr));
                output.end();
                board.idle();
                reply_to.do_send(Done(TaskReply { task_id, outcome }, buffers, fds));
            }
            Job::Exit(why) => {
                output.close();
                if let Some(why) = why {
                    result = Err(EngineError::Controller(why));
                }
                break;
            }
        }
    }
    drop(kernel);
    drop(groups);
    let _ = control_thread.join();
    drop(universe);
    result
}

/// What the control thread needs.
struct ControlStart {
    address: String,
    /// The controller's Unix socket, when it runs on this host (see
    /// [`ConnectionInfo::local_socket`]).
    unix: Option<PathBuf>,
    key: Key,
    jobs: mpsc::Sender<Job>,
    board: Board,
    interrupt: Arc<dyn Interrupt>,
    probe: Option<Arc<dyn Probe>>,
    output: Arc<OutputBuffer>,
}

impl ControlStart {
    /// Starts the control thread, which connects and sends `register` first.
    fn spawn(self, register: RegisterRequest) -> Result<std::thread::JoinHandle<()>, EngineError> {
        std::thread::Builder::new()
            .name("mpx-control".into())
            .spawn(move || control_main(self, register))
            .map_err(|e| EngineError::Controller(e.to_string()))
    }
}

/// Waits for the controller's answer to the registration: (engine id, engine set).
fn wait_registered(jobs: &mpsc::Receiver<Job>) -> Result<(EngineId, SetId), EngineError> {
    match jobs.recv() {
        Ok(Job::Registered(id, Some(set))) => Ok((id, set)),
        Ok(Job::Registered(_, None)) => Err(EngineError::Controller(
            "the controller accepted the registration without an engine set".into(),
        )),
        Ok(Job::Exit(why)) => {
            Err(EngineError::Controller(why.unwrap_or_else(|| "registration failed".into())))
        }
        Ok(Job::Task { .. }) => Err(EngineError::Controller("a task came before the registration".into())),
        Err(_) => Err(EngineError::Controller("the control thread ended before the registration".into())),
    }
}

/// Why the control thread could not reach the controller.
#[derive(Debug, Error)]
enum ReachError {
    /// No connection.
    #[error("cannot connect to the controller at {address}: {cause}")]
    Connect { address: String, cause: String },
    /// No answer to the handshake.
    #[error("the controller at {address} did not answer the handshake in {HANDSHAKE_TIMEOUT:?}")]
    Silent { address: String },
    /// The handshake failed (wrong key?).
    #[error("cannot open a session with the controller at {address}: {cause}")]
    Session { address: String, cause: String },
}

/// How long the controller may take to answer the handshake.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// The halves of a connection to the controller (TCP, or Unix passing descriptors: then with
/// where received descriptors wait for their frames and where sent ones go).
type Halves = (Box<dyn AsyncRead + Unpin>, Box<dyn AsyncWrite + Unpin>, Session, Option<(FdInbox, FdOutbox)>);

/// The handshake on a new connection (both sides prove they hold the key; the session is bound
/// to fresh nonces).
async fn handshake<S: AsyncRead + AsyncWrite + Unpin>(
    stream: &mut S,
    key: &Key,
    address: String,
) -> Result<Session, ReachError> {
    tokio::time::timeout(HANDSHAKE_TIMEOUT, codec::connect(stream, key))
        .await
        .map_err(|_| ReachError::Silent { address: address.clone() })?
        .map_err(|e| ReachError::Session { address, cause: e.to_string() })
}

/// Connects to the controller: through its Unix socket `unix` when given (same host), else
/// over TCP to `address`.
async fn open_connection(address: &str, unix: Option<PathBuf>, key: &Key) -> Result<Halves, ReachError> {
    let refused =
        |address: String| move |e: std::io::Error| ReachError::Connect { address, cause: e.to_string() };
    match unix {
        Some(path) => {
            let address = path.display().to_string();
            let mut stream =
                tokio::net::UnixStream::connect(&path).await.map_err(refused(address.clone()))?;
            info!(socket = %address, "connecting through the controller's Unix socket");
            let session = handshake(&mut stream, key, address.clone()).await?;
            let (read, write, inbox, outbox) = split_with_fds(stream).map_err(refused(address))?;
            Ok((Box::new(read), Box::new(write), session, Some((inbox, outbox))))
        }
        None => {
            let mut stream =
                tokio::net::TcpStream::connect(address).await.map_err(refused(address.to_string()))?;
            let _ = stream.set_nodelay(true);
            let session = handshake(&mut stream, key, address.to_string()).await?;
            let (read, write) = stream.into_split();
            Ok((Box::new(read), Box::new(write), session, None))
        }
    }
}

/// The control thread: connect, register, and run the `Control` actor until it stops.
fn control_main(start: ControlStart, register: RegisterRequest) {
    let ControlStart { address, unix, key, jobs, board, interrupt, probe, output } = start;
    let system = System::new();
    let jobs2 = jobs.clone();
    let started = system.block_on(async move {
        let (read, write, Session { sealer, opener }, fds) = open_connection(&address, unix, &key).await?;
        let (inbox, outbox) = fds.unzip();
        Control::create(move |ctx| {
            let mut codec = FrameCodec::<ControllerToEngine, EngineToController>::reading(
                opener,
                DEFAULT_MAX_FRAME,
                Verify::All,
            );
            if let Some(inbox) = inbox {
                codec = codec.with_fds(inbox);
            }
            let (writer, written) = Writer::start(write, outbox, sealer);
            ctx.spawn(actix::fut::wrap_future::<_, Control>(written).map(|res, act, ctx| {
                if let Ok(Err(e)) = res {
                    error!(error = %e, "writing to the controller failed; leaving");
                    act.exit(Some(format!("writing to the controller failed: {e}")), ctx);
                }
            }));
            writer.write(Frame::new(EngineToController::RegisterRequest(register)));
            ctx.add_stream(FramedRead::new(read, codec));
            ctx.run_interval(crate::output::FLUSH_EVERY, |act: &mut Control, _| act.flush_output());
            let me = ctx.address();
            output.set_waker(move || me.do_send(crate::control::FlushOutput));
            Control {
                output,
                board,
                interrupt,
                prober: probe.map(|p| crate::control::Prober::start(p, ctx.address())),
                pending_status: Default::default(),
                last_heard: std::time::Instant::now(),
                writer,
                streams: Default::default(),
                jobs: jobs2,
                registered: false,
                blocked_waiting: None,
            }
        });
        Ok::<(), ReachError>(())
    });
    match started {
        Ok(()) => {
            if let Err(e) = system.run() {
                error!(error = %e, "control thread failed");
            }
        }
        Err(why) => {
            error!(%why, "cannot start");
            let _ = jobs.send(Job::Exit(Some(why.to_string())));
        }
    }
}
