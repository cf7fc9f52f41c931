//! The client's side of the same-host path: arrays in sealed memfds passed over the
//! controller's Unix socket instead of bytes through sockets (see `mpx_messages::memfd` for
//! what a receiver checks, and why no MAC is needed).
//!
//! - A push from a client on the controller's host, to engines that are all there too, copies
//!   the array once into a memfd; every engine maps it copy-on-write. Targets on other hosts of
//!   the same engine set get it by MPI from one of the engines here, which maps the memfd too.
//! - A scatter goes the same way: one memfd, and each engine maps its own rows of it.
//! - A pull asks those engines for a memfd; the client maps it (copy-on-write: the numpy array
//!   over it is writable) and the array's bytes are the mapping, not a copy. A gather asks its
//!   lowest engine to gather into a memfd (MPI among the engines, as ever) and is answered the
//!   same way.
//!
//! Anything else (another host, `MPX_SHM=0`, no memfds here) takes the TCP path, logged once.
//! Except a shared push (`push --shared`: one read-only copy for all the engines of the
//! host): it exists only on this path, so where the path is closed it fails with a
//! [`SharedPushError`] instead of quietly becoming a copy per engine.

use std::os::fd::AsFd;
use std::sync::atomic::AtomicBool;

use crate::{
    client::{Client, CONNECT_TIMEOUT},
    error::{ClientError, SharedPushError},
    lend::{Lender, ReplyMemfdError},
};
use bytes::Bytes;
use mpx_messages::{
    array::byte_len,
    memfd::{lent::Lent, MemfdError, SealedMemfd},
    ArrayMeta, EngineId, Fds, MpxError, Outcome, Request, RequestId, Targets,
};

/// Set once the fallback to the TCP path has been logged.
static FALLBACK_LOGGED: AtomicBool = AtomicBool::new(false);

/// Logs (once per process) that arrays take the TCP path, and why.
pub(crate) fn log_fallback(why: &str) {
    if !FALLBACK_LOGGED.swap(true, std::sync::atomic::Ordering::Relaxed) {
        tracing::info!(%why, "arrays take the TCP path");
    }
}

/// A sealed memfd holding `bytes` (the array to push): the memfd the array already lives in
/// when it is an unchanged mapping of one (a pulled array, see
/// [`mpx_messages::memfd::origin`]), else a copy; or why there is none.
///
/// # Errors
/// [`MemfdError`] (no memfds on this system, or a system call failed).
pub(crate) fn memfd_of(bytes: &[u8]) -> Result<SealedMemfd, MemfdError> {
    if let Some(memfd) = unchanged(bytes) {
        tracing::debug!("push: {} bytes sent as the memfd they live in (no copy)", bytes.len());
        return Ok(memfd);
    }
    SealedMemfd::copy_of("push", bytes)
}

/// The sealed memfd `bytes` live in unchanged, if they do (a lent one, pulled back, is not
/// sealed: a shared push copies it).
fn unchanged(bytes: &[u8]) -> Option<SealedMemfd> {
    mpx_messages::memfd::origin::unchanged(bytes).filter(|m| m.lent().is_none())
}

/// The frame's descriptors for one memfd.
pub(crate) fn fds_of(memfd: &SealedMemfd) -> Fds {
    Fds(vec![memfd.shared_fd()])
}

