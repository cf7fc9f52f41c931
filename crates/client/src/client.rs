//! [`Client`]: one TCP connection to a controller (its session opened by the handshake), with a
//! reader thread (`reader.rs`) that files each reply under its request; [`View`]: a set of
//! target engines.

use std::{
    collections::HashMap,
    net::{TcpStream, ToSocketAddrs},
    path::{Path, PathBuf},
    sync::{
        atomic::{AtomicU64, Ordering},
        Arc, Condvar, Mutex,
    },
    time::Duration,
};

use bytes::Bytes;
use mpx_messages::connection as files;
use mpx_messages::{
    codec::{blocking, Sealer},
    Binding, Chunk, ClientToController, ClusterInfo, CodecError, ControllerToClient, EngineId, EngineState,
    Frame, Key, Payload, Request, Session, SubmitRequest, Targets,
};

use crate::{
    balanced::{BalancedView, Slots},
    result::RequestState,
    socket::Socket,
    AsyncResult, ClientError, View,
};

/// How long `connect` waits for the controller's first answer.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// Why the connection ended, kept to build the error for every later call.
#[derive(Debug, Clone)]
pub(crate) enum Closed {
    Rejected,
    Other(String),
}

impl Closed {
    pub(crate) fn to_error(&self) -> ClientError {
        match self {
            Closed::Rejected => ClientError::Rejected,
            Closed::Other(why) => ClientError::Closed(why.clone()),
        }
    }
}

#[derive(Debug, Default)]
pub(crate) struct State {
    pub requests: HashMap<u64, RequestState>,
    pub info: Option<ClusterInfo>,
    pub info_seq: u64,
    pub shutdown_acked: bool,
    pub closed: Option<Closed>,
    /// Answers to control requests (interrupt, where, abort), oldest first.
    pub control: Vec<ControllerToClient>,
    /// Results of load-balanced tasks.
    pub balanced: Slots,
    /// What engines printed for each request, until its results take it.
    pub output: HashMap<u64, crate::output::RequestOutput>,
}

/// What the reader thread and the callers share.
#[derive(Debug)]
pub struct Shared {
    pub(crate) state: Mutex<State>,
    pub(crate) cond: Condvar,
}

impl Shared {
    /// Waits up to `timeout` until `ready` finds what it looks for in the state (checked at
    /// each change); a closed connection ends the wait with its error.
    pub(crate) fn wait_for<T>(
        &self,
        timeout: Duration,
        mut ready: impl FnMut(&mut State) -> Option<T>,
    ) -> Result<T, ClientError> {
        let deadline = std::time::Instant::now() + timeout;
        let mut state = self.state.lock().expect("client state");
        loop {
            if let Some(found) = ready(&mut state) {
                return Ok(found);
            }
            if let Some(c) = &state.closed {
                return Err(c.to_error());
            }
            let left = deadline.saturating_duration_since(std::time::Instant::now());
            if left.is_zero() {
                return Err(ClientError::Timeout(timeout));
            }
            state = self.cond.wait_timeout(state, left).expect("client state").0;
        }
    }
}

/// The writing half of the connection: the socket and the session's sealer (which numbers the
/// frames, so one frame is written at a time).
#[derive(Debug)]
struct Writer {
    stream: Socket,
    sealer: Sealer,
}

impl Writer {
    fn write(&mut self, frame: &Frame<ClientToController>) -> Result<(), CodecError> {
        blocking::write_frame(&mut self.stream, &mut self.sealer, frame)
    }
}

/// A connection to a cluster's controller.
#[derive(Debug)]
pub struct Client {
    writer: Mutex<Writer>,
    pub(crate) shared: Arc<Shared>,
    next_req: AtomicU64,
    cluster_id: String,
    connection_file: PathBuf,
    /// Arrays larger than this stream in chunks of this size (bytes).
    chunk: AtomicU64,
    /// Connected through the controller's Unix socket (same host).
    local: bool,
}

