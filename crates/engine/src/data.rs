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
use mpx_cells::Collectives;
use mpx_messages::{memfd::Mapping, ArrayMeta, Dtype, EngineId, Fds, MpxError, Rank, RemoteError};

use crate::{
    kernel::{HostArray, Kernel},
    landing::Landing,
    mpi_comm::{recv_buf, send_buf, MpiComm},
    shm, siblings,
    state::Board,
    stream::{
        any_failed, bcast_head, chunk_bytes, lend, piece_split, starts_of, step_pieces, Pieces, Sink, Source,
        LEND_TIMEOUT,
    },
};

/// Buffers a gathering root streams its pieces through (see [`Pieces`]).
const GATHER_PIECES: usize = 4;

/// Largest single MPI message (counts are C ints).
const MAX_COUNT: usize = i32::MAX as usize;

/// An error of a data operation on this engine, raised to the cell's caller as a cell error
/// of class `ename` (the protocol's own failures are [`MpxError::Stream`] and the like).
fn err(ename: &str, evalue: impl Into<String>) -> MpxError {
    MpxError::Cell(RemoteError::new(ename, evalue))
}

/// A kernel's verdict without its value, to share with the other members.
fn verdict<T>(made: &Result<T, RemoteError>) -> Result<(), MpxError> {
    made.as_ref().map(|_| ()).map_err(|e| MpxError::Cell(e.clone()))
}

/// The wire description of an array whose bytes go in buffer `buffer`.
pub fn meta_of(a: &dyn HostArray, buffer: usize) -> ArrayMeta {
    ArrayMeta { dtype: a.dtype(), shape: a.shape().to_vec(), buffer, fd: None, lent: None }
}

/// Communicators per set of engines, created on first use.
pub struct Groups {
    world: SimpleCommunicator,
    world_size: usize,
    board: Board,
    cache: HashMap<Vec<Rank>, MpiComm>,
}

impl Groups {
    /// An empty cache over `world` (the engine's own duplicate of COMM_WORLD); MPI calls are
    /// recorded on `board`.
    pub fn new(world: SimpleCommunicator, board: Board) -> Self {
        let world_size = world.size() as usize;
        Groups { world, world_size, board, cache: HashMap::new() }
    }

