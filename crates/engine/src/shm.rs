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
//! - **Pull** ([`pull`]): the engine copies the array once into a fresh memfd, seals it and
//!   replies with the descriptor (the reply's [`ArrayMeta::fd`] is `Some(0)`, its frame carries
//!   the descriptor in [`Fds`]) and no buffers.

use std::{os::fd::OwnedFd, sync::Arc};

use mpx_messages::{
    memfd::{Mapping, MemfdError, MemfdWriter, SealedMemfd},
    ArrayMeta, EngineId, Fds, Rank, RemoteError,
};
use thiserror::Error;

use crate::kernel::Kernel;

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
    let index = meta.fd.ok_or(ShmError::NoDescriptor)?;
    let fd: &Arc<OwnedFd> =
        fds.0.get(index).ok_or(ShmError::MissingDescriptor { index, count: fds.len() })?;
    let total = mpx_messages::array::byte_len(meta.dtype, &meta.shape)
        .ok_or_else(|| ShmError::TooLarge(meta.shape.clone()))?;
    // The frame's descriptor stays shared (its Arc); the check takes its own.
    let own = fd.try_clone().map_err(|source| ShmError::Dup { index, source })?;
    let sealed =
        SealedMemfd::check(own, total as u64).map_err(|source| ShmError::Refused { index, source })?;
    // The mapping keeps the memfd's memory alive once the descriptor is closed.
    match how {
        Mapped::CopyOnWrite => sealed.map_private(),
        Mapped::Shared => sealed.map_shared(),
    }
    .map_err(ShmError::Map)
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

/// The array bound to `name`, copied once into a new sealed memfd: its meta (`fd: Some(0)`,
/// no buffer) and the descriptor for the reply's frame. `None` when this system has no memfds,
/// or the array is small ([`mpx_messages::memfd::min_bytes`]): the caller replies with buffers
/// instead.
///
/// # Errors
/// `NameError`/`TypeError` as [`Kernel::array`], or a [`SharedMemoryError`](ENAME) when the
/// memfd cannot be made.
pub fn pull(
    kernel: &mut dyn Kernel,
    engine: EngineId,
    name: &str,
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
    let mut w = match MemfdWriter::create(name, a.bytes().len()) {
        Ok(w) => w,
        Err(MemfdError::Unavailable(_)) => return Ok(None),
        Err(e) => return Err(failed(ShmError::Create(e))),
    };
    w.bytes().copy_from_slice(a.bytes());
    let sealed = w.seal().map_err(|e| failed(ShmError::Create(e)))?;
    let meta = ArrayMeta { dtype: a.dtype(), shape: a.shape().to_vec(), buffer: 0, fd: Some(0) };
    Ok(Some((meta, Fds(vec![sealed.shared_fd()]))))
}