/// Finds the connection file for `target`: a path to a file, or a cluster id under `$MPX_HOME`
/// ("" means the only running cluster).
///
/// # Errors
/// [`ClientError::NotFound`] naming what was looked for.
pub fn find_connection_file(target: &str) -> Result<PathBuf, ClientError> {
    let as_path = Path::new(target);
    if target.ends_with(".json") || as_path.is_file() {
        return Ok(as_path.to_path_buf());
    }
    let home = files::mpx_home();
    if !target.is_empty() {
        let path = files::connection_file(&home, target);
        return if path.is_file() {
            Ok(path)
        } else {
            Err(ClientError::NotFound(format!(
                "no cluster {target:?} is running (no {}); start one with `mpx cluster start -n 4 --cluster-id {target}`",
                path.display()
            )))
        };
    }
    let found = files::list_connection_files(&home);
    match found.as_slice() {
        [] => Err(ClientError::NotFound(format!(
            "no cluster is running (no connection file in {}); start one with `mpx cluster start -n 4`",
            home.display()
        ))),
        [(_, path)] => Ok(path.clone()),
        many => Err(ClientError::NotFound(format!(
            "several clusters are running ({}); choose one with --cluster-id",
            many.iter().map(|(id, _)| id.as_str()).collect::<Vec<_>>().join(", ")
        ))),
    }
}

impl Client {
    /// Connects to a cluster by connection-file path or cluster id ("" = the only one running).
    ///
    /// # Errors
    /// The file is missing or unsafe, the controller is unreachable, or it rejects our key.
    pub fn connect(target: &str) -> Result<Client, ClientError> {
        let path = find_connection_file(target)?;
        let info = files::read_connection_file(&path).map_err(|e| ClientError::NotFound(e.to_string()))?;
        let key = Key::from_hex(&info.key)?;
        match info.local_socket() {
            Some(socket) => Self::connect_local(socket, key, &info.cluster_id, path),
            None => Self::connect_with(&info.address, key, &info.cluster_id, path),
        }
    }

    /// Connects to a controller on this host through its Unix socket at `socket` with `key`.
    ///
    /// # Errors
    /// As [`connect`](Self::connect).
    pub fn connect_local(
        socket: &Path,
        key: Key,
        cluster_id: &str,
        connection_file: PathBuf,
    ) -> Result<Client, ClientError> {
        let address = socket.display().to_string();
        let stream = std::os::unix::net::UnixStream::connect(socket)
            .map_err(|cause| ClientError::Connect { address: address.clone(), cause })?;
        tracing::debug!(socket = %address, "connecting through the controller's Unix socket");
        Self::open(Socket::Unix(stream), &address, key, cluster_id, connection_file)
    }

    /// Connects to a controller at `address` with `key`.
    ///
    /// # Errors
    /// As [`connect`](Self::connect).
    pub fn connect_with(
        address: &str,
        key: Key,
        cluster_id: &str,
        connection_file: PathBuf,
    ) -> Result<Client, ClientError> {
        let connect_error = |cause| ClientError::Connect { address: address.to_string(), cause };
        let socket = address
            .to_socket_addrs()
            .map_err(connect_error)?
            .next()
            .ok_or_else(|| connect_error(std::io::Error::other("the address resolves to nothing")))?;
        let stream = TcpStream::connect_timeout(&socket, CONNECT_TIMEOUT).map_err(connect_error)?;
        let _ = stream.set_nodelay(true);
        Self::open(Socket::Tcp(stream), address, key, cluster_id, connection_file)
    }

