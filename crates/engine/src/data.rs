//! Data in and out of the engine's namespace: push (MPI Bcast from the root), pull, scatter
//! (MPI Scatterv from the root) and gather (MPI Gatherv to the root), over a communicator of
//! exactly the engines taking part, created once per set of engines and cached.
//!
//! Every collective here starts with a small agreement step (a status Bcast from the root, or
//! an allgather of each member's metadata) so that an error on one engine becomes the same
//! error on all of them instead of a hang.

use std::collections::HashMap;

use bytes::Bytes;
use mpi::{
    datatype::{Partition, PartitionMut},
    topology::{Communicator, Group, SimpleCommunicator},
    traits::*,
    Count,
};
use mpx_cells::{raw, ArrayValue, Collectives, DType, Interpreter};
use mpx_messages::{ArrayMeta, EngineId, RemoteError};

use crate::{
    mpi_comm::{recv_buf, send_buf, MpiComm},
    state::Board,
};

/// Largest single MPI message (counts are C ints).
const MAX_COUNT: usize = i32::MAX as usize;

/// An error of a data operation on this engine.
fn err(ename: &str, evalue: impl Into<String>) -> RemoteError {
    RemoteError::new(ename, evalue)
}

/// The wire description of an array whose bytes go in buffer `buffer`.
pub fn meta_of(a: &ArrayValue, buffer: usize) -> ArrayMeta {
    ArrayMeta { dtype: a.dtype(), shape: a.shape().to_vec(), buffer }
}

/// A zero-filled array to receive into.
fn zeros(dtype: DType, shape: &[usize]) -> Result<ArrayValue, RemoteError> {
    let n: usize = shape.iter().product();
    raw::from_bytes(dtype, shape, &vec![0u8; n * dtype.item_size()]).map_err(|e| err(&e.ename, e.evalue))
}

/// The bytes of an array owned here, for receiving into.
fn bytes_mut(a: &mut ArrayValue) -> &mut [u8] {
    fn cast<T: Clone>(x: &mut std::sync::Arc<ndarray::ArrayD<T>>) -> &mut [u8] {
        let s = std::sync::Arc::make_mut(x).as_slice_mut().expect("zeros() makes standard-layout arrays");
        // SAFETY: plain element types without padding; bool receives only bytes sent from a
        // validated bool array (0 or 1).
        unsafe { std::slice::from_raw_parts_mut(s.as_mut_ptr().cast::<u8>(), std::mem::size_of_val(s)) }
    }
    match a {
        ArrayValue::F64(x) => cast(x),
        ArrayValue::F32(x) => cast(x),
        ArrayValue::I64(x) => cast(x),
        ArrayValue::I32(x) => cast(x),
        ArrayValue::U8(x) => cast(x),
        ArrayValue::Bool(x) => cast(x),
    }
}

/// Communicators per set of engines, created on first use.
pub struct Groups {
    world_size: usize,
    board: Board,
    cache: HashMap<Vec<EngineId>, MpiComm>,
}

impl Groups {
    /// An empty cache for a world of `world_size` ranks; MPI calls are recorded on `board`.
    pub fn new(world_size: usize, board: Board) -> Self {
        Groups { world_size, board, cache: HashMap::new() }
    }

    /// The communicator of exactly `group` (sorted world ranks); the lowest is rank 0 in it.
    /// Collective over the members only (MPI_Comm_create_group).
    fn comm(&mut self, group: &[EngineId]) -> Result<&MpiComm, RemoteError> {
        if let Some(&bad) = group.iter().find(|&&r| r as usize >= self.world_size) {
            return Err(err("ValueError", format!("engine {bad} is not in this MPI world")));
        }
        if !self.cache.contains_key(group) {
            let world = SimpleCommunicator::world();
            let (comm, name) = if group.len() == self.world_size {
                (world, "COMM_WORLD".to_string())
            } else {
                let ranks: Vec<i32> = group.iter().map(|&r| r as i32).collect();
                let sub = world.group().include(&ranks);
                let _in = self.board.mpi("comm_create_group", format!("{group:?}"));
                let comm = world
                    .split_by_subgroup(&sub)
                    .ok_or_else(|| err("MPIError", "could not create a communicator"))?;
                (comm, format!("{group:?}"))
            };
            self.cache.insert(group.to_vec(), MpiComm::new(comm, name, self.board.clone()));
        }
        Ok(&self.cache[group])
    }
}

