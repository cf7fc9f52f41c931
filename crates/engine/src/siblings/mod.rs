//! Arrays that arrived over TCP, shared with the ranks of the root's host instead of moved to
//! them by MPI (issue 24: "the four fresh arrays and the Bcast spin are the cost to cut").
//!
//! A push of 4 MiB or more to a group of several engines used to reach the root in chunks,
//! each broadcast with MPI and copied into a fresh array on every rank: on one host that is two
//! copies per rank through Open MPI's shared-memory queues, while the waiting ranks spin. Now
//! ([`share`], for a push and a scatter alike):
//! 1. every rank makes its landing as before, and they agree on it (`data::push`);
//! 2. the root takes a memfd of its pool (`mpx_messages::memfd::held`: pages already
//!    allocated when one of that size is idle) and sends the others its offer at once (its
//!    pid, descriptor, inode, size and host token: boot id and network namespace), or that it
//!    keeps to the MPI path (`own` memory of a memfd push's bridge, a kernel that copies
//!    mappings);
//! 3. each rank with the same host token opens the descriptor through `/proc`, checks it and
//!    maps its part copy-on-write (the whole array for a push, its rows for a scatter),
//!    counted as a holder, and the ranks tell each other whether all could: all this while the
//!    chunks still stream in;
//! 4. the root copies the chunks into the memfd and publishes it: a state word in the memfd's
//!    holder page, on whose futex the others sleep, says the bytes are whole, or that the
//!    root's stream broke (then nothing is bound anywhere);
//! 5. if every rank mapped it, each binds its name to an array over its mapping: one copy of
//!    the bytes on the host, and a cell writing to it copies only the pages it touches, on its
//!    rank; if not (a rank on another host, `/proc` closed), the root sends the bytes from the
//!    memfd by MPI as before (Bcast, Scatterv), and every rank binds its own copy (logged once).
//!
//! A gather ([`gather`]) goes the other way: the root offers a held memfd of the whole array,
//! every rank writes its rows into it through a shared mapping, and the root streams it. For a
//! client on the root's host ([`gather_plain`], from `crate::shm::gather`) the memfd is a plain
//! one the root then lends or seals to the client, and the ranks write into it the same way.
//!
//! The root writes a memfd again only when no mapping of it is left (the holder count in its
//! last page is zero). Bounds: at most [`MAX_IDLE`] idle memfds and [`MAX_HELD`] in all; one
//! still held past that (a rank that died holding it) is forgotten, never written again.
//! `MPX_SHM=0` turns this off with the rest of the shared-memory path.

use std::sync::{
    atomic::{AtomicBool, Ordering},
    Mutex, MutexGuard,
};

use mpi::topology::SimpleCommunicator;
use mpx_messages::{
    memfd::{
        held::{self, Filling, HeldWriter, Offer},
        spare, Mapping, MemfdError,
    },
    Dtype, MpxError,
};

mod gather;

pub use gather::{gather, gather_plain, gathers, Gather, Plain};

use crate::{
    kernel::Kernel,
    landing::Landing,
    stream::{any_failed, bcast_head, step_pieces, Source, LEND_TIMEOUT},
};

/// The most idle held memfds kept.
pub const MAX_IDLE: usize = 1;
/// The most held memfds kept in all.
pub const MAX_HELD: usize = 4;

/// The first word of the root's broadcast: the MPI path follows, or an offer.
const PIECES: u64 = 0;
const OFFER: u64 = 1;

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

/// Logs, once per process, why an offer was not taken.
fn log_fallback(why: &Refusal) {
    static LOGGED: AtomicBool = AtomicBool::new(false);
    if !LOGGED.swap(true, Ordering::Relaxed) {
        tracing::info!("an array moves by MPI instead of through a memfd shared on the host: {why}");
    }
}

/// This rank's part of an array that moves to every rank of a group: its name, dtype and
/// shape, and its bytes `range` within the whole array of `total` bytes (the whole array for
/// a push, the rank's rows for a scatter).
pub struct Part<'a> {
    /// The name to bind.
    pub name: &'a str,
    /// The array's dtype.
    pub dtype: Dtype,
    /// This rank's shape.
    pub shape: &'a [usize],
    /// This rank's bytes within the whole array.
    pub range: std::ops::Range<usize>,
    /// The whole array's bytes.
    pub total: usize,
}

