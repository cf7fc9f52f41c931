//! The tokio codec: length-delimited, authenticated frames with a size limit that stays small
//! until the peer has authenticated.

use std::marker::PhantomData;

use bytes::{Buf, BufMut, BytesMut};
use serde::{de::DeserializeOwned, Serialize};
use tokio_util::codec::{Decoder, Encoder};

use super::{
    decode_body_with, encode_head, CodecError, Frame, Key, Verify, AUTH_REJECTED, DEFAULT_MAX_FRAME,
    FIRST_FRAME_MAX,
};

/// A read buffer with more spare capacity than this, and little pending, is replaced by a small
/// one: memory taken for one large frame goes back once it is decoded.
const SPARE_KEPT: usize = 1 << 20;

/// A tokio codec reading frames of type `In` and writing frames of type `Out`.
///
/// Outer framing is a 4-byte big-endian length with a size limit: an oversized frame is refused
/// from its length prefix alone, before anything is allocated for it. Until one frame has been
/// verified (the peer holds the key), the limit is [`FIRST_FRAME_MAX`].
#[derive(Debug)]
pub struct FrameCodec<In, Out> {
    key: Key,
    limit: usize,
    verify: Verify,
    /// Whether a frame from the peer has been verified.
    authenticated: bool,
    /// Size of the body being received, once its prefix has been read.
    pending: Option<usize>,
    _types: PhantomData<fn(Out) -> In>,
}

impl<In, Out> FrameCodec<In, Out> {
    /// A final receiver's codec ([`Verify::All`]) with the default size limit.
    pub fn new(key: Key) -> Self {
        Self::with_limit(key, DEFAULT_MAX_FRAME)
    }

    /// A final receiver's codec ([`Verify::All`]) with a frame size limit in bytes.
    pub fn with_limit(key: Key, limit: usize) -> Self {
        FrameCodec {
            key,
            limit,
            verify: Verify::All,
            authenticated: false,
            pending: None,
            _types: PhantomData,
        }
    }

    /// A forwarder's codec ([`Verify::HeaderOnly`]): payloads are not hashed on the way in, and
    /// go out only with the MAC they came with.
    pub fn forwarding(key: Key, limit: usize) -> Self {
        FrameCodec { verify: Verify::HeaderOnly, ..Self::with_limit(key, limit) }
    }

    /// The same codec, state included (limits, authentication, a frame half read), for other
    /// message types.
    pub fn retype<In2, Out2>(self) -> FrameCodec<In2, Out2> {
        let FrameCodec { key, limit, verify, authenticated, pending, .. } = self;
        FrameCodec { key, limit, verify, authenticated, pending, _types: PhantomData }
    }

    /// Whether a frame from the peer has been verified (and the full size limit applies).
    pub fn is_authenticated(&self) -> bool {
        self.authenticated
    }

    fn current_limit(&self) -> usize {
        if self.authenticated {
            self.limit
        } else {
            self.limit.min(FIRST_FRAME_MAX)
        }
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
                let limit = self.current_limit();
                if size > limit {
                    return Err(CodecError::TooLarge { size, limit });
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
        if src.capacity() > SPARE_KEPT && src.len() < SPARE_KEPT / 4 {
            *src = BytesMut::from(&src[..]);
        }
        let frame = decode_body_with(&self.key, body, self.verify)?;
        self.authenticated = true;
        Ok(Some(frame))
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
        let head = encode_head(&self.key, &frame, self.limit, self.verify)?;
        dst.reserve(head.len() + frame.buffers.iter().map(|b| b.len()).sum::<usize>());
        dst.extend_from_slice(&head);
        for b in &frame.buffers {
            dst.extend_from_slice(b.bytes());
        }
        Ok(())
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
