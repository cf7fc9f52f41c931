//! The signed frame codec: verify first, then decode.

use std::marker::PhantomData;

use bytes::{Buf, BufMut, Bytes, BytesMut};
use hmac::{Hmac, Mac};
use serde::{de::DeserializeOwned, Serialize};
use sha2::Sha256;
use thiserror::Error;
use tokio_util::codec::{Decoder, Encoder};

/// Default largest frame accepted (1 GiB plus room for the header).
pub const DEFAULT_MAX_FRAME: usize = (1 << 30) + (1 << 20);

/// Length of the HMAC-SHA256 signature at the head of every frame.
pub const SIG_LEN: usize = 32;

/// Bytes a controller sends, unsigned, before closing a connection whose frame failed
/// verification, so a client with the wrong key can say so instead of "connection closed".
pub const AUTH_REJECTED: &[u8] = b"MPX-AUTH-REJECTED";

/// Most buffers one frame may carry.
const MAX_BUFFERS: usize = 1024;

type HmacSha256 = Hmac<Sha256>;

/// A cluster key: the HMAC secret shared by everyone allowed in.
#[derive(Clone)]
pub struct Key(Vec<u8>);

impl Key {
    /// A key from raw bytes.
    pub fn new(bytes: impl Into<Vec<u8>>) -> Self {
        Key(bytes.into())
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
        Ok(Key(bytes))
    }

    /// The key's hex form.
    pub fn to_hex(&self) -> String {
        hex::encode(&self.0)
    }

    fn mac(&self) -> HmacSha256 {
        // HMAC accepts keys of any length; this cannot fail.
        <HmacSha256 as Mac>::new_from_slice(&self.0).expect("HMAC takes any key length")
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
    /// The signature does not match: wrong key or altered bytes.
    #[error("bad signature (wrong key or corrupted frame)")]
    BadSignature,
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
        /// Configured limit.
        limit: usize,
    },
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

/// A decoded message: a typed header plus raw byte buffers (array payloads).
#[derive(Debug, Clone, PartialEq)]
pub struct Frame<H> {
    /// The message itself.
    pub header: H,
    /// Out-of-band payloads, referenced by index from the header.
    pub buffers: Vec<Bytes>,
}

impl<H> Frame<H> {
    /// A frame without buffers.
    pub fn new(header: H) -> Self {
        Frame { header, buffers: Vec::new() }
    }

