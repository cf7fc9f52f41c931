//! Warm memory for arrays a process receives in place (an engine's array pushed over TCP, a
//! client's array pulled over TCP): a memfd of the array's size whose pages are already
//! allocated, when this process has one idle, else a new one (never the [`super::spare`]: that
//! one is kept for the memfds sent to other processes, and taking it would start a background
//! thread that allocates its successor).
//!
//! The array lives over the memfd's own writable mapping ([`super::MemfdWriter::into_mapping`]);
//! when it is freed, the memfd becomes idle again, its pages still allocated, for the next
//! array of its size. On this project's VM fresh pages cost more than the bytes written into
//! them (80 MB: about 58 ms against 13 ms), so a loop that moves arrays of one size pays for
//! its pages once. Bounds: at most [`MAX_IDLE`] idle memfds per process (the newest kept), for
//! arrays of [`super::spare::MIN_BYTES`] to [`super::spare::max_bytes`] only.

use std::sync::Mutex;

use super::{spare, Mapping, MemfdWriter};

/// The most idle memfds a process keeps.
pub const MAX_IDLE: usize = 1;

/// The idle memfds, oldest first.
static IDLE: Mutex<Vec<MemfdWriter>> = Mutex::new(Vec::new());

/// Writable memory for an array of `len` bytes that goes back to this process's idle memfds
/// when it drops; `None` for a size that is not kept, or where memfds cannot be made (the
/// caller allocates as usual).
pub fn receive(len: usize) -> Option<Mapping> {
    if !spare::wanted(len) {
        return None;
    }
    let idle = {
        let mut idle = IDLE.lock().unwrap_or_else(|p| p.into_inner());
        idle.iter().position(|w| w.len() == len).map(|at| idle.remove(at))
    };
    let writer = match idle {
        Some(w) => w,
        None => MemfdWriter::create_cold("array", len).ok()?,
    };
    Some(writer.into_mapping(|writer| {
        let mut idle = IDLE.lock().unwrap_or_else(|p| p.into_inner());
        idle.push(writer);
        let extra = idle.len().saturating_sub(MAX_IDLE);
        idle.drain(..extra);
    }))
}

/// How many idle memfds this process keeps now (tests).
pub fn idle() -> usize {
    IDLE.lock().unwrap_or_else(|p| p.into_inner()).len()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn memory_goes_back_warm_and_is_taken_again_for_its_size() {
        let len = spare::MIN_BYTES + 8;
        let mut a = receive(len).expect("a memfd");
        let at = a.as_ptr() as usize;
        a.as_mut_slice().fill(9);
        assert!(receive(100).is_none(), "small arrays are not kept");
        drop(a);
        let b = receive(len).expect("the idle memfd");
        assert_eq!(b.as_ptr() as usize, at, "the same mapping, pages and all");
        assert!(
            b.as_slice().iter().all(|&x| x == 9),
            "its bytes are what was left (receivers overwrite them)"
        );
        let c = receive(len).expect("a second one while the first is in use");
        assert_ne!(c.as_ptr() as usize, at);
        drop((b, c));
        assert_eq!(idle(), MAX_IDLE);
    }
}
