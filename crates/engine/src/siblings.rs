//! A push that arrived over TCP, shared with the ranks of the root's host instead of broadcast
//! to them (issue 24: "the four fresh arrays and the Bcast spin are the cost to cut").
//!
//! A push of 4 MiB or more to a group of several engines used to reach the root in chunks,
//! each broadcast with MPI and copied into a fresh array on every rank: on one host that is two
//! copies per rank through Open MPI's shared-memory queues, while the waiting ranks spin. Now:
//! 1. every rank makes its landing as before, and they agree on it (`data::push`);
//! 2. the root copies the chunks into a held memfd of its pool
//!    (`mpx_messages::memfd::held`: pages already allocated when one of that size is idle),
//!    while the other ranks wait asleep for one broadcast word block (`stream::bcast_head`);
//! 3. the root broadcasts the memfd's offer (its pid, descriptor, inode, size and host's boot
//!    id), or that its stream broke (then nothing is bound anywhere), or that it keeps to the
//!    MPI path (`own` memory of a memfd push's bridge, a kernel that copies mappings);
//! 4. each rank of the same boot id opens the descriptor through `/proc`, checks it and maps it
//!    copy-on-write, counted as a holder; an allreduce tells whether every rank could;
//! 5. if so, each binds its name to an array over its mapping: one copy of the bytes on the
//!    host, and a cell writing to it copies only the pages it touches, on its rank; if not (a
//!    rank on another host, `/proc` closed), the root broadcasts the bytes from the memfd as
//!    before, and every rank binds its own copy (logged once).
//!
//! The root writes a memfd again only when no mapping of it is left (the holder count in its
//! last page is zero). Bounds: at most [`MAX_IDLE`] idle memfds and [`MAX_HELD`] in all; one
//! still held past that (a rank that died holding it) is forgotten, never written again.

use std::sync::{
    atomic::{AtomicBool, Ordering},
    Mutex, MutexGuard,
};

use mpi::{collective::SystemOperation, topology::SimpleCommunicator, traits::*};
use mpx_messages::{
    memfd::{
        held::{self, HeldWriter, Offer},
        spare, Mapping, MemfdError,
    },
    Dtype, MpxError,
};

use crate::{
    kernel::Kernel,
    landing::Landing,
    stream::{bcast_head, step_pieces, Source},
};

/// The most idle held memfds kept.
pub const MAX_IDLE: usize = 1;
/// The most held memfds kept in all.
pub const MAX_HELD: usize = 4;

/// The first word of the root's broadcast: what follows.
const PIECES: u64 = 0;
const OFFER: u64 = 1;
const BROKEN: u64 = 2;

/// The root's memfds, oldest first.
static POOL: Mutex<Vec<HeldWriter>> = Mutex::new(Vec::new());

fn pool() -> MutexGuard<'static, Vec<HeldWriter>> {
    POOL.lock().unwrap_or_else(|p| p.into_inner())
}

/// Whether a push of `total` bytes to several engines may go this way (the same on every rank).
pub fn wanted(total: usize) -> bool {
    total >= spare::MIN_BYTES && mpx_messages::connection::shm_enabled()
}

/// An idle memfd of the pool for `len` bytes, or a new one.
fn take(len: usize) -> Result<HeldWriter, MemfdError> {
    let mut pool = pool();
    if let Some(at) = pool.iter().position(|w| w.len() == len && w.holders() == 0) {
        return Ok(pool.remove(at));
    }
    drop(pool);
    HeldWriter::create(len)
}

/// Keeps `w` for a later push of its size (not above the spare bound), within the bounds.
fn keep(w: HeldWriter) {
    if !spare::wanted(w.len()) {
        return;
    }
    let mut pool = pool();
    pool.push(w);
    let mut idle = 0;
    for at in (0..pool.len()).rev() {
        if pool[at].holders() == 0 {
            idle += 1;
            if idle > MAX_IDLE {
                pool.remove(at);
            }
        }
    }
    let extra = pool.len().saturating_sub(MAX_HELD);
    pool.drain(..extra);
}

/// How many memfds the pool keeps, and how many of them are idle (tests).
pub fn counts() -> (usize, usize) {
    let pool = pool();
    (pool.len(), pool.iter().filter(|w| w.holders() == 0).count())
}

/// What `data::push` does after this step.
pub enum Step {
    /// The root keeps to the MPI path: broadcast the pieces into this landing.
    Pieces(Landing),
    /// The name is bound on this rank.
    Bound,
}

/// The array as this push's ranks share it: the broadcast words, in order.
fn words(kind: u64, offer: Option<&Offer>) -> [u64; 7] {
    let [t0, t1] = held::host_token();
    match offer {
        Some(o) => [kind, u64::from(o.pid), o.fd as u64, o.ino, o.len, t0, t1],
        None => [kind, 0, 0, 0, 0, 0, 0],
    }
}

/// Whether any rank of `comm` failed.
fn any_failed(comm: &SimpleCommunicator, failed: bool) -> bool {
    let mut any = 0u8;
    comm.all_reduce_into(&u8::from(failed), &mut any, SystemOperation::max());
    any != 0
}