    /// A frame with buffers.
    pub fn with_buffers(header: H, buffers: Vec<Bytes>) -> Self {
        Frame { header, buffers }
    }
}

/// The part of a frame body before the buffers, with room for the signature at its head.
fn head_of<H: Serialize>(frame: &Frame<H>) -> Result<Vec<u8>, CodecError> {
    let header = serde_json::to_vec(&frame.header).map_err(|e| CodecError::BadHeader(e.to_string()))?;
    let mut head = Vec::with_capacity(SIG_LEN + 8 + header.len() + 8 * frame.buffers.len());
    head.resize(SIG_LEN, 0);
    head.extend_from_slice(&(header.len() as u32).to_le_bytes());
    head.extend_from_slice(&header);
    head.extend_from_slice(&(frame.buffers.len() as u32).to_le_bytes());
    for b in &frame.buffers {
        head.extend_from_slice(&(b.len() as u64).to_le_bytes());
    }
    Ok(head)
}

/// Signs a head (from [`head_of`]) and the buffers that follow it, in place.
fn sign(key: &Key, head: &mut [u8], buffers: &[Bytes]) {
    let mut mac = key.mac();
    mac.update(&head[SIG_LEN..]);
    for b in buffers {
        mac.update(b);
    }
    head[..SIG_LEN].copy_from_slice(&mac.finalize().into_bytes());
}

/// Signs and lays out a frame body (everything inside the length prefix).
///
/// # Errors
/// [`CodecError::BadHeader`] if the header cannot be serialized.
pub fn encode_body<H: Serialize>(key: &Key, frame: &Frame<H>) -> Result<BytesMut, CodecError> {
    let mut head = head_of(frame)?;
    sign(key, &mut head, &frame.buffers);
    let payload: usize = frame.buffers.iter().map(|b| b.len()).sum();
    let mut out = BytesMut::with_capacity(head.len() + payload);
    out.extend_from_slice(&head);
    for b in &frame.buffers {
        out.extend_from_slice(b);
    }
    Ok(out)
}

/// Encodes a frame (length prefix + signed body) straight into `dst`: one copy of the buffers.
fn encode_into<H: Serialize>(
    key: &Key,
    frame: &Frame<H>,
    limit: usize,
    dst: &mut BytesMut,
) -> Result<(), CodecError> {
    let mut head = head_of(frame)?;
    let size = head.len() + frame.buffers.iter().map(|b| b.len()).sum::<usize>();
    if size > limit || size > u32::MAX as usize {
        return Err(CodecError::TooLarge { size, limit });
    }
    sign(key, &mut head, &frame.buffers);
    dst.reserve(4 + size);
    dst.put_u32(size as u32);
    dst.extend_from_slice(&head);
    for b in &frame.buffers {
        dst.extend_from_slice(b);
    }
    Ok(())
}

/// Verifies and decodes a frame body. The signature is checked before any field is read;
/// buffers are zero-copy slices of `body`.
///
/// # Errors
/// Any [`CodecError`] describing why the body was refused.
pub fn decode_body<H: DeserializeOwned>(key: &Key, body: Bytes) -> Result<Frame<H>, CodecError> {
    if body.as_ref() == AUTH_REJECTED {
        return Err(CodecError::Rejected);
    }
    if body.len() < SIG_LEN {
        return Err(CodecError::Truncated("shorter than a signature"));
    }
    let mut mac = key.mac();
    mac.update(&body[SIG_LEN..]);
    mac.verify_slice(&body[..SIG_LEN]).map_err(|_| CodecError::BadSignature)?;

    let mut rest = body.slice(SIG_LEN..);
    let header_len = take_u32(&mut rest, "header length")? as usize;
    if rest.len() < header_len {
        return Err(CodecError::Truncated("header"));
    }
    let header_bytes = rest.split_to(header_len);
    let n_buffers = take_u32(&mut rest, "buffer count")? as usize;
    if n_buffers > MAX_BUFFERS {
        return Err(CodecError::Malformed(format!("{n_buffers} buffers (at most {MAX_BUFFERS})")));
    }
    if rest.len() < 8 * n_buffers {
        return Err(CodecError::Truncated("buffer lengths"));
    }
    let mut lens = Vec::with_capacity(n_buffers);
    let mut total: u64 = 0;
    for _ in 0..n_buffers {
        let len = rest.get_u64_le();
        total = total.saturating_add(len);
        lens.push(len);
    }
    if total != rest.len() as u64 {
        return Err(if total > rest.len() as u64 {
            CodecError::Truncated("buffers")
        } else {
            CodecError::Malformed("trailing bytes after the buffers".into())
        });
    }
    let buffers = lens.into_iter().map(|len| rest.split_to(len as usize)).collect();
    let header = serde_json::from_slice(&header_bytes).map_err(|e| CodecError::BadHeader(e.to_string()))?;
    Ok(Frame { header, buffers })
}

fn take_u32(buf: &mut Bytes, what: &'static str) -> Result<u32, CodecError> {
    if buf.len() < 4 {
        return Err(CodecError::Truncated(what));
    }
    Ok(buf.get_u32_le())
}

/// A tokio codec reading frames of type `In` and writing frames of type `Out`.
///
/// Outer framing is a 4-byte big-endian length with a size limit: an oversized frame is refused
/// from its length prefix alone, before anything is allocated for it.
#[derive(Debug)]
pub struct FrameCodec<In, Out> {
    key: Key,
    limit: usize,
    /// Size of the body being received, once its prefix has been read.
    pending: Option<usize>,
    _types: PhantomData<fn(Out) -> In>,
}

impl<In, Out> FrameCodec<In, Out> {
    /// A codec with the given key and the default size limit.
    pub fn new(key: Key) -> Self {
        Self::with_limit(key, DEFAULT_MAX_FRAME)
    }

    /// A codec with the given key and a frame size limit in bytes.
    pub fn with_limit(key: Key, limit: usize) -> Self {
        FrameCodec { key, limit, pending: None, _types: PhantomData }
    }
}

impl<In: DeserializeOwned, Out> Decoder for FrameCodec<In, Out> {
    type Item = Frame<In>;
    type Error = CodecError;

