//! The ids the listener gives connections. A leaf: it imports nothing from the crate, so the
//! core's data files ([`command`](super::command), [`event`](super::event)) can name them
//! without importing the core's `mod.rs`.
//!
//! Both are numbered from one counter of the listener (a number is never a client's and an
//! engine's at once), but they are different types: a client's id never names an engine's
//! connection.

use std::fmt;

/// A client connection, numbered by the listener.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ClientId(pub u64);

/// An engine connection, numbered by the listener: a restarted world's engines reuse the ids
/// of the engines they replace, never their connections.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ConnId(pub u64);

impl fmt::Display for ClientId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

impl fmt::Display for ConnId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}
