//! The collectives a cell can call, as a trait: the engine implements it over MPI, tests over threads.

use thiserror::Error;

/// Reduction operator of `allreduce`/`reduce`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReduceOp {
    /// Element-wise sum.
    Sum,
    /// Element-wise product.
    Prod,
    /// Element-wise minimum.
    Min,
    /// Element-wise maximum.
    Max,
}

/// An error from a collective (bad rank, mismatched sizes, interrupted wait).
#[derive(Debug, Error)]
#[error("{0}")]
pub struct CommError(pub String);

/// The communication a cell can do with the other engines of its world.
///
/// All methods are called from the one thread that owns the interpreter. Collectives must be
/// called by every rank of the communicator in the same order, as in MPI.
pub trait Collectives {
    /// This engine's rank in the communicator.
    fn rank(&self) -> usize;
    /// Number of ranks in the communicator.
    fn size(&self) -> usize;
    /// Blocks until every rank has entered the barrier.
    fn barrier(&self) -> Result<(), CommError>;
    /// Element-wise reduction of `data` over all ranks, result on every rank, in place.
    fn allreduce_f64(&self, data: &mut [f64], op: ReduceOp) -> Result<(), CommError>;
    /// Element-wise reduction of `data` over all ranks, result on every rank, in place.
    fn allreduce_i64(&self, data: &mut [i64], op: ReduceOp) -> Result<(), CommError>;
    /// Element-wise reduction of `send` over all ranks into `recv` (same length) on every
    /// rank, without touching `send`. The default copies and reduces in place; an MPI
    /// implementation reduces straight from one buffer into the other.
    fn allreduce_f64_into(&self, send: &[f64], recv: &mut [f64], op: ReduceOp) -> Result<(), CommError> {
        recv.copy_from_slice(send);
        self.allreduce_f64(recv, op)
    }
    /// Like [`allreduce_f64_into`](Self::allreduce_f64_into) for i64.
    fn allreduce_i64_into(&self, send: &[i64], recv: &mut [i64], op: ReduceOp) -> Result<(), CommError> {
        recv.copy_from_slice(send);
        self.allreduce_i64(recv, op)
    }
    /// Element-wise reduction to `root`; `data` holds the result on `root` only.
    fn reduce_f64(&self, data: &mut [f64], op: ReduceOp, root: usize) -> Result<(), CommError>;
    /// Element-wise reduction to `root`; `data` holds the result on `root` only.
    fn reduce_i64(&self, data: &mut [i64], op: ReduceOp, root: usize) -> Result<(), CommError>;
    /// Broadcasts `root`'s bytes; on other ranks `buf` is replaced by them.
    fn bcast_bytes(&self, buf: &mut Vec<u8>, root: usize) -> Result<(), CommError>;
    /// Every rank's bytes, in rank order, on every rank.
    fn allgather_bytes(&self, mine: &[u8]) -> Result<Vec<Vec<u8>>, CommError>;
    /// Sends bytes to `dest` with `tag` (blocking until the send buffer can be reused).
    fn send_bytes(&self, data: &[u8], dest: usize, tag: i32) -> Result<(), CommError>;
    /// Receives bytes sent by `source` with `tag`.
    fn recv_bytes(&self, source: usize, tag: i32) -> Result<Vec<u8>, CommError>;
}
