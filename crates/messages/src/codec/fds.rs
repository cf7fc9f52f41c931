//! Descriptors passed with frames over Unix connections (`SCM_RIGHTS`): the sealed memfds of
//! the same-host path ([`crate::memfd`]).
//!
//! # On the wire
//! A frame's head counts its descriptors (the high 16 bits of the buffer count, so frames
//! without any are laid out as before), and the count is covered by the header MAC. The sender
//! attaches the descriptors to the `sendmsg` that writes the frame's first byte (it writes
//! everything queued before first, so nothing earlier carries them); the kernel hands them to
//! the `recvmsg` that reads that byte, so a receiver has them in its [`FdInbox`], in order, by
//! the time the frame is complete. The decoder takes exactly the count its authenticated head
//! gives. A frame declaring more than [`MAX_FDS`], a count the inbox cannot satisfy, or more
//! descriptors arriving than frames account for ([`PENDING_MAX`] unclaimed) is refused, and
//! the connection with it. Descriptors are received `O_CLOEXEC`.

use std::{
    collections::VecDeque,
    io::{self, IoSlice},
    mem::MaybeUninit,
    os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd},
    sync::{Arc, Mutex},
};

use nix::sys::socket::{sendmsg, ControlMessage, MsgFlags};

use super::{CodecError, Fds};

/// Most descriptors one frame may carry.
pub const MAX_FDS: usize = 64;

/// Most descriptors received and not yet claimed by a frame.
pub const PENDING_MAX: usize = 256;

/// Room for the control message of one `recvmsg`: the kernel's own limit per message
/// (`SCM_MAX_FD`, 253), so a peer sending more than [`MAX_FDS`] is seen (and refused) whole
/// rather than truncated into a mismatch.
const SCM_MAX_FD: usize = 253;

/// Words of the control buffer of one `recvmsg`: room for `CMSG_SPACE(SCM_MAX_FD * 4)` bytes
/// (16 bytes of header and 1,012 of descriptors, rounded up).
const CONTROL_WORDS: usize = (16 + SCM_MAX_FD * std::mem::size_of::<RawFd>()).div_ceil(8) + 1;

/// Descriptors received on a connection, waiting for the frames that declare them.
#[derive(Debug, Clone, Default)]
pub struct FdInbox(Arc<Mutex<VecDeque<OwnedFd>>>);

impl FdInbox {
    fn lock(&self) -> std::sync::MutexGuard<'_, VecDeque<OwnedFd>> {
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Adds what one `recvmsg` brought.
    ///
    /// # Errors
    /// More than [`PENDING_MAX`] would wait unclaimed (they are closed).
    pub fn push(&self, fds: Vec<OwnedFd>) -> io::Result<()> {
        let mut q = self.lock();
        if q.len() + fds.len() > PENDING_MAX {
            return Err(io::Error::other(format!(
                "the peer passed more than {PENDING_MAX} descriptors no frame claims"
            )));
        }
        q.extend(fds);
        Ok(())
    }

    /// The next `n` descriptors, for the frame that declares them.
    ///
    /// # Errors
    /// [`CodecError::Malformed`] when fewer arrived.
    pub fn take(&self, n: usize) -> Result<Fds, CodecError> {
        let mut q = self.lock();
        if q.len() < n {
            return Err(CodecError::Malformed(format!(
                "the frame declares {n} descriptors, {} arrived with it",
                q.len()
            )));
        }
        Ok(Fds(q.drain(..n).map(Arc::new).collect()))
    }

    /// How many wait.
    pub fn len(&self) -> usize {
        self.lock().len()
    }

    /// Whether none wait.
    pub fn is_empty(&self) -> bool {
        self.lock().is_empty()
    }
}

/// Descriptors to attach to the next write of a connection (the first byte of their frame).
#[derive(Debug, Clone, Default)]
pub struct FdOutbox(Arc<Mutex<Option<Fds>>>);

impl FdOutbox {
    fn lock(&self) -> std::sync::MutexGuard<'_, Option<Fds>> {
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Queues `fds` for the next write.
    pub fn put(&self, fds: Fds) {
        *self.lock() = Some(fds);
    }

    /// Whether descriptors wait to be sent.
    pub fn is_pending(&self) -> bool {
        self.lock().is_some()
    }

    /// Writes `bufs` to `sock`, with the waiting descriptors if any (taken once sent).
    ///
    /// # Errors
    /// The socket's error (`WouldBlock` on a non-blocking socket that is full).
    pub fn write(&self, sock: BorrowedFd<'_>, bufs: &[IoSlice<'_>]) -> io::Result<usize> {
        let mut pending = self.lock();
        match pending.as_ref() {
            Some(fds) => {
                let n = send_with_fds(sock, bufs, fds)?;
                *pending = None;
                Ok(n)
            }
            None => send_with_fds(sock, bufs, &Fds::default()),
        }
    }
}

