//! Arrays in sealed memfds: the bytes of an array moved between processes of one host as a file
//! descriptor (`SCM_RIGHTS` over the controller's Unix socket) instead of through sockets.
//!
//! # Integrity model
//! A memfd's bytes never leave the kernel, and the Unix socket that carries its descriptor is
//! authenticated like the TCP one (same handshake and session keys; the socket file is 0600 in
//! a 0700 directory, so only the cluster's user can connect at all). An authenticated peer can
//! already run any code on the engines, so a descriptor needs no MAC: what a receiver must be
//! sure of is *correctness*, that the bytes it maps are the ones the sender meant and stay so.
//! Before mapping, a receiver checks ([`SealedMemfd::check`]):
//! - the descriptor is a memfd at all (`F_GET_SEALS` fails on any other file: a pipe, a socket,
//!   a regular file someone else could still write through its path) → [`MemfdError::NotMemfd`];
//! - it is sealed against writes, shrinking and growing (`F_SEAL_WRITE | F_SEAL_SHRINK |
//!   F_SEAL_GROW`, and `F_SEAL_SEAL` so no seal can be removed or added later): no process,
//!   the sender included, can change its bytes or size after the hand-over → [`MemfdError::Unsealed`];
//! - its size is exactly what the frame's header says → [`MemfdError::WrongSize`].
//!
//! A *lent* memfd ([`lent`], named so in the header) is the exception: it is sealed against
//! resizing only, and its bytes stay as sent by its lender's promise not to write it until
//! every receiver has released it ([`SealedMemfd::check_lent`] checks the rest).
//!
//! A memfd vanishes with its last descriptor and mapping: a killed process leaves nothing in
//! `/dev/shm` or on disk.
//!
//! # Mappings
//! [`SealedMemfd::map_private`] gives a copy-on-write view (a write by a cell copies only the
//! pages it touches, in that process); [`SealedMemfd::map_shared`] a read-only view that every
//! process of the host shares (one copy of the bytes for all of them).
//!
//! # No copy for an array already in a memfd
//! A mapping of a whole sealed memfd remembers it ([`origin`]): an array over it that moves
//! again unchanged (a pulled array pushed back, a pushed array pulled) is sent as the same
//! memfd, not copied into a new one.
//!
//! # Warm pages
//! A client's pushes and scatters reuse the memfds it lent once they are released ([`lent`]).
//! Any other new large memfd is taken from this process's [`spare`] when one of about its size
//! is ready (its pages already allocated), and a background thread then makes the next spare.

use std::{
    os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd},
    sync::Arc,
};

use nix::{
    errno::Errno,
    fcntl::{fcntl, FcntlArg, SealFlag},
    sys::{
        memfd::{memfd_create, MFdFlags},
        mman::{MapFlags, ProtFlags},
        stat::fstat,
    },
    unistd::ftruncate,
};
use thiserror::Error;

pub mod held;
pub mod lent;
mod mapping;
pub mod origin;
pub mod spare;
pub mod warm;

pub use mapping::Mapping;

/// Arrays smaller than this stay inline in their frames (a memfd costs a few system calls and
/// a mapping on each side): `$MPX_SHM_MIN_BYTES`, default 64 KiB.
pub fn min_bytes() -> usize {
    static MIN: std::sync::OnceLock<usize> = std::sync::OnceLock::new();
    *MIN.get_or_init(|| {
        std::env::var("MPX_SHM_MIN_BYTES").ok().and_then(|v| v.parse().ok()).unwrap_or(64 << 10)
    })
}

/// The seals a receiver requires.
fn required_seals() -> SealFlag {
    SealFlag::F_SEAL_WRITE | SealFlag::F_SEAL_SHRINK | SealFlag::F_SEAL_GROW | SealFlag::F_SEAL_SEAL
}