    /// The handshake on a new connection, then the reader thread and the first exchange.
    fn open(
        mut stream: Socket,
        address: &str,
        key: Key,
        cluster_id: &str,
        connection_file: PathBuf,
    ) -> Result<Client, ClientError> {
        let connect_error = |cause| ClientError::Connect { address: address.to_string(), cause };
        // The handshake: both sides prove they hold the key, and the session is bound to fresh
        // nonces (a wrong key is found here, clearly).
        stream.set_read_timeout(Some(CONNECT_TIMEOUT)).map_err(connect_error)?;
        let Session { sealer, opener } = blocking::connect(&mut stream, &key).map_err(|e| match e {
            CodecError::Unproven | CodecError::Rejected | CodecError::BadProof => ClientError::Rejected,
            CodecError::Io(source) => connect_error(source),
            other => ClientError::Codec(other),
        })?;
        stream.set_read_timeout(None).map_err(connect_error)?;
        let reader = stream.try_clone().map_err(connect_error)?;
        let shared = Arc::new(Shared { state: Mutex::new(State::default()), cond: Condvar::new() });
        let shared2 = shared.clone();
        std::thread::Builder::new()
            .name("mpx-client-reader".into())
            .spawn(move || crate::reader::read_loop(reader, opener, shared2))
            .map_err(connect_error)?;
        let local = stream.is_unix();
        let client = Client {
            local,
            writer: Mutex::new(Writer { stream, sealer }),
            shared,
            next_req: AtomicU64::new(1),
            cluster_id: cluster_id.to_string(),
            connection_file,
            chunk: AtomicU64::new(mpx_messages::array::chunk_bytes() as u64),
        };
        // The first exchange proves the key: a wrong one is rejected here, clearly.
        client.info(CONNECT_TIMEOUT)?;
        Ok(client)
    }

    /// Whether this client is connected through the controller's Unix socket (it runs on the
    /// controller's host, and `MPX_SHM` is not `0`), rather than over TCP.
    pub fn is_local(&self) -> bool {
        self.local
    }

    /// The cluster id.
    pub fn cluster_id(&self) -> &str {
        &self.cluster_id
    }

    /// The connection file used.
    pub fn connection_file(&self) -> &Path {
        &self.connection_file
    }

    /// The chunk size (bytes) of the arrays this client sends: a larger array streams in chunks
    /// (default `$MPX_CHUNK_BYTES` or 4 MiB).
    pub fn chunk_bytes(&self) -> usize {
        self.chunk.load(Ordering::Relaxed) as usize
    }

    /// Sets the chunk size (bytes, at least 1) of the arrays this client sends.
    pub fn set_chunk_bytes(&self, bytes: usize) {
        self.chunk.store(bytes.max(1) as u64, Ordering::Relaxed);
    }

    fn send(&self, msg: ClientToController) -> Result<(), ClientError> {
        self.send_frame(&Frame::new(msg))
    }

    pub(crate) fn send_frame(&self, frame: &Frame<ClientToController>) -> Result<(), ClientError> {
        let mut w = self.writer.lock().expect("client writer");
        w.write(frame).map_err(|e| match e {
            CodecError::Io(io) => self.closed_error().unwrap_or(ClientError::Closed(io.to_string())),
            other => ClientError::Codec(other),
        })
    }

    fn closed_error(&self) -> Option<ClientError> {
        self.shared.state.lock().expect("client state").closed.as_ref().map(Closed::to_error)
    }

    /// The cluster's state: id, engines, pids.
    ///
    /// # Errors
    /// Timeout or a lost connection.
    pub fn info(&self, timeout: Duration) -> Result<ClusterInfo, ClientError> {
        let seq = self.shared.state.lock().expect("client state").info_seq;
        self.send(ClientToController::InfoRequest)?;
        self.shared.wait_for(timeout, |state| (state.info_seq > seq).then(|| state.info.clone()).flatten())
    }

    /// How to show each engine: its id, or `set:rank` when several engine sets are registered.
    ///
    /// # Errors
    /// As [`info`](Self::info).
    pub fn labels(&self) -> Result<HashMap<EngineId, String>, ClientError> {
        let info = self.info(CONNECT_TIMEOUT)?;
        let several = info.engines.iter().any(|e| e.set != info.engines[0].set);
        Ok(info.engines.iter().map(|e| (e.id, e.label(several))).collect())
    }

    /// Ids of the registered engines.
    ///
    /// # Errors
    /// As [`info`](Self::info).
    pub fn ids(&self) -> Result<Vec<EngineId>, ClientError> {
        Ok(self.info(CONNECT_TIMEOUT)?.engines.iter().map(|e| e.id).collect())
    }

