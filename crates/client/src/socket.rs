//! [`Socket`]: the client's connection to the controller, over TCP or, on the controller's host,
//! its Unix socket (`ConnectionInfo::local_socket`).

use std::{
    io::{self, Read, Write},
    net::{Shutdown, TcpStream},
    os::unix::net::UnixStream,
    time::Duration,
};

/// A connected socket, TCP or Unix.
#[derive(Debug)]
pub enum Socket {
    /// To the controller's TCP address.
    Tcp(TcpStream),
    /// To the controller's Unix socket (same host).
    Unix(UnixStream),
}

impl Socket {
    /// A second handle on the same connection (for the reader thread).
    ///
    /// # Errors
    /// The descriptor cannot be duplicated.
    pub fn try_clone(&self) -> io::Result<Socket> {
        Ok(match self {
            Socket::Tcp(s) => Socket::Tcp(s.try_clone()?),
            Socket::Unix(s) => Socket::Unix(s.try_clone()?),
        })
    }

    /// Sets how long a read may wait (`None`: forever).
    ///
    /// # Errors
    /// As the socket's own call.
    pub fn set_read_timeout(&self, timeout: Option<Duration>) -> io::Result<()> {
        match self {
            Socket::Tcp(s) => s.set_read_timeout(timeout),
            Socket::Unix(s) => s.set_read_timeout(timeout),
        }
    }

    /// Shuts the connection down.
    ///
    /// # Errors
    /// As the socket's own call.
    pub fn shutdown(&self, how: Shutdown) -> io::Result<()> {
        match self {
            Socket::Tcp(s) => s.shutdown(how),
            Socket::Unix(s) => s.shutdown(how),
        }
    }

    /// Whether this is the same-host Unix connection.
    pub fn is_unix(&self) -> bool {
        matches!(self, Socket::Unix(_))
    }
}

impl Read for Socket {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            Socket::Tcp(s) => s.read(buf),
            Socket::Unix(s) => s.read(buf),
        }
    }
}

impl Write for Socket {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self {
            Socket::Tcp(s) => s.write(buf),
            Socket::Unix(s) => s.write(buf),
        }
    }

    fn write_vectored(&mut self, bufs: &[io::IoSlice<'_>]) -> io::Result<usize> {
        match self {
            Socket::Tcp(s) => s.write_vectored(bufs),
            Socket::Unix(s) => s.write_vectored(bufs),
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        match self {
            Socket::Tcp(s) => s.flush(),
            Socket::Unix(s) => s.flush(),
        }
    }
}
