//! Held memfds: one array shared copy-on-write by the processes of one host that map it, each
//! counting itself as a holder in the memfd's own last page.
//!
//! The engines of an MPI job have no Unix connection to each other, so a memfd cannot be
//! passed between them with `SCM_RIGHTS`. A process of the same user on the same host can
//! open another's descriptor through `/proc/<pid>/fd/<n>` instead. An [`Offer`] names it
//! (process, descriptor, inode, size); the receiver opens it ([`open`]) and checks, before
//! mapping anything, that it is a memfd of that inode, sealed against resizing
//! (`F_SEAL_SHRINK | F_SEAL_GROW`, so no mapping can get a `SIGBUS`), of exactly the offered size.
//!
//! The memfd is not sealed against writes: its creator ([`HeldWriter`]) reuses it, its pages
//! already allocated (fresh pages cost this project's VM several times the bytes written into
//! them). Every mapping of its bytes ([`HeldWriter::map_private`], [`open`]) adds one to the
//! holder count in the memfd's last page, and the mapping's drop takes it away again, after
//! the unmapping. The creator writes the bytes only while the count is zero
//! ([`HeldWriter::bytes`]), so a holder sees them as they were at the hand-over; its own writes
//! copy the pages they touch (`MAP_PRIVATE`), in its process only. A holder that is killed
//! never takes its count away: its memfd is never written again, and its creator forgets it
//! (see the engine's pool). The trust is the same as for [`super::lent`] memfds: only the
//! cluster's processes exchange offers, and they can already run any code on each other.

use std::{
    os::fd::{AsFd, AsRawFd, OwnedFd},
    sync::{
        atomic::{AtomicU64, Ordering},
        Arc, OnceLock,
    },
};

use nix::{
    fcntl::{OFlag, SealFlag},
    sys::{
        mman::{MapFlags, ProtFlags},
        stat::{fstat, Mode},
    },
};

use super::{
    checked,
    lent::{Lent, Receipt},
    page_size, sys, Mapping, MemfdError, MemfdWriter,
};

/// A memfd's place as another process of the host can open it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Offer {
    /// The creator's process id.
    pub pid: u32,
    /// Its descriptor of the memfd.
    pub fd: i32,
    /// The memfd's inode (what the receiver opened must be this file).
    pub ino: u64,
    /// The array's bytes (the memfd holds them, rounded up to a page, and the holder page).
    pub len: u64,
}

/// The memfd's size for an array of `len` bytes: whole pages, then the holder page.
fn memfd_size(len: usize) -> Option<usize> {
    let page = page_size();
    len.checked_next_multiple_of(page)?.checked_add(page)
}

/// A counted mapping of bytes `range` of an array of `total` bytes in `fd`: the holder page
/// mapped shared, its count up by one, and the range mapped copy-on-write, the count down again
/// when that mapping drops.
fn counted(fd: &OwnedFd, total: usize, range: std::ops::Range<usize>) -> Result<Mapping, MemfdError> {
    let size = memfd_size(total).ok_or(MemfdError::WrongSize { expected: total as u64, actual: 0 })?;
    if range.start > range.end || range.end > total {
        return Err(MemfdError::WrongSize { expected: range.end as u64, actual: total as u64 });
    }
    let page = Mapping::new(
        fd.as_fd(),
        size - page_size(),
        std::mem::size_of::<AtomicU64>(),
        ProtFlags::PROT_READ | ProtFlags::PROT_WRITE,
        MapFlags::MAP_SHARED,
    )?;
    let holders = Holders(Arc::new(page));
    holders.count().fetch_add(1, Ordering::AcqRel);
    // The receipt names no lender: it only takes the count away (also when mapping fails).
    let receipt = Arc::new(Receipt::new(Lent { lender: 0, token: 0 }, move |_| {
        holders.count().fetch_sub(1, Ordering::AcqRel);
    }));
    let mut map = Mapping::new(
        fd.as_fd(),
        range.start,
        range.len(),
        ProtFlags::PROT_READ | ProtFlags::PROT_WRITE,
        MapFlags::MAP_PRIVATE,
    )?;
    map.receipt = Some(receipt);
    Ok(map)
}

/// The holder page of a memfd, mapped shared.
struct Holders(Arc<Mapping>);

impl Holders {
    fn count(&self) -> &AtomicU64 {
        // SAFETY: the mapping is page-aligned, at least 8 bytes, shared and writable, and lives
        // as long as `self`; every process touches the count only atomically.
        unsafe { &*(self.0.as_ptr() as *const AtomicU64) }
    }
}

/// A held memfd's creator: writes the array while nobody holds it, and offers it.
#[derive(Debug)]
pub struct HeldWriter {
    writer: MemfdWriter,
    len: usize,
    ino: u64,
}

