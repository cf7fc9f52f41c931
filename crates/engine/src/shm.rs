//! The same-host data path (issue 24): arrays that travel as sealed memfds over the
//! controller's Unix socket instead of as frame buffers.
//!
//! - **Push** ([`push`]): the controller sends the task to every target engine of the host, each
//!   with the memfd and a group of only itself (no MPI among them). The engine checks the
//!   descriptor ([`SealedMemfd::check`]: a memfd, sealed against every change, of exactly the
//!   array's bytes) *before* mapping anything, maps it copy-on-write and binds the name to an
//!   array over the mapping ([`Kernel::bind_mapped`]): no copy, and a cell writing to it changes
//!   only this engine's pages.
//! - **Shared push** (`push --shared`, [`Mapped::Shared`]): the same checks, then a read-only
//!   `MAP_SHARED` mapping: every engine of the host reads the same pages (one copy of the array
//!   for all of them), and the numpy array over it is not writeable (a cell writing to it gets
//!   numpy's `ValueError`). The rhai kernel copies it (its arrays own their memory).
//! - **Pull** ([`pull`]): the engine replies with the memfd the array lives in when it was
//!   pushed and no cell wrote to it (see [`mpx_messages::memfd::origin`]); else it copies the
//!   array once into a fresh memfd and seals it. The reply's [`ArrayMeta::fd`] is `Some(0)`,
//!   its frame carries the descriptor in [`Fds`], and it has no buffers.
//! - **Scatter** ([`scatter`]): as a push, each engine of the host gets the task and the memfd
//!   with a group of only itself, and maps only its own rows copy-on-write (no MPI).
//! - **Gather** ([`gather`]): the root makes a memfd for the whole array (a lent one of its
//!   pool, or a new one it seals) and offers it to the others, which write their rows into it
//!   through a shared mapping (`crate::siblings::gather_plain`); when some rank cannot (on
//!   another host), all gather into it by MPI Gatherv instead. The root replies with it, as a
//!   pull.

use std::{os::fd::OwnedFd, sync::Arc};

use mpi::{datatype::PartitionMut, topology::SimpleCommunicator, traits::*};
use mpx_messages::{
    memfd::{
        lent::{Lent, Receipt},
        Mapping, MemfdError, MemfdWriter, SealedMemfd,
    },
    ArrayMeta, EngineId, Fds, MpxError, Rank, RemoteError,
};
use thiserror::Error;

use crate::{
    data,
    kernel::{HostArray, Kernel},
    mpi_comm::{recv_buf, send_buf},
    siblings::Plain,
    stream::{piece_split, starts_of, Source},
};

/// The `ename` of every error of this path.
pub const ENAME: &str = "SharedMemoryError";

/// Why an array could not move through shared memory.
#[derive(Debug, Error)]
pub enum ShmError {
    /// The header names no descriptor (the push has no `fd`).
    #[error("the request names no descriptor")]
    NoDescriptor,
    /// The header names a descriptor the frame does not carry.
    #[error("the request names descriptor {index}, but its frame carries {count}")]
    MissingDescriptor {
        /// The header's index.
        index: usize,
        /// Descriptors the frame carries.
        count: usize,
    },
    /// A push through shared memory binds on one engine only (each engine of the host gets
    /// its own task); a group of several would need MPI.
    #[error("a push through shared memory binds on exactly one engine, this one's group has {0}")]
    NotOneEngine(usize),
    /// A 0-d array has no rows to scatter.
    #[error("a 0-d array has no axis 0 to scatter")]
    ZeroD,
    /// The header's shape has more bytes than memory can hold.
    #[error("shape {0:?} is too large")]
    TooLarge(Vec<usize>),
    /// The descriptor could not be duplicated.
    #[error("cannot duplicate descriptor {index}: {source}")]
    Dup {
        /// The header's index.
        index: usize,
        /// The system's error.
        source: std::io::Error,
    },
    /// The descriptor failed the check (not a memfd, not sealed, wrong size): never mapped.
    #[error("descriptor {index} refused: {source}")]
    Refused {
        /// The header's index.
        index: usize,
        /// What is wrong with it.
        source: MemfdError,
    },
    /// The checked memfd could not be mapped.
    #[error("cannot map the memfd: {0}")]
    Map(MemfdError),
    /// A memfd for the reply could not be made or sealed.
    #[error("cannot make a memfd for the reply: {0}")]
    Create(MemfdError),
}

/// How a pushed memfd is mapped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mapped {
    /// Private and writable: a cell's writes copy the pages they touch, in this engine only.
    CopyOnWrite,
    /// Shared and read-only (`push --shared`): one copy on the host for every engine.
    Shared,
}