/// Broadcasts the root's bytes in pieces small enough for MPI's int counts.
fn bcast_bytes(comm: &SimpleCommunicator, buf: &mut [u8]) {
    let root = comm.process_at_rank(0);
    for chunk in buf.chunks_mut(MAX_COUNT) {
        root.broadcast_into(chunk);
    }
}

/// Root: `Ok(())` or the error to share; everyone: the root's verdict.
fn agree(comm: &SimpleCommunicator, mine: Result<(), RemoteError>) -> Result<(), RemoteError> {
    let mut flag = [u8::from(mine.is_err())];
    comm.process_at_rank(0).broadcast_into(&mut flag[..]);
    match (mine, flag[0]) {
        (Err(e), _) => Err(e),
        (Ok(()), 0) => Ok(()),
        (Ok(()), _) => Err(err("RootError", "the root engine failed; see its error")),
    }
}

/// Binds `name` on every engine of `group` to the root's array.
pub fn push(
    groups: &mut Groups,
    interp: &mut Interpreter,
    name: &str,
    meta: &ArrayMeta,
    group: &[EngineId],
    buffers: &[Bytes],
) -> Result<(), RemoteError> {
    let dtype = meta.dtype;
    let decode = || {
        buffers
            .get(meta.buffer)
            .ok_or_else(|| err("ValueError", "the array's bytes are missing"))
            .and_then(|b| raw::from_bytes(dtype, &meta.shape, b).map_err(|e| err(&e.ename, e.evalue)))
    };
    if group.len() == 1 {
        interp.set_array(name, decode()?);
        return Ok(());
    }
    let group_comm = groups.comm(group)?;
    let _in = group_comm.enter("bcast");
    let comm = group_comm.comm();
    let mut array = if comm.rank() == 0 {
        let decoded = decode();
        agree(comm, decoded.as_ref().map(|_| ()).map_err(Clone::clone))?;
        decoded?
    } else {
        agree(comm, Ok(()))?;
        zeros(dtype, &meta.shape)?
    };
    bcast_bytes(comm, bytes_mut(&mut array));
    interp.set_array(name, array);
    Ok(())
}

/// The array bound to `name`, as a buffer.
pub fn pull(interp: &Interpreter, rank: u32, name: &str) -> Result<(ArrayMeta, Bytes), RemoteError> {
    let a = interp
        .get_array(name)
        .map_err(|e| err(&e.ename, format!("engine {rank}: cannot pull {name:?}: {}", e.evalue)))?;
    Ok((meta_of(&a, 0), raw::to_bytes(&a)))
}

fn counts_displs(counts: &[usize]) -> Result<(Vec<Count>, Vec<Count>), RemoteError> {
    let total: usize = counts.iter().sum();
    if total > MAX_COUNT {
        return Err(err("ValueError", format!("{total} bytes exceed one MPI Scatterv/Gatherv (2 GiB)")));
    }
    let c: Vec<Count> = counts.iter().map(|&n| n as Count).collect();
    let d: Vec<Count> = c.iter().scan(0, |acc, &n| Some(std::mem::replace(acc, *acc + n))).collect();
    Ok((c, d))
}

/// Binds `name` on each engine of `group` to its rows of the root's array.
#[allow(clippy::too_many_arguments)]
pub fn scatter(
    groups: &mut Groups,
    interp: &mut Interpreter,
    name: &str,
    meta: &ArrayMeta,
    group: &[EngineId],
    rows: &[usize],
    buffers: &[Bytes],
) -> Result<(), RemoteError> {
    let dtype = meta.dtype;
    let row_bytes = meta.shape[1..].iter().product::<usize>() * dtype.item_size();
    let group_comm = groups.comm(group)?;
    let _in = group_comm.enter("scatterv");
    let comm = group_comm.comm();
    let me = comm.rank() as usize;
    let byte_counts: Vec<usize> = rows.iter().map(|r| r * row_bytes).collect();
    let (counts, displs) = counts_displs(&byte_counts)?;
    let mut shape = meta.shape.clone();
    shape[0] = rows[me];
    let mut mine = zeros(dtype, &shape)?;
    if me == 0 {
        let whole =
            buffers.get(meta.buffer).ok_or_else(|| err("ValueError", "the array's bytes are missing"));
        let checked = whole.and_then(|b| {
            if dtype == DType::Bool && b.iter().any(|&x| x > 1) {
                Err(err("ValueError", "a bool array holds bytes other than 0 and 1"))
            } else {
                Ok(b)
            }
        });
        agree(comm, checked.map(|_| ()).map_err(|e| e.clone()))?;
        let whole = &buffers[meta.buffer];
        let send = Partition::new(send_buf(whole), &counts[..], &displs[..]);
        let mut spare = [0u8; 1];
        comm.process_at_rank(0).scatter_varcount_into_root(&send, recv_buf(bytes_mut(&mut mine), &mut spare));
    } else {
        agree(comm, Ok(()))?;
        let mut spare = [0u8; 1];
        comm.process_at_rank(0).scatter_varcount_into(recv_buf(bytes_mut(&mut mine), &mut spare));
    }
    interp.set_array(name, mine);
    Ok(())
}

