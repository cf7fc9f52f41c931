//! The work, one type per hop: a client asks for a [`Request`] on its targets; the controller
//! plans it into one [`Task`] per engine (for the collectives: with the group of ranks taking
//! part and, for a scatter, each rank's rows). Arrays travel out of band ([`ArrayMeta`] names a
//! buffer of the frame, or [`Chunk`] frames follow).

use serde::{Deserialize, Serialize};

use crate::{Dtype, Rank};

/// Describes an array whose raw little-endian bytes travel in a buffer of the frame.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ArrayMeta {
    /// Element type.
    pub dtype: Dtype,
    /// Shape (row-major, C order); empty for a 0-d array.
    pub shape: Vec<usize>,
    /// Index of the buffer holding the bytes.
    pub buffer: usize,
    /// Index of the frame's descriptor holding the bytes instead, on the same-host path: a
    /// sealed memfd of exactly the array's bytes (see [`crate::memfd`]); `buffer` is then unused.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fd: Option<usize>,
    /// The memfd at `fd` is lent, not sealed against writes: whose it is, to release it to
    /// (see [`crate::memfd::lent`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lent: Option<crate::memfd::lent::Lent>,
}

/// What a call returned out of band (see [`Outcome::returned`](crate::Outcome::returned)): an
/// opaque payload (the Python client's pickle, whose arrays it refers to by index) and arrays,
/// each in the reply's buffers rather than in its header.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Returned {
    /// Index of the buffer holding the payload.
    pub payload: usize,
    /// The arrays, in the payload's order.
    pub arrays: Vec<ReturnedArray>,
}

/// One array of a [`Returned`]: its bytes are `byte_len(dtype, shape)` bytes at `offset` of
/// buffer `buffer`. Most arrays have a buffer of their own (offset 0); a frame holds at most
/// about a thousand buffers, so beyond that the smallest share one.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReturnedArray {
    /// Element type.
    pub dtype: Dtype,
    /// Shape (row-major, C order); empty for a 0-d array.
    pub shape: Vec<usize>,
    /// Index of the buffer holding the bytes.
    pub buffer: usize,
    /// Where the bytes start in that buffer.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub offset: usize,
}

