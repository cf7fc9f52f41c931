//! One warm memfd kept for the next large array (this process's spare).
//!
//! A fresh memfd's pages cost more than the bytes copied into them: on this project's VM,
//! filling 80 MB of a new memfd takes about 80 ms, of which the copy itself is 13–20 ms; the
//! rest is the kernel allocating and zeroing 20,000 shared pages one fault at a time (shared
//! memory gets no transparent huge pages by default). A sealed memfd cannot be written again,
//! so it cannot be reused; instead, after a process hands over a large memfd, a background
//! thread makes the next one: the same size, mapped and populated (`MADV_POPULATE_WRITE`, one
//! system call for every page). The next array of about that size (a push repeated in a loop,
//! the next pull of a result) is then written into warm pages, and the page work happened
//! while the process waited for the user or the engines.
//!
//! Bounds: one spare per process, refilled by at most one thread at a time, only for arrays
//! of [`MIN_BYTES`] to [`max_bytes`] (`$MPX_SHM_SPARE_BYTES`, default 256 MiB; `0` turns spares
//! off). An idle client or engine therefore holds at most that much more memory, and a move
//! larger than the bound (a 1 GB `push --shared`) costs its own pages only. A spare is never
//! handed out twice: taking it empties the slot, and it becomes an ordinary [`MemfdWriter`]
//! that is sealed before it leaves the process.

use std::sync::{
    atomic::{AtomicBool, Ordering},
    Mutex, OnceLock,
};

use nix::sys::mman::{madvise, MmapAdvise};

use super::{MemfdError, MemfdWriter};

/// Arrays smaller than this get no spare (their pages cost little).
pub const MIN_BYTES: usize = 4 << 20;

/// The largest array a spare is kept for: `$MPX_SHM_SPARE_BYTES`, default 256 MiB (`0`: none).
pub fn max_bytes() -> usize {
    static MAX: OnceLock<usize> = OnceLock::new();
    *MAX.get_or_init(|| {
        std::env::var("MPX_SHM_SPARE_BYTES").ok().and_then(|v| v.parse().ok()).unwrap_or(256 << 20)
    })
}

/// The spare, if one is ready.
static SPARE: Mutex<Option<MemfdWriter>> = Mutex::new(None);

/// A thread is making a spare.
static REFILLING: AtomicBool = AtomicBool::new(false);

/// Whether an array of `len` bytes is worth warm memory: [`MIN_BYTES`] to [`max_bytes`]. The
/// spare, lent memfds ([`super::lent`]) and warm ones ([`super::warm`]) keep this one range.
pub fn wanted(len: usize) -> bool {
    len >= MIN_BYTES && len <= max_bytes()
}

/// The spare, cut to `len` bytes, when there is one of `len` to twice `len` bytes (a larger
/// one is left for a larger array). Starts making the next spare for arrays of `len` bytes.
pub(super) fn take(len: usize) -> Option<MemfdWriter> {
    if !wanted(len) {
        return None;
    }
    let taken = {
        let mut slot = SPARE.lock().unwrap_or_else(|p| p.into_inner());
        match slot.as_ref().map(|s| s.map.len()) {
            Some(size) if size >= len && size / 2 <= len => slot.take(),
            _ => None,
        }
    };
    refill(len);
    let mut writer = taken?;
    // A spare that cannot be cut is dropped: the array gets a fresh memfd instead.
    writer.truncate(len).ok().map(|()| writer)
}

/// Makes the next spare (`len` bytes) in a background thread, unless one is being made.
fn refill(len: usize) {
    if REFILLING.swap(true, Ordering::AcqRel) {
        return;
    }
    let made = std::thread::Builder::new().name("mpx-memfd-spare".into()).spawn(move || {
        // Without a spare (no memory for it now) the next array takes fresh pages, as before.
        if let Ok(w) = warm(len) {
            *SPARE.lock().unwrap_or_else(|p| p.into_inner()) = Some(w);
        }
        REFILLING.store(false, Ordering::Release);
    });
    if made.is_err() {
        REFILLING.store(false, Ordering::Release);
    }
}

/// A new memfd of `len` bytes with every page allocated and mapped.
fn warm(len: usize) -> Result<MemfdWriter, MemfdError> {
    let mut w = MemfdWriter::create_cold("spare", len)?;
    let ptr = std::ptr::NonNull::new(w.map.as_ptr().cast()).expect("a non-empty mapping");
    // SAFETY: the range is this writer's own mapping, `len` bytes, alive for the call;
    // populating only allocates and maps its pages (contents stay zero).
    if unsafe { madvise(ptr, len, MmapAdvise::MADV_POPULATE_WRITE) }.is_err() {
        // Kernels before 5.14: touch one byte a page.
        for b in w.bytes().iter_mut().step_by(super::page_size()) {
            // SAFETY: a valid, writable byte of the mapping; volatile so the write is kept.
            unsafe { std::ptr::write_volatile(b, 0) };
        }
    }
    Ok(w)
}

/// Drops the spare (tests, and a process that wants its memory back).
pub fn clear() {
    SPARE.lock().unwrap_or_else(|p| p.into_inner()).take();
}

/// Whether a spare is ready (tests).
pub fn ready() -> bool {
    SPARE.lock().unwrap_or_else(|p| p.into_inner()).is_some()
}

/// Waits up to `timeout` for the spare being made (tests).
pub fn settle(timeout: std::time::Duration) {
    let end = std::time::Instant::now() + timeout;
    while REFILLING.load(Ordering::Acquire) && std::time::Instant::now() < end {
        std::thread::sleep(std::time::Duration::from_millis(1));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_spare_is_made_after_a_large_array_and_taken_once() {
        let len = MIN_BYTES + 12_345;
        let _first = MemfdWriter::create("t", len).unwrap();
        settle(std::time::Duration::from_secs(60));
        assert!(ready(), "no spare after a large array");
        // Too large for it: left for a larger array.
        assert!(take(len * 3).is_none());
        settle(std::time::Duration::from_secs(60));
        clear();
        let _again = MemfdWriter::create("t", len).unwrap();
        settle(std::time::Duration::from_secs(60));
        let mut w = take(len - 100).expect("the spare");
        assert_eq!(w.bytes().len(), len - 100);
        assert!(w.bytes().iter().all(|&b| b == 0), "a spare starts zeroed");
        w.bytes().fill(7);
        let sealed = w.seal().unwrap();
        assert_eq!(sealed.len(), len - 100);
        assert!(sealed.map_shared().unwrap().as_slice().iter().all(|&b| b == 7));
        let file = std::fs::File::from(sealed.fd().try_clone_to_owned().unwrap());
        assert_eq!(file.metadata().unwrap().len(), (len - 100) as u64);
        settle(std::time::Duration::from_secs(60));
        clear();
    }

    #[test]
    fn small_arrays_get_no_spare() {
        assert!(!wanted(MIN_BYTES - 1));
        assert!(take(100).is_none());
    }
}