/// The array a pushed descriptor holds, checked and mapped as `how` says.
///
/// # Errors
/// [`ShmError`]: no descriptor at `meta.fd`, a group of more than one engine, or a descriptor
/// that is not a sealed memfd of exactly the array's bytes (then it is never mapped).
pub fn map_pushed(meta: &ArrayMeta, group: &[Rank], fds: &Fds, how: Mapped) -> Result<Mapping, ShmError> {
    if group.len() != 1 {
        return Err(ShmError::NotOneEngine(group.len()));
    }
    let sealed = checked(meta, fds)?;
    // The mapping keeps the memfd's memory alive once the descriptor is closed.
    match how {
        Mapped::CopyOnWrite => sealed.map_private(),
        Mapped::Shared => sealed.map_shared(),
    }
    .map_err(ShmError::Map)
}

/// The memfd at `meta.fd` of the frame's descriptors, checked to be sealed and to hold exactly
/// the array's bytes.
fn checked(meta: &ArrayMeta, fds: &Fds) -> Result<SealedMemfd, ShmError> {
    let index = meta.fd.ok_or(ShmError::NoDescriptor)?;
    let fd: &Arc<OwnedFd> =
        fds.0.get(index).ok_or(ShmError::MissingDescriptor { index, count: fds.len() })?;
    let total = mpx_messages::array::byte_len(meta.dtype, &meta.shape)
        .ok_or_else(|| ShmError::TooLarge(meta.shape.clone()))?;
    // The frame's descriptor stays shared (its Arc); the check takes its own.
    let own = fd.try_clone().map_err(|source| ShmError::Dup { index, source })?;
    match meta.lent {
        // Lent: released to its lender when the last mapping of it is gone.
        Some(lent) => SealedMemfd::check_lent(own, total as u64, Receipt::queued(lent)),
        None => SealedMemfd::check(own, total as u64),
    }
    .map_err(|source| ShmError::Refused { index, source })
}

/// This engine's `rows` of the scattered array in the frame's memfd, from row `first_row`:
/// checked like a pushed memfd (the whole array's size), then only those rows mapped
/// copy-on-write.
fn map_rows(
    meta: &ArrayMeta,
    group: &[Rank],
    rows: &[usize],
    first_row: usize,
    fds: &Fds,
) -> Result<Mapping, ShmError> {
    if group.len() != 1 || rows.len() != 1 {
        return Err(ShmError::NotOneEngine(group.len().max(rows.len())));
    }
    let sealed = checked(meta, fds)?;
    let too_large = || ShmError::TooLarge(meta.shape.clone());
    let row_bytes = match meta.shape.split_first() {
        Some((_, rest)) => mpx_messages::array::byte_len(meta.dtype, rest).ok_or_else(too_large)?,
        None => return Err(ShmError::ZeroD),
    };
    let offset = first_row.checked_mul(row_bytes).ok_or_else(too_large)?;
    let len = rows[0].checked_mul(row_bytes).ok_or_else(too_large)?;
    sealed.map_private_range(offset, len).map_err(ShmError::Map)
}

/// Binds `name` to this engine's rows of the scattered array in the frame's memfd (see
/// `map_rows`): no copy, and a cell writing to them changes only this engine's pages.
/// Nothing is bound on error.
///
/// # Errors
/// A [`SharedMemoryError`](ENAME) saying what is wrong with the descriptor or the rows, or the
/// kernel's error binding them.
pub fn scatter(
    kernel: &mut dyn Kernel,
    name: &str,
    meta: &ArrayMeta,
    part: (&[Rank], &[usize], usize),
    fds: &Fds,
) -> Result<(), RemoteError> {
    let (group, rows, first_row) = part;
    let mapping = map_rows(meta, group, rows, first_row, fds).map_err(|e| {
        RemoteError::new(ENAME, format!("cannot bind {name:?} from shared memory: {e}; nothing was bound"))
    })?;
    let mut shape = meta.shape.clone();
    shape[0] = rows[0];
    kernel.bind_mapped(name, meta.dtype, &shape, mapping)
}

/// A member's part in a gather into a memfd (see [`gather`]).
pub struct GatherInto<'a> {
    /// The variable's name (names the memfd).
    pub name: &'a str,
    /// This member's bytes.
    pub bytes: &'a [u8],
    /// Every member's bytes, in group order.
    pub byte_counts: &'a [usize],
    /// Their sum.
    pub total: usize,
}

/// What the root of a gather into a memfd replies with: the memfd, and its name when it is a
/// lent one of this engine's pool ([`crate::lend`]).
pub type Gathered = (Fds, Option<Lent>);

