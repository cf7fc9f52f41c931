//! The authenticated frame codec: keyed BLAKE3 over the header at every hop, over each payload
//! buffer once, end to end.
//!
//! Body layout (inside a 4-byte big-endian length prefix):
//! `header MAC[32] | header_len: u32 LE | header (JSON) | n_buffers: u32 LE | n × len: u64 LE |
//! n × payload MAC[32] | buffers`.
//!
//! The header MAC covers everything from the header length through the payload MACs (not the
//! buffers), with a key derived for headers. Each payload MAC covers one buffer, with a key
//! derived for payloads; it is made by the original sender and checked by the final receiver.
//! A controller decodes with [`Verify::HeaderOnly`] and forwards buffers with their original
//! MACs, never hashing them; engines and clients decode with [`Verify::All`].

use bytes::{Buf, Bytes, BytesMut};
use serde::{de::DeserializeOwned, Serialize};
use thiserror::Error;

pub mod blocking;
#[cfg(feature = "tokio")]
mod stream;

#[cfg(feature = "tokio")]
pub use stream::{FrameCodec, Outbound};

/// Default largest frame accepted (1 GiB plus room for the header).
pub const DEFAULT_MAX_FRAME: usize = (1 << 30) + (1 << 20);

/// Largest first frame of a connection: nothing bigger is accepted (or allocated for) before a
/// peer has proved it holds the key.
pub const FIRST_FRAME_MAX: usize = 64 << 10;

/// Length of a MAC (keyed BLAKE3 output), at the head of every frame and per payload buffer.
pub const MAC_LEN: usize = 32;

/// Bytes a controller sends, unsigned, before closing a connection whose frame failed
/// verification, so a client with the wrong key can say so instead of "connection closed".
pub const AUTH_REJECTED: &[u8] = b"MPX-AUTH-REJECTED";

/// Most buffers one frame may carry.
const MAX_BUFFERS: usize = 1024;

/// `blake3::derive_key` context of the header MAC key.
const HEADER_CONTEXT: &str = "mpx 2026-12 frame header";
/// `blake3::derive_key` context of the payload MAC key.
const PAYLOAD_CONTEXT: &str = "mpx 2026-12 payload";

/// A MAC: 32 bytes of keyed BLAKE3.
pub type Mac = [u8; MAC_LEN];

/// A cluster key: the secret shared by everyone allowed in. The header and payload MAC keys are
/// derived from it.
#[derive(Clone)]
pub struct Key {
    raw: Vec<u8>,
    header: [u8; 32],
    payload: [u8; 32],
}

impl Key {
    /// A key from raw bytes.
    pub fn new(bytes: impl Into<Vec<u8>>) -> Self {
        let raw = bytes.into();
        let header = blake3::derive_key(HEADER_CONTEXT, &raw);
        let payload = blake3::derive_key(PAYLOAD_CONTEXT, &raw);
        Key { raw, header, payload }
    }

    /// A key from its hex form (as stored in the connection file).
    ///
    /// # Errors
    /// [`CodecError::BadKey`] if the text is not hex or is empty.
    pub fn from_hex(text: &str) -> Result<Self, CodecError> {
        let bytes = hex::decode(text.trim()).map_err(|_| CodecError::BadKey)?;
        if bytes.is_empty() {
            return Err(CodecError::BadKey);
        }
        Ok(Key::new(bytes))
    }

    /// The key's hex form.
    pub fn to_hex(&self) -> String {
        hex::encode(&self.raw)
    }

    /// The MAC of a payload buffer (keyed BLAKE3 with the payload key).
    pub fn payload_mac(&self, bytes: &[u8]) -> Mac {
        *blake3::keyed_hash(&self.payload, bytes).as_bytes()
    }

    /// Whether `mac` is the MAC of `bytes` (constant-time comparison).
    pub fn payload_matches(&self, bytes: &[u8], mac: &Mac) -> bool {
        blake3::keyed_hash(&self.payload, bytes) == blake3::Hash::from_bytes(*mac)
    }

    /// The MAC of a frame head: everything from the header length through the payload MACs
    /// (keyed BLAKE3 with the header key).
    pub fn header_mac(&self, head: &[u8]) -> Mac {
        *blake3::keyed_hash(&self.header, head).as_bytes()
    }

    /// Whether `mac` is the MAC of the frame head `head` (constant-time comparison).
    fn header_matches(&self, head: &[u8], mac: &[u8]) -> bool {
        blake3::Hash::from_slice(mac).is_ok_and(|mac| blake3::keyed_hash(&self.header, head) == mac)
    }
}

impl std::fmt::Debug for Key {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Key(<redacted>)")
    }
}