fn is_zero(n: &usize) -> bool {
    *n == 0
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

/// An argument of [`Request::Apply`] and [`Task::Apply`].
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

/// What a client asks of its target engines (client → controller).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", content = "args")]
pub enum Request {
    /// Run a cell of code in each engine's persistent namespace.
    Execute {
        /// Source of the cell.
        code: String,
    },
    /// Run a file's code in each engine's persistent namespace, like IPython's `%run`:
    /// tracebacks name `filename`.
    Run {
        /// Source of the file.
        code: String,
        /// The file's name, as the user gave it.
        filename: String,
    },
    /// Bind `name` to an array on every target (sent once, to the lowest target, which
    /// broadcasts it). The bytes are in the frame's buffer, or, when the frame has no buffer,
    /// in [`Chunk`] frames that follow it (the same holds for [`Request::Scatter`]).
    Push {
        /// Variable name.
        name: String,
        /// The array.
        array: ArrayMeta,
        /// One read-only copy for all targets of the host (`push --shared`): the array must
        /// come in a memfd (`array.fd`) and every target maps that memfd shared, read-only;
        /// without a memfd the request is refused, never turned into a copy per engine.
        #[serde(default, skip_serializing_if = "std::ops::Not::not")]
        shared: bool,
    },
    /// Send back each target's array bound to `name`.
    Pull {
        /// Variable name.
        name: String,
        /// The client is on the controller's host: engines there reply with a memfd.
        #[serde(default, skip_serializing_if = "std::ops::Not::not")]
        shm: bool,
        /// The client's lender number ([`crate::memfd::lent`]): an array that lives in a memfd
        /// it lent goes back as that memfd, and the reply carries the memfds released to it.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        lender: Option<u64>,
        /// Memfds the target engines lent this client ([`crate::memfd::lent`]) that it no
        /// longer maps: each engine takes back its own.
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        returned: Vec<crate::memfd::lent::Lent>,
    },
    /// Split an array along axis 0 over the targets (as evenly as possible, the first ones
    /// getting one row more). From a client on the controller's host to engines there, the
    /// array may come in a memfd (`array.fd`): each target then maps its own rows of it.
    Scatter {
        /// Variable name.
        name: String,
        /// The whole array.
        array: ArrayMeta,
    },
    /// Concatenate `name` along axis 0 over the targets, in id order; the lowest target
    /// replies with the whole array.
    Gather {
        /// Variable name.
        name: String,
        /// The client is on the controller's host: the lowest target, when there too, gathers
        /// into a memfd and replies with it.
        #[serde(default, skip_serializing_if = "std::ops::Not::not")]
        shm: bool,
        /// Memfds the target engines lent this client ([`crate::memfd::lent`]) that it no
        /// longer maps: each engine takes back its own.
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        returned: Vec<crate::memfd::lent::Lent>,
    },
    /// Call a native or cell-defined function with arguments on each target.
    Apply {
        /// Function name.
        function: String,
        /// Arguments.
        args: Vec<Arg>,
    },
}

impl Request {
    /// Whether the request moves data among its targets with MPI (so they must share a world).
    pub fn is_collective(&self) -> bool {
        matches!(self, Request::Push { .. } | Request::Scatter { .. } | Request::Gather { .. })
    }

    /// The task of a request that each engine runs alone, as the engine gets it: the same
    /// work; `Err` with the request for the collectives (they need a group).
    ///
    /// # Errors
    /// The request itself, when it is a collective.
    pub fn alone(self) -> Result<Task, Request> {
        match self {
            Request::Execute { code } => Ok(Task::Execute { code }),
            Request::Run { code, filename } => Ok(Task::Run { code, filename }),
            Request::Pull { name, shm, lender, returned } => Ok(Task::Pull { name, shm, lender, returned }),
            Request::Apply { function, args } => Ok(Task::Apply { function, args }),
            collective => Err(collective),
        }
    }
}

/// The work one engine is asked to do (controller → engine).
///
/// For the collective kinds, `group` lists the ranks taking part (all in the engine's world),
/// the root first: the lowest, except for a memfd push that also reaches ranks on other hosts,
/// whose root is the engine on the client's host that maps the memfd and broadcasts it (see the
/// controller's plan). Only the root's frame carries the array bytes (or the memfd).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", content = "args")]
pub enum Task {
    /// As [`Request::Execute`], on this engine.
    Execute {
        /// Source.
        code: String,
    },
    /// As [`Request::Run`], on this engine.
    Run {
        /// Source.
        code: String,
        /// The file's name.
        filename: String,
    },
    /// Bind `name` to an array; with several ranks the root broadcasts it (MPI Bcast). The
    /// bytes are in the root's frame, or, when that frame has no buffer, in [`Chunk`] frames
    /// that follow it (the same holds for [`Task::Scatter`]).
    Push {
        /// Variable name.
        name: String,
        /// The array (bytes in the root's frame).
        array: ArrayMeta,
        /// Ranks taking part.
        group: Vec<Rank>,
        /// Map the array's memfd shared and read-only, not copy-on-write (as `shared` of
        /// [`Request::Push`]).
        #[serde(default, skip_serializing_if = "std::ops::Not::not")]
        shared: bool,
    },
    /// As [`Request::Pull`], on this engine.
    Pull {
        /// Variable.
        name: String,
        /// Reply with the array in a sealed memfd (the engine and the client share a host).
        #[serde(default, skip_serializing_if = "std::ops::Not::not")]
        shm: bool,
        /// As in [`Request::Pull`].
        #[serde(default, skip_serializing_if = "Option::is_none")]
        lender: Option<u64>,
        /// As in [`Request::Pull`]: the memfds this engine lent that the client let go.
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        returned: Vec<crate::memfd::lent::Lent>,
    },
    /// Split an array along axis 0 over the group (MPI Scatterv from the root). When the
    /// array is in the frame's memfd (`array.fd`, same host), the group is this engine alone,
    /// `rows` its own rows and `first_row` where they start: it maps them, no MPI.
    Scatter {
        /// Variable name.
        name: String,
        /// The whole array (bytes in the root's frame).
        array: ArrayMeta,
        /// Ranks taking part.
        group: Vec<Rank>,
        /// Rows for each rank of the group, in group order.
        rows: Vec<usize>,
        /// The first of this engine's rows in a memfd array (0 otherwise).
        #[serde(default, skip_serializing_if = "is_zero")]
        first_row: usize,
    },
    /// Concatenate `name` along axis 0 over the group (MPI Gatherv to the root, which replies
    /// with the whole array).
    Gather {
        /// Variable name.
        name: String,
        /// Ranks taking part.
        group: Vec<Rank>,
        /// The root gathers into a sealed memfd and replies with it (it and the client share
        /// a host).
        #[serde(default, skip_serializing_if = "std::ops::Not::not")]
        shm: bool,
        /// As in [`Request::Pull`]: the memfds this engine lent that the client let go.
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        returned: Vec<crate::memfd::lent::Lent>,
    },
    /// As [`Request::Apply`], on this engine.
    Apply {
        /// Function.
        function: String,
        /// Arguments.
        args: Vec<Arg>,
    },
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Dtype;

    #[test]
    fn a_shared_push_round_trips_and_older_pushes_read_as_not_shared() {
        let array = ArrayMeta { dtype: Dtype::F64, shape: vec![3], buffer: 0, fd: Some(0), lent: None };
        let shared = Request::Push { name: "x".into(), array: array.clone(), shared: true };
        let json = serde_json::to_string(&shared).unwrap();
        assert_eq!(serde_json::from_str::<Request>(&json).unwrap(), shared);
        let task = Task::Push { name: "x".into(), array: array.clone(), group: vec![Rank(0)], shared: true };
        assert_eq!(serde_json::from_str::<Task>(&serde_json::to_string(&task).unwrap()).unwrap(), task);
        // An ordinary push is written as before (no `shared`), and what was written before reads
        // as an ordinary push.
        let plain = Request::Push { name: "x".into(), array, shared: false };
        let json = serde_json::to_string(&plain).unwrap();
        assert!(!json.contains("shared"), "{json}");
        assert_eq!(serde_json::from_str::<Request>(&json).unwrap(), plain);
    }
}
