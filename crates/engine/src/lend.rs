//! The engine's pool of lent memfds, for the arrays it sends to a client on its host (a pull
//! of a cell's result, a gather's root): the other direction of the client's pool
//! (`mpx_messages::memfd::lent`, steps and promise alike).
//!
//! The engine copies (or gathers) the array into an idle memfd of exactly its size when it has
//! one, whose pages are already allocated, and replies with it and its [`Lent`] name. The client
//! maps it; when its last mapping is gone, its next pull or gather to this engine names it in
//! `returned`, and the memfd is idle again. A memfd goes to one client and one mapping, so one
//! return makes it idle. Bounds: one idle memfd, eight lent ones (the oldest forgotten, never
//! written again: a client that left returns nothing). Sizes outside 4 MiB to
//! `$MPX_SHM_SPARE_BYTES` are not pooled: they go in a sealed memfd, as before.

use std::{
    os::fd::OwnedFd,
    sync::{Arc, Mutex, MutexGuard, OnceLock},
};

use mpx_messages::memfd::{lent::Lent, spare, MemfdError, MemfdWriter};

/// The most idle memfds kept.
const MAX_IDLE: usize = 1;
/// The most lent memfds remembered.
const MAX_LENT: usize = 8;

/// A memfd of the pool: its token, the memfd, whether a client has it.
struct Entry {
    token: u64,
    writer: MemfdWriter,
    lent: bool,
}

/// The pool: entries oldest lent first, and the last token given.
static POOL: Mutex<(Vec<Entry>, u64)> = Mutex::new((Vec::new(), 0));

fn pool() -> MutexGuard<'static, (Vec<Entry>, u64)> {
    POOL.lock().unwrap_or_else(|p| p.into_inner())
}

/// This engine's lender number (random, drawn once).
pub fn lender() -> u64 {
    static ID: OnceLock<u64> = OnceLock::new();
    *ID.get_or_init(|| {
        mpx_messages::Binding::fresh_origin()
            .unwrap_or_else(|_| u64::from(std::process::id()).rotate_left(32) ^ 0x6d70_785f_656e_6769)
    })
}

/// Whether arrays of `len` bytes go in lent memfds.
pub fn pooled(len: usize) -> bool {
    spare::wanted(len)
}

/// A memfd of `len` bytes to fill and then [`lend`]: an idle one of the pool when there is
/// one of that size, else a new one sealed against resizing. Its token comes with it.
///
/// # Errors
/// A memfd cannot be made.
pub fn take(len: usize) -> Result<(u64, MemfdWriter), MemfdError> {
    let mut pool = pool();
    if let Some(at) = pool.0.iter().position(|e| !e.lent && e.writer.len() == len) {
        let e = pool.0.remove(at);
        return Ok((e.token, e.writer));
    }
    drop(pool);
    let writer = MemfdWriter::create("reply", len)?;
    writer.seal_size()?;
    let mut pool = self::pool();
    pool.1 += 1;
    Ok((pool.1, writer))
}

/// Lends the filled memfd `writer` (token `token`): its descriptor for the reply, and its name.
///
/// # Errors
/// `dup` fails (then the memfd is dropped).
pub fn lend(token: u64, writer: MemfdWriter) -> Result<(Arc<OwnedFd>, Lent), MemfdError> {
    let fd = writer.shared_fd()?;
    let mut pool = pool();
    pool.0.push(Entry { token, writer, lent: true });
    trim(&mut pool.0);
    Ok((fd, Lent { lender: lender(), token }))
}

/// The client no longer maps these memfds (those of other engines are ignored).
pub fn returned(lents: &[Lent]) {
    let me = lender();
    let mut pool = pool();
    for lent in lents.iter().filter(|l| l.lender == me) {
        if let Some(e) = pool.0.iter_mut().find(|e| e.token == lent.token) {
            e.lent = false;
        }
    }
    trim(&mut pool.0);
}

/// Keeps the newest [`MAX_IDLE`] idle and [`MAX_LENT`] lent memfds.
fn trim(entries: &mut Vec<Entry>) {
    let (mut idle, mut lent) = (0, 0);
    for i in (0..entries.len()).rev() {
        let (count, max) = if entries[i].lent { (&mut lent, MAX_LENT) } else { (&mut idle, MAX_IDLE) };
        *count += 1;
        if *count > max {
            entries.remove(i);
        }
    }
}

/// How many memfds are idle and lent (tests).
pub fn counts() -> (usize, usize) {
    let pool = pool();
    let lent = pool.0.iter().filter(|e| e.lent).count();
    (pool.0.len() - lent, lent)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_memfd_is_taken_again_only_once_returned_by_its_client() {
        let len = spare::MIN_BYTES;
        assert!(pooled(len) && !pooled(len - 1));
        let (token, mut w) = take(len).unwrap();
        w.bytes().fill(1);
        let (_fd, lent) = lend(token, w).unwrap();
        assert_eq!(lent, Lent { lender: lender(), token });
        let (other, w2) = take(len).unwrap();
        assert_ne!(other, token, "a lent memfd is not taken");
        // Another engine's return changes nothing.
        returned(&[Lent { lender: lender() ^ 1, token }]);
        let (third, w3) = take(len).unwrap();
        assert_ne!(third, token);
        returned(&[lent]);
        let (again, w4) = take(len).unwrap();
        assert_eq!(again, token, "the returned memfd is taken again");
        assert!(w4.len() == len && w2.len() == len && w3.len() == len);
    }
}
