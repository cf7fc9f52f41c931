//! The client's pool of lent memfds (see `mpx_messages::memfd::lent` for the protocol and
//! what a receiver relies on): a pushed or scattered array of 4 MiB to 256 MiB is copied into
//! an idle memfd of its exact size when there is one, whose pages are already allocated, rather
//! than into fresh pages.
//!
//! A memfd's life here:
//! - **lent** ([`Lender::lend`]) for one request: the engines it reached are not known yet;
//! - **held**: the controller's reply to the submission names the engines
//!   ([`Lender::submitted`]); each engine's replies carry the tokens it released
//!   ([`Lender::released`]); the client's own mappings of it (a pull of an array pushed in it,
//!   [`Lender::adopt`]) hold it too;
//! - **idle** once every engine of the request released it and no mapping of the client holds
//!   it: the next array of its size is written into it.
//!
//! Bounds: at most [`MAX_IDLE`] idle memfds (the newest kept: the "cache of the last large
//! buffer"), at most [`MAX_HELD`] held ones (the oldest forgotten: an engine that died or a
//! world that restarted releases nothing). A forgotten memfd is never written again; its memory
//! goes with the last engine's mapping.

use std::{
    collections::BTreeMap,
    os::fd::{BorrowedFd, OwnedFd},
    sync::{Arc, Mutex, MutexGuard, Weak},
};

use mpx_messages::{
    memfd::{
        lent::{Lent, Receipt},
        spare, Mapping, MemfdError, MemfdWriter, SealedMemfd,
    },
    EngineId, RequestId,
};

/// Why a reply's memfd (lent or sealed) is not mapped.
#[derive(Debug, thiserror::Error)]
pub(crate) enum ReplyMemfdError {
    /// The memfd names another client as its lender.
    #[error("a memfd lent by another client ({0:#x})")]
    OtherLender(u64),
    /// The token is not one of this client's pool.
    #[error("lent memfd {0} is not in this client's pool")]
    UnknownToken(u64),
    /// The descriptor is another file, or of another size, than the pool's memfd.
    #[error("the descriptor is not lent memfd {token} of {len} bytes")]
    NotTheMemfd {
        /// The token it claims.
        token: u64,
        /// The bytes the header says.
        len: usize,
    },
    /// The header names a descriptor the frame does not carry.
    #[error("descriptor {index} is missing ({count} came)")]
    Missing {
        /// The header's index.
        index: usize,
        /// Descriptors the frame carries.
        count: usize,
    },
    /// The header's shape has more bytes than memory can hold.
    #[error("the array is too large")]
    TooLarge,
    /// The descriptor could not be duplicated.
    #[error("cannot duplicate the descriptor: {0}")]
    Dup(std::io::Error),
    /// The memfd failed its check or could not be mapped.
    #[error(transparent)]
    Memfd(#[from] mpx_messages::memfd::MemfdError),
}

/// The most idle memfds kept.
pub const MAX_IDLE: usize = 1;
/// The most memfds held by engines that are remembered.
pub const MAX_HELD: usize = 8;
/// The most returns kept for engines this client sends nothing to (the oldest forgotten).
pub const MAX_RETURNS: usize = 256;

/// One memfd of the pool.
struct Entry {
    token: u64,
    writer: MemfdWriter,
    /// The requests it was lent for that the controller has not placed yet.
    pending: Vec<RequestId>,
    /// Per engine, the mappings it was sent and has not released (an engine sent it twice,
    /// as `x` and then as `y`, releases it twice).
    held: BTreeMap<EngineId, u32>,
    /// The client's own mappings of it.
    local: usize,
}

impl Entry {
    fn idle(&self) -> bool {
        self.local == 0 && self.pending.is_empty() && self.held.is_empty()
    }
}

/// The pool's memfds, oldest lent first.
#[derive(Default)]
struct Pool {
    entries: Vec<Entry>,
    next_token: u64,
}

impl Pool {
    /// Keeps the newest [`MAX_IDLE`] idle and the newest [`MAX_HELD`] held memfds.
    fn trim(&mut self) {
        let (mut idle, mut held) = (0, 0);
        for i in (0..self.entries.len()).rev() {
            let count = if self.entries[i].idle() { &mut idle } else { &mut held };
            *count += 1;
            let max = if self.entries[i].idle() { MAX_IDLE } else { MAX_HELD };
            if *count > max {
                self.entries.remove(i);
            }
        }
    }
}

/// Memfds engines lent this connection that it no longer maps, with the engine that lent each.
type Returns = Arc<Mutex<Vec<(EngineId, Lent)>>>;

/// This connection's lent memfds, and those engines lent it.
pub(crate) struct Lender {
    id: u64,
    pool: Arc<Mutex<Pool>>,
    returns: Returns,
}

impl std::fmt::Debug for Lender {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Lender").field("id", &self.id).field("counts", &self.counts()).finish()
    }
}