/// Why a frame was refused.
#[derive(Debug, Error)]
pub enum CodecError {
    /// The header MAC does not match: wrong key or altered bytes.
    #[error("bad signature (wrong key or corrupted frame)")]
    BadSignature,
    /// A payload buffer's MAC does not match its bytes: they were altered after signing.
    #[error("{0}")]
    BadPayload(Refused),
    /// The peer rejected our signature (it sent [`AUTH_REJECTED`]).
    #[error("the peer rejected this connection's signature: wrong key for this cluster")]
    Rejected,
    /// The frame ends before its declared contents.
    #[error("truncated frame: {0}")]
    Truncated(&'static str),
    /// The frame's layout is inconsistent.
    #[error("malformed frame: {0}")]
    Malformed(String),
    /// The frame exceeds the size limit.
    #[error("frame of {size} bytes exceeds the limit of {limit} bytes")]
    TooLarge {
        /// Declared size.
        size: usize,
        /// Configured limit (the first frame's limit before the peer has authenticated).
        limit: usize,
    },
    /// A forwarding codec was asked to send a payload without its original MAC.
    #[error("payload buffer {0} has no MAC: a forwarder sends buffers only with the MAC they came with")]
    MissingMac(usize),
    /// The header is not a valid message of this channel.
    #[error("bad header: {0}")]
    BadHeader(String),
    /// A key that is not usable.
    #[error("bad key: expected non-empty hex")]
    BadKey,
    /// Socket error.
    #[error("i/o: {0}")]
    Io(#[from] std::io::Error),
}

/// A payload buffer whose MAC did not match: its bytes were dropped, unused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Refused {
    /// Index of the first buffer that failed.
    pub index: usize,
}

impl std::fmt::Display for Refused {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "payload buffer {} failed authentication (its MAC does not match its bytes)", self.index)
    }
}

/// Which MACs a decoder checks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verify {
    /// The header and every payload buffer: for final receivers (engines, clients).
    All,
    /// The header only; payloads keep their MACs for the final receiver: for the controller,
    /// which forwards buffers. An encoder in this mode refuses buffers without a MAC.
    HeaderOnly,
}

/// A payload buffer and, once signed or received, its MAC. Payloads are equal when their bytes
/// are (the MAC is how they travel, not what they are).
#[derive(Debug, Clone, Default)]
pub struct Payload {
    bytes: Bytes,
    mac: Option<Mac>,
}

impl Payload {
    /// Bytes made here: their MAC is computed when they are sent.
    pub fn new(bytes: impl Into<Bytes>) -> Self {
        Payload { bytes: bytes.into(), mac: None }
    }

    /// Bytes with the MAC they came with (or a MAC computed for them beforehand).
    pub fn with_mac(bytes: Bytes, mac: Mac) -> Self {
        Payload { bytes, mac: Some(mac) }
    }

    /// The bytes.
    pub fn bytes(&self) -> &Bytes {
        &self.bytes
    }