/// When a reply's array came in a memfd (`array.fd`), checks it (a sealed memfd of the
/// array's size), maps it copy-on-write, and makes the mapping the reply's next buffer (the
/// array then refers to it); a descriptor that fails the checks becomes the reply's error.
pub(crate) fn adopt_reply_memfd(
    lender: &Lender,
    engine: EngineId,
    outcome: &mut Outcome,
    fds: &Fds,
    buffers: &mut Vec<Bytes>,
) {
    let Some(meta) = outcome.array.as_mut() else { return };
    let Some(index) = meta.fd else { return };
    let adopted = (|| {
        let fd = fds.0.get(index).ok_or(ReplyMemfdError::Missing { index, count: fds.len() })?;
        let len = byte_len(meta.dtype, &meta.shape).ok_or(ReplyMemfdError::TooLarge)?;
        // An array pushed in a memfd this client lent comes back as that memfd; the engine's
        // own pool lends the others.
        match meta.lent {
            Some(lent) if lent.lender == lender.id() => {
                return lender.adopt(lent, fd.as_fd(), len).map(Bytes::from_owner);
            }
            Some(lent) => return lender.borrow(engine, lent, fd.as_fd(), len).map(Bytes::from_owner),
            None => {}
        }
        let fd = fd.try_clone().map_err(ReplyMemfdError::Dup)?;
        let memfd = SealedMemfd::check(fd, len as u64)?;
        let mapping = memfd.map_private()?;
        Ok::<Bytes, ReplyMemfdError>(Bytes::from_owner(mapping))
    })();
    match adopted {
        Ok(bytes) => {
            meta.fd = None;
            meta.lent = None;
            meta.buffer = buffers.len();
            buffers.push(bytes);
        }
        Err(why) => {
            outcome.array = None;
            outcome.error = Some(MpxError::decode(format!("bad array reply (memfd): {why}")));
        }
    }
}

impl Client {
    /// Puts `request` on the same-host path when it can take it (see [`crate::shm`]): a push
    /// to engines all on this host moves its array into a memfd (returned, to pass with the
    /// frame; `buffers` is then empty), and a pull asks for memfds. Anything else is left as it
    /// is, for the TCP path.
    ///
    /// # Errors
    /// [`ClientError::NotShared`]: a shared push that cannot take this path.
    pub(crate) fn same_host_path(
        &self,
        targets: &Targets,
        req_id: RequestId,
        request: &mut Request,
        buffers: &mut Vec<Bytes>,
    ) -> Result<mpx_messages::Fds, ClientError> {
        if let Request::Push { array, shared: true, .. } = request {
            return self.shared_push_path(targets, array, buffers).map_err(ClientError::NotShared);
        }
        if !self.local {
            return Ok(mpx_messages::Fds::default());
        }
        let is_push = matches!(request, Request::Push { .. });
        Ok(match request {
            Request::Pull { shm, lender, returned, .. } => {
                *shm = true;
                *lender = Some(self.shared.lender.id());
                *returned = self.shared.lender.take_returns(|e| targets.contains(e));
                mpx_messages::Fds::default()
            }
            Request::Gather { shm, returned, .. } => {
                *shm = true;
                *returned = self.shared.lender.take_returns(|e| targets.contains(e));
                mpx_messages::Fds::default()
            }
            Request::Push { array, .. } | Request::Scatter { array, .. }
                if buffers.len() == 1 && buffers[0].len() >= mpx_messages::memfd::min_bytes() =>
            {
                // A push also reaches engines elsewhere by MPI from one here (same engine set).
                if !(self.all_local(targets) || is_push && self.bridged(targets)) {
                    log_fallback("some target engines are on other hosts");
                    return Ok(mpx_messages::Fds::default());
                }
                match self.lent_or_sealed(&buffers[0], req_id) {
                    Ok((fds, lent)) => {
                        array.fd = Some(0);
                        array.lent = lent;
                        buffers.clear();
                        fds
                    }
                    Err(e) => {
                        log_fallback(&e.to_string());
                        mpx_messages::Fds::default()
                    }
                }
            }
            _ => mpx_messages::Fds::default(),
        })
    }