    /// The communicator of exactly `group` (sorted world ranks); the lowest is rank 0 in it.
    /// Collective over the members only (MPI_Comm_create_group).
    fn comm(&mut self, group: &[Rank]) -> Result<&MpiComm, MpxError> {
        if let Some(&bad) = group.iter().find(|&&r| r.0 as usize >= self.world_size) {
            return Err(err("ValueError", format!("rank {bad} is not in this MPI world")));
        }
        if !self.cache.contains_key(group) {
            // The whole world in its own order is COMM_WORLD; a group listed root first (a memfd
            // push's bridge) gets a communicator in that order, whatever its size.
            let in_order = group.windows(2).all(|w| w[0] < w[1]);
            let (comm, name) = if group.len() == self.world_size && in_order {
                (self.world.duplicate(), "COMM_WORLD".to_string())
            } else {
                let ranks: Vec<i32> = group.iter().map(|&r| r.0 as i32).collect();
                let sub = self.world.group().include(&ranks);
                let _in = self.board.mpi("comm_create_group", format!("{group:?}"));
                let comm = self
                    .world
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
pub(crate) fn bcast_bytes(comm: &SimpleCommunicator, buf: &mut [u8]) {
    let root = comm.process_at_rank(0);
    for chunk in buf.chunks_mut(MAX_COUNT) {
        root.broadcast_into(chunk);
    }
}

/// Root: `Ok(())` or the error to share; everyone: the root's verdict.
fn agree(comm: &SimpleCommunicator, mine: Result<(), MpxError>) -> Result<(), MpxError> {
    let mut flag = [u8::from(mine.is_err())];
    comm.process_at_rank(0).broadcast_into(&mut flag[..]);
    match (mine, flag[0]) {
        (Err(e), _) => Err(e),
        (Ok(()), 0) => Ok(()),
        (Ok(()), _) => Err(err("RootError", "the root engine failed; see its error")),
    }
}

/// Every member's verdict: `Ok(())` only when every member's is (so that no member enters the
/// data steps alone). Waits for the others asleep ([`any_failed`]): members that arrive first
/// do not spin while the last ones still receive the request.
fn agree_all(comm: &SimpleCommunicator, mine: Result<(), MpxError>) -> Result<(), MpxError> {
    let any = any_failed(comm, mine.is_err());
    match (mine, any) {
        (Err(e), _) => Err(e),
        (Ok(()), false) => Ok(()),
        (Ok(()), true) => Err(err("GroupError", "another engine of the group failed; see its error")),
    }
}

fn total_bytes(meta: &ArrayMeta) -> Result<usize, MpxError> {
    mpx_messages::array::byte_len(meta.dtype, &meta.shape)
        .ok_or_else(|| err("ValueError", format!("shape {:?} is too large", meta.shape)))
}

/// Binds `name` on every engine of `group` to the root's array. The root copies each piece of
/// its `source` (the request's buffer, or the chunks streaming in) into a new kernel array, and
/// the others receive the piece's MPI Bcast straight into theirs while the next piece arrives.
/// Nothing is bound unless every piece arrived. A root that holds the array already (`own`: a
/// memfd push's bridge, its source a view of the same memfd) broadcasts it and binds `own`.
pub fn push(
    groups: &mut Groups,
    kernel: &mut dyn Kernel,
    name: &str,
    meta: &ArrayMeta,
    group: &[Rank],
    (source, own): (&mut Source, Option<Mapping>),
) -> Result<(), MpxError> {
    let (dtype, total) = (meta.dtype, total_bytes(meta)?);
    if group.len() == 1 {
        source.check(total)?;
        let mut a = Landing::new(kernel, dtype, &meta.shape)?;
        step_pieces(None, Some(source), dtype, total, |pos, len, piece| {
            a.bytes_mut()[pos..pos + len].copy_from_slice(piece.expect("the root has its pieces"));
        })?;
        return Ok(a.bind(kernel, name, dtype, &meta.shape)?);
    }
    let group_comm = groups.comm(group)?;
    let _in = group_comm.enter("bcast");
    let comm = group_comm.comm();
    let root = comm.rank() == 0;
    // Everyone allocates first, so that a dtype one kernel refuses fails everywhere alike.
    let has_own = own.is_some();
    let made = match own {
        Some(own) => kernel.new_array(dtype, &[0]).map(|_| Landing::Mapped(own)),
        None => Landing::new(kernel, dtype, &meta.shape),
    };
    let mine = verdict(&made);
    agree_all(comm, if root { mine.and_then(|()| source.check(total)) } else { mine })?;
    let mut a = made?;
    if siblings::wanted(total) {
        let part = siblings::Part { name, dtype, shape: &meta.shape, range: 0..total, total };
        let spread = |comm: &SimpleCommunicator, root: Option<&[u8]>, mine: &mut [u8]| match root {
            Some(bytes) => {
                bcast_from_root(comm, bytes);
                mine.copy_from_slice(bytes);
            }
            None => bcast_bytes(comm, mine),
        };
        match siblings::share(comm, kernel, part, root.then_some((&mut *source, has_own)), a, spread)? {
            siblings::Step::Bound => return Ok(()),
            siblings::Step::Pieces(landing) => a = landing,
        }
    }
    step_pieces(Some(comm), root.then_some(source), dtype, total, |pos, len, piece| {
        let region = &mut a.bytes_mut()[pos..pos + len];
        match piece {
            // The root broadcasts the piece as it came, then copies it into its own array
            // while the others wait for the next piece (sleeping, see `step_pieces`) instead of
            // spinning inside the Bcast through the copy.
            Some(piece) => {
                bcast_from_root(comm, piece);
                if !has_own {
                    region.copy_from_slice(piece);
                }
            }
            None => bcast_bytes(comm, region),
        }
    })?;
    Ok(a.bind(kernel, name, dtype, &meta.shape)?)
}

/// The root's side of [`bcast_bytes`], from a buffer it only reads.
pub(crate) fn bcast_from_root(comm: &SimpleCommunicator, buf: &[u8]) {
    use mpi::raw::AsRaw;
    for chunk in buf.chunks(MAX_COUNT) {
        // SAFETY: at the root, MPI_Bcast only reads its buffer (`chunk.len()` bytes at a valid
        // address, alive for the call); the count fits an int (MAX_COUNT); the communicator is
        // valid and keeps MPI_ERRORS_ARE_FATAL, so the return code needs no check.
        unsafe {
            mpi::ffi::MPI_Bcast(
                chunk.as_ptr() as *mut std::ffi::c_void,
                chunk.len() as i32,
                u8::equivalent_datatype().as_raw(),
                0,
                comm.as_raw(),
            );
        }
    }
}

/// The array bound to `name`: its bytes in the reply's buffer, or, when larger than a chunk,
/// streamed to `sink` (then `None`).
pub fn pull(
    kernel: &mut dyn Kernel,
    engine: EngineId,
    name: &str,
    sink: &Sink,
) -> Result<(ArrayMeta, Option<Bytes>), MpxError> {
    let a = kernel
        .array(name)
        .map_err(|e| err(&e.ename, format!("engine {engine}: cannot pull {name:?}: {}", e.evalue)))?;
    let meta = meta_of(a.as_ref(), 0);
    if a.bytes().len() <= chunk_bytes() {
        return Ok((meta, Some(a.into_bytes())));
    }
    // Streamed from the array's own memory: this thread runs nothing else (no cell can write
    // to the array) until the control thread has written and dropped every chunk.
    let (bytes, returned) = lend(a.into_shared_bytes());
    sink.send_all(&bytes);
    drop(bytes);
    returned.wait(LEND_TIMEOUT)?;
    Ok((meta, None))
}

fn counts_displs(counts: &[usize]) -> Result<(Vec<Count>, Vec<Count>), MpxError> {
    let total: usize = counts.iter().sum();
    if total > MAX_COUNT {
        return Err(err("ValueError", format!("{total} bytes exceed one MPI Scatterv/Gatherv (2 GiB)")));
    }
    let c: Vec<Count> = counts.iter().map(|&n| n as Count).collect();
    let d: Vec<Count> = c.iter().scan(0, |acc, &n| Some(std::mem::replace(acc, *acc + n))).collect();
    Ok((c, d))
}

/// Binds `name` on each engine of `group` to its rows of the root's array: for each piece of
/// the root's `source`, an MPI Scatterv of the piece straight into the parts of the engines'
/// new kernel arrays it overlaps. Nothing is bound unless every piece arrived.
#[allow(clippy::too_many_arguments)]
pub fn scatter(
    groups: &mut Groups,
    kernel: &mut dyn Kernel,
    name: &str,
    meta: &ArrayMeta,
    group: &[Rank],
    rows: &[usize],
    source: &mut Source,
) -> Result<(), MpxError> {
    let (dtype, total) = (meta.dtype, total_bytes(meta)?);
    let row_bytes = meta.shape[1..].iter().product::<usize>() * dtype.item_size();
    let group_comm = groups.comm(group)?;
    let _in = group_comm.enter("scatterv");
    let comm = group_comm.comm();
    let me = comm.rank() as usize;
    let byte_counts: Vec<usize> = rows.iter().map(|r| r * row_bytes).collect();
    let starts = starts_of(&byte_counts);
    let mut shape = meta.shape.clone();
    shape[0] = rows[me];
    let made = Landing::new(kernel, dtype, &shape);
    let mine = verdict(&made);
    let root = me == 0;
    agree_all(comm, if root { mine.and_then(|()| source.check(total)) } else { mine })?;
    let mut a = made?;
    let mut spare = [0u8; 1];
    // The fallback's one Scatterv takes up to 2 GiB; larger arrays keep to the pieces.
    if let (true, Ok((counts, displs))) = (siblings::wanted(total), counts_displs(&byte_counts)) {
        let range = starts[me]..starts[me] + byte_counts[me];
        let part = siblings::Part { name, dtype, shape: &shape, range, total };
        let spread = |comm: &SimpleCommunicator, root: Option<&[u8]>, mine: &mut [u8]| {
            let mut spare = [0u8; 1];
            let recv = recv_buf(mine, &mut spare);
            match root {
                Some(bytes) => {
                    let send = Partition::new(send_buf(bytes), &counts[..], &displs[..]);
                    comm.process_at_rank(0).scatter_varcount_into_root(&send, recv);
                }
                None => comm.process_at_rank(0).scatter_varcount_into(recv),
            }
        };
        match siblings::share(comm, kernel, part, root.then_some((&mut *source, false)), a, spread)? {
            siblings::Step::Bound => return Ok(()),
            siblings::Step::Pieces(landing) => a = landing,
        }
    }
    step_pieces(Some(comm), root.then_some(source), dtype, total, |pos, len, piece| {
        let (counts, displs, at) = piece_split(&starts, &byte_counts, pos, len, me);
        let region = &mut a.bytes_mut()[at..at + counts[me] as usize];
        let recv = recv_buf(region, &mut spare);
        match piece {
            Some(piece) => {
                let send = Partition::new(send_buf(piece), &counts[..], &displs[..]);
                comm.process_at_rank(0).scatter_varcount_into_root(&send, recv);
            }
            None => comm.process_at_rank(0).scatter_varcount_into(recv),
        }
    })?;
    Ok(a.bind(kernel, name, dtype, &shape)?)
}

/// Why a member has nothing to contribute to a gather (it travels to the other members).
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize, thiserror::Error)]
#[error("{0}")]
struct NoArray(String);

/// What a member has to contribute to a gather: the array, or why it cannot.
fn describe(kernel: &mut dyn Kernel, engine: EngineId, name: &str) -> Result<Box<dyn HostArray>, NoArray> {
    let a = kernel.array(name).map_err(|e| NoArray(format!("engine {engine}: {}", e.evalue)))?;
    if a.shape().is_empty() {
        return Err(NoArray(format!("engine {engine}: {name:?} is 0-d; gather concatenates along axis 0")));
    }
    Ok(a)
}

/// A member's description for a gather's agreement: its array's dtype and shape, or why it
/// has none. It travels as JSON, as every small control value the engines exchange over MPI.
type Description = Result<(Dtype, Vec<usize>), NoArray>;

fn encode_desc(d: &Result<Box<dyn HostArray>, NoArray>) -> Vec<u8> {
    let desc: Description = d.as_ref().map(|a| (a.dtype(), a.shape().to_vec())).map_err(Clone::clone);
    serde_json::to_vec(&desc).expect("a description serializes")
}

/// What the root of a gather replies with.
pub enum Gathered {
    /// The array's meta with its bytes (`None`: streamed to the sink).
    Bytes(ArrayMeta, Option<Bytes>),
    /// The array in a sealed memfd (`fd: Some(0)` in the meta), for a client on this host.
    Memfd(ArrayMeta, Fds),
}

/// Gathers `name` from every engine of `group` onto the root (MPI Gatherv, each member's
/// array read in place); the root returns the array's meta with its bytes, or, when larger
/// than a chunk, gathers and streams it to `sink` piece by piece (then the bytes are `None`).
/// With `shm` (the client shares the root's host) the root gathers into a memfd instead and
/// replies with it, unless the array is small or this system has no memfds.
#[allow(clippy::too_many_arguments)]
pub fn gather(
    groups: &mut Groups,
    kernel: &mut dyn Kernel,
    engine: EngineId,
    name: &str,
    group: &[Rank],
    shm: bool,
    sink: &Sink,
) -> Result<Option<Gathered>, MpxError> {
    let mine = describe(kernel, engine, name);
    let comm = groups.comm(group)?;
    let _in = comm.enter("gatherv");
    let all = comm.allgather_bytes(&encode_desc(&mine)).map_err(|e| err("CommError", e.0))?;
    // Everyone checks every description the same way, so everyone reaches the same verdict.
    let mut shapes = Vec::with_capacity(all.len());
    for d in &all {
        match serde_json::from_slice::<Description>(d) {
            Ok(Ok(desc)) => shapes.push(desc),
            Ok(Err(why)) => return Err(err("NameError", format!("cannot gather {name:?}: {why}"))),
            Err(e) => return Err(err("CommError", format!("bad description: {e}"))),
        }
    }
    let (dt, first) = &shapes[0];
    if let Some((i, _)) = shapes.iter().enumerate().find(|(_, (d, s))| d != dt || s[1..] != first[1..]) {
        return Err(err(
            "ValueError",
            format!(
                "cannot gather {name:?}: rank {} has dtype {} shape {:?}, rank {} has dtype {} shape {:?}",
                group[0],
                dt.name(),
                first,
                group[i],
                shapes[i].0.name(),
                shapes[i].1
            ),
        ));
    }
    let a = mine.expect("checked by the agreement above");
    let dtype = a.dtype();
    let row_bytes = first[1..].iter().product::<usize>() * dtype.item_size();
    let rows: Vec<usize> = shapes.iter().map(|(_, s)| s[0]).collect();
    let byte_counts: Vec<usize> = rows.iter().map(|r| r * row_bytes).collect();
    let total: usize = byte_counts.iter().sum();
    let comm = comm.comm();
    let root = comm.rank() == 0;
    let mut shape = first.clone();
    shape[0] = rows.iter().sum();
    let meta = ArrayMeta { dtype, shape, buffer: 0, fd: None, lent: None };
    if shm && total >= mpx_messages::memfd::min_bytes() {
        let into = shm::GatherInto { name, bytes: a.bytes(), byte_counts: &byte_counts, total };
        if let Some(memfd) = shm::gather(comm, into)? {
            return Ok(memfd.map(|(fds, lent)| Gathered::Memfd(ArrayMeta { fd: Some(0), lent, ..meta }, fds)));
        }
    }
    let shape = meta.shape.clone();
    if siblings::gathers(total) {
        let starts = starts_of(&byte_counts);
        let to = root.then_some((sink, chunk_bytes()));
        if let siblings::Gather::Done(bytes) = siblings::gather(comm, a.bytes(), &starts, total, to) {
            return Ok(root.then_some(Gathered::Bytes(meta, bytes)));
        }
    }
    // The root's chunk size decides the pieces.
    let mut step = [chunk_bytes() as u64];
    comm.process_at_rank(0).broadcast_into(&mut step[..]);
    let step = step[0].max(1) as usize;
    if total <= step {
        let (counts, displs) = counts_displs(&byte_counts)?;
        if !root {
            agree(comm, Ok(()))?;
            comm.process_at_rank(0).gather_varcount_into(send_buf(a.bytes()));
            return Ok(None);
        }
        let made = kernel.new_array(dtype, &shape);
        agree(comm, verdict(&made))?;
        let mut whole = made?;
        let mut spare = [0u8; 1];
        {
            let mut recv =
                PartitionMut::new(recv_buf(whole.bytes_mut(), &mut spare), &counts[..], &displs[..]);
            comm.process_at_rank(0).gather_varcount_into_root(send_buf(a.bytes()), &mut recv);
        }
        return Ok(Some(Gathered::Bytes(meta_of(whole.as_ref(), 0), Some(whole.into_bytes()))));
    }
    // Larger than a chunk: gathered one piece at a time, each piece streamed back by the root
    // while the next is gathered.
    let starts = starts_of(&byte_counts);
    let me = comm.rank() as usize;
    let mut spare = [0u8; 1];
    // The root's pieces go through a few reused buffers: its memory stays bounded, and it
    // waits while the connection is behind. Before each piece it says whether it has a buffer
    // (`bcast_head`), so the others wait for it asleep instead of spinning in the Gatherv.
    let mut pieces = Pieces::new(GATHER_PIECES);
    for pos in (0..total).step_by(step) {
        let len = step.min(total - pos);
        let (counts, displs, at) = piece_split(&starts, &byte_counts, pos, len, me);
        let send = send_buf(&a.bytes()[at..at + counts[me] as usize]);
        let buf = if root { Some(pieces.take(len, LEND_TIMEOUT)) } else { None };
        let mut head = [u64::from(matches!(buf, Some(Err(_)))), 0];
        bcast_head(comm, &mut head, root);
        match buf {
            Some(buf) => {
                let mut piece = buf?;
                {
                    let mut recv =
                        PartitionMut::new(recv_buf(&mut piece, &mut spare), &counts[..], &displs[..]);
                    comm.process_at_rank(0).gather_varcount_into_root(send, &mut recv);
                }
                sink.send(pos, total, pieces.lend(piece));
            }
            None if head[0] != 0 => {
                return Err(MpxError::stream(
                    "the root engine could not send the gathered array (see its error)",
                ))
            }
            None => comm.process_at_rank(0).gather_varcount_into(send),
        }
    }
    Ok(root.then_some(Gathered::Bytes(meta, None)))
}