impl HeldWriter {
    /// A new held memfd for arrays of `len` bytes (its pages allocated as they are written).
    ///
    /// # Errors
    /// A memfd cannot be made or sealed against resizing.
    pub fn create(len: usize) -> Result<HeldWriter, MemfdError> {
        let size = memfd_size(len).ok_or(MemfdError::WrongSize { expected: len as u64, actual: 0 })?;
        let writer = MemfdWriter::create_cold("held", size)?;
        writer.seal_size()?;
        let ino = fstat(writer.fd()).map_err(sys("fstat"))?.st_ino;
        Ok(HeldWriter { writer, len, ino })
    }

    /// The array's bytes.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether the array has no bytes.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// How many mappings of the bytes exist, in every process of the host.
    pub fn holders(&self) -> u64 {
        let at = self.writer.map.len() - page_size();
        // SAFETY: the holder page lies within the writer's shared mapping, page-aligned.
        let count = unsafe { &*(self.writer.map.as_ptr().add(at) as *const AtomicU64) };
        count.load(Ordering::Acquire)
    }

    /// The bytes to fill, when nobody holds them (`None` otherwise: then they must not change).
    pub fn bytes(&mut self) -> Option<&mut [u8]> {
        if self.holders() != 0 {
            return None;
        }
        let len = self.len;
        Some(&mut self.writer.bytes()[..len])
    }

    /// The bytes, to read (always allowed: holders only read them too, or copy their pages).
    pub fn as_slice(&self) -> &[u8] {
        &self.writer.map.as_slice()[..self.len]
    }

    /// Where another process of the host opens it.
    pub fn offer(&self) -> Offer {
        Offer {
            pid: std::process::id(),
            fd: self.writer.fd().as_raw_fd(),
            ino: self.ino,
            len: self.len as u64,
        }
    }

    /// A copy-on-write mapping of the bytes in this process, counted as a holder.
    ///
    /// # Errors
    /// `dup` or `mmap` fails.
    pub fn map_private(&self) -> Result<Mapping, MemfdError> {
        self.map_private_range(0..self.len)
    }

    /// A copy-on-write mapping of bytes `range` in this process (one rank's rows), counted as
    /// a holder.
    ///
    /// # Errors
    /// A range past the end; `dup` or `mmap` fails.
    pub fn map_private_range(&self, range: std::ops::Range<usize>) -> Result<Mapping, MemfdError> {
        let fd = self.writer.fd().try_clone_to_owned().map_err(|e| MemfdError::Sys {
            call: "dup",
            errno: nix::errno::Errno::from_raw(e.raw_os_error().unwrap_or(libc::EIO)),
        })?;
        counted(&fd, self.len, range)
    }
}

/// Opens `offer`'s memfd from its creator's descriptor and maps its bytes copy-on-write,
/// counted as a holder. Nothing is mapped unless it is a memfd of the offered inode, sealed
/// against resizing, of exactly the offered size.
///
/// # Errors
/// The descriptor cannot be opened (another host, another user, the creator gone:
/// [`MemfdError::Sys`]), or it fails a check ([`MemfdError::NotMemfd`], [`MemfdError::Unsealed`],
/// [`MemfdError::WrongSize`]).
pub fn open(offer: &Offer) -> Result<Mapping, MemfdError> {
    open_range(offer, 0..usize::try_from(offer.len).unwrap_or(usize::MAX))
}

/// [`open`], mapping only bytes `range` of the array (one rank's rows).
///
/// # Errors
/// As [`open`], and a range past the end ([`MemfdError::WrongSize`]).
pub fn open_range(offer: &Offer, range: std::ops::Range<usize>) -> Result<Mapping, MemfdError> {
    let (fd, len) = opened(offer)?;
    counted(&fd, len, range)
}

/// Opens `offer`'s memfd like [`open`] (the same checks) and maps bytes `range` of the array
/// shared and writable, their pages populated: for a process that writes its part of an array
/// the creator then reads (a gather). Not counted as a holder: the writer unmaps it before
/// telling the creator it is done.
///
/// # Errors
/// As [`open_range`].
pub fn open_writable(offer: &Offer, range: std::ops::Range<usize>) -> Result<Mapping, MemfdError> {
    let (fd, len) = opened(offer)?;
    if range.start > range.end || range.end > len {
        return Err(MemfdError::WrongSize { expected: range.end as u64, actual: len as u64 });
    }
    Mapping::new(
        fd.as_fd(),
        range.start,
        range.len(),
        ProtFlags::PROT_READ | ProtFlags::PROT_WRITE,
        MapFlags::MAP_SHARED | MapFlags::MAP_POPULATE,
    )
}

