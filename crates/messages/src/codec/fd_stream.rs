//! The tokio side of descriptor passing: a Unix connection split into halves whose reads
//! collect passed descriptors ([`FdReadHalf`], into an [`FdInbox`]) and whose writes attach the
//! descriptors queued in an [`FdOutbox`] ([`FdWriteHalf`]). See [`super::fds`].
//!
//! The connection is registered with the runtime for reading only. A Unix socket signals
//! "writable" to every waiter on it each time its peer reads a message (the kernel's
//! `unix_write_space`, unlike TCP's, which only wakes a writer that found the socket full), so a
//! registration for both directions (as `tokio::net::UnixStream`'s) wakes the runtime's thread
//! once for every frame the peer reads: a wake-up for nothing on every message, which on a VM
//! costs an inter-processor interrupt each. Writes here go straight to the socket; only one
//! that finds the socket full registers (a duplicate of the descriptor) for writability, until
//! a write goes through.

use std::{
    io::{self, IoSlice},
    os::{
        fd::{AsFd, OwnedFd},
        unix::net::UnixStream as StdUnixStream,
    },
    pin::Pin,
    sync::Arc,
    task::{ready, Context, Poll},
};

use tokio::{
    io::{unix::AsyncFd, AsyncRead, AsyncWrite, Interest, ReadBuf},
    net::UnixStream,
};

use super::fds::{recv_with_fds, FdInbox, FdOutbox};

/// The reading half of a Unix connection that passes descriptors.
#[derive(Debug)]
pub struct FdReadHalf {
    sock: Arc<AsyncFd<StdUnixStream>>,
    inbox: FdInbox,
}

/// The writing half of a Unix connection that passes descriptors.
#[derive(Debug)]
pub struct FdWriteHalf {
    sock: Arc<AsyncFd<StdUnixStream>>,
    outbox: FdOutbox,
    /// A duplicate of the socket registered for writability while a write waits for room
    /// (see the module's doc).
    room: Option<AsyncFd<OwnedFd>>,
}

/// Splits `sock` into halves that pass descriptors, with the inbox the reader fills (for the
/// decoder) and the outbox the writer empties (for the frame writer).
///
/// # Errors
/// The socket cannot be moved to a read-only registration with the runtime.
pub fn split_with_fds(sock: UnixStream) -> io::Result<(FdReadHalf, FdWriteHalf, FdInbox, FdOutbox)> {
    // `into_std` leaves the socket non-blocking.
    // SAFETY: the std socket owns its descriptor, and nothing closes or replaces it while
    // the `AsyncFd` lives (it owns the socket).
    let sock = Arc::new(unsafe { AsyncFd::register_with_interest(sock.into_std()?, Interest::READABLE) }?);
    let (inbox, outbox) = (FdInbox::default(), FdOutbox::default());
    Ok((
        FdReadHalf { sock: sock.clone(), inbox: inbox.clone() },
        FdWriteHalf { sock, outbox: outbox.clone(), room: None },
        inbox,
        outbox,
    ))
}

impl AsyncRead for FdReadHalf {
    fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        loop {
            let mut ready = ready!(this.sock.poll_read_ready(cx))?;
            // SAFETY: `recv_with_fds` only writes into the unfilled part, and exactly the `n`
            // bytes it reports are marked initialised below.
            let dst = unsafe { buf.unfilled_mut() };
            match ready.try_io(|s| recv_with_fds(s.get_ref().as_fd(), dst, &this.inbox)) {
                Ok(Ok(n)) => {
                    // SAFETY: the kernel wrote `n` bytes at the start of the unfilled part.
                    unsafe { buf.assume_init(n) };
                    buf.advance(n);
                    return Poll::Ready(Ok(()));
                }
                Ok(Err(e)) if e.kind() == io::ErrorKind::Interrupted => continue,
                Ok(Err(e)) => return Poll::Ready(Err(e)),
                // Would block: readiness cleared, wait for the next.
                Err(_) => continue,
            }
        }
    }
}

