//! [`Client`]: one connection to a controller (its session opened by the handshake, see
//! `connect.rs`), with a
//! reader thread (`reader.rs`) that files each reply under its request. The calls that submit
//! requests are in `submit.rs`, views in [`crate::view`] and [`crate::balanced`].

use std::{
    collections::HashMap,
    path::{Path, PathBuf},
    sync::{
        atomic::{AtomicU64, Ordering},
        Arc, Mutex,
    },
    time::Duration,
};

use mpx_messages::connection as files;
use mpx_messages::{
    codec::{blocking, Sealer},
    ClientToController, ClusterInfo, CodecError, ControllerToClient, EngineId, EngineState, Frame, Targets,
};

pub use crate::state::Shared;
use crate::{error::ClientError, socket::Socket, state::Closed};

/// How long `connect` waits for the controller's first answer.
pub(crate) const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// The writing half of the connection: the socket and the session's sealer (which numbers the
/// frames, so one frame is written at a time).
#[derive(Debug)]
pub(crate) struct Writer {
    pub(crate) stream: Socket,
    pub(crate) sealer: Sealer,
}

impl Writer {
    pub(crate) fn write(&mut self, frame: &Frame<ClientToController>) -> Result<(), CodecError> {
        match &mut self.stream {
            Socket::Unix(sock) => blocking::write_frame_unix(sock, &mut self.sealer, frame),
            tcp if frame.fds.is_empty() => blocking::write_frame(tcp, &mut self.sealer, frame),
            _ => Err(CodecError::Malformed("descriptors cannot pass over TCP".into())),
        }
    }
}

/// A connection to a cluster's controller.
#[derive(Debug)]
pub struct Client {
    pub(crate) writer: Mutex<Writer>,
    pub(crate) shared: Arc<Shared>,
    pub(crate) next_req: AtomicU64,
    pub(crate) cluster_id: String,
    pub(crate) connection_file: PathBuf,
    /// Arrays larger than this stream in chunks of this size (bytes).
    pub(crate) chunk: AtomicU64,
    /// Connected through the controller's Unix socket (same host).
    pub(crate) local: bool,
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

    pub(crate) fn closed_error(&self) -> Option<ClientError> {
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

    /// A fresh id for a request or task of this connection.
    pub(crate) fn next_id(&self) -> u64 {
        self.next_req.fetch_add(1, Ordering::Relaxed)
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