    fn decode(&mut self, src: &mut BytesMut) -> Result<Option<Self::Item>, CodecError> {
        let size = match self.pending {
            Some(size) => size,
            None => {
                if src.len() < 4 {
                    return Ok(None);
                }
                let size = src.get_u32() as usize;
                if size > self.limit {
                    return Err(CodecError::TooLarge { size, limit: self.limit });
                }
                self.pending = Some(size);
                size
            }
        };
        if src.len() < size {
            // Make room for exactly this frame (bounded by the limit checked above). `src` holds
            // only this frame's first bytes now. `reserve` would not do: it may double the
            // existing allocation, to nearly twice the limit.
            if src.capacity() < size {
                let mut exact = BytesMut::with_capacity(size);
                exact.extend_from_slice(src);
                *src = exact;
            }
            return Ok(None);
        }
        self.pending = None;
        let body = src.split_to(size).freeze();
        decode_body(&self.key, body).map(Some)
    }

    fn decode_eof(&mut self, buf: &mut BytesMut) -> Result<Option<Self::Item>, CodecError> {
        match self.decode(buf)? {
            Some(frame) => Ok(Some(frame)),
            None if buf.is_empty() && self.pending.is_none() => Ok(None),
            None => Err(CodecError::Truncated("connection closed inside a frame")),
        }
    }
}

impl<In, Out: Serialize> Encoder<Frame<Out>> for FrameCodec<In, Out> {
    type Error = CodecError;

    fn encode(&mut self, frame: Frame<Out>, dst: &mut BytesMut) -> Result<(), CodecError> {
        encode_into(&self.key, &frame, self.limit, dst)
    }
}

/// What a connection writes: a signed frame, or the unsigned rejection marker.
#[derive(Debug, Clone)]
pub enum Outbound<H> {
    /// A signed frame.
    Frame(Frame<H>),
    /// [`AUTH_REJECTED`], sent before closing a connection that failed verification.
    AuthRejected,
}

impl<H> From<Frame<H>> for Outbound<H> {
    fn from(frame: Frame<H>) -> Self {
        Outbound::Frame(frame)
    }
}

impl<In, Out: Serialize> Encoder<Outbound<Out>> for FrameCodec<In, Out> {
    type Error = CodecError;

    fn encode(&mut self, item: Outbound<Out>, dst: &mut BytesMut) -> Result<(), CodecError> {
        match item {
            Outbound::Frame(frame) => self.encode(frame, dst),
            Outbound::AuthRejected => {
                dst.put_u32(AUTH_REJECTED.len() as u32);
                dst.extend_from_slice(AUTH_REJECTED);
                Ok(())
            }
        }
    }
}

/// Blocking helpers for clients that use `std::net` sockets.
pub mod blocking {
    use std::io::{Read, Write};

    use bytes::Bytes;
    use serde::{de::DeserializeOwned, Serialize};

    use super::{decode_body, CodecError, Frame, Key};

    /// Writes one frame (length prefix + signed body); the buffers are written from where they
    /// are, not copied.
    ///
    /// # Errors
    /// Socket errors, or a header that cannot be serialized.
    pub fn write_frame<H: Serialize>(
        w: &mut impl Write,
        key: &Key,
        frame: &Frame<H>,
    ) -> Result<(), CodecError> {
        let mut head = super::head_of(frame)?;
        let size = head.len() + frame.buffers.iter().map(|b| b.len()).sum::<usize>();
        let len = u32::try_from(size).map_err(|_| CodecError::TooLarge { size, limit: u32::MAX as usize })?;
        super::sign(key, &mut head, &frame.buffers);
        head.splice(0..0, len.to_be_bytes());
        w.write_all(&head)?;
        for b in &frame.buffers {
            w.write_all(b)?;
        }
        w.flush()?;
        Ok(())
    }

    /// Reads one frame; `Ok(None)` on a clean end of stream between frames.
    ///
    /// # Errors
    /// Socket errors, a frame over `limit`, or any verification/decoding failure.
    pub fn read_frame<H: DeserializeOwned>(
        r: &mut impl Read,
        key: &Key,
        limit: usize,
    ) -> Result<Option<Frame<H>>, CodecError> {
        let mut prefix = [0u8; 4];
        let mut got = 0;
        while got < 4 {
            match r.read(&mut prefix[got..])? {
                0 if got == 0 => return Ok(None),
                0 => return Err(CodecError::Truncated("length prefix")),
                n => got += n,
            }
        }
        let size = u32::from_be_bytes(prefix) as usize;
        if size > limit {
            return Err(CodecError::TooLarge { size, limit });
        }
        // Read without zero-filling first: the body can be hundreds of megabytes.
        let mut body = Vec::with_capacity(size);
        r.take(size as u64).read_to_end(&mut body)?;
        if body.len() < size {
            return Err(CodecError::Truncated("connection closed inside a frame"));
        }
        decode_body(key, Bytes::from(body)).map(Some)
    }
}