/// Logs, once per process, why an offer was not taken.
fn log_fallback(why: &Refusal) {
    static LOGGED: AtomicBool = AtomicBool::new(false);
    if !LOGGED.swap(true, Ordering::Relaxed) {
        tracing::info!("a pushed array is broadcast with MPI instead of shared on the host: {why}");
    }
}

/// The array `name` (`dtype` of `shape`, `total` bytes) on every rank of `comm`, shared
/// through a held memfd when every rank can map it (see the module's steps). `source` is the
/// root's (with `own`: it already maps the array, and keeps to the MPI path); `landing` this
/// rank's agreed memory.
///
/// # Errors
/// The root's broken stream (every rank fails alike, nothing bound), or binding.
pub fn push(
    comm: &SimpleCommunicator,
    kernel: &mut dyn Kernel,
    (name, dtype, shape, total): (&str, Dtype, &[usize], usize),
    source: Option<(&mut Source, bool)>,
    mut landing: Landing,
) -> Result<Step, MpxError> {
    let mut head = [0u64; 7];
    let mut filled = None;
    if let Some((source, own)) = source {
        let failed;
        (head, failed) = if own || !kernel.holds_mappings() {
            (words(PIECES, None), None)
        } else {
            match fill(source, dtype, total) {
                Ok(w) => {
                    let offer = w.offer();
                    filled = Some(w);
                    (words(OFFER, Some(&offer)), None)
                }
                Err(e) => (words(BROKEN, None), Some(e)),
            }
        };
        bcast_head(comm, &mut head, true);
        if let Some(e) = failed {
            return Err(e);
        }
    } else {
        bcast_head(comm, &mut head, false);
    }
    match head[0] {
        PIECES => return Ok(Step::Pieces(landing)),
        BROKEN => {
            return Err(MpxError::stream(
                "the array did not reach the root engine whole (see its error); nothing was bound",
            ))
        }
        _ => {}
    }
    let mapped = match &filled {
        Some(w) => w.map_private().map_err(Refusal::Memfd),
        None => open_offer(&head, kernel),
    };
    if let Err(why) = &mapped {
        log_fallback(why);
    }
    let shared = !any_failed(comm, mapped.is_err());
    match (shared, mapped, &filled) {
        (true, Ok(mapping), _) => bind(kernel, name, dtype, shape, mapping)?,
        (_, mapped, Some(w)) => {
            // The root: the bytes from its memfd, bound over its own mapping when it has one.
            crate::data::bcast_from_root(comm, w.as_slice());
            match mapped {
                Ok(mapping) => bind(kernel, name, dtype, shape, mapping)?,
                Err(_) => {
                    landing.bytes_mut().copy_from_slice(w.as_slice());
                    landing.bind(kernel, name, dtype, shape)?;
                }
            }
        }
        (_, mapped, None) => {
            drop(mapped);
            crate::data::bcast_bytes(comm, landing.bytes_mut());
            landing.bind(kernel, name, dtype, shape)?;
        }
    }
    if let Some(w) = filled {
        keep(w);
    }
    Ok(Step::Bound)
}

/// The root: its stream's pieces copied into a memfd of the pool.
fn fill(source: &mut Source, dtype: Dtype, total: usize) -> Result<HeldWriter, MpxError> {
    let mut w =
        take(total).map_err(|e| MpxError::stream(format!("cannot make a memfd for the push: {e}")))?;
    let bytes = w.bytes().ok_or_else(|| MpxError::stream("the pool's memfd is still held"))?;
    step_pieces(None, Some(source), dtype, total, |pos, len, piece| {
        bytes[pos..pos + len].copy_from_slice(piece.expect("the root has its pieces"));
    })?;
    Ok(w)
}

/// Why a rank does not map the root's offer (it then gets the bytes by MPI).
#[derive(Debug, thiserror::Error)]
enum Refusal {
    /// The root's boot id is not this host's.
    #[error("the root engine is on another host")]
    OtherHost,
    /// This kernel copies mapped arrays anyway.
    #[error("this kernel copies mapped arrays")]
    Copies,
    /// The offer's numbers do not fit.
    #[error("the offer names no process and descriptor")]
    BadOffer,
    /// Opening, checking or mapping the memfd failed.
    #[error("{0}")]
    Memfd(MemfdError),
}

/// Another rank: the root's offer opened and mapped, or why not.
fn open_offer(head: &[u64; 7], kernel: &dyn Kernel) -> Result<Mapping, Refusal> {
    if [head[5], head[6]] != held::host_token() {
        return Err(Refusal::OtherHost);
    }
    if !kernel.holds_mappings() {
        return Err(Refusal::Copies);
    }
    let (Ok(pid), Ok(fd)) = (u32::try_from(head[1]), i32::try_from(head[2])) else {
        return Err(Refusal::BadOffer);
    };
    held::open(&Offer { pid, fd, ino: head[3], len: head[4] }).map_err(Refusal::Memfd)
}

fn bind(
    kernel: &mut dyn Kernel,
    name: &str,
    dtype: Dtype,
    shape: &[usize],
    m: Mapping,
) -> Result<(), MpxError> {
    Ok(kernel.bind_mapped(name, dtype, shape, m)?)
}