impl Lender {
    /// An empty pool with a fresh lender number.
    pub(crate) fn new() -> Lender {
        let id = mpx_messages::Binding::fresh_origin().unwrap_or_else(|_| {
            let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
            (u64::from(std::process::id()) << 32) ^ now.as_nanos() as u64
        });
        Lender { id, pool: Arc::default(), returns: Returns::default() }
    }

    /// The lender number, as requests name it.
    pub(crate) fn id(&self) -> u64 {
        self.id
    }

    fn pool(&self) -> MutexGuard<'_, Pool> {
        self.pool.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// `bytes` copied into a memfd of the pool, lent for request `req`: its descriptor and
    /// name. `None` for a size the pool does not keep (then the array goes in a sealed memfd).
    ///
    /// # Errors
    /// A memfd cannot be made.
    pub(crate) fn lend(
        &self,
        bytes: &[u8],
        req: RequestId,
    ) -> Result<Option<(Arc<OwnedFd>, Lent)>, MemfdError> {
        let len = bytes.len();
        if !spare::wanted(len) {
            return Ok(None);
        }
        let mut pool = self.pool();
        let reused = pool.entries.iter().position(|e| e.idle() && e.writer.len() == len);
        let mut entry = match reused {
            Some(at) => pool.entries.remove(at),
            None => {
                let writer = MemfdWriter::create("push", len)?;
                writer.seal_size()?;
                pool.next_token += 1;
                let token = pool.next_token;
                Entry { token, writer, pending: Vec::new(), held: BTreeMap::new(), local: 0 }
            }
        };
        if reused.is_some() {
            tracing::debug!(len, token = entry.token, "push: a lent memfd reused (warm pages)");
        }
        entry.writer.bytes().copy_from_slice(bytes);
        entry.pending.push(req);
        let sent = (entry.writer.shared_fd()?, Lent { lender: self.id, token: entry.token });
        pool.entries.push(entry);
        pool.trim();
        Ok(Some(sent))
    }

    /// Lends memfd `token` again, unchanged, for request `req` (an array pulled back in it is
    /// pushed): its descriptor, or `None` when the pool no longer has it (then it is copied).
    ///
    /// # Errors
    /// `dup` fails.
    pub(crate) fn relend(&self, token: u64, req: RequestId) -> Result<Option<Arc<OwnedFd>>, MemfdError> {
        let mut pool = self.pool();
        let Some(entry) = pool.entries.iter_mut().find(|e| e.token == token) else { return Ok(None) };
        let fd = entry.writer.shared_fd()?;
        entry.pending.push(req);
        Ok(Some(fd))
    }

    /// The controller's answer to request `req`: the engines it reached (`None`: it was
    /// refused, and what was lent for it is forgotten, never written again).
    pub(crate) fn submitted(&self, req: RequestId, engines: Option<&[EngineId]>) {
        let mut pool = self.pool();
        let mut refused = Vec::new();
        for entry in pool.entries.iter_mut() {
            let Some(at) = entry.pending.iter().position(|r| *r == req) else { continue };
            entry.pending.remove(at);
            match engines {
                Some(engines) => engines.iter().for_each(|e| *entry.held.entry(*e).or_default() += 1),
                None => refused.push(entry.token),
            }
        }
        pool.entries.retain(|e| !refused.contains(&e.token));
        pool.trim();
    }

    /// `engine` no longer maps the memfds `tokens` (once per mapping it was sent).
    pub(crate) fn released(&self, engine: EngineId, tokens: &[u64]) {
        if tokens.is_empty() {
            return;
        }
        let mut pool = self.pool();
        for token in tokens {
            let Some(e) = pool.entries.iter_mut().find(|e| e.token == *token) else { continue };
            if let Some(n) = e.held.get_mut(&engine) {
                *n -= 1;
                if *n == 0 {
                    e.held.remove(&engine);
                }
            }
        }
        pool.trim();
    }