/// The largest piece one MPI Gatherv moves into the memfd (its counts are C ints).
const MAX_PIECE: usize = 1 << 30;

/// Gathers every member's bytes into a memfd the root makes (each member writes its rows
/// through a shared mapping; else by MPI Gatherv straight into the root's mapping), then lends
/// or seals it. `None` when the root has no
/// memfd (this system has none, or no memory for it): every member learns so first, and
/// they all take the ordinary path. Otherwise the root gets the reply's descriptor and the
/// others `None`.
///
/// # Errors
/// A [`SharedMemoryError`](ENAME) when the root cannot seal the memfd.
pub fn gather(comm: &SimpleCommunicator, into: GatherInto<'_>) -> Result<Option<Option<Gathered>>, MpxError> {
    let GatherInto { name, bytes, byte_counts, total } = into;
    let root = comm.rank() == 0;
    let pooled = crate::lend::pooled(total);
    let mut writer = if root {
        let made =
            if pooled { crate::lend::take(total) } else { MemfdWriter::create(name, total).map(|w| (0, w)) };
        made.map_err(|e| tracing::info!("gathering {name:?} into a memfd: {e}; it takes the TCP path")).ok()
    } else {
        None
    };
    let me = comm.rank() as usize;
    let starts = starts_of(byte_counts);
    let offered = root.then(|| writer.as_mut().map(|(_, w)| w));
    match crate::siblings::gather_plain(comm, bytes, starts[me], offered) {
        Plain::NoMemfd => return Ok(None),
        Plain::Written => {}
        Plain::ByMpi => by_mpi(comm, bytes, byte_counts, &starts, writer.as_mut().map(|(_, w)| w)),
    }
    let Some((token, w)) = writer else { return Ok(Some(None)) };
    let failed = |e| {
        MpxError::Cell(RemoteError::new(ENAME, format!("cannot gather {name:?} into shared memory: {e}")))
    };
    if pooled {
        let (fd, lent) = crate::lend::lend(token, w).map_err(failed)?;
        return Ok(Some(Some((Fds(vec![fd]), Some(lent)))));
    }
    let sealed = w.seal().map_err(failed)?;
    Ok(Some(Some((Fds(vec![sealed.shared_fd()]), None))))
}

/// The MPI path of a same-host gather: every member's bytes by MPI Gatherv straight into the
/// root's memfd (`into`), in pieces of at most `MAX_PIECE`.
fn by_mpi(
    comm: &SimpleCommunicator,
    bytes: &[u8],
    byte_counts: &[usize],
    starts: &[usize],
    mut into: Option<&mut MemfdWriter>,
) {
    let total: usize = byte_counts.iter().sum();
    let me = comm.rank() as usize;
    let mut spare = [0u8; 1];
    for pos in (0..total).step_by(MAX_PIECE) {
        let len = MAX_PIECE.min(total - pos);
        let (counts, displs, at) = piece_split(starts, byte_counts, pos, len, me);
        let send = send_buf(&bytes[at..at + counts[me] as usize]);
        match into.as_mut() {
            Some(w) => {
                let region = recv_buf(&mut w.bytes()[pos..pos + len], &mut spare);
                let mut recv = PartitionMut::new(region, &counts[..], &displs[..]);
                comm.process_at_rank(0).gather_varcount_into_root(send, &mut recv);
            }
            None => comm.process_at_rank(0).gather_varcount_into(send),
        }
    }
}

/// Binds `name` to the array in the pushed memfd: checked, mapped as `how` says and bound
/// without a copy (see [`Kernel::bind_mapped`]; read-only when [`Mapped::Shared`]). Nothing is
/// bound on error.
///
/// # Errors
/// A [`SharedMemoryError`](ENAME) saying what is wrong with the descriptor (see
/// [`map_pushed`]), or the kernel's error binding it.
pub fn push(
    kernel: &mut dyn Kernel,
    name: &str,
    meta: &ArrayMeta,
    group: &[Rank],
    fds: &Fds,
    how: Mapped,
) -> Result<(), RemoteError> {
    let mapping = map_pushed(meta, group, fds, how).map_err(|e| {
        RemoteError::new(ENAME, format!("cannot bind {name:?} from shared memory: {e}; nothing was bound"))
    })?;
    kernel.bind_mapped(name, meta.dtype, &meta.shape, mapping)
}