/// What a member has to contribute to a gather: dtype and shape, or why it cannot.
fn describe(interp: &Interpreter, rank: u32, name: &str) -> Result<ArrayValue, String> {
    let a = interp.get_array(name).map_err(|e| format!("engine {rank}: {}", e.evalue))?;
    if a.ndim() == 0 {
        return Err(format!("engine {rank}: {name:?} is 0-d; gather concatenates along axis 0"));
    }
    Ok(a)
}

fn encode_desc(d: &Result<ArrayValue, String>) -> Vec<u8> {
    match d {
        Ok(a) => {
            let mut out = vec![0u8, DType::ALL.iter().position(|&t| t == a.dtype()).unwrap_or(0) as u8];
            for &s in a.shape() {
                out.extend_from_slice(&(s as u64).to_le_bytes());
            }
            out
        }
        Err(why) => {
            let mut out = vec![1u8];
            out.extend_from_slice(why.as_bytes());
            out
        }
    }
}

/// Gathers `name` from every engine of `group` onto the root; the root returns the array.
pub fn gather(
    groups: &mut Groups,
    interp: &Interpreter,
    rank: u32,
    name: &str,
    group: &[EngineId],
) -> Result<Option<(ArrayMeta, Bytes)>, RemoteError> {
    let mine = describe(interp, rank, name);
    let comm = groups.comm(group)?;
    let _in = comm.enter("gatherv");
    let all = comm.allgather_bytes(&encode_desc(&mine)).map_err(|e| err("CommError", e.0))?;
    // Everyone checks every description the same way, so everyone reaches the same verdict.
    let mut shapes = Vec::with_capacity(all.len());
    for d in &all {
        match d.split_first() {
            Some((0, rest)) => {
                let dims: Vec<usize> = rest[1..]
                    .chunks_exact(8)
                    .map(|c| u64::from_le_bytes(c.try_into().unwrap()) as usize)
                    .collect();
                shapes.push((rest[0], dims));
            }
            Some((_, why)) => {
                return Err(err(
                    "NameError",
                    format!("cannot gather {name:?}: {}", String::from_utf8_lossy(why)),
                ))
            }
            None => return Err(err("CommError", "empty description")),
        }
    }
    let (dt, first) = &shapes[0];
    if let Some((i, _)) = shapes.iter().enumerate().find(|(_, (d, s))| d != dt || s[1..] != first[1..]) {
        return Err(err(
            "ValueError",
            format!(
                "cannot gather {name:?}: engine {} has dtype {} shape {:?}, engine {} has dtype {} shape {:?}",
                group[0],
                DType::ALL[*dt as usize].name(),
                first,
                group[i],
                DType::ALL[shapes[i].0 as usize].name(),
                shapes[i].1
            ),
        ));
    }
    let a = mine.expect("checked by the agreement above");
    let dtype = a.dtype();
    let row_bytes = first[1..].iter().product::<usize>() * dtype.item_size();
    let rows: Vec<usize> = shapes.iter().map(|(_, s)| s[0]).collect();
    let (counts, displs) = counts_displs(&rows.iter().map(|r| r * row_bytes).collect::<Vec<_>>())?;
    let send = raw::to_bytes(&a);
    let comm = comm.comm();
    if comm.rank() == 0 {
        let mut shape = first.clone();
        shape[0] = rows.iter().sum();
        let mut whole = zeros(dtype, &shape)?;
        let mut spare = [0u8; 1];
        {
            let mut recv =
                PartitionMut::new(recv_buf(bytes_mut(&mut whole), &mut spare), &counts[..], &displs[..]);
            comm.process_at_rank(0).gather_varcount_into_root(send_buf(&send), &mut recv);
        }
        Ok(Some((meta_of(&whole, 0), raw::to_bytes(&whole))))
    } else {
        comm.process_at_rank(0).gather_varcount_into(send_buf(&send));
        Ok(None)
    }
}