/// `sendmsg` of `bufs` with `fds` attached (none: a plain send). Never raises `SIGPIPE`.
///
/// # Errors
/// The socket's error.
pub fn send_with_fds(sock: BorrowedFd<'_>, bufs: &[IoSlice<'_>], fds: &Fds) -> io::Result<usize> {
    let raw: Vec<RawFd> = fds.0.iter().map(|f| f.as_raw_fd()).collect();
    let rights = [ControlMessage::ScmRights(&raw)];
    let cmsgs: &[ControlMessage<'_>] = if raw.is_empty() { &[] } else { &rights };
    sendmsg::<()>(sock.as_raw_fd(), bufs, cmsgs, MsgFlags::MSG_NOSIGNAL, None).map_err(io::Error::from)
}

/// `recvmsg` into `dst` (which need not be initialised); descriptors that come with the bytes
/// go to `inbox`. Returns the bytes read (0: end of stream).
///
/// # Errors
/// The socket's error (`WouldBlock` on a non-blocking socket with nothing to read), or
/// descriptors the inbox refuses, or a control message cut short.
pub fn recv_with_fds(
    sock: BorrowedFd<'_>,
    dst: &mut [MaybeUninit<u8>],
    inbox: &FdInbox,
) -> io::Result<usize> {
    recv_flags(sock, dst, inbox, 0)
}

/// [`recv_with_fds`] with extra `recvmsg` flags (`MSG_DONTWAIT`).
fn recv_flags(
    sock: BorrowedFd<'_>,
    dst: &mut [MaybeUninit<u8>],
    inbox: &FdInbox,
    flags: libc::c_int,
) -> io::Result<usize> {
    // u64 words (aligned for cmsghdr), on the stack: this runs for every read of a connection.
    let mut control = [0u64; CONTROL_WORDS];
    let mut iov = libc::iovec { iov_base: dst.as_mut_ptr().cast(), iov_len: dst.len() };
    // SAFETY: msghdr is plain data; all-zero is a valid empty message header.
    let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
    msg.msg_iov = &mut iov;
    msg.msg_iovlen = 1;
    msg.msg_control = control.as_mut_ptr().cast();
    msg.msg_controllen = control.len() * 8;
    // SAFETY: the iovec points at `dst` (writable, `dst.len()` bytes, alive for the call) and
    // the control buffer at `control` (its whole length); the kernel writes at most that.
    let n = unsafe { libc::recvmsg(sock.as_raw_fd(), &mut msg, libc::MSG_CMSG_CLOEXEC | flags) };
    if n < 0 {
        return Err(io::Error::last_os_error());
    }
    let mut fds = Vec::new();
    // SAFETY: the CMSG_* walk stays within the control buffer the kernel filled
    // (`msg_controllen`); each SCM_RIGHTS payload is an array of descriptors now owned by this
    // process (read unaligned, as CMSG_DATA need not be aligned for c_int).
    unsafe {
        let mut c = libc::CMSG_FIRSTHDR(&msg);
        while !c.is_null() {
            if (*c).cmsg_level == libc::SOL_SOCKET && (*c).cmsg_type == libc::SCM_RIGHTS {
                let data = libc::CMSG_DATA(c).cast::<RawFd>();
                let count = ((*c).cmsg_len - libc::CMSG_LEN(0) as usize) / std::mem::size_of::<RawFd>();
                for i in 0..count {
                    fds.push(OwnedFd::from_raw_fd(std::ptr::read_unaligned(data.add(i))));
                }
            }
            c = libc::CMSG_NXTHDR(&msg, c);
        }
    }
    if msg.msg_flags & libc::MSG_CTRUNC != 0 {
        return Err(io::Error::other("descriptors passed with a frame were cut short"));
    }
    if !fds.is_empty() {
        inbox.push(fds)?;
    }
    Ok(n as usize)
}

/// A blocking Unix connection whose reads collect passed descriptors into an [`FdInbox`] (the
/// client's reader).
///
/// A read with nothing to read waits in `poll` for input, not in `recvmsg`: a Unix socket wakes
/// every thread sleeping in its `recvmsg` each time the peer reads what this side wrote (the
/// kernel's `unix_write_space`), while `poll` wakes only for what it asked for. The client's
/// reader would otherwise wake for nothing once for every request the controller reads.
#[derive(Debug)]
pub struct FdReader {
    sock: std::os::unix::net::UnixStream,
    inbox: FdInbox,
}

impl FdReader {
    /// Reads `sock`, collecting descriptors into `inbox`.
    pub fn new(sock: std::os::unix::net::UnixStream, inbox: FdInbox) -> Self {
        FdReader { sock, inbox }
    }
}

impl io::Read for FdReader {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        // SAFETY: an initialised buffer viewed as possibly-uninitialised bytes, written only.
        let dst = unsafe { &mut *(std::ptr::from_mut::<[u8]>(buf) as *mut [MaybeUninit<u8>]) };
        let fd = std::os::fd::AsFd::as_fd(&self.sock);
        loop {
            match recv_flags(fd, dst, &self.inbox, libc::MSG_DONTWAIT) {
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => wait_readable(fd)?,
                other => return other,
            }
        }
    }
}