/// Why a memfd could not be made, checked or mapped.
#[derive(Debug, Error)]
pub enum MemfdError {
    /// The descriptor is not a memfd (or does not support seals).
    #[error("the descriptor is not a memfd")]
    NotMemfd,
    /// The memfd is not sealed against changes.
    #[error("the memfd is not sealed against writes and resizing (seals {0:#x})")]
    Unsealed(i32),
    /// The memfd's size is not the array's.
    #[error("the memfd holds {actual} bytes, the header says {expected}")]
    WrongSize {
        /// Bytes the header gives.
        expected: u64,
        /// Bytes the memfd holds.
        actual: u64,
    },
    /// This system has no memfds (old kernel, some containers).
    #[error("memfd_create is not available here: {0}")]
    Unavailable(Errno),
    /// Another system call failed.
    #[error("{call}: {errno}")]
    Sys {
        /// The call.
        call: &'static str,
        /// Its error.
        errno: Errno,
    },
}

fn sys(call: &'static str) -> impl FnOnce(Errno) -> MemfdError {
    move |errno| MemfdError::Sys { call, errno }
}

/// The size of a memory page.
pub(crate) fn page_size() -> usize {
    // SAFETY: sysconf reads a constant of the system.
    usize::try_from(unsafe { libc::sysconf(libc::_SC_PAGESIZE) }).unwrap_or(4096)
}

/// A memfd being filled by its creator: writable through [`MemfdWriter::bytes`], then sealed.
#[derive(Debug)]
pub struct MemfdWriter {
    fd: OwnedFd,
    map: Mapping,
}

impl MemfdWriter {
    /// A new memfd of `len` bytes (zeroed), mapped for writing.
    ///
    /// # Errors
    /// [`MemfdError::Unavailable`] where memfds do not exist; other system errors.
    pub fn create(name: &str, len: usize) -> Result<Self, MemfdError> {
        match spare::take(len) {
            Some(w) => Ok(w),
            None => Self::create_cold(name, len),
        }
    }

    /// A new memfd of `len` bytes, never a spare (its pages are allocated as they are written).
    ///
    /// # Errors
    /// As [`MemfdWriter::create`].
    pub fn create_cold(name: &str, len: usize) -> Result<Self, MemfdError> {
        let name = std::ffi::CString::new(format!("mpx-{name}")).unwrap_or_else(|_| c"mpx-array".into());
        let fd = memfd_create(name.as_c_str(), MFdFlags::MFD_CLOEXEC | MFdFlags::MFD_ALLOW_SEALING).map_err(
            |e| match e {
                Errno::ENOSYS | Errno::EINVAL | Errno::EPERM => MemfdError::Unavailable(e),
                other => MemfdError::Sys { call: "memfd_create", errno: other },
            },
        )?;
        let size =
            i64::try_from(len).map_err(|_| MemfdError::Sys { call: "ftruncate", errno: Errno::EFBIG })?;
        ftruncate(&fd, size).map_err(sys("ftruncate"))?;
        let map = Mapping::new(
            fd.as_fd(),
            0,
            len,
            ProtFlags::PROT_READ | ProtFlags::PROT_WRITE,
            MapFlags::MAP_SHARED,
        )?;
        Ok(MemfdWriter { fd, map })
    }

    /// The bytes to fill.
    pub fn bytes(&mut self) -> &mut [u8] {
        self.map.as_mut_slice()
    }

    /// This writer as a writable [`Mapping`] of its bytes that owns it: an array can live over
    /// it, and when that mapping drops, `back` gets the writer again, still mapped (its pages
    /// warm for the next array; see the engine's pool).
    pub fn into_mapping(self, back: impl FnOnce(MemfdWriter) + Send + Sync + 'static) -> Mapping {
        let (ptr, len) = (self.map.ptr(), self.map.len());
        Mapping::view(ptr, len, mapping::Recycle { writer: self, back: Box::new(back) })
    }

    /// Seals the memfd's size for lending ([`lent`]): it stays writable by this writer, and
    /// nobody can resize it or seal it otherwise from now on.
    ///
    /// # Errors
    /// The seals cannot be added.
    pub fn seal_size(&self) -> Result<(), MemfdError> {
        let seals = SealFlag::F_SEAL_SHRINK | SealFlag::F_SEAL_GROW | SealFlag::F_SEAL_SEAL;
        fcntl(&self.fd, FcntlArg::F_ADD_SEALS(seals)).map(drop).map_err(sys("fcntl(F_ADD_SEALS)"))
    }

