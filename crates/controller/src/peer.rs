//! [`Peer`]: who is at the other end of a connection, for the log.

use std::{fmt, net::SocketAddr};

/// The other end of an accepted connection: a TCP address, or a process on this host through
/// the controller's Unix socket (with its pid when the kernel tells it).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Peer {
    /// A TCP peer.
    Tcp(SocketAddr),
    /// A peer on the Unix socket.
    Unix {
        /// Its process id (`SO_PEERCRED`).
        pid: Option<i32>,
    },
}

impl fmt::Display for Peer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Peer::Tcp(addr) => write!(f, "{addr}"),
            Peer::Unix { pid: Some(pid) } => write!(f, "unix:pid {pid}"),
            Peer::Unix { pid: None } => f.write_str("unix"),
        }
    }
}
