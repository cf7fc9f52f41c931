//! The tokio side of descriptor passing: a Unix connection split into halves whose reads
//! collect passed descriptors ([`FdReadHalf`], into an [`FdInbox`]) and whose writes attach the
//! descriptors queued in an [`FdOutbox`] ([`FdWriteHalf`]). See [`super::fds`].

use std::{
    io::{self, IoSlice},
    os::fd::AsFd,
    pin::Pin,
    sync::Arc,
    task::{ready, Context, Poll},
};

use tokio::{
    io::{AsyncRead, AsyncWrite, Interest, ReadBuf},
    net::UnixStream,
};

use super::fds::{recv_with_fds, FdInbox, FdOutbox};

/// The reading half of a Unix connection that passes descriptors.
#[derive(Debug)]
pub struct FdReadHalf {
    sock: Arc<UnixStream>,
    inbox: FdInbox,
}

/// The writing half of a Unix connection that passes descriptors.
#[derive(Debug)]
pub struct FdWriteHalf {
    sock: Arc<UnixStream>,
    outbox: FdOutbox,
}

/// Splits `sock` into halves that pass descriptors, with the inbox the reader fills (for the
/// decoder) and the outbox the writer empties (for the frame writer).
pub fn split_with_fds(sock: UnixStream) -> (FdReadHalf, FdWriteHalf, FdInbox, FdOutbox) {
    let sock = Arc::new(sock);
    let (inbox, outbox) = (FdInbox::default(), FdOutbox::default());
    (
        FdReadHalf { sock: sock.clone(), inbox: inbox.clone() },
        FdWriteHalf { sock, outbox: outbox.clone() },
        inbox,
        outbox,
    )
}

impl AsyncRead for FdReadHalf {
    fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        loop {
            ready!(this.sock.poll_read_ready(cx))?;
            // SAFETY: `recv_with_fds` only writes into the unfilled part, and exactly the `n`
            // bytes it reports are marked initialised below.
            let dst = unsafe { buf.unfilled_mut() };
            let read =
                this.sock.try_io(Interest::READABLE, || recv_with_fds(this.sock.as_fd(), dst, &this.inbox));
            match read {
                Ok(n) => {
                    // SAFETY: the kernel wrote `n` bytes at the start of the unfilled part.
                    unsafe { buf.assume_init(n) };
                    buf.advance(n);
                    return Poll::Ready(Ok(()));
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
                Err(e) => return Poll::Ready(Err(e)),
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
            ready!(this.sock.poll_write_ready(cx))?;
            match this.sock.try_io(Interest::WRITABLE, || this.outbox.write(this.sock.as_fd(), bufs)) {
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
                other => return Poll::Ready(other),
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