    /// Its size in bytes.
    pub fn len(&self) -> usize {
        self.map.len()
    }

    /// Whether it holds no bytes.
    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }

    /// The descriptor.
    pub fn fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }

    /// The descriptor, duplicated (to send with a frame).
    ///
    /// # Errors
    /// `dup` fails.
    pub fn shared_fd(&self) -> Result<Arc<OwnedFd>, MemfdError> {
        let fd = self.fd.try_clone().map_err(|e| MemfdError::Sys {
            call: "dup",
            errno: Errno::from_raw(e.raw_os_error().unwrap_or(libc::EIO)),
        })?;
        Ok(Arc::new(fd))
    }

    /// Whether `fd` is this writer's memfd (the same file, however duplicated or passed).
    pub fn is_same_file(&self, fd: BorrowedFd<'_>) -> bool {
        match (fstat(&self.fd), fstat(fd)) {
            (Ok(a), Ok(b)) => a.st_dev == b.st_dev && a.st_ino == b.st_ino,
            _ => false,
        }
    }

    /// Cuts the memfd to its first `len` bytes (at most its size), and the mapping with it.
    fn truncate(&mut self, len: usize) -> Result<(), MemfdError> {
        if len == self.map.len() {
            return Ok(());
        }
        assert!(len < self.map.len(), "a memfd is only cut shorter");
        self.map.shrink(len)?;
        let size =
            i64::try_from(len).map_err(|_| MemfdError::Sys { call: "ftruncate", errno: Errno::EFBIG })?;
        ftruncate(&self.fd, size).map_err(sys("ftruncate"))
    }

    /// Seals the memfd (after unmapping the writable view, which the write seal requires): from
    /// now on nobody can change it.
    ///
    /// # Errors
    /// The seals cannot be added.
    pub fn seal(self) -> Result<SealedMemfd, MemfdError> {
        let MemfdWriter { fd, map } = self;
        let len = map.len();
        drop(map);
        fcntl(&fd, FcntlArg::F_ADD_SEALS(required_seals())).map_err(sys("fcntl(F_ADD_SEALS)"))?;
        Ok(SealedMemfd { fd: Arc::new(fd), len, receipt: None })
    }
}

/// A memfd whose bytes and size can no longer change: what travels between processes. Or,
/// with a receipt, a lent one ([`lent`]): sealed against resizing, its bytes unchanged by the
/// lender's promise until the receipt is let go.
#[derive(Debug, Clone)]
pub struct SealedMemfd {
    fd: Arc<OwnedFd>,
    len: usize,
    /// The hold on a lent memfd, shared with its mappings.
    receipt: Option<Arc<lent::Receipt>>,
}

impl SealedMemfd {
    /// A memfd holding a copy of `bytes`, sealed.
    ///
    /// # Errors
    /// As [`MemfdWriter::create`] and [`MemfdWriter::seal`].
    pub fn copy_of(name: &str, bytes: &[u8]) -> Result<Self, MemfdError> {
        let mut w = MemfdWriter::create(name, bytes.len())?;
        w.bytes().copy_from_slice(bytes);
        w.seal()
    }

    /// Checks a descriptor received from a peer: a memfd, sealed against every change, of
    /// exactly `expected` bytes (see the module's integrity model).
    ///
    /// # Errors
    /// [`MemfdError::NotMemfd`], [`MemfdError::Unsealed`] or [`MemfdError::WrongSize`].
    pub fn check(fd: OwnedFd, expected: u64) -> Result<Self, MemfdError> {
        let len = checked(&fd, required_seals(), expected)?;
        Ok(SealedMemfd { fd: Arc::new(fd), len, receipt: None })
    }

    /// Checks a lent descriptor (see [`lent`]): a memfd sealed against resizing, of exactly
    /// `expected` bytes. Its mappings and clones keep `receipt` until the last is gone.
    ///
    /// # Errors
    /// As [`SealedMemfd::check`]; only the resizing seals are required.
    pub fn check_lent(fd: OwnedFd, expected: u64, receipt: lent::Receipt) -> Result<Self, MemfdError> {
        let len = checked(&fd, SealFlag::F_SEAL_SHRINK | SealFlag::F_SEAL_GROW, expected)?;
        Ok(SealedMemfd { fd: Arc::new(fd), len, receipt: Some(Arc::new(receipt)) })
    }