    /// A view on some engines.
    pub fn view(&self, targets: impl Into<Targets>) -> View<'_> {
        View::new(self, targets.into())
    }

    /// A view for load-balanced tasks on some engines: each task runs on one of them.
    pub fn load_balanced_view(&self, targets: impl Into<Targets>) -> BalancedView<'_> {
        BalancedView::new(self, targets.into())
    }

    /// A fresh id for a request or task of this connection.
    pub(crate) fn next_id(&self) -> u64 {
        self.next_req.fetch_add(1, Ordering::Relaxed)
    }

    /// Submits a request to `targets`; results arrive in the returned [`AsyncResult`].
    ///
    /// # Errors
    /// A lost connection.
    pub fn submit(&self, targets: Targets, request: Request) -> Result<AsyncResult, ClientError> {
        self.submit_with(targets, request, Vec::new())
    }

    /// Takes over request `id` (the id [`AsyncResult::id`] gives), whose client went away
    /// before it ended (`mpx px --timeout` gave up): the controller keeps such requests for a
    /// while and gives each once. The result holds the engines that had not answered when that
    /// client left.
    ///
    /// # Errors
    /// A lost connection; the refusal (not kept) comes from [`AsyncResult::get`].
    pub fn adopt(&self, id: u64) -> Result<AsyncResult, ClientError> {
        let req_id = self.next_req.fetch_add(1, Ordering::Relaxed);
        self.shared.state.lock().expect("client state").requests.insert(req_id, RequestState::default());
        let submitted = mpx_messages::unix_time();
        self.send_frame(&Frame::new(ClientToController::Adopt { req_id, id }))?;
        Ok(AsyncResult { req_id, shared: self.shared.clone(), submitted })
    }

    /// Submits a request whose array bytes travel in `buffers`.
    ///
    /// # Errors
    /// A lost connection.
    pub fn submit_with(
        &self,
        targets: Targets,
        request: Request,
        buffers: Vec<Bytes>,
    ) -> Result<AsyncResult, ClientError> {
        self.submit_from(targets, request, buffers, None)
    }

    /// Submits a request of the tool's own (completions, helpers): it runs as any other, but is
    /// not part of the session's history.
    ///
    /// # Errors
    /// A lost connection.
    pub fn submit_internal(&self, targets: Targets, request: Request) -> Result<AsyncResult, ClientError> {
        self.submit_full(targets, request, Vec::new(), None, true)
    }

    /// Like [`submit_with`](Self::submit_with), telling the controller where a push's or
    /// scatter's array came from (for the session's history: a `.npy` file can be replayed).
    ///
    /// # Errors
    /// A lost connection.
    pub fn submit_from(
        &self,
        targets: Targets,
        request: Request,
        buffers: Vec<Bytes>,
        source: Option<mpx_messages::DataSource>,
    ) -> Result<AsyncResult, ClientError> {
        self.submit_full(targets, request, buffers, source, false)
    }

    fn submit_full(
        &self,
        targets: Targets,
        request: Request,
        buffers: Vec<Bytes>,
        source: Option<mpx_messages::DataSource>,
        internal: bool,
    ) -> Result<AsyncResult, ClientError> {
        let req_id = self.next_req.fetch_add(1, Ordering::Relaxed);
        self.shared.state.lock().expect("client state").requests.insert(req_id, RequestState::default());
        let submitted = mpx_messages::unix_time();
        // A push's or scatter's array larger than a chunk streams after the request.
        let chunk = self.chunk_bytes();
        let streamed = matches!(request, Request::Push { .. } | Request::Scatter { .. })
            && buffers.len() == 1
            && buffers[0].len() > chunk;
        let request =
            ClientToController::SubmitRequest(SubmitRequest { source, internal, req_id, targets, request });
        if !streamed {
            self.send_frame(&Frame::with_buffers(request, buffers))?;
            return Ok(AsyncResult { req_id, shared: self.shared.clone(), submitted });
        }
        let array = &buffers[0];
        let mut w = self.writer.lock().expect("client writer");
        let total = array.len();
        let mut send = |frame: &Frame<ClientToController>| {
            w.write(frame).map_err(|e| match e {
                CodecError::Io(io) => self.closed_error().unwrap_or(ClientError::Closed(io.to_string())),
                other => ClientError::Codec(other),
            })
        };
        send(&Frame::new(request))?;
        // Every chunk is bound to the stream's fresh origin and its number: the engine takes
        // them only in their place.
        let origin = Binding::fresh_origin()?;
        for (index, offset) in (0..total).step_by(chunk).enumerate() {
            let piece = Payload::bound(
                array.slice(offset..total.min(offset + chunk)),
                Binding { origin, index: index as u64 },
            );
            let chunk = Chunk { stream: req_id, offset: offset as u64, total: total as u64 };
            send(&Frame::with_payloads(ClientToController::Chunk(chunk), vec![piece]))?;
        }
        Ok(AsyncResult { req_id, shared: self.shared.clone(), submitted })
    }

    /// Sends a control request and waits for the first reply that `pick` accepts.
    pub(crate) fn control<T>(
        &self,
        msg: ClientToController,
        timeout: Duration,
        pick: impl Fn(&ControllerToClient) -> Option<T>,
    ) -> Result<T, ClientError> {
        self.send(msg)?;
        self.shared.wait_for(timeout, |state| {
            let i = state.control.iter().position(|r| pick(r).is_some())?;
            pick(&state.control.remove(i))
        })
    }

    /// Interrupts the running cells of `targets` (they fail with `KeyboardInterrupt`); returns
    /// the engines told.
    ///
    /// # Errors
    /// Refused (no such engine), timeout or a lost connection.
    pub fn interrupt(&self, targets: Targets, timeout: Duration) -> Result<Vec<EngineId>, ClientError> {
        let reply = self.control(ClientToController::InterruptRequest { targets }, timeout, |r| match r {
            ControllerToClient::InterruptReply { engines, error } => Some((engines.clone(), error.clone())),
            _ => None,
        })?;
        match reply {
            (engines, None) => Ok(engines),
            (_, Some(e)) => Err(ClientError::Refused(e)),
        }
    }

    /// What every engine is doing (`None`: it did not answer within a second): idle, running
    /// a cell, or inside an MPI call on some communicator, and for how long.
    ///
    /// # Errors
    /// Timeout or a lost connection.
    pub fn engine_states(
        &self,
        timeout: Duration,
    ) -> Result<Vec<(EngineId, Option<EngineState>)>, ClientError> {
        self.control(ClientToController::WhereRequest, timeout, |r| match r {
            ControllerToClient::WhereReply { states } => Some(states.clone()),
            _ => None,
        })
    }

    /// Tears the MPI worlds down: the cluster's own world restarts (variables are lost), any
    /// other is torn down.
    ///
    /// # Errors
    /// Refused (engines started by hand), timeout or a lost connection.
    pub fn abort(&self, reason: &str, timeout: Duration) -> Result<(), ClientError> {
        let error =
            self.control(ClientToController::AbortRequest { reason: reason.into() }, timeout, |r| match r {
                ControllerToClient::AbortReply { error } => Some(error.clone()),
                _ => None,
            })?;
        error.map_or(Ok(()), |e| Err(ClientError::Refused(e)))
    }

    /// Asks the controller to stop the whole cluster; returns once it acknowledged.
    ///
    /// # Errors
    /// Timeout or a connection lost before the acknowledgement.
    pub fn shutdown(&self, timeout: Duration) -> Result<(), ClientError> {
        self.send(ClientToController::ShutdownRequest)?;
        self.shared.wait_for(timeout, |state| state.shutdown_acked.then_some(()))
    }
}

impl Drop for Client {
    fn drop(&mut self) {
        if let Ok(w) = self.writer.lock() {
            let _ = w.stream.shutdown(std::net::Shutdown::Both);
        }
    }
}