/// A memfd push that also reaches ranks on other hosts (`group`: this engine first, then
/// them): the memfd is checked and mapped as for [`push`], and this engine is the root of the
/// MPI Bcast that gives them the array, read from a second view of the same memfd, then binds
/// its own mapping (no copy here). A memfd that fails the check still takes part, so that the
/// others fail alike instead of waiting.
///
/// # Errors
/// As [`data::push`], or the memfd's [`SharedMemoryError`](ENAME).
pub fn bridge_push(
    groups: &mut data::Groups,
    kernel: &mut dyn Kernel,
    name: &str,
    meta: &ArrayMeta,
    group: &[Rank],
    fds: &Fds,
) -> Result<(), MpxError> {
    let mapped = checked(meta, fds).and_then(|memfd| {
        let own = memfd.map_private().map_err(ShmError::Map)?;
        let view = memfd.map_private_range(0, memfd.len()).map_err(ShmError::Map)?;
        Ok((own, view))
    });
    let plain = ArrayMeta { fd: None, ..meta.clone() };
    match mapped {
        Ok((own, view)) => {
            let mut source = Source::Inline(Some(bytes::Bytes::from_owner(view)));
            data::push(groups, kernel, name, &plain, group, (&mut source, Some(own)))
        }
        Err(e) => {
            let failed = RemoteError::new(ENAME, format!("cannot bind {name:?} from shared memory: {e}"));
            // No bytes: the root's check fails in the agreement, on every member.
            let _ = data::push(groups, kernel, name, &plain, group, (&mut Source::Inline(None), None));
            Err(MpxError::Cell(failed))
        }
    }
}

/// The array bound to `name` in a sealed memfd (the one it was pushed in, if no cell wrote to
/// it; else a new one it is copied into): its meta (`fd: Some(0)`, no buffer) and the
/// descriptor for the reply's frame. `None` when this system has no memfds, or the array is
/// small ([`mpx_messages::memfd::min_bytes`]): the caller replies with buffers instead.
///
/// # Errors
/// `NameError`/`TypeError` as [`Kernel::array`], or a [`SharedMemoryError`](ENAME) when the
/// memfd cannot be made.
pub fn pull(
    kernel: &mut dyn Kernel,
    engine: EngineId,
    name: &str,
    lender: Option<u64>,
) -> Result<Option<(ArrayMeta, Fds)>, RemoteError> {
    let a = kernel.array(name).map_err(|e| {
        RemoteError::new(e.ename, format!("engine {engine}: cannot pull {name:?}: {}", e.evalue))
    })?;
    if a.bytes().len() < mpx_messages::memfd::min_bytes() {
        // Small: inline in the reply costs less than a memfd.
        return Ok(None);
    }
    let failed = |e: ShmError| {
        RemoteError::new(ENAME, format!("engine {engine}: cannot pull {name:?} through shared memory: {e}"))
    };
    // A lent memfd goes back only to its own lender (who alone knows when it is free again).
    let unchanged = mpx_messages::memfd::origin::unchanged(a.bytes())
        .filter(|memfd| memfd.lent().is_none_or(|l| Some(l.lender) == lender));
    let sealed = match unchanged {
        // The array lives in a memfd (it was pushed) and no cell wrote to it: that memfd.
        Some(memfd) => {
            tracing::debug!("pull {name:?}: the memfd it was pushed in (no copy)");
            memfd
        }
        None => return copied(name, a.as_ref()).map_err(failed),
    };
    let meta = ArrayMeta {
        dtype: a.dtype(),
        shape: a.shape().to_vec(),
        buffer: 0,
        fd: Some(0),
        lent: sealed.lent(),
    };
    Ok(Some((meta, Fds(vec![sealed.shared_fd()]))))
}

/// The pull's reply for array `a` copied once into a memfd: a lent one of this engine's pool
/// ([`crate::lend`]) when its size is pooled, else a new sealed one. `None` when this system
/// has no memfds.
fn copied(name: &str, a: &dyn HostArray) -> Result<Option<(ArrayMeta, Fds)>, ShmError> {
    let len = a.bytes().len();
    let meta = |lent| ArrayMeta { dtype: a.dtype(), shape: a.shape().to_vec(), buffer: 0, fd: Some(0), lent };
    let made = if crate::lend::pooled(len) {
        crate::lend::take(len)
    } else {
        MemfdWriter::create(name, len).map(|w| (0, w))
    };
    let (token, mut w) = match made {
        Ok(made) => made,
        Err(MemfdError::Unavailable(_)) => return Ok(None),
        Err(e) => return Err(ShmError::Create(e)),
    };
    w.bytes().copy_from_slice(a.bytes());
    if crate::lend::pooled(len) {
        let (fd, lent) = crate::lend::lend(token, w).map_err(ShmError::Create)?;
        return Ok(Some((meta(Some(lent)), Fds(vec![fd]))));
    }
    let sealed = w.seal().map_err(ShmError::Create)?;
    Ok(Some((meta(None), Fds(vec![sealed.shared_fd()]))))
}