    /// The lent memfd's name, when it is one.
    pub fn lent(&self) -> Option<lent::Lent> {
        self.receipt.as_ref().map(|r| r.lent())
    }

    /// Its size in bytes.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether it holds no bytes.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The descriptor (to send).
    pub fn fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }

    /// The descriptor, shared (to pass with a frame: [`crate::Fds`]).
    pub fn shared_fd(&self) -> Arc<OwnedFd> {
        self.fd.clone()
    }

    /// The raw descriptor number (to send with `SCM_RIGHTS`).
    pub fn raw_fd(&self) -> i32 {
        self.fd.as_raw_fd()
    }

    /// A copy-on-write view of the whole memfd: writes stay in this process.
    ///
    /// # Errors
    /// `mmap` fails.
    pub fn map_private(&self) -> Result<Mapping, MemfdError> {
        let map = Mapping::new(
            self.fd.as_fd(),
            0,
            self.len,
            ProtFlags::PROT_READ | ProtFlags::PROT_WRITE,
            MapFlags::MAP_PRIVATE,
        )?;
        Ok(self.registered(map, true))
    }

    /// `map`, a mapping of this whole memfd, noted in [`origin`] (an array over it can travel
    /// again as this memfd, see [`origin::unchanged`]).
    fn registered(&self, mut map: Mapping, private: bool) -> Mapping {
        map.receipt = self.receipt.clone();
        if !map.is_empty() {
            origin::register(map.as_ptr() as usize, map.len(), self.clone(), private);
            map.origin = true;
        }
        map
    }

    /// A copy-on-write view of `len` bytes from byte `offset` (one engine's rows of a scattered
    /// array): writes stay in this process.
    ///
    /// # Errors
    /// [`MemfdError::WrongSize`] when the range runs past the end; `mmap` fails.
    pub fn map_private_range(&self, offset: usize, len: usize) -> Result<Mapping, MemfdError> {
        let end = offset.checked_add(len).filter(|&end| end <= self.len);
        if end.is_none() {
            let expected = (offset as u64).saturating_add(len as u64);
            return Err(MemfdError::WrongSize { expected, actual: self.len as u64 });
        }
        let mut map = Mapping::new(
            self.fd.as_fd(),
            offset,
            len,
            ProtFlags::PROT_READ | ProtFlags::PROT_WRITE,
            MapFlags::MAP_PRIVATE,
        )?;
        map.receipt = self.receipt.clone();
        Ok(map)
    }

    /// A read-only view shared by every process that maps it (one copy on the host).
    ///
    /// # Errors
    /// `mmap` fails.
    pub fn map_shared(&self) -> Result<Mapping, MemfdError> {
        let map = Mapping::new(self.fd.as_fd(), 0, self.len, ProtFlags::PROT_READ, MapFlags::MAP_SHARED)?;
        Ok(self.registered(map, false))
    }
}

/// Checks that `fd` is a memfd with at least `seals` and exactly `expected` bytes; its length.
fn checked(fd: &OwnedFd, seals: SealFlag, expected: u64) -> Result<usize, MemfdError> {
    let has = match fcntl(fd, FcntlArg::F_GET_SEALS) {
        Ok(s) => s,
        Err(Errno::EINVAL) => return Err(MemfdError::NotMemfd),
        Err(e) => return Err(MemfdError::Sys { call: "fcntl(F_GET_SEALS)", errno: e }),
    };
    if !SealFlag::from_bits_truncate(has).contains(seals) {
        return Err(MemfdError::Unsealed(has));
    }
    let actual = u64::try_from(fstat(fd).map_err(sys("fstat"))?.st_size).unwrap_or(0);
    if actual != expected {
        return Err(MemfdError::WrongSize { expected, actual });
    }
    usize::try_from(actual).map_err(|_| MemfdError::WrongSize { expected, actual })
}

#[cfg(test)]
mod tests;