/// This rank's `part` of the root's array, shared through a held memfd when every rank can
/// map it (see the module's steps). `source` is the root's (with `own`: it already maps the
/// array, and keeps to the MPI path); `landing` this rank's agreed memory; `spread` the MPI
/// path from the root's bytes (`Some` at the root) into every rank's landing, for when some
/// rank cannot map the memfd.
///
/// # Errors
/// The root's broken stream (every rank fails alike, nothing bound), or binding.
pub fn share(
    comm: &SimpleCommunicator,
    kernel: &mut dyn Kernel,
    part: Part<'_>,
    source: Option<(&mut Source, bool)>,
    mut landing: Landing,
    spread: impl FnOnce(&SimpleCommunicator, Option<&[u8]>, &mut [u8]),
) -> Result<Step, MpxError> {
    let root = source.is_some();
    let (source, own) = match source {
        Some((source, own)) => (Some(source), own),
        None => (None, false),
    };
    // The root offers the memfd before its bytes are in it: the others open, map and agree
    // while the chunks still stream, and then wait on the memfd's futex for the filling.
    let mut head = [0u64; 7];
    let mut offered = None;
    if root {
        head = words(PIECES, None);
        if !own && kernel.holds_mappings() {
            match take(part.total) {
                Ok(mut w) => {
                    // A memfd of the pool is idle when taken, so `begin` holds.
                    if w.begin() {
                        head = words(OFFER, Some(&w.offer()));
                        offered = Some(w);
                    } else {
                        keep(w);
                    }
                }
                Err(e) => log_fallback(&Refusal::Memfd(e)),
            }
        }
    }
    bcast_head(comm, &mut head, root);
    if head[0] != OFFER {
        return Ok(Step::Pieces(landing));
    }
    let mapped = match &offered {
        Some(w) => w.map_private_range(part.range.clone()).map(|m| (m, None)).map_err(Refusal::Memfd),
        None => open_offer(&head, kernel, part.range.clone()).map(|(m, f)| (m, Some(f))),
    };
    if let Err(why) = &mapped {
        log_fallback(why);
    }
    let shared = !any_failed(comm, mapped.is_err());
    let (name, dtype, shape) = (part.name, part.dtype, part.shape);
    // The root fills the memfd from its stream and says how that went: on the memfd's futex
    // when every rank maps it, else point to point (then the bytes follow by MPI).
    let mut status = [0u64; 2];
    let filled = match (offered.as_mut(), source) {
        (Some(w), Some(source)) => {
            let filled = fill(w, source, dtype, part.total);
            w.publish(filled.is_ok());
            status[0] = u64::from(filled.is_err());
            filled
        }
        _ => Ok(()),
    };
    if !shared {
        bcast_head(comm, &mut status, root);
    }
    if let Err(e) = filled {
        if let Some(w) = offered {
            keep(w);
        }
        return Err(e);
    }
    let broken = || {
        MpxError::stream("the array did not reach the root engine whole (see its error); nothing was bound")
    };
    match mapped {
        Ok((mapping, filling)) if shared => {
            if let Some(filling) = filling {
                match filling.wait(LEND_TIMEOUT) {
                    Some(true) => {}
                    Some(false) => return Err(broken()),
                    None => return Err(MpxError::stream("the root engine did not fill the array in time")),
                }
            }
            drop(landing);
            kernel.bind_mapped(name, dtype, shape, mapping)?;
        }
        mapped => {
            // Every rank gets its part by MPI, into memory of its own.
            drop(mapped);
            if status[0] != 0 {
                return Err(broken());
            }
            spread(comm, offered.as_ref().map(HeldWriter::as_slice), landing.bytes_mut());
            landing.bind(kernel, name, dtype, shape)?;
        }
    }
    if let Some(w) = offered {
        keep(w);
    }
    Ok(Step::Bound)
}

/// The root: its stream's pieces copied into the memfd it offered.
fn fill(w: &mut HeldWriter, source: &mut Source, dtype: Dtype, total: usize) -> Result<(), MpxError> {
    let bytes = w.filling_bytes().ok_or_else(|| MpxError::stream("the memfd was published already"))?;
    step_pieces(None, Some(source), dtype, total, |pos, len, piece| {
        bytes[pos..pos + len].copy_from_slice(piece.expect("the root has its pieces"));
    })
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
    /// The root's memfd is still held (never the case for one it took).
    #[error("the root's memfd is still held")]
    Held,
    /// The offer's numbers do not fit.
    #[error("the offer names no process and descriptor")]
    BadOffer,
    /// Opening, checking or mapping the memfd failed.
    #[error("{0}")]
    Memfd(MemfdError),
}

/// The offer in the root's broadcast, when this rank is on the root's host.
fn offer_of(head: &[u64; 7]) -> Result<Offer, Refusal> {
    if [head[5], head[6]] != held::host_token() {
        return Err(Refusal::OtherHost);
    }
    let (Ok(pid), Ok(fd)) = (u32::try_from(head[1]), i32::try_from(head[2])) else {
        return Err(Refusal::BadOffer);
    };
    Ok(Offer { pid, fd, ino: head[3], len: head[4] })
}

/// Another rank: bytes `range` of the root's offer opened and mapped (and its filling to
/// wait for), or why not.
fn open_offer(
    head: &[u64; 7],
    kernel: &dyn Kernel,
    range: std::ops::Range<usize>,
) -> Result<(Mapping, Filling), Refusal> {
    let offer = offer_of(head)?;
    if !kernel.holds_mappings() {
        return Err(Refusal::Copies);
    }
    held::open_range(&offer, range).map_err(Refusal::Memfd)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_pool_gives_back_only_idle_memfds_and_keeps_within_its_bounds() {
        let len = spare::MIN_BYTES;
        let mut first = take(len).unwrap();
        first.bytes().unwrap().fill(1);
        let ino = first.offer().ino;
        let held = first.map_private().unwrap();
        keep(first);
        assert_eq!(counts(), (1, 0));
        // Held: a push of the same size gets another memfd.
        let second = take(len).unwrap();
        assert_ne!(second.offer().ino, ino);
        keep(second);
        assert_eq!(counts(), (2, 1));
        // Let go: the next push takes it again, pages and bytes as they were.
        drop(held);
        let again = take(len).unwrap();
        assert_eq!((again.offer().ino, again.as_slice()[0]), (ino, 1));
        // Bounds: at most MAX_IDLE idle (the newest) and MAX_HELD in all (held ones forgotten
        // oldest first, never written again).
        let mut holds = Vec::new();
        for _ in 0..MAX_HELD + 2 {
            let w = take(len).unwrap();
            holds.push(w.map_private().unwrap());
            keep(w);
        }
        keep(again);
        let (all, idle) = counts();
        assert!(all <= MAX_HELD && idle <= MAX_IDLE, "{all} kept, {idle} idle");
        drop(holds);
        assert!(counts().0 <= MAX_HELD);
        assert!(!gathers(spare::MIN_BYTES - 1) && gathers(spare::MIN_BYTES));
    }
}
