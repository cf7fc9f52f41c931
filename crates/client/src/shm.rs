//! The client's side of the same-host path: arrays in sealed memfds passed over the
//! controller's Unix socket instead of bytes through sockets (see `mpx_messages::memfd` for
//! what a receiver checks, and why no MAC is needed).
//!
//! - A push from a client on the controller's host, to engines that are all there too, copies
//!   the array once into a memfd; every engine maps it copy-on-write.
//! - A pull asks those engines for a memfd; the client maps it (copy-on-write: the numpy array
//!   over it is writable) and the array's bytes are the mapping, not a copy.
//!
//! Anything else (another host, `MPX_SHM=0`, no memfds here) takes the TCP path, logged once.

use std::sync::atomic::AtomicBool;

use bytes::Bytes;
use mpx_messages::{
    array::byte_len,
    memfd::{MemfdError, SealedMemfd},
    Fds, MpxError, Outcome, Request, Targets,
};

/// Set once the fallback to the TCP path has been logged.
static FALLBACK_LOGGED: AtomicBool = AtomicBool::new(false);

/// Logs (once per process) that arrays take the TCP path, and why.
pub(crate) fn log_fallback(why: &str) {
    if !FALLBACK_LOGGED.swap(true, std::sync::atomic::Ordering::Relaxed) {
        tracing::info!(%why, "arrays take the TCP path");
    }
}

/// A sealed memfd holding a copy of `bytes` (the array to push), or why there is none.
///
/// # Errors
/// [`MemfdError`] (no memfds on this system, or a system call failed).
pub(crate) fn memfd_of(bytes: &[u8]) -> Result<SealedMemfd, MemfdError> {
    SealedMemfd::copy_of("push", bytes)
}

/// The frame's descriptors for one memfd.
pub(crate) fn fds_of(memfd: &SealedMemfd) -> Fds {
    Fds(vec![memfd.shared_fd()])
}

/// When a reply's array came in a memfd (`array.fd`), checks it (a sealed memfd of the
/// array's size), maps it copy-on-write, and makes the mapping the reply's next buffer (the
/// array then refers to it); a descriptor that fails the checks becomes the reply's error.
pub(crate) fn adopt_reply_memfd(outcome: &mut Outcome, fds: &Fds, buffers: &mut Vec<Bytes>) {
    let Some(meta) = outcome.array.as_mut() else { return };
    let Some(index) = meta.fd else { return };
    let adopted = (|| {
        let fd =
            fds.0.get(index).ok_or_else(|| format!("descriptor {index} is missing ({} came)", fds.len()))?;
        let len = byte_len(meta.dtype, &meta.shape).ok_or_else(|| "the array is too large".to_string())?;
        let fd = fd.try_clone().map_err(|e| e.to_string())?;
        let memfd = SealedMemfd::check(fd, len as u64).map_err(|e| e.to_string())?;
        let mapping = memfd.map_private().map_err(|e| e.to_string())?;
        Ok::<Bytes, String>(Bytes::from_owner(mapping))
    })();
    match adopted {
        Ok(bytes) => {
            meta.fd = None;
            meta.buffer = buffers.len();
            buffers.push(bytes);
        }
        Err(why) => {
            outcome.array = None;
            outcome.error = Some(MpxError::decode(format!("bad array reply (memfd): {why}")));
        }
    }
}

impl crate::Client {
    /// Puts `request` on the same-host path when it can take it (see [`crate::shm`]): a push
    /// to engines all on this host moves its array into a memfd (returned, to pass with the
    /// frame; `buffers` is then empty), and a pull asks for memfds. Anything else is left as it
    /// is, for the TCP path.
    pub(crate) fn same_host_path(
        &self,
        targets: &Targets,
        request: &mut Request,
        buffers: &mut Vec<Bytes>,
    ) -> mpx_messages::Fds {
        if !self.local {
            return mpx_messages::Fds::default();
        }
        match request {
            Request::Pull { shm, .. } => *shm = true,
            Request::Push { array, .. }
                if buffers.len() == 1 && buffers[0].len() >= mpx_messages::memfd::min_bytes() =>
            {
                if !self.all_local(targets) {
                    log_fallback("some target engines are on other hosts");
                    return mpx_messages::Fds::default();
                }
                match memfd_of(&buffers[0]) {
                    Ok(memfd) => {
                        array.fd = Some(0);
                        buffers.clear();
                        return fds_of(&memfd);
                    }
                    Err(e) => log_fallback(&e.to_string()),
                }
            }
            _ => {}
        }
        mpx_messages::Fds::default()
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