    /// A reply's lent memfd that is this client's own (an engine sends back the array it was
    /// pushed in): checked to be the pool's memfd `lent` names, of `len` bytes, and mapped
    /// copy-on-write; the mapping holds it until it is unmapped.
    ///
    /// # Errors
    /// Another lender's memfd, an unknown token, another file or size than the pool's.
    pub(crate) fn adopt(
        &self,
        lent: Lent,
        fd: BorrowedFd<'_>,
        len: usize,
    ) -> Result<Mapping, ReplyMemfdError> {
        if lent.lender != self.id {
            return Err(ReplyMemfdError::OtherLender(lent.lender));
        }
        let mut pool = self.pool();
        let entry = pool
            .entries
            .iter_mut()
            .find(|e| e.token == lent.token)
            .ok_or(ReplyMemfdError::UnknownToken(lent.token))?;
        if !entry.writer.is_same_file(fd) || entry.writer.len() != len {
            return Err(ReplyMemfdError::NotTheMemfd { token: lent.token, len });
        }
        let own = fd.try_clone_to_owned().map_err(ReplyMemfdError::Dup)?;
        let pool_ref: Weak<Mutex<Pool>> = Arc::downgrade(&self.pool);
        let receipt = Receipt::new(lent, move |lent| {
            if let Some(pool) = pool_ref.upgrade() {
                let mut pool = pool.lock().unwrap_or_else(|p| p.into_inner());
                if let Some(e) = pool.entries.iter_mut().find(|e| e.token == lent.token) {
                    e.local -= 1;
                }
                pool.trim();
            }
        });
        entry.local += 1;
        drop(pool);
        let memfd = SealedMemfd::check_lent(own, len as u64, receipt)?;
        Ok(memfd.map_private()?)
    }

    /// A reply's memfd that engine `engine` lent (a pull's or gather's array; see the engine's
    /// `lend` module), checked (sealed against resizing, of `len` bytes) and mapped
    /// copy-on-write; once the mapping is gone it waits in [`Lender::take_returns`].
    ///
    /// # Errors
    /// The descriptor fails the check or cannot be mapped.
    pub(crate) fn borrow(
        &self,
        engine: EngineId,
        lent: Lent,
        fd: BorrowedFd<'_>,
        len: usize,
    ) -> Result<Mapping, ReplyMemfdError> {
        let own = fd.try_clone_to_owned().map_err(ReplyMemfdError::Dup)?;
        let returns = Arc::downgrade(&self.returns);
        let receipt = Receipt::new(lent, move |lent| {
            if let Some(returns) = returns.upgrade() {
                let mut returns = returns.lock().unwrap_or_else(|p| p.into_inner());
                if returns.len() >= MAX_RETURNS {
                    returns.remove(0);
                }
                returns.push((engine, lent));
            }
        });
        let memfd = SealedMemfd::check_lent(own, len as u64, receipt)?;
        Ok(memfd.map_private()?)
    }

    /// The memfds lent by the engines `is_target` accepts that this client no longer maps (for
    /// a request to them: each engine takes back its own).
    pub(crate) fn take_returns(&self, is_target: impl Fn(EngineId) -> bool) -> Vec<Lent> {
        let mut returns = self.returns.lock().unwrap_or_else(|p| p.into_inner());
        let mut taken = Vec::new();
        returns.retain(|(engine, lent)| {
            let take = is_target(*engine);
            if take {
                taken.push(*lent);
            }
            !take
        });
        taken
    }

    /// How many memfds are idle and held.
    pub(crate) fn counts(&self) -> (usize, usize) {
        let pool = self.pool();
        let idle = pool.entries.iter().filter(|e| e.idle()).count();
        (idle, pool.entries.len() - idle)
    }
}

#[cfg(test)]
mod tests {
    use std::os::fd::AsFd;

    use super::*;

    const LEN: usize = spare::MIN_BYTES;

    fn bytes(fill: u8) -> Vec<u8> {
        vec![fill; LEN]
    }

    /// What a receiver maps of the lent descriptor.
    fn received(fd: &Arc<OwnedFd>, lent: Lent) -> Mapping {
        let own = fd.try_clone().unwrap();
        let memfd = SealedMemfd::check_lent(own, LEN as u64, Receipt::new(lent, |_| {})).unwrap();
        memfd.map_private().unwrap()
    }

    #[test]
    fn a_memfd_is_reused_only_after_every_engine_released_every_mapping() {
        let lender = Lender::new();
        let (e0, e1) = (EngineId(0), EngineId(1));
        let (fd, lent) = lender.lend(&bytes(1), RequestId(1)).unwrap().expect("lent");
        assert_eq!(lent.lender, lender.id());
        let seen = received(&fd, lent);
        assert!(seen.as_slice().iter().all(|&b| b == 1));
        // Not placed yet: a second push gets another memfd.
        let (_, other) = lender.lend(&bytes(2), RequestId(2)).unwrap().unwrap();
        assert_ne!(other.token, lent.token);
        lender.submitted(RequestId(1), Some(&[e0, e1]));
        lender.submitted(RequestId(2), Some(&[e0]));
        lender.released(e0, &[lent.token]);
        assert_eq!(lender.counts(), (0, 2), "engine 1 still maps it");
        // A release by an engine that was never sent it counts for nothing.
        lender.released(EngineId(7), &[lent.token]);
        lender.released(e1, &[lent.token]);
        assert_eq!(lender.counts(), (1, 1));
        let (_, again) = lender.lend(&bytes(3), RequestId(3)).unwrap().unwrap();
        assert_eq!(again.token, lent.token, "the idle memfd is reused");
        // The receiver's old mapping is gone by then in real life; here it shows the new bytes,
        // which is why reuse waits for every release.
        assert!(seen.as_slice().iter().all(|&b| b == 3));
    }