/// Waits until `fd` has input (or an end or error, which the next `recvmsg` reports).
fn wait_readable(fd: BorrowedFd<'_>) -> io::Result<()> {
    let mut p = libc::pollfd { fd: fd.as_raw_fd(), events: libc::POLLIN, revents: 0 };
    // SAFETY: one valid pollfd, for the duration of the call.
    let n = unsafe { libc::poll(&mut p, 1, -1) };
    if n < 0 {
        let e = io::Error::last_os_error();
        if e.kind() != io::ErrorKind::Interrupted {
            return Err(e);
        }
    }
    Ok(())
}

#[cfg(test)]
pub(crate) mod tests {
    use std::{io::Read, os::fd::AsFd, os::unix::net::UnixStream};

    use super::*;

    fn memfd_with(byte: u8) -> Arc<OwnedFd> {
        crate::memfd::SealedMemfd::copy_of("t", &[byte; 10]).unwrap().shared_fd()
    }

    /// A thread's voluntary context switches: one more each time it sleeps again.
    pub(crate) fn sleeps_of(tid: i32) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/self/task/{tid}/status")).unwrap();
        let line = status.lines().find(|l| l.starts_with("voluntary_ctxt_switches:")).unwrap();
        line.split_whitespace().nth(1).unwrap().parse().unwrap()
    }

    #[test]
    fn a_waiting_reader_is_not_woken_each_time_the_peer_reads_what_its_side_wrote() {
        let (a, b) = UnixStream::pair().unwrap();
        let (tid_tx, tid_rx) = std::sync::mpsc::channel();
        let mut r = FdReader::new(a.try_clone().unwrap(), FdInbox::default());
        let waiter = std::thread::spawn(move || {
            // SAFETY: gettid has no preconditions.
            tid_tx.send(unsafe { libc::gettid() }).unwrap();
            let mut byte = [0u8; 1];
            r.read_exact(&mut byte).unwrap();
            byte[0]
        });
        let tid = tid_rx.recv().unwrap();
        std::thread::sleep(std::time::Duration::from_millis(50));
        let before = sleeps_of(tid);
        // Each message `a` sends and `b` reads makes room on `a`: the kernel signals it to
        // every waiter on `a`, the reader among them if it slept in `recvmsg`.
        let mut b_reader = b.try_clone().unwrap();
        for _ in 0..50 {
            send_with_fds(a.as_fd(), &[IoSlice::new(b"x")], &Fds::default()).unwrap();
            let mut got = [0u8; 1];
            b_reader.read_exact(&mut got).unwrap();
            std::thread::sleep(std::time::Duration::from_micros(500));
        }
        let woken = sleeps_of(tid) - before;
        send_with_fds(b.as_fd(), &[IoSlice::new(b"!")], &Fds::default()).unwrap();
        assert_eq!(waiter.join().unwrap(), b'!');
        assert!(woken < 10, "the waiting reader woke {woken} times for 50 reads of its peer");
    }

    #[test]
    fn descriptors_arrive_with_their_bytes_in_order() {
        let (a, b) = UnixStream::pair().unwrap();
        let out = FdOutbox::default();
        out.put(Fds(vec![memfd_with(1), memfd_with(2)]));
        assert_eq!(out.write(a.as_fd(), &[IoSlice::new(b"first")]).unwrap(), 5);
        assert!(!out.is_pending());
        out.write(a.as_fd(), &[IoSlice::new(b"plain")]).unwrap();
        out.put(Fds(vec![memfd_with(3)]));
        out.write(a.as_fd(), &[IoSlice::new(b"third")]).unwrap();
        drop(a);
        let inbox = FdInbox::default();
        let mut r = FdReader::new(b, inbox.clone());
        let mut all = Vec::new();
        r.read_to_end(&mut all).unwrap();
        assert_eq!(all, b"firstplainthird");
        let fds = inbox.take(3).unwrap();
        let firsts: Vec<u8> = fds
            .0
            .iter()
            .map(|fd| {
                let m = crate::memfd::SealedMemfd::check(fd.try_clone().unwrap(), 10).unwrap();
                m.map_shared().unwrap().as_slice()[0]
            })
            .collect();
        assert_eq!(firsts, [1, 2, 3]);
        assert!(matches!(inbox.take(1), Err(CodecError::Malformed(_))));
    }

    #[test]
    fn unclaimed_descriptors_are_bounded() {
        let inbox = FdInbox::default();
        let many: Vec<OwnedFd> =
            (0..PENDING_MAX + 1).map(|_| std::fs::File::open("/dev/null").unwrap().into()).collect();
        assert!(inbox.push(many).is_err());
        assert!(inbox.is_empty());
    }
}
