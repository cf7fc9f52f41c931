//! Gathers through a memfd of the root that every rank of its host writes its rows into: over
//! TCP ([`gather`], a held memfd the root streams) and to a client on the host
//! ([`gather_plain`], a plain memfd the root lends or seals).

use bytes::Bytes;
use mpi::{topology::SimpleCommunicator, traits::*};
use mpx_messages::memfd::{
    held::{self, HeldWriter},
    spare, MemfdWriter,
};

use super::{keep, log_fallback, offer_of, take, wanted, words, Refusal, OFFER, PIECES};
use crate::stream::{any_failed, bcast_head, Sink};

/// A same-host gather's root offers a plain memfd ([`gather_plain`]).
const OFFER_PLAIN: u64 = 2;
/// A same-host gather's root has no memfd: every rank takes the ordinary path.
const NO_MEMFD: u64 = 3;

/// Whether a gather of `total` bytes may go this way (the same on every rank): the root holds
/// the whole array until it is sent, so only sizes the pool keeps (4 MiB to the spare bound).
pub fn gathers(total: usize) -> bool {
    wanted(total) && spare::wanted(total)
}

/// A held memfd lent to the control thread as a gathered array's bytes: back in the pool once
/// every chunk of it is written (or dropped with a broken connection).
struct Filled(Option<HeldWriter>);

impl AsRef<[u8]> for Filled {
    fn as_ref(&self) -> &[u8] {
        self.0.as_ref().map_or(&[], HeldWriter::as_slice)
    }
}

impl Drop for Filled {
    fn drop(&mut self) {
        if let Some(w) = self.0.take() {
            keep(w);
        }
    }
}

/// A gather over TCP among the ranks of the root's host: the root offers a held memfd of the
/// whole array (`total` bytes), every rank writes its part (`mine`, at `starts[rank]`) into it
/// through a shared mapping, and the root streams it to `sink` in chunks of `step` bytes: no
/// MPI Gatherv, and no rank waits on another's piece; an array of one chunk comes back whole
/// instead ([`Gather::Done`]`(Some)`, for the reply's frame). [`Gather::Fallback`]: some rank
/// could not (another host, `/proc` closed, no memfd), and every rank goes on with the MPI
/// pieces as before.
pub fn gather(
    comm: &SimpleCommunicator,
    mine: &[u8],
    starts: &[usize],
    total: usize,
    sink: Option<(&Sink, usize)>,
) -> Gather {
    let mut head = [0u64; 7];
    let mut filled = None;
    if sink.is_some() {
        head = match take(total) {
            Ok(w) => {
                let offer = w.offer();
                filled = Some(w);
                words(OFFER, Some(&offer))
            }
            Err(e) => {
                log_fallback(&Refusal::Memfd(e));
                words(PIECES, None)
            }
        };
    }
    bcast_head(comm, &mut head, sink.is_some());
    if head[0] != OFFER {
        return Gather::Fallback;
    }
    let at = starts[comm.rank() as usize];
    let wrote = match filled.as_mut() {
        Some(w) => w.bytes().map(|b| b[at..at + mine.len()].copy_from_slice(mine)).ok_or(Refusal::Held),
        None => write_part(&head, at, mine),
    };
    if let Err(why) = &wrote {
        log_fallback(why);
    }
    if any_failed(comm, wrote.is_err()) {
        if let Some(w) = filled {
            keep(w);
        }
        return Gather::Fallback;
    }
    let (Some((sink, step)), Some(w)) = (sink, filled) else { return Gather::Done(None) };
    let bytes = Bytes::from_owner(Filled(Some(w)));
    if total <= step {
        return Gather::Done(Some(bytes));
    }
    for pos in (0..total).step_by(step) {
        sink.send(pos, total, bytes.slice(pos..total.min(pos + step)));
    }
    Gather::Done(None)
}

/// Another rank: `mine` written at byte `at` of the root's offered memfd (held or plain, as
/// `head` says) through a shared mapping, unmapped again before this returns.
fn write_part(head: &[u64; 7], at: usize, mine: &[u8]) -> Result<(), Refusal> {
    let offer = offer_of(head)?;
    let range = at..at + mine.len();
    let opened = match head[0] {
        OFFER_PLAIN => held::open_plain_writable(&offer, range),
        _ => held::open_writable(&offer, range),
    };
    let mut part = opened.map_err(Refusal::Memfd)?;
    part.as_mut_slice().copy_from_slice(mine);
    Ok(())
}

/// The same-host path's gather (`shm::gather`): the root (`root`: `Some`, with the memfd it
/// made for the client, if any) offers its plain memfd, and every rank of its host writes its
/// part (`mine`, at byte `at`) into it through a shared mapping: no MPI Gatherv, each rank
/// copies its bytes once and nobody waits on another's piece. The others have unmapped before
/// the agreement that ends it, so the root may lend or seal the memfd right after.
pub fn gather_plain(
    comm: &SimpleCommunicator,
    mine: &[u8],
    at: usize,
    root: Option<Option<&mut MemfdWriter>>,
) -> Plain {
    let is_root = root.is_some();
    let mut head = [0u64; 7];
    let mut writer = None;
    match root {
        None => {}
        Some(None) => head = words(NO_MEMFD, None),
        Some(Some(w)) => {
            head = match held::plain_offer(w) {
                Ok(offer) => words(OFFER_PLAIN, Some(&offer)),
                Err(e) => {
                    log_fallback(&Refusal::Memfd(e));
                    words(PIECES, None)
                }
            };
            writer = Some(w);
        }
    }
    bcast_head(comm, &mut head, is_root);
    match head[0] {
        NO_MEMFD => return Plain::NoMemfd,
        OFFER_PLAIN => {}
        _ => return Plain::ByMpi,
    }
    let wrote = match writer {
        Some(w) => {
            w.bytes()[at..at + mine.len()].copy_from_slice(mine);
            Ok(())
        }
        None => write_part(&head, at, mine),
    };
    if let Err(why) = &wrote {
        log_fallback(why);
    }
    if any_failed(comm, wrote.is_err()) {
        Plain::ByMpi
    } else {
        Plain::Written
    }
}

/// How a [`gather_plain`] went.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Plain {
    /// The root has no memfd: every rank takes the ordinary path.
    NoMemfd,
    /// Every part is in the root's memfd.
    Written,
    /// Some rank could not write its part (another host, `/proc` closed): every rank sends its
    /// part by MPI into the root's memfd instead.
    ByMpi,
}

/// How a [`gather`] went.
pub enum Gather {
    /// Every rank goes on with the MPI pieces.
    Fallback,
    /// Gathered: at the root, the whole array when it is one chunk (else streamed to the sink).
    Done(Option<Bytes>),
}