    #[test]
    fn an_engine_sent_a_memfd_twice_releases_it_twice() {
        let lender = Lender::new();
        let e = EngineId(3);
        let (_, lent) = lender.lend(&bytes(1), RequestId(1)).unwrap().unwrap();
        lender.submitted(RequestId(1), Some(&[e]));
        assert!(lender.relend(lent.token, RequestId(2)).unwrap().is_some());
        lender.submitted(RequestId(2), Some(&[e]));
        lender.released(e, &[lent.token]);
        assert_eq!(lender.counts(), (0, 1));
        lender.released(e, &[lent.token]);
        assert_eq!(lender.counts(), (1, 0));
    }

    #[test]
    fn a_refused_request_forgets_its_memfd_and_the_pool_is_bounded() {
        let lender = Lender::new();
        let (_, lent) = lender.lend(&bytes(1), RequestId(1)).unwrap().unwrap();
        lender.submitted(RequestId(1), None);
        assert_eq!(lender.counts(), (0, 0));
        assert!(lender.relend(lent.token, RequestId(2)).unwrap().is_none(), "never lent again");
        for i in 0..(MAX_HELD as u64 + 3) {
            lender.lend(&bytes(0), RequestId(10 + i)).unwrap().unwrap();
        }
        assert_eq!(lender.counts(), (0, MAX_HELD));
        for i in 0..(MAX_HELD as u64 + 3) {
            lender.submitted(RequestId(10 + i), Some(&[]));
        }
        assert_eq!(lender.counts(), (MAX_IDLE, 0), "only the newest idle memfds are kept");
        // Sizes the pool does not keep.
        assert!(lender.lend(&[0u8; 100], RequestId(99)).unwrap().is_none());
    }

    #[test]
    fn only_the_pools_own_memfd_is_adopted_and_it_holds_the_memfd() {
        let lender = Lender::new();
        let (fd, lent) = lender.lend(&bytes(5), RequestId(1)).unwrap().unwrap();
        lender.submitted(RequestId(1), Some(&[]));
        assert_eq!(lender.counts(), (1, 0));
        let map = lender.adopt(lent, fd.as_fd(), LEN).expect("its own memfd");
        assert!(map.as_slice().iter().all(|&b| b == 5));
        assert_eq!(lender.counts(), (0, 1), "the client's mapping holds it");
        drop(map);
        assert_eq!(lender.counts(), (1, 0));
        let stranger = Lent { lender: lender.id() ^ 1, ..lent };
        assert!(lender.adopt(stranger, fd.as_fd(), LEN).unwrap_err().to_string().contains("another client"));
        let unknown = Lent { token: 999, ..lent };
        assert!(lender
            .adopt(unknown, fd.as_fd(), LEN)
            .unwrap_err()
            .to_string()
            .contains("not in this client's pool"));
        let other = MemfdWriter::create_cold("t", LEN).unwrap();
        assert!(lender.adopt(lent, other.fd(), LEN).unwrap_err().to_string().contains("is not lent memfd"));
        assert!(lender.adopt(lent, fd.as_fd(), LEN - 1).is_err(), "a wrong size");
        assert_eq!(lender.counts(), (1, 0), "a refused adoption holds nothing");
    }

    #[test]
    fn an_engines_memfd_is_borrowed_checked_and_returned_to_that_engine_once_unmapped() {
        let lender = Lender::new();
        let mut w = MemfdWriter::create_cold("engine", LEN).unwrap();
        w.seal_size().unwrap();
        w.bytes().fill(4);
        let lent = Lent { lender: 0xE17, token: 3 };
        let (e0, e1) = (EngineId(0), EngineId(1));
        let map = lender.borrow(e1, lent, w.fd(), LEN).expect("a lent memfd of the right size");
        assert!(map.as_slice().iter().all(|&b| b == 4));
        assert!(lender.take_returns(|_| true).is_empty(), "still mapped");
        drop(map);
        assert!(lender.take_returns(|e| e == e0).is_empty(), "engine 1's memfd is not engine 0's");
        assert_eq!(lender.take_returns(|e| e == e1), vec![lent]);
        assert!(lender.take_returns(|_| true).is_empty(), "returned once");
        // The wrong size, or no resizing seals: refused, and nothing to return.
        assert!(lender.borrow(e1, lent, w.fd(), LEN + 8).unwrap_err().to_string().contains("header says"));
        let unsealed = MemfdWriter::create_cold("unsealed", LEN).unwrap();
        assert!(lender.borrow(e1, lent, unsealed.fd(), LEN).unwrap_err().to_string().contains("not sealed"));
        assert_eq!(lender.take_returns(|_| true).len(), 2, "a refused memfd is returned at once");
    }
}
