//! Payload buffers, what their MACs bind them to, and the frames that carry them.

use bytes::Bytes;

use super::{random_bytes, CodecError, Mac};

/// What a payload MAC binds a buffer to besides its bytes (see the [module docs](super)): the
/// message or stream it belongs to, and its place there.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Hash)]
pub struct Binding {
    /// A fresh random number drawn by the original sender per message, or per streamed array.
    pub origin: u64,
    /// The buffer's index in its message, or the chunk's number in its stream.
    pub index: u64,
}

impl Binding {
    /// A fresh origin, for a message or a stream of chunks.
    ///
    /// # Errors
    /// [`CodecError::Random`] if the system's random source fails.
    pub fn fresh_origin() -> Result<u64, CodecError> {
        random_bytes::<8>().map(u64::from_le_bytes)
    }
}

/// A payload buffer and, once signed or received, its binding and MAC. Payloads are equal when
/// their bytes are (the MAC is how they travel, not what they are).
#[derive(Debug, Clone, Default)]
pub struct Payload {
    bytes: Bytes,
    binding: Option<Binding>,
    mac: Option<Mac>,
}

impl Payload {
    /// Bytes made here: they are bound to their frame (a fresh origin, their index) and MACed
    /// when they are sent.
    pub fn new(bytes: impl Into<Bytes>) -> Self {
        Payload { bytes: bytes.into(), binding: None, mac: None }
    }

    /// Bytes made here for a given place (a chunk of a stream): MACed when they are sent.
    pub fn bound(bytes: impl Into<Bytes>, binding: Binding) -> Self {
        Payload { bytes: bytes.into(), binding: Some(binding), mac: None }
    }

    /// Bytes with the binding and MAC they came with (or computed for them beforehand).
    pub fn with_mac(bytes: Bytes, binding: Binding, mac: Mac) -> Self {
        Payload { bytes, binding: Some(binding), mac: Some(mac) }
    }

    /// The bytes.
    pub fn bytes(&self) -> &Bytes {
        &self.bytes
    }

    /// The bytes, without the MAC.
    pub fn into_bytes(self) -> Bytes {
        self.bytes
    }

    /// The binding, if given or received.
    pub fn binding(&self) -> Option<Binding> {
        self.binding
    }

    /// The MAC, if the payload was received or signed already.
    pub fn mac(&self) -> Option<&Mac> {
        self.mac.as_ref()
    }

    /// Length in bytes.
    pub fn len(&self) -> usize {
        self.bytes.len()
    }

    /// Whether there are no bytes.
    pub fn is_empty(&self) -> bool {
        self.bytes.is_empty()
    }
}

impl PartialEq for Payload {
    fn eq(&self, other: &Self) -> bool {
        self.bytes == other.bytes
    }
}

impl From<Bytes> for Payload {
    fn from(bytes: Bytes) -> Self {
        Payload::new(bytes)
    }
}

impl From<Vec<u8>> for Payload {
    fn from(bytes: Vec<u8>) -> Self {
        Payload::new(bytes)
    }
}

/// A payload buffer whose MAC did not match its bytes, or whose binding did not fit its place:
/// its bytes were dropped, unused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Refused {
    /// Index of the first buffer that failed.
    pub index: usize,
}

impl std::fmt::Display for Refused {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "payload buffer {} failed authentication (its MAC does not match its bytes, or it is out of its place)",
            self.index
        )
    }
}

/// File descriptors a frame carries over a Unix connection (`SCM_RIGHTS`): sealed memfds of
/// the same-host path, referenced by index from the header ([`crate::ArrayMeta::fd`]). Shared
/// when a frame is forwarded to several peers; closed with the last holder.
#[derive(Debug, Clone, Default)]
pub struct Fds(pub Vec<std::sync::Arc<std::os::fd::OwnedFd>>);

impl Fds {
    /// How many.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl PartialEq for Fds {
    /// The same descriptors (by number).
    fn eq(&self, other: &Self) -> bool {
        use std::os::fd::AsRawFd;
        self.0.len() == other.0.len()
            && self.0.iter().zip(&other.0).all(|(a, b)| a.as_raw_fd() == b.as_raw_fd())
    }
}

/// A decoded message: a typed header plus payload buffers (array bytes).
#[derive(Debug, Clone, PartialEq)]
pub struct Frame<H> {
    /// The message itself.
    pub header: H,
    /// Out-of-band payloads, referenced by index from the header.
    pub buffers: Vec<Payload>,
    /// Set by a [`Verify::All`](super::Verify::All) decoder when the header is authentic but a
    /// payload is not: the frame then has no buffers, and the receiver answers the message with
    /// an error.
    pub refused: Option<Refused>,
    /// Descriptors passed with the frame (Unix connections only; see [`Fds`]).
    pub fds: Fds,
}

impl<H> Frame<H> {
    /// A frame without buffers.
    pub fn new(header: H) -> Self {
        Frame { header, buffers: Vec::new(), refused: None, fds: Fds::default() }
    }

    /// A frame with buffers made here.
    pub fn with_buffers(header: H, buffers: Vec<Bytes>) -> Self {
        Frame {
            header,
            buffers: buffers.into_iter().map(Payload::new).collect(),
            refused: None,
            fds: Fds::default(),
        }
    }

    /// A frame with payloads (forwarded ones keep their MACs).
    pub fn with_payloads(header: H, buffers: Vec<Payload>) -> Self {
        Frame { header, buffers, refused: None, fds: Fds::default() }
    }

    /// The same frame, carrying `fds`.
    pub fn with_fds(self, fds: Fds) -> Self {
        Frame { fds, ..self }
    }

    /// The buffers' bytes, for a final receiver ([`Verify::All`](super::Verify::All): they are
    /// authenticated).
    ///
    /// # Errors
    /// The header and the [`Refused`] payload if the decoder refused one.
    pub fn into_parts(self) -> Result<(H, Vec<Bytes>), (H, Refused)> {
        match self.refused {
            Some(r) => Err((self.header, r)),
            None => Ok((self.header, self.buffers.into_iter().map(Payload::into_bytes).collect())),
        }
    }
}