    /// The bytes, without the MAC.
    pub fn into_bytes(self) -> Bytes {
        self.bytes
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

/// A decoded message: a typed header plus payload buffers (array bytes).
#[derive(Debug, Clone, PartialEq)]
pub struct Frame<H> {
    /// The message itself.
    pub header: H,
    /// Out-of-band payloads, referenced by index from the header.
    pub buffers: Vec<Payload>,
    /// Set by a [`Verify::All`] decoder when the header is authentic but a payload is not: the
    /// frame then has no buffers, and the receiver answers the message with an error.
    pub refused: Option<Refused>,
}

impl<H> Frame<H> {
    /// A frame without buffers.
    pub fn new(header: H) -> Self {
        Frame { header, buffers: Vec::new(), refused: None }
    }

    /// A frame with buffers made here.
    pub fn with_buffers(header: H, buffers: Vec<Bytes>) -> Self {
        Frame { header, buffers: buffers.into_iter().map(Payload::new).collect(), refused: None }
    }

    /// A frame with payloads (forwarded ones keep their MACs).
    pub fn with_payloads(header: H, buffers: Vec<Payload>) -> Self {
        Frame { header, buffers, refused: None }
    }

    /// The buffers' bytes, for a final receiver ([`Verify::All`]: they are authenticated).
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

/// The length prefix and head of a frame (everything but the buffers), signed. Payloads without
/// a MAC are MACed here unless `verify` is [`Verify::HeaderOnly`] (a forwarder), which refuses
/// them.
///
/// # Errors
/// [`CodecError::BadHeader`], [`CodecError::TooLarge`] or [`CodecError::MissingMac`].
pub fn encode_head<H: Serialize>(
    key: &Key,
    frame: &Frame<H>,
    limit: usize,
    verify: Verify,
) -> Result<Vec<u8>, CodecError> {
    let header = serde_json::to_vec(&frame.header).map_err(|e| CodecError::BadHeader(e.to_string()))?;
    let n = frame.buffers.len();
    let mut head = Vec::with_capacity(4 + MAC_LEN + 8 + header.len() + (8 + MAC_LEN) * n);
    head.resize(4 + MAC_LEN, 0);
    head.extend_from_slice(&(header.len() as u32).to_le_bytes());
    head.extend_from_slice(&header);
    head.extend_from_slice(&(n as u32).to_le_bytes());
    for b in &frame.buffers {
        head.extend_from_slice(&(b.len() as u64).to_le_bytes());
    }
    for (i, b) in frame.buffers.iter().enumerate() {
        let mac = match (b.mac, verify) {
            (Some(mac), _) => mac,
            (None, Verify::All) => key.payload_mac(&b.bytes),
            (None, Verify::HeaderOnly) => return Err(CodecError::MissingMac(i)),
        };
        head.extend_from_slice(&mac);
    }
    let size = head.len() - 4 + frame.buffers.iter().map(Payload::len).sum::<usize>();
    if size > limit || size > u32::MAX as usize {
        return Err(CodecError::TooLarge { size, limit });
    }
    let mac = key.header_mac(&head[4 + MAC_LEN..]);
    head[..4].copy_from_slice(&(size as u32).to_be_bytes());
    head[4..4 + MAC_LEN].copy_from_slice(&mac);
    Ok(head)
}

/// Signs and lays out a frame body (everything inside the length prefix), MACing every payload
/// that has no MAC yet.
///
/// # Errors
/// [`CodecError::BadHeader`] if the header cannot be serialized.
pub fn encode_body<H: Serialize>(key: &Key, frame: &Frame<H>) -> Result<BytesMut, CodecError> {
    let head = encode_head(key, frame, u32::MAX as usize, Verify::All)?;
    let payload: usize = frame.buffers.iter().map(Payload::len).sum();
    let mut out = BytesMut::with_capacity(head.len() - 4 + payload);
    out.extend_from_slice(&head[4..]);
    for b in &frame.buffers {
        out.extend_from_slice(&b.bytes);
    }
    Ok(out)
}

/// Verifies and decodes a frame body as a final receiver ([`Verify::All`]).
///
/// # Errors
/// Any [`CodecError`] describing why the body was refused.
pub fn decode_body<H: DeserializeOwned>(key: &Key, body: Bytes) -> Result<Frame<H>, CodecError> {
    decode_body_with(key, body, Verify::All)
}

/// Verifies and decodes a frame body. The layout's lengths are bounds-checked, then the header
/// MAC is checked before any field is interpreted; buffers are zero-copy slices of `body`, and
/// keep their MACs. With [`Verify::All`], a payload whose MAC does not match makes a frame with no
/// buffers and [`Frame::refused`] set (the header being authentic, the receiver can answer it).
///
/// # Errors
/// Any [`CodecError`] describing why the body was refused.
pub fn decode_body_with<H: DeserializeOwned>(
    key: &Key,
    body: Bytes,
    verify: Verify,
) -> Result<Frame<H>, CodecError> {
    if body.as_ref() == AUTH_REJECTED {
        return Err(CodecError::Rejected);
    }
    if body.len() < MAC_LEN {
        return Err(CodecError::Truncated("shorter than a signature"));
    }
    let mut rest = body.slice(MAC_LEN..);
    let header_len = take_u32(&mut rest, "header length")? as usize;
    if rest.len() < header_len {
        return Err(CodecError::Truncated("header"));
    }
    let header_bytes = rest.split_to(header_len);
    let n_buffers = take_u32(&mut rest, "buffer count")? as usize;
    if n_buffers > MAX_BUFFERS {
        return Err(CodecError::Malformed(format!("{n_buffers} buffers (at most {MAX_BUFFERS})")));
    }
    if rest.len() < (8 + MAC_LEN) * n_buffers {
        return Err(CodecError::Truncated("buffer lengths and MACs"));
    }
    let head_end = body.len() - rest.len() + (8 + MAC_LEN) * n_buffers;
    if !key.header_matches(&body[MAC_LEN..head_end], &body[..MAC_LEN]) {
        return Err(CodecError::BadSignature);
    }
    let mut lens = Vec::with_capacity(n_buffers);
    let mut total: u64 = 0;
    for _ in 0..n_buffers {
        let len = rest.get_u64_le();
        total = total.saturating_add(len);
        lens.push(len);
    }
    let macs = rest.split_to(MAC_LEN * n_buffers);
    if total != rest.len() as u64 {
        return Err(if total > rest.len() as u64 {
            CodecError::Truncated("buffers")
        } else {
            CodecError::Malformed("trailing bytes after the buffers".into())
        });
    }
    let header = serde_json::from_slice(&header_bytes).map_err(|e| CodecError::BadHeader(e.to_string()))?;
    let mut buffers = Vec::with_capacity(n_buffers);
    for (i, len) in lens.into_iter().enumerate() {
        let mac: Mac = macs[i * MAC_LEN..(i + 1) * MAC_LEN].try_into().expect("32 bytes");
        let bytes = rest.split_to(len as usize);
        if verify == Verify::All && !key.payload_matches(&bytes, &mac) {
            return Ok(Frame { header, buffers: Vec::new(), refused: Some(Refused { index: i }) });
        }
        buffers.push(Payload::with_mac(bytes, mac));
    }
    Ok(Frame { header, buffers, refused: None })
}

fn take_u32(buf: &mut Bytes, what: &'static str) -> Result<u32, CodecError> {
    if buf.len() < 4 {
        return Err(CodecError::Truncated(what));
    }
    Ok(buf.get_u32_le())
}
