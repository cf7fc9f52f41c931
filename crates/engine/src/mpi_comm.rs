//! [`Collectives`] over a real MPI communicator. Lives on the thread that initialised MPI.

use mpi::{
    collective::SystemOperation, datatype::PartitionMut, topology::SimpleCommunicator, traits::*, Count,
};
use mpx_cells::comm::{Collectives, CommError, ReduceOp};

use crate::state::{Board, MpiGuard};

/// A real address for an empty send buffer.
static EMPTY: [u8; 1] = [0];

/// `buf`, or an empty slice at a real address when `buf` is empty. An empty `Vec<u8>` or
/// `Bytes` points at address 1, which is Open MPI's `MPI_IN_PLACE`: passed as a buffer it
/// changes the meaning of the call (or is refused as an invalid argument).
pub fn send_buf(buf: &[u8]) -> &[u8] {
    if buf.is_empty() {
        &EMPTY[..0]
    } else {
        buf
    }
}

/// Like [`send_buf`] for receive buffers; `spare` provides the real address.
pub fn recv_buf<'a>(buf: &'a mut [u8], spare: &'a mut [u8; 1]) -> &'a mut [u8] {
    if buf.is_empty() {
        &mut spare[..0]
    } else {
        buf
    }
}

/// A cell's view of an MPI communicator (COMM_WORLD for now).
pub struct MpiComm {
    comm: SimpleCommunicator,
    name: String,
    board: Board,
}

impl MpiComm {
    /// Wraps the engine's own duplicate of `MPI_COMM_WORLD` (made before any kernel code
    /// runs, so it keeps `MPI_ERRORS_ARE_FATAL` whatever mpi4py does to COMM_WORLD); shown as
    /// `COMM_WORLD`; MPI calls are recorded on `board`.
    pub fn world(world_dup: SimpleCommunicator, board: Board) -> Self {
        MpiComm { comm: world_dup, name: "COMM_WORLD".into(), board }
    }

    /// Wraps a communicator named `name` (for `mpx where`).
    pub fn new(comm: SimpleCommunicator, name: String, board: Board) -> Self {
        MpiComm { comm, name, board }
    }

    /// Records that the MPI thread is inside `call` until the guard drops.
    pub fn enter(&self, call: &'static str) -> MpiGuard<'_> {
        self.board.mpi(call, self.name.clone())
    }

    /// The communicator.
    pub fn comm(&self) -> &SimpleCommunicator {
        &self.comm
    }

    fn check_rank(&self, r: usize, what: &str) -> Result<i32, CommError> {
        if r < self.size() {
            Ok(r as i32)
        } else {
            Err(CommError(format!("{what} {r} is not a rank of this world of {} ranks", self.size())))
        }
    }

    fn check_tag(tag: i32) -> Result<i32, CommError> {
        if (0..=32767).contains(&tag) {
            Ok(tag)
        } else {
            Err(CommError(format!("tag {tag} is outside 0..=32767")))
        }
    }
}

fn op(op: ReduceOp) -> SystemOperation {
    match op {
        ReduceOp::Sum => SystemOperation::sum(),
        ReduceOp::Prod => SystemOperation::product(),
        ReduceOp::Min => SystemOperation::min(),
        ReduceOp::Max => SystemOperation::max(),
    }
}

/// All ranks must agree on the length of a reduction; a mismatch would be undefined behaviour
/// in MPI, so it is checked first with one small allreduce of `[len, -len]` under MAX.
fn check_same_len(comm: &SimpleCommunicator, len: usize) -> Result<(), CommError> {
    let mine = [len as i64, -(len as i64)];
    let mut out = [0i64; 2];
    comm.all_reduce_into(&mine[..], &mut out[..], SystemOperation::max());
    let (hi, lo) = (out[0], -out[1]);
    if lo != hi {
        return Err(CommError(format!("ranks reduce different lengths ({lo} to {hi} elements)")));
    }
    Ok(())
}

macro_rules! reductions {
    ($allreduce:ident, $reduce:ident, $t:ty) => {
        fn $allreduce(&self, data: &mut [$t], o: ReduceOp) -> Result<(), CommError> {
            let _in = self.enter("allreduce");
            check_same_len(&self.comm, data.len())?;
            let send = data.to_vec();
            self.comm.all_reduce_into(&send[..], data, op(o));
            Ok(())
        }

        fn $reduce(&self, data: &mut [$t], o: ReduceOp, root: usize) -> Result<(), CommError> {
            let root = self.check_rank(root, "root")?;
            let _in = self.enter("reduce");
            check_same_len(&self.comm, data.len())?;
            let send = data.to_vec();
            let process = self.comm.process_at_rank(root);
            if self.comm.rank() == root {
                process.reduce_into_root(&send[..], data, op(o));
            } else {
                process.reduce_into(&send[..], op(o));
            }
            Ok(())
        }
    };
}

impl Collectives for MpiComm {
    fn rank(&self) -> usize {
        self.comm.rank() as usize
    }

