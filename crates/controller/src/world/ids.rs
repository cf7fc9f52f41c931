//! The ids the listener gives connections. A leaf: it imports nothing from the crate, so the
//! core's data files ([`command`](super::command), [`event`](super::event)) can name them
//! without importing the core's `mod.rs`.

/// A client connection, numbered by the listener.
pub type ClientId = u64;

/// An engine connection, numbered by the listener: a restarted world's engines reuse the ids
/// of the engines they replace, never their connections.
pub type ConnId = u64;
