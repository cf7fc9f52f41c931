//! [`Mapping`]: a mapping of (part of) a memfd, unmapped on drop.

use std::{ffi::c_void, num::NonZeroUsize, os::fd::BorrowedFd, ptr::NonNull, sync::Arc};

use nix::{
    errno::Errno,
    sys::mman::{mmap, munmap, MapFlags, ProtFlags},
};

use super::{lent, origin, page_size, sys, MemfdError};

/// A mapping of (part of) a memfd, unmapped on drop.
#[derive(Debug)]
pub struct Mapping {
    ptr: Option<NonNull<c_void>>,
    /// Bytes mapped before the view (a range that starts inside a page).
    pub(super) skip: usize,
    pub(super) len: usize,
    pub(super) writable: bool,
    /// Registered in [`origin`] (a whole sealed memfd's mapping) until it is unmapped.
    pub(super) origin: bool,
    /// The hold on a lent memfd, let go after the unmapping ([`lent`]).
    pub(super) receipt: Option<Arc<lent::Receipt>>,
    /// A writer whose own mapping this is ([`super::MemfdWriter::into_mapping`]): given back,
    /// still mapped, instead of being unmapped.
    pub(super) recycle: Option<Box<Recycle>>,
}

/// A memfd writer lent out as a [`Mapping`], and where it goes back.
pub(super) struct Recycle {
    pub(super) writer: super::MemfdWriter,
    pub(super) back: Box<dyn FnOnce(super::MemfdWriter) + Send + Sync>,
}

impl std::fmt::Debug for Recycle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Recycle").field("writer", &self.writer).finish_non_exhaustive()
    }
}

// SAFETY: a mapping is plain memory owned by this value; access goes through `&self`/`&mut self`.
unsafe impl Send for Mapping {}
unsafe impl Sync for Mapping {}

impl Mapping {
    /// Maps the `len` bytes of `fd` from `offset` (any offset: the mapping starts at the page
    /// that holds it, and the view skips what comes before).
    pub(super) fn new(
        fd: BorrowedFd<'_>,
        offset: usize,
        len: usize,
        prot: ProtFlags,
        flags: MapFlags,
    ) -> Result<Self, MemfdError> {
        let writable = prot.contains(ProtFlags::PROT_WRITE);
        let skip = offset % page_size();
        let Some(length) = NonZeroUsize::new(skip + len).filter(|_| len > 0) else {
            return Ok(Mapping {
                ptr: None,
                skip: 0,
                len: 0,
                writable,
                origin: false,
                receipt: None,
                recycle: None,
            });
        };
        let start = i64::try_from(offset - skip)
            .map_err(|_| MemfdError::Sys { call: "mmap", errno: Errno::EOVERFLOW })?;
        // SAFETY: a fresh mapping chosen by the kernel (no address given) overlaps nothing.
        let ptr = unsafe { mmap(None, length, prot, flags, fd, start) }.map_err(sys("mmap"))?;
        Ok(Mapping { ptr: Some(ptr), skip, len, writable, origin: false, receipt: None, recycle: None })
    }

    /// A view of `len` bytes at `ptr` that `recycle`'s writer maps (and keeps mapped).
    pub(super) fn view(ptr: Option<NonNull<c_void>>, len: usize, recycle: Recycle) -> Mapping {
        Mapping {
            ptr,
            skip: 0,
            len,
            writable: true,
            origin: false,
            receipt: None,
            recycle: Some(Box::new(recycle)),
        }
    }

    /// The mapping's start (`None` when empty).
    pub(super) fn ptr(&self) -> Option<NonNull<c_void>> {
        self.ptr
    }

    /// Unmaps all but the first `len` bytes (fewer than mapped; whole pages past `len`).
    pub(super) fn shrink(&mut self, len: usize) -> Result<(), MemfdError> {
        assert!(len > 0, "a mapping is not cut to nothing");
        let page = page_size();
        let keep = len.div_ceil(page) * page;
        let mapped = self.len.div_ceil(page) * page;
        debug_assert_eq!(self.skip, 0, "only whole mappings are cut");
        if let (Some(ptr), true) = (self.ptr, keep < mapped) {
            // SAFETY: the pages from `keep` on are this mapping's own, past every byte still used.
            let tail =
                unsafe { NonNull::new_unchecked(ptr.as_ptr().cast::<u8>().add(keep).cast::<c_void>()) };
            // SAFETY: unmapping part of this value's own mapping that nothing refers to.
            unsafe { munmap(tail, mapped - keep) }.map_err(sys("munmap"))?;
        }
        self.len = len;
        Ok(())
    }

    /// The mapped bytes' address (dangling but aligned when empty).
    pub fn as_ptr(&self) -> *mut u8 {
        // SAFETY: `skip` bytes are mapped before the view, within the same mapping.
        self.ptr.map_or(NonNull::dangling().as_ptr(), |p| unsafe { p.as_ptr().cast::<u8>().add(self.skip) })
    }

    /// How many bytes are mapped.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether nothing is mapped.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Whether the mapping may be written (a private copy-on-write one).
    pub fn is_writable(&self) -> bool {
        self.writable
    }

    /// The bytes.
    pub fn as_slice(&self) -> &[u8] {
        // SAFETY: `len` bytes are mapped readable at the pointer for as long as `self` lives.
        unsafe { std::slice::from_raw_parts(self.as_ptr(), self.len) }
    }

    /// The bytes, to write (only a writable mapping).
    ///
    /// # Panics
    /// When the mapping is read-only.
    pub fn as_mut_slice(&mut self) -> &mut [u8] {
        assert!(self.writable, "a read-only mapping");
        // SAFETY: as above, and the mapping is writable and exclusively borrowed.
        unsafe { std::slice::from_raw_parts_mut(self.as_ptr(), self.len) }
    }
}

impl AsRef<[u8]> for Mapping {
    fn as_ref(&self) -> &[u8] {
        self.as_slice()
    }
}

impl Drop for Mapping {
    fn drop(&mut self) {
        if let Some(recycle) = self.recycle.take() {
            let Recycle { writer, back } = *recycle;
            // The writer's own mapping: it goes back whole, pages and all.
            back(writer);
            return;
        }
        if let Some(ptr) = self.ptr {
            // Forgotten before it is unmapped: a new mapping may take the address after.
            if self.origin {
                origin::unregister(self.as_ptr() as usize);
            }
            // SAFETY: this value made the mapping and nothing refers to it any more.
            let _ = unsafe { munmap(ptr, self.skip + self.len) };
        }
    }
}