    fn size(&self) -> usize {
        self.comm.size() as usize
    }

    fn barrier(&self) -> Result<(), CommError> {
        let _in = self.enter("barrier");
        self.comm.barrier();
        Ok(())
    }

    reductions!(allreduce_f64, reduce_f64, f64);
    reductions!(allreduce_i64, reduce_i64, i64);

    fn allreduce_f64_into(&self, send: &[f64], recv: &mut [f64], o: ReduceOp) -> Result<(), CommError> {
        let _in = self.enter("allreduce");
        check_same_len(&self.comm, send.len())?;
        self.comm.all_reduce_into(send, recv, op(o));
        Ok(())
    }

    fn allreduce_i64_into(&self, send: &[i64], recv: &mut [i64], o: ReduceOp) -> Result<(), CommError> {
        let _in = self.enter("allreduce");
        check_same_len(&self.comm, send.len())?;
        self.comm.all_reduce_into(send, recv, op(o));
        Ok(())
    }

    fn bcast_bytes(&self, buf: &mut Vec<u8>, root: usize) -> Result<(), CommError> {
        let root = self.check_rank(root, "root")?;
        let _in = self.enter("bcast");
        let process = self.comm.process_at_rank(root);
        let mut len = buf.len() as u64;
        process.broadcast_into(&mut len);
        if self.comm.rank() != root {
            buf.clear();
            buf.resize(len as usize, 0);
        }
        if len > 0 {
            process.broadcast_into(&mut buf[..]);
        }
        Ok(())
    }

    fn allgather_bytes(&self, mine: &[u8]) -> Result<Vec<Vec<u8>>, CommError> {
        let n = self.size();
        let _in = self.enter("allgather");
        let my_len = mine.len() as Count;
        let mut counts: Vec<Count> = vec![0; n];
        self.comm.all_gather_into(&my_len, &mut counts[..]);
        let displs: Vec<Count> = counts
            .iter()
            .scan(0, |acc, &c| {
                let d = *acc;
                *acc += c;
                Some(d)
            })
            .collect();
        let total: usize = counts.iter().map(|&c| c as usize).sum();
        let mut all = vec![0u8; total];
        let mut spare = [0u8; 1];
        {
            let mut partition =
                PartitionMut::new(recv_buf(&mut all[..], &mut spare), &counts[..], &displs[..]);
            self.comm.all_gather_varcount_into(send_buf(mine), &mut partition);
        }
        Ok(counts.iter().zip(&displs).map(|(&c, &d)| all[d as usize..(d + c) as usize].to_vec()).collect())
    }

    fn send_bytes(&self, data: &[u8], dest: usize, tag: i32) -> Result<(), CommError> {
        let dest = self.check_rank(dest, "destination")?;
        let tag = Self::check_tag(tag)?;
        let _in = self.enter("send");
        self.comm.process_at_rank(dest).send_with_tag(send_buf(data), tag);
        Ok(())
    }

    fn recv_bytes(&self, source: usize, tag: i32) -> Result<Vec<u8>, CommError> {
        let source = self.check_rank(source, "source")?;
        let tag = Self::check_tag(tag)?;
        let _in = self.enter("recv");
        let (data, _status) = self.comm.process_at_rank(source).receive_vec_with_tag::<u8>(tag);
        Ok(data)
    }
}