impl AsyncWrite for FdWriteHalf {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        self.poll_write_vectored(cx, &[IoSlice::new(buf)])
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        loop {
            match this.outbox.write(this.sock.get_ref().as_fd(), bufs) {
                Ok(n) => {
                    this.room = None;
                    return Poll::Ready(Ok(n));
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    if this.room.is_none() {
                        let dup = this.sock.get_ref().as_fd().try_clone_to_owned()?;
                        // SAFETY: `dup` owns its descriptor, which lives as long as the `AsyncFd`.
                        this.room =
                            Some(unsafe { AsyncFd::register_with_interest(dup, Interest::WRITABLE) }?);
                    }
                    let room = this.room.as_ref().expect("registered above");
                    // Registered after the socket was found full: epoll reports room that came
                    // in between at once, so no wake-up is lost.
                    ready!(room.poll_write_ready(cx))?.clear_ready();
                }
                Err(e) => return Poll::Ready(Err(e)),
            }
        }
    }

    fn is_write_vectored(&self) -> bool {
        true
    }

    fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        use std::os::fd::AsRawFd;
        let done = nix::sys::socket::shutdown(self.sock.as_raw_fd(), nix::sys::socket::Shutdown::Write);
        Poll::Ready(done.or_else(|e| if e == nix::errno::Errno::ENOTCONN { Ok(()) } else { Err(e.into()) }))
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    use super::*;
    use crate::codec::fds::tests::sleeps_of;

    fn runtime() -> tokio::runtime::Runtime {
        tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap()
    }

    #[test]
    fn a_write_larger_than_the_socket_waits_for_room_and_every_byte_arrives_in_order() {
        runtime().block_on(async {
            let (a, b) = UnixStream::pair().unwrap();
            let (_read, mut write, _inbox, _outbox) = split_with_fds(a).unwrap();
            let (mut read_b, _write_b, _inbox_b, _outbox_b) = split_with_fds(b).unwrap();
            // Far more than a Unix socket's buffer: the writer finds it full many times.
            let data: Vec<u8> = (0..8u32 << 20).map(|i| (i % 251) as u8).collect();
            // Write until the socket is full: the writer then waits on its write registration.
            let mut at = 0;
            while let Poll::Ready(n) =
                std::future::poll_fn(|cx| Poll::Ready(Pin::new(&mut write).poll_write(cx, &data[at..]))).await
            {
                at += n.unwrap();
            }
            assert!(at > 0 && at < data.len(), "{at}");
            assert!(write.room.is_some(), "a full socket registers for room");
            let rest = data[at..].to_vec();
            let writer = async move {
                write.write_all(&rest).await.unwrap();
                write.shutdown().await.unwrap();
                write.room.is_none()
            };
            let reader = async {
                // The reader starts late, so the first writes fill the socket.
                tokio::time::sleep(Duration::from_millis(50)).await;
                let mut got = Vec::new();
                read_b.read_to_end(&mut got).await.unwrap();
                got
            };
            let (room_released, got) = tokio::join!(writer, reader);
            assert_eq!(got.len(), data.len());
            assert!(got == data, "bytes differ");
            assert!(room_released, "the write registration is dropped once a write goes through");
        });
    }

    #[test]
    fn the_runtime_does_not_wake_each_time_the_peer_reads_what_this_side_wrote() {
        let (a, b) = std::os::unix::net::UnixStream::pair().unwrap();
        a.set_nonblocking(true).unwrap();
        let a_raw = a.try_clone().unwrap();
        let (tid_tx, tid_rx) = std::sync::mpsc::channel();
        let waiter = std::thread::spawn(move || {
            runtime().block_on(async {
                let (mut read, _write, _inbox, _outbox) =
                    split_with_fds(UnixStream::from_std(a).unwrap()).unwrap();
                // SAFETY: gettid has no preconditions.
                tid_tx.send(unsafe { libc::gettid() }).unwrap();
                let mut byte = [0u8; 1];
                read.read_exact(&mut byte).await.unwrap();
                byte[0]
            })
        });
        let tid = tid_rx.recv().unwrap();
        std::thread::sleep(Duration::from_millis(50));
        let before = sleeps_of(tid);
        let mut b_reader = b.try_clone().unwrap();
        for _ in 0..50 {
            std::io::Write::write_all(&mut &a_raw, b"x").unwrap();
            let mut got = [0u8; 1];
            std::io::Read::read_exact(&mut b_reader, &mut got).unwrap();
            std::thread::sleep(Duration::from_micros(500));
        }
        let woken = sleeps_of(tid) - before;
        std::io::Write::write_all(&mut &b, b"!").unwrap();
        assert_eq!(waiter.join().unwrap(), b'!');
        assert!(woken < 10, "the runtime woke {woken} times for 50 reads of its peer");
    }

    #[test]
    fn descriptors_go_with_the_bytes_they_were_queued_with() {
        runtime().block_on(async {
            let (a, b) = UnixStream::pair().unwrap();
            let (_read, mut write, _inbox, outbox) = split_with_fds(a).unwrap();
            let (mut read_b, _write_b, inbox_b, _outbox_b) = split_with_fds(b).unwrap();
            let file = std::fs::File::open("/proc/self/exe").unwrap();
            outbox.put(crate::Fds(vec![Arc::new(OwnedFd::from(file))]));
            write.write_all(b"hello").await.unwrap();
            let mut got = [0u8; 5];
            read_b.read_exact(&mut got).await.unwrap();
            assert_eq!(&got, b"hello");
            assert_eq!(inbox_b.len(), 1, "the descriptor came with the bytes");
        });
    }
}
