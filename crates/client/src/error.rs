//! The crate's errors: [`ClientError`] for every call, and the two causes it carries whole,
//! [`NpyError`] (an `.npy` file) and [`SharedPushError`] (a shared push). They sit below every
//! other module: each returns them, none of them refers back.

use mpx_messages::memfd::MemfdError;
use mpx_messages::{ArrayError, CodecError, Dtype, EngineId, MpxError, Rank};
use thiserror::Error;

/// Why a client call failed.
#[derive(Debug, Error)]
pub enum ClientError {
    /// No such cluster / connection file problem.
    #[error("{0}")]
    NotFound(String),
    /// The TCP connection could not be made. (The cause is part of the message and not a
    /// `source`, so that error chains do not say it twice.)
    #[error("cannot connect to the controller at {address}: {cause}")]
    Connect {
        /// Address tried.
        address: String,
        /// Cause.
        cause: std::io::Error,
    },
    /// The controller refused our signature.
    #[error(
        "authentication failed: the controller rejected this client's key (wrong or stale connection file?)"
    )]
    Rejected,
    /// The connection ended.
    #[error("connection to the controller lost: {0}")]
    Closed(String),
    /// The wait ran out; the request goes on and can be waited for again.
    #[error("timed out after {0:?} (the request is still running; wait again to get it)")]
    Timeout(std::time::Duration),
    /// The controller refused the request.
    #[error("request refused by the controller: {0}")]
    Refused(MpxError),
    /// An engine died (killed, crashed, exited); `cause` is what mpirun reported (signal or
    /// exit code). Its MPI world was torn down (or restarted) after it.
    #[error("engine {engine} died: {cause}")]
    EngineDied {
        /// The engine.
        engine: EngineId,
        /// Its rank in its MPI world.
        rank: Rank,
        /// How it died.
        cause: String,
    },
    /// One or more engines reported an error.
    #[error("{}", .0.iter().map(|(id, e)| format!("[{id}:{}] {}", e.ename(), e.evalue())).collect::<Vec<_>>().join("; "))]
    Remote(Vec<(EngineId, MpxError)>),
    /// A load-balanced task that no engine ran failed ([`MpxError::NoEngines`]: none to run it;
    /// [`MpxError::Refused`]: not a kind of task that runs on one engine).
    #[error("the task ran on no engine: {0}")]
    NotRun(MpxError),
    /// An `.npy` file that cannot be used (malformed, unsupported dtype, unwritable).
    #[error("{path}: {cause}")]
    Npy {
        /// The file.
        path: String,
        /// Why (part of the message, not a `source`: error chains say it once).
        cause: NpyError,
    },
    /// A shared push (one read-only copy for the host's engines) cannot be made: it needs
    /// the same-host path (this client and every target on the controller's host, memfds), and
    /// it never becomes a copy per engine instead.
    #[error("cannot push shared: {0}; a shared push maps one memfd on the controller's host")]
    NotShared(#[from] SharedPushError),
    /// Framing or encoding failure.
    #[error(transparent)]
    Codec(#[from] CodecError),
}

/// Why bytes are not an `.npy` array mpx can use.
#[derive(Debug, Error)]
pub enum NpyError {
    /// Reading or writing failed.
    #[error("{0}")]
    Io(#[from] std::io::Error),
    /// The file does not start with numpy's magic string.
    #[error("not an .npy file (it does not start with \\x93NUMPY)")]
    NotNpy,
    /// A format version other than 1.0, 2.0 or 3.0.
    #[error("unsupported .npy format version {0}.{1}")]
    Version(u8, u8),
    /// The header is not a dict with `descr`, `fortran_order` and `shape`.
    #[error("malformed .npy header: {0}")]
    Header(String),
    /// A dtype mpx does not carry.
    #[error(
        "dtype '{descr}' is not supported (mpx carries float64, float32, int64, int32, int16, int8, \
         uint64, uint32, uint16, uint8, bool, complex64 and complex128)"
    )]
    Unsupported {
        /// The header's `descr`.
        descr: String,
    },
    /// A big-endian dtype.
    #[error(
        "dtype '{descr}' is big-endian; mpx arrays are little-endian \
         (save a.astype(a.dtype.newbyteorder('<')) instead)"
    )]
    BigEndian {
        /// The header's `descr`.
        descr: String,
    },
    /// The shape's byte count overflows.
    #[error("shape {shape:?} of {dtype} is too large")]
    TooLarge {
        /// Element type.
        dtype: Dtype,
        /// Shape.
        shape: Vec<usize>,
    },
    /// The data after the header is not the size the header implies.
    #[error("the header says {dtype} {shape:?} ({expected} bytes) but {got} data bytes follow it")]
    WrongSize {
        /// Element type.
        dtype: Dtype,
        /// Shape.
        shape: Vec<usize>,
        /// Bytes the header implies.
        expected: usize,
        /// Bytes the file holds after the header.
        got: u64,
    },
    /// The bytes are not a valid array (e.g. a bool byte other than 0 or 1).
    #[error(transparent)]
    Array(#[from] ArrayError),
}

/// Why a shared push (one read-only copy for every engine of the host) cannot be made.
#[derive(Debug, Error)]
pub enum SharedPushError {
    /// `MPX_SHM=0`: this client connected over TCP.
    #[error("MPX_SHM=0 keeps this client off the controller's Unix socket")]
    Disabled,
    /// The client is not on the controller's host (it connected over TCP).
    #[error("this client is not on the controller's host")]
    NotLocal,
    /// Some target engines are on other hosts (or not known to the client).
    #[error("engines {} are not on the controller's host", display_ids(.0))]
    EnginesElsewhere(Vec<EngineId>),
    /// No memfd could be made for the array.
    #[error("no memfd for the array: {0}")]
    Memfd(#[from] MemfdError),
}

fn display_ids(ids: &[EngineId]) -> String {
    ids.iter().map(ToString::to_string).collect::<Vec<_>>().join(", ")
}