/// `offer`'s memfd opened and checked, and the array's bytes.
fn opened(offer: &Offer) -> Result<(OwnedFd, usize), MemfdError> {
    let path = format!("/proc/{}/fd/{}", offer.pid, offer.fd);
    let fd = nix::fcntl::open(path.as_str(), OFlag::O_RDWR | OFlag::O_CLOEXEC, Mode::empty())
        .map_err(sys("open"))?;
    if fstat(&fd).map_err(sys("fstat"))?.st_ino != offer.ino {
        return Err(MemfdError::NotMemfd);
    }
    let len =
        usize::try_from(offer.len).map_err(|_| MemfdError::WrongSize { expected: offer.len, actual: 0 })?;
    let size = memfd_size(len).ok_or(MemfdError::WrongSize { expected: offer.len, actual: 0 })?;
    checked(&fd, SealFlag::F_SEAL_SHRINK | SealFlag::F_SEAL_GROW, size as u64)?;
    Ok((fd, len))
}

/// This host's name for offers: its boot id (`/proc/sys/kernel/random/boot_id`) as two
/// numbers, the second mixed with this process's network namespace (`/proc/self/ns/net`), so
/// that processes in other network namespaces (containers, the test suite's simulated hosts)
/// count as other hosts. An offer is only opened by a process with the same token; zeros when
/// neither can be read.
pub fn host_token() -> [u64; 2] {
    static TOKEN: OnceLock<[u64; 2]> = OnceLock::new();
    *TOKEN.get_or_init(|| {
        use std::os::unix::fs::MetadataExt;
        let text = std::fs::read_to_string("/proc/sys/kernel/random/boot_id").unwrap_or_default();
        let hex: String = text.chars().filter(char::is_ascii_hexdigit).collect();
        let half = |s: &str| u64::from_str_radix(s, 16).unwrap_or(0);
        let net = std::fs::metadata("/proc/self/ns/net").map(|m| m.ino()).unwrap_or(0);
        match hex.len() {
            32 => [half(&hex[..16]), half(&hex[16..]) ^ net.rotate_left(32)],
            _ => [0, net],
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn holders_are_counted_and_the_bytes_written_only_when_none() {
        let len = 3 * page_size() + 5;
        let mut w = HeldWriter::create(len).unwrap();
        w.bytes().unwrap().fill(7);
        assert_eq!(w.holders(), 0);
        let mut mine = w.map_private().unwrap();
        let theirs = open(&w.offer()).unwrap();
        assert_eq!(w.holders(), 2);
        assert!(w.bytes().is_none(), "held bytes are not written");
        assert!(theirs.as_slice().iter().all(|&b| b == 7) && theirs.len() == len);
        // A holder's write stays its own.
        mine.as_mut_slice()[0] = 1;
        assert_eq!(theirs.as_slice()[0], 7);
        drop(mine);
        assert_eq!(w.holders(), 1);
        drop(theirs);
        assert_eq!(w.holders(), 0);
        assert!(w.bytes().is_some());
        // A range: one rank's rows, counted alike.
        let rows = open_range(&w.offer(), 5..len).unwrap();
        assert_eq!((rows.len(), rows.as_slice()[0], w.holders()), (len - 5, 7, 1));
        assert!(open_range(&w.offer(), 5..len + 1).is_err());
        drop(rows);
        assert_eq!(w.holders(), 0, "a refused range was not counted");
        // A writer's part lands in the creator's bytes, and it is not counted.
        let mut part = open_writable(&w.offer(), len - 2..len).unwrap();
        part.as_mut_slice()[1] = 9;
        assert_eq!(w.holders(), 0);
        drop(part);
        assert_eq!(w.as_slice()[len - 1], 9);
    }

    #[test]
    fn an_offer_that_does_not_match_is_refused_before_mapping() {
        let w = HeldWriter::create(page_size()).unwrap();
        let offer = w.offer();
        let wrong_size = Offer { len: offer.len + 1, ..offer };
        assert!(matches!(open(&wrong_size), Err(MemfdError::WrongSize { .. })));
        let wrong_file = Offer { ino: offer.ino + 1, ..offer };
        assert!(matches!(open(&wrong_file), Err(MemfdError::NotMemfd)));
        let gone = Offer { fd: 100_000, ..offer };
        assert!(matches!(open(&gone), Err(MemfdError::Sys { call: "open", .. })));
        // A memfd sealed against nothing.
        let plain = MemfdWriter::create_cold("plain", memfd_size(page_size()).unwrap()).unwrap();
        let unsealed = Offer { fd: plain.fd().as_raw_fd(), ino: fstat(plain.fd()).unwrap().st_ino, ..offer };
        assert!(matches!(open(&unsealed), Err(MemfdError::Unsealed(_))));
        assert_eq!(w.holders(), 0, "nothing refused was counted");
        assert!(matches!(open_writable(&wrong_size, 0..1), Err(MemfdError::WrongSize { .. })));
        assert!(matches!(open_writable(&offer, 0..page_size() + 1), Err(MemfdError::WrongSize { .. })));
        assert_ne!(host_token(), [0, 0]);
    }
}
