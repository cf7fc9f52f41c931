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
//! copy the pages they touch (`MAP_PRIVATE`), in its process only.
//!
//! A holder may also map the memfd while its creator still fills it (so that the mapping and
//! the group's agreement happen while the bytes stream in): the creator marks the filling
//! ([`HeldWriter::begin`]) before it offers the memfd, and a state word in the holder page
//! says when the bytes are whole ([`HeldWriter::publish`]). Holders sleep on that word's futex
//! ([`Filling::wait`]) and read nothing before; the pages they have not touched show the
//! creator's writes (`MAP_PRIVATE` copies a page only when its holder writes it).
//!
//! A holder that is killed never takes its count away: its memfd is never written again, and
//! its creator forgets it (see the engine's pool). The trust is the same as for [`super::lent`] memfds: only the
//! cluster's processes exchange offers, and they can already run any code on each other.

use std::{
    os::fd::{AsFd, AsRawFd, OwnedFd},
    sync::{
        atomic::{AtomicU32, AtomicU64, Ordering},
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
/// when that mapping drops. With the holder page, to wait on its state ([`Filling`]).
fn counted(
    fd: &OwnedFd,
    total: usize,
    range: std::ops::Range<usize>,
) -> Result<(Mapping, Filling), MemfdError> {
    let size = memfd_size(total).ok_or(MemfdError::WrongSize { expected: total as u64, actual: 0 })?;
    within(&range, total)?;
    let page = Mapping::new(
        fd.as_fd(),
        size - page_size(),
        PAGE_WORDS,
        ProtFlags::PROT_READ | ProtFlags::PROT_WRITE,
        MapFlags::MAP_SHARED,
    )?;
    let holders = Arc::new(Holders(page));
    holders.count().fetch_add(1, Ordering::AcqRel);
    // The receipt names no lender: it only takes the count away (also when mapping fails).
    let receipt = Arc::new(Receipt::new(Lent { lender: 0, token: 0 }, {
        let holders = holders.clone();
        move |_| {
            holders.count().fetch_sub(1, Ordering::AcqRel);
        }
    }));
    let mut map = Mapping::new(
        fd.as_fd(),
        range.start,
        range.len(),
        ProtFlags::PROT_READ | ProtFlags::PROT_WRITE,
        MapFlags::MAP_PRIVATE,
    )?;
    map.receipt = Some(receipt);
    Ok((map, Filling(holders)))
}

/// Checks that `range` lies within an array of `len` bytes.
fn within(range: &std::ops::Range<usize>, len: usize) -> Result<(), MemfdError> {
    if range.start > range.end || range.end > len {
        return Err(MemfdError::WrongSize { expected: range.end as u64, actual: len as u64 });
    }
    Ok(())
}

/// The bytes of the holder page in use: the holder count (`u64`), then the state (`u32`).
const PAGE_WORDS: usize = 16;
/// The state while the creator fills the bytes (a holder must not read them yet).
const FILLING: u32 = 0;
/// The state once the bytes are whole: from now on they do not change.
const READY: u32 = 1;
/// The state when the creator could not fill them (its stream broke).
const BROKEN: u32 = 2;

/// The holder page of a memfd, mapped shared.
struct Holders(Mapping);

impl Holders {
    fn count(&self) -> &AtomicU64 {
        count_at(self.0.as_ptr())
    }

    fn state(&self) -> &AtomicU32 {
        state_at(self.0.as_ptr())
    }
}

/// The holder count of a holder page at `page`.
fn count_at<'a>(page: *mut u8) -> &'a AtomicU64 {
    // SAFETY: `page` is the start of a shared, writable mapping of the holder page (page-aligned,
    // at least PAGE_WORDS bytes) that outlives the reference's use; every process touches the
    // count only atomically.
    unsafe { &*(page as *const AtomicU64) }
}

/// The state word of a holder page at `page`.
fn state_at<'a>(page: *mut u8) -> &'a AtomicU32 {
    // SAFETY: as for `count_at`; the state is the 4 bytes after the count, aligned.
    unsafe { &*(page.add(8) as *const AtomicU32) }
}

/// A holder's view of the creator's progress: wait until the bytes are whole.
pub struct Filling(Arc<Holders>);

impl Filling {
    /// Waits up to `timeout` for the creator to finish: `Some(true)` when the bytes are whole,
    /// `Some(false)` when it could not fill them, `None` when it is still filling. Asleep on a
    /// futex of the holder page, which the creator wakes ([`HeldWriter::publish`]).
    pub fn wait(&self, timeout: std::time::Duration) -> Option<bool> {
        let state = self.0.state();
        let deadline = std::time::Instant::now() + timeout;
        loop {
            match state.load(Ordering::Acquire) {
                READY => return Some(true),
                BROKEN => return Some(false),
                _ => {}
            }
            let left = deadline.checked_duration_since(std::time::Instant::now())?;
            let ts = libc::timespec {
                tv_sec: libc::time_t::try_from(left.as_secs()).unwrap_or(libc::time_t::MAX),
                tv_nsec: libc::c_long::from(left.subsec_nanos() as i32),
            };
            // SAFETY: FUTEX_WAIT on a valid, aligned u32 of a shared mapping, with a timeout; it
            // returns at once if the word is no longer FILLING.
            unsafe {
                libc::syscall(
                    libc::SYS_futex,
                    state.as_ptr(),
                    libc::FUTEX_WAIT,
                    FILLING,
                    &ts as *const libc::timespec,
                    std::ptr::null::<u32>(),
                    0,
                )
            };
        }
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

    /// The holder page within the writer's own mapping.
    fn page(&self) -> *mut u8 {
        // SAFETY: the holder page is the last page of the writer's mapping.
        unsafe { self.writer.map.as_ptr().add(self.writer.map.len() - page_size()) }
    }

    /// How many mappings of the bytes exist, in every process of the host.
    pub fn holders(&self) -> u64 {
        count_at(self.page()).load(Ordering::Acquire)
    }

    /// The bytes to fill, when nobody holds them (`None` otherwise: then they must not change).
    pub fn bytes(&mut self) -> Option<&mut [u8]> {
        if self.holders() != 0 {
            return None;
        }
        let len = self.len;
        Some(&mut self.writer.bytes()[..len])
    }

    /// Starts a filling that others may watch: when nobody holds the memfd, its state becomes
    /// "filling", and holders that map it from now on wait ([`Filling::wait`]) until
    /// [`HeldWriter::publish`] before they read. `false` when someone holds it.
    pub fn begin(&mut self) -> bool {
        if self.holders() != 0 {
            return false;
        }
        state_at(self.page()).store(FILLING, Ordering::Release);
        true
    }

    /// The bytes to fill after [`HeldWriter::begin`], while no holder reads them (`None`
    /// once published).
    pub fn filling_bytes(&mut self) -> Option<&mut [u8]> {
        if state_at(self.page()).load(Ordering::Acquire) != FILLING {
            return None;
        }
        let len = self.len;
        Some(&mut self.writer.bytes()[..len])
    }

    /// Ends a filling: the bytes are whole (`ready`; they do not change while anyone holds
    /// them) or will never be; wakes every waiting holder.
    pub fn publish(&self, ready: bool) {
        let state = state_at(self.page());
        state.store(if ready { READY } else { BROKEN }, Ordering::Release);
        // SAFETY: FUTEX_WAKE on a valid, aligned u32 of a shared mapping.
        unsafe { libc::syscall(libc::SYS_futex, state.as_ptr(), libc::FUTEX_WAKE, i32::MAX) };
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
        counted(&fd, self.len, range).map(|(map, _)| map)
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
pub fn open(offer: &Offer) -> Result<(Mapping, Filling), MemfdError> {
    open_range(offer, 0..usize::try_from(offer.len).unwrap_or(usize::MAX))
}

/// [`open`], mapping only bytes `range` of the array (one rank's rows).
///
/// # Errors
/// As [`open`], and a range past the end ([`MemfdError::WrongSize`]).
pub fn open_range(offer: &Offer, range: std::ops::Range<usize>) -> Result<(Mapping, Filling), MemfdError> {
    let (fd, len) = opened(offer, Kind::Held)?;
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
    let (fd, len) = opened(offer, Kind::Held)?;
    writable(&fd, len, range)
}

/// Where another process of the host opens `writer`'s memfd to write its part of it
/// ([`open_plain_writable`]): a plain memfd, without a holder page (the same-host gather's,
/// whose creator lends or seals it once every part is written).
///
/// # Errors
/// `fstat` fails.
pub fn plain_offer(writer: &MemfdWriter) -> Result<Offer, MemfdError> {
    let ino = fstat(writer.fd()).map_err(sys("fstat"))?.st_ino;
    Ok(Offer { pid: std::process::id(), fd: writer.fd().as_raw_fd(), ino, len: writer.len() as u64 })
}

/// [`open_writable`] for a [`plain_offer`]: the descriptor must be a memfd of the offered
/// inode and of exactly the offered size (no holder page, no seal required: its creator is
/// the gather's root, which neither resizes nor seals it before every writer has unmapped).
///
/// # Errors
/// As [`open_range`], but for the seals.
pub fn open_plain_writable(offer: &Offer, range: std::ops::Range<usize>) -> Result<Mapping, MemfdError> {
    let (fd, len) = opened(offer, Kind::Plain)?;
    writable(&fd, len, range)
}

/// Bytes `range` of an array of `len` bytes in `fd`, mapped shared and writable, populated.
fn writable(fd: &OwnedFd, len: usize, range: std::ops::Range<usize>) -> Result<Mapping, MemfdError> {
    within(&range, len)?;
    Mapping::new(
        fd.as_fd(),
        range.start,
        range.len(),
        ProtFlags::PROT_READ | ProtFlags::PROT_WRITE,
        MapFlags::MAP_SHARED | MapFlags::MAP_POPULATE,
    )
}

/// What an offer names: a held memfd (whole pages, then the holder page; sealed against
/// resizing) or a plain one (exactly the array's bytes).
#[derive(Clone, Copy)]
enum Kind {
    Held,
    Plain,
}

/// `offer`'s memfd opened and checked, and the array's bytes.
fn opened(offer: &Offer, kind: Kind) -> Result<(OwnedFd, usize), MemfdError> {
    let path = format!("/proc/{}/fd/{}", offer.pid, offer.fd);
    let fd = nix::fcntl::open(path.as_str(), OFlag::O_RDWR | OFlag::O_CLOEXEC, Mode::empty())
        .map_err(sys("open"))?;
    if fstat(&fd).map_err(sys("fstat"))?.st_ino != offer.ino {
        return Err(MemfdError::NotMemfd);
    }
    let len =
        usize::try_from(offer.len).map_err(|_| MemfdError::WrongSize { expected: offer.len, actual: 0 })?;
    let (size, seals) = match kind {
        Kind::Held => (memfd_size(len), SealFlag::F_SEAL_SHRINK | SealFlag::F_SEAL_GROW),
        Kind::Plain => (Some(len), SealFlag::empty()),
    };
    let size = size.ok_or(MemfdError::WrongSize { expected: offer.len, actual: 0 })?;
    checked(&fd, seals, size as u64)?;
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
        let (theirs, _) = open(&w.offer()).unwrap();
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
        let (rows, _) = open_range(&w.offer(), 5..len).unwrap();
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
    fn holders_wait_until_the_creator_publishes() {
        use std::time::Duration;
        let mut w = HeldWriter::create(page_size()).unwrap();
        assert!(w.begin());
        let (theirs, filling) = open(&w.offer()).unwrap();
        assert_eq!(filling.wait(Duration::from_millis(10)), None, "still filling");
        w.filling_bytes().unwrap().fill(5);
        let holder =
            std::thread::spawn(move || (filling.wait(Duration::from_secs(60)), theirs.as_slice()[0]));
        std::thread::sleep(Duration::from_millis(20));
        w.publish(true);
        assert_eq!(holder.join().unwrap(), (Some(true), 5), "woken, and the bytes are whole");
        assert!(w.filling_bytes().is_none(), "published bytes are not filled again");
        assert_eq!(w.holders(), 0);
        // The next filling; the creator's stream breaks.
        assert!(w.begin());
        let (held, filling) = open(&w.offer()).unwrap();
        assert!(!w.begin(), "not while held");
        w.publish(false);
        assert_eq!(filling.wait(Duration::from_secs(60)), Some(false));
        drop(held);
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
