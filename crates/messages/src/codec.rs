//! The authenticated wire: a handshake that binds each connection to fresh nonces, then frames
//! MACed per hop with a sequence number, carrying payload buffers MACed once, end to end.
//!
//! # Handshake
//! Every connection opens with three fixed-size messages, each inside a 4-byte big-endian length
//! prefix (the connecting side is the *client*: an `mpx` client or an engine):
//!
//! 1. client → server, `hello`: `"MPXHELO1" | nonce_c[32]`.
//! 2. server → client, `challenge`: `"MPXCHAL1" | nonce_s[32] | MAC_s[32]`, where MAC_s is keyed
//!    BLAKE3 of `nonce_c | nonce_s` under a key derived from the cluster key for the server.
//! 3. client → server, `proof`: `"MPXPROF1" | MAC_c[32]`, the same over `nonce_c | nonce_s`
//!    under a key derived for the client.
//!
//! Both nonces are fresh random bytes, so each side proves it holds the cluster key for *this*
//! connection: a recorded proof does not match a new server nonce. A server refuses a hello whose
//! nonce it has seen ([`NonceHistory`]), and answers a proof that does not match with
//! [`AUTH_REJECTED`]; a client that cannot verify MAC_s fails with [`CodecError::Unproven`] (it
//! still sends its proof, so the server logs the wrong key). Nothing larger than a handshake
//! message is read before the proof.
//!
//! The session then has one header key per direction, `derive_key(context, cluster key | nonce_c
//! | nonce_s)` ([`Session`]), and one sequence number per direction, starting at 0.
//!
//! # Frames
//! Body layout (inside a 4-byte big-endian length prefix):
//! `header MAC[32] | seq: u64 LE | header_len: u32 LE | header (JSON) | counts: u32 LE |
//! n × (len: u64 LE | origin: u64 LE | index: u64 LE | payload MAC[32]) | buffers`, where
//! `counts` holds the number of buffers `n` in its low 16 bits and the number of descriptors
//! passed with the frame over a Unix connection in its high 16 bits ([`fds`]).
//!
//! The header MAC covers everything from `seq` through the buffer descriptors (not the buffers'
//! bytes) under the session's key for that direction. A receiver checks it before interpreting
//! any field, then requires `seq` to be exactly the next one: a recorded frame is refused on any
//! other connection (another key: [`CodecError::BadSignature`]) and out of order on its own
//! ([`CodecError::Replayed`]). A frame may be as large as the receiver's configured limit from
//! the first one on: the handshake has proved the peer before any frame is read (rank 0
//! registers its whole world in one frame, about 70 bytes a rank). Until one frame has been verified, its
//! buffer grows with the bytes that arrive, never more than [`UNVERIFIED_RESERVE`] ahead of them,
//! so a length prefix alone makes nothing large be allocated.
//!
//! # Payloads
//! Each payload MAC is keyed BLAKE3, under a key derived from the cluster key, of `origin |
//! index | bytes`. It is made by the original sender (client or engine) and checked by the final
//! receiver (engine or client). A controller decodes with [`Verify::HeaderOnly`] and forwards
//! buffers with their original binding and MAC, never hashing them; engines and clients decode
//! with [`Verify::All`].
//!
//! Why payloads cannot be replayed either, although no hop re-hashes them: their MACs (and
//! bindings) are inside the head, which each hop's header MAC covers together with a fresh
//! sequence number, so a payload only ever travels in a frame a key holder made for this session
//! at this point of it. The [`Binding`] then ties the bytes to their place end to end: `origin`
//! is a fresh random number the original sender draws per message (or per streamed array), and
//! `index` is the buffer's place in it (or the chunk's number in the stream). A final receiver
//! refuses a frame whose buffers do not share one origin at consecutive indices, and a stream's
//! receiver refuses a chunk of another origin or out of its place; so bytes recorded from one
//! request cannot stand in for another request's, or another chunk's, even through a forwarder
//! that does not verify them.

use thiserror::Error;

#[cfg(feature = "tokio")]
pub mod batch;
pub mod blocking;
#[cfg(feature = "tokio")]
pub mod fd_stream;
pub mod fds;
pub mod handshake;
mod layout;
mod payload;
mod session;
#[cfg(feature = "tokio")]
mod stream;

pub use handshake::{ClientHandshake, NonceHistory, ServerHandshake};
pub use layout::{decode_body, decode_body_fds, decode_body_with, encode_body, encode_head};
pub use payload::{Binding, Fds, Frame, Payload, Refused};
pub use session::{Nonces, Opener, Sealer, Session};
#[cfg(feature = "tokio")]
pub use stream::{accept, connect, FrameCodec, Outbound};

/// Default largest frame accepted (1 GiB plus room for the header).
pub const DEFAULT_MAX_FRAME: usize = (1 << 30) + (1 << 20);

/// Most bytes allocated on the strength of a length prefix alone before a frame of the peer has
/// been verified: a handshake message announcing more is refused ([`CodecError::TooLarge`]), and
/// a first frame announcing more gets its buffer as its bytes arrive, not from its prefix.
pub const UNVERIFIED_RESERVE: usize = 64 << 10;

/// Length of a MAC (keyed BLAKE3 output), at the head of every frame and per payload buffer.
pub const MAC_LEN: usize = 32;

/// Bytes a server sends, unsigned, before closing a connection whose handshake or frame failed
/// verification, so a client with the wrong key can say so instead of "connection closed".
pub const AUTH_REJECTED: &[u8] = b"MPX-AUTH-REJECTED";