    /// The memfd that carries `bytes` (a push or scatter of request `req_id`): the sealed
    /// memfd they already live in, else a copy in a lent memfd of this connection's pool
    /// ([`crate::lend`]), else (a size the pool does not keep) a copy in a new sealed one.
    fn lent_or_sealed(&self, bytes: &[u8], req_id: RequestId) -> Result<(Fds, Option<Lent>), MemfdError> {
        if let Some(memfd) = mpx_messages::memfd::origin::unchanged(bytes) {
            let lender = &self.shared.lender;
            let again = match memfd.lent() {
                None => Some((fds_of(&memfd), None)),
                Some(lent) if lent.lender == lender.id() => {
                    lender.relend(lent.token, req_id)?.map(|fd| (Fds(vec![fd]), Some(lent)))
                }
                Some(_) => None,
            };
            if let Some(again) = again {
                tracing::debug!("push: {} bytes sent as the memfd they live in (no copy)", bytes.len());
                return Ok(again);
            }
        }
        match self.shared.lender.lend(bytes, req_id)? {
            Some((fd, lent)) => Ok((Fds(vec![fd]), Some(lent))),
            None => Ok((fds_of(&SealedMemfd::copy_of("push", bytes)?), None)),
        }
    }

    /// A shared push's array into a memfd (whatever its size), or why it cannot be: this
    /// client and every target must be on the controller's host (the cluster information is
    /// asked again once when a target is not known to be, e.g. engines added since).
    fn shared_push_path(
        &self,
        targets: &Targets,
        array: &mut ArrayMeta,
        buffers: &mut Vec<Bytes>,
    ) -> Result<Fds, SharedPushError> {
        if !self.local {
            let disabled = !mpx_messages::connection::shm_enabled();
            return Err(if disabled { SharedPushError::Disabled } else { SharedPushError::NotLocal });
        }
        if !self.elsewhere(targets).is_empty() {
            // Stale information is not a reason to refuse; a failed refresh leaves it as it was.
            let _ = self.info(CONNECT_TIMEOUT);
            let elsewhere = self.elsewhere(targets);
            if !elsewhere.is_empty() {
                return Err(SharedPushError::EnginesElsewhere(elsewhere));
            }
        }
        let bytes = buffers.first().map_or(&[][..], |b| &b[..]);
        let memfd = memfd_of(bytes)?;
        array.fd = Some(0);
        buffers.clear();
        Ok(fds_of(&memfd))
    }

    /// The engines of `targets` not on this host as the last cluster information says (an id
    /// it does not list counts as elsewhere).
    fn elsewhere(&self, targets: &Targets) -> Vec<EngineId> {
        let state = self.shared.state.lock().expect("client state");
        let engines = state.info.as_ref().map_or(&[][..], |info| &info.engines[..]);
        let local = |id: &EngineId| engines.iter().any(|e| e.id == *id && e.local);
        match targets {
            Targets::All => engines.iter().map(|e| e.id).filter(|id| !local(id)).collect(),
            Targets::List(ids) => ids.iter().copied().filter(|id| !local(id)).collect(),
        }
    }

    /// Whether a memfd push to `targets` reaches them all, as the last cluster information
    /// says: some are on this host, and all are in one engine set (one of them here then
    /// broadcasts it to the others by MPI).
    fn bridged(&self, targets: &Targets) -> bool {
        let state = self.shared.state.lock().expect("client state");
        let Some(info) = &state.info else { return false };
        let chosen: Vec<_> = info.engines.iter().filter(|e| targets.contains(e.id)).collect();
        chosen.iter().any(|e| e.local)
            && chosen.windows(2).all(|w| w[0].set == w[1].set)
            && match targets {
                Targets::All => true,
                Targets::List(ids) => ids.len() == chosen.len(),
            }
    }

    /// Whether every engine of `targets` is on this host, as the last cluster information
    /// said (none known: no).
    fn all_local(&self, targets: &Targets) -> bool {
        let state = self.shared.state.lock().expect("client state");
        let Some(info) = &state.info else { return false };
        match targets {
            Targets::All => !info.engines.is_empty() && info.engines.iter().all(|e| e.local),
            Targets::List(ids) => ids.iter().all(|id| info.engines.iter().any(|e| e.id == *id && e.local)),
        }
    }
}
