//! Arrays that already live in a sealed memfd travel again without a copy.
//!
//! A mapping of a whole sealed memfd ([`super::SealedMemfd::map_private`] or
//! [`super::SealedMemfd::map_shared`]) is registered here with its memfd, under its address,
//! until it is unmapped. An array over such a mapping (a pulled array in the client, a pushed
//! one in an engine) that is moved again on the same host is sent as that memfd
//! ([`unchanged`]) instead of being copied into a new one, if its bytes are still the memfd's:
//! - a shared mapping is read-only: its bytes are always the memfd's;
//! - a private (copy-on-write) mapping is the memfd's bytes except where the process wrote to
//!   it, and each such write gave that page a private anonymous copy. `/proc/self/pagemap`
//!   tells, page by page, whether a page is the file's (flag `PM_FILE`, bit 61) or anonymous:
//!   one anonymous page, present or swapped out, means a write, and the array is copied as
//!   before. Where pagemap cannot be read, every array is copied.
//!
//! The memfd is sealed, so what the receiver maps is exactly what the array held when it was
//! sent, whatever the sender writes to its own mapping afterwards (that write makes a private
//! page, as any write does). The registry holds one descriptor per live mapping.

use std::{
    collections::BTreeMap,
    os::unix::fs::FileExt,
    sync::{Mutex, OnceLock},
};

use super::SealedMemfd;

/// A registered mapping: its length, its memfd, whether it is private (copy-on-write).
struct Origin {
    len: usize,
    memfd: SealedMemfd,
    private: bool,
}

/// The whole-memfd mappings of this process, by address.
static ORIGINS: Mutex<BTreeMap<usize, Origin>> = Mutex::new(BTreeMap::new());

fn origins() -> std::sync::MutexGuard<'static, BTreeMap<usize, Origin>> {
    ORIGINS.lock().unwrap_or_else(|p| p.into_inner())
}

/// Notes that `len` bytes at `addr` map the whole of `memfd` (`private`: copy-on-write).
pub(super) fn register(addr: usize, len: usize, memfd: SealedMemfd, private: bool) {
    origins().insert(addr, Origin { len, memfd, private });
}

/// Forgets the mapping at `addr` (before it is unmapped).
pub(super) fn unregister(addr: usize) {
    origins().remove(&addr);
}

/// The length registered at `addr`, if a mapping is (tests).
#[cfg(test)]
pub(super) fn registered_at(addr: usize) -> Option<usize> {
    origins().get(&addr).map(|o| o.len)
}

/// The sealed memfd whose bytes `bytes` are, when `bytes` is exactly a registered mapping
/// (the same address and length) and, for a private mapping, no page of it was written.
pub fn unchanged(bytes: &[u8]) -> Option<SealedMemfd> {
    if bytes.is_empty() {
        return None;
    }
    let (memfd, private) = {
        let map = origins();
        let o = map.get(&(bytes.as_ptr() as usize)).filter(|o| o.len == bytes.len())?;
        (o.memfd.clone(), o.private)
    };
    (!private || unwritten(bytes.as_ptr() as usize, bytes.len()) == Some(true)).then_some(memfd)
}

/// `/proc/self/pagemap`'s flags: the page is present, swapped out, a file (or shared) page.
const PRESENT: u64 = 1 << 63;
const SWAPPED: u64 = 1 << 62;
const FILE: u64 = 1 << 61;

/// Whether no page of `len` bytes at `addr` is an anonymous (written) page; `None` when
/// pagemap cannot be read.
fn unwritten(addr: usize, len: usize) -> Option<bool> {
    static PAGEMAP: OnceLock<Option<std::fs::File>> = OnceLock::new();
    let pagemap = PAGEMAP.get_or_init(|| std::fs::File::open("/proc/self/pagemap").ok()).as_ref()?;
    let page = super::page_size();
    let (first, last) = (addr / page, (addr + len - 1) / page);
    // 64 KiB of entries (32 MiB of pages on 4 KiB pages) at a time.
    let mut buf = vec![0u8; 8 * 8192];
    let mut at = first;
    while at <= last {
        let n = (last + 1 - at).min(8192);
        let chunk = &mut buf[..8 * n];
        pagemap.read_exact_at(chunk, (at * 8) as u64).ok()?;
        for e in chunk.chunks_exact(8) {
            let flags = u64::from_ne_bytes(e.try_into().expect("8 bytes"));
            if flags & FILE == 0 && flags & (PRESENT | SWAPPED) != 0 {
                return Some(false);
            }
        }
        at += n;
    }
    Some(true)
}