/// [`AUTH_REJECTED`] with its length prefix, as it goes on the wire.
pub fn rejection() -> Vec<u8> {
    let mut out = (AUTH_REJECTED.len() as u32).to_be_bytes().to_vec();
    out.extend_from_slice(AUTH_REJECTED);
    out
}

/// Most buffers one frame may carry.
pub(crate) const MAX_BUFFERS: usize = 1024;

/// `blake3::derive_key` context of the payload MAC key.
const PAYLOAD_CONTEXT: &str = "mpx 2026-12 payload";
/// `blake3::derive_key` context of the key the server proves itself with in the handshake.
const SERVER_PROOF_CONTEXT: &str = "mpx 2026-12 handshake server proof";
/// `blake3::derive_key` context of the key the client proves itself with in the handshake.
const CLIENT_PROOF_CONTEXT: &str = "mpx 2026-12 handshake client proof";

/// A MAC: 32 bytes of keyed BLAKE3.
pub type Mac = [u8; MAC_LEN];

/// A cluster key: the secret shared by everyone allowed in. The payload, handshake and session
/// keys are derived from it.
#[derive(Clone)]
pub struct Key {
    raw: Vec<u8>,
    payload: [u8; 32],
    server_proof: [u8; 32],
    client_proof: [u8; 32],
}

impl Key {
    /// A key from raw bytes.
    pub fn new(bytes: impl Into<Vec<u8>>) -> Self {
        let raw = bytes.into();
        let payload = blake3::derive_key(PAYLOAD_CONTEXT, &raw);
        let server_proof = blake3::derive_key(SERVER_PROOF_CONTEXT, &raw);
        let client_proof = blake3::derive_key(CLIENT_PROOF_CONTEXT, &raw);
        Key { raw, payload, server_proof, client_proof }
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

    /// The MAC of a payload buffer bound to `binding` (keyed BLAKE3 with the payload key over
    /// `origin | index | bytes`).
    pub fn payload_mac(&self, binding: Binding, bytes: &[u8]) -> Mac {
        let mut h = blake3::Hasher::new_keyed(&self.payload);
        h.update(&binding.origin.to_le_bytes());
        h.update(&binding.index.to_le_bytes());
        h.update(bytes);
        *h.finalize().as_bytes()
    }

    /// Whether `mac` is the MAC of `bytes` bound to `binding` (constant-time comparison).
    pub fn payload_matches(&self, binding: Binding, bytes: &[u8], mac: &Mac) -> bool {
        blake3::Hash::from_bytes(self.payload_mac(binding, bytes)) == blake3::Hash::from_bytes(*mac)
    }

    /// The raw key bytes, for deriving session keys.
    pub(crate) fn raw(&self) -> &[u8] {
        &self.raw
    }

    /// The handshake MAC of `nonces` proving the server (`server`) or the client holds the key.
    pub(crate) fn proof(&self, server: bool, nonces: &Nonces) -> Mac {
        let key = if server { &self.server_proof } else { &self.client_proof };
        let mut h = blake3::Hasher::new_keyed(key);
        h.update(&nonces.client);
        h.update(&nonces.server);
        *h.finalize().as_bytes()
    }
}

impl std::fmt::Debug for Key {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Key(<redacted>)")
    }
}

/// Why a handshake or frame was refused.
#[derive(Debug, Error)]
pub enum CodecError {
    /// The header MAC does not match: wrong key, altered bytes, or a frame of another session.
    #[error("bad signature (wrong key, corrupted frame, or a frame recorded from another connection)")]
    BadSignature,
    /// An authentic frame or hello seen before, or out of its place: a replay.
    #[error("replayed: {0}")]
    Replayed(String),
    /// The peer's handshake proof does not match: it does not hold the cluster key (or replays
    /// a recorded handshake).
    #[error(
        "authentication failed: the handshake proof does not match (wrong key, or a replayed handshake)"
    )]
    BadProof,
    /// The server could not prove it holds the cluster key: wrong key for this cluster.
    #[error("authentication failed: the peer could not prove it holds this cluster's key (wrong key?)")]
    Unproven,
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
    /// The peer does not speak the mpx handshake.
    #[error("not an mpx handshake: {0}")]
    NotHandshake(String),
    /// The frame exceeds the size limit.
    #[error("frame of {size} bytes exceeds the limit of {limit} bytes")]
    TooLarge {
        /// Declared size.
        size: usize,
        /// Configured limit (for a handshake message, [`UNVERIFIED_RESERVE`]).
        limit: usize,
    },
    /// A forwarding codec was asked to send a payload without its original MAC.
    #[error("payload buffer {0} has no MAC: a forwarder sends buffers only with the MAC they came with")]
    MissingMac(usize),
    /// A codec made for reading was asked to write.
    #[error("this codec only reads")]
    ReadOnly,
    /// The header is not a valid message of this channel.
    #[error("bad header: {0}")]
    BadHeader(String),
    /// A key that is not usable.
    #[error("bad key: expected non-empty hex")]
    BadKey,
    /// The system's random source failed.
    #[error("no random numbers: {0}")]
    Random(String),
    /// Socket error.
    #[error("i/o: {0}")]
    Io(#[from] std::io::Error),
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

/// Fresh random bytes from the operating system.
///
/// # Errors
/// [`CodecError::Random`] if the system's random source fails.
pub fn random_bytes<const N: usize>() -> Result<[u8; N], CodecError> {
    let mut out = [0u8; N];
    getrandom::fill(&mut out).map_err(|e| CodecError::Random(e.to_string()))?;
    Ok(out)
}
