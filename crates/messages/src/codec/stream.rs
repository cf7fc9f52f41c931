//! The tokio side: the handshake over an async socket ([`connect`], [`accept`]), and the codec
//! of an open session's frames, whose buffer grows only with the bytes that arrive until a frame
//! of the peer has been verified.

use std::marker::PhantomData;

use bytes::{Buf, BufMut, BytesMut};
use serde::{de::DeserializeOwned, Serialize};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio_util::codec::{Decoder, Encoder};

use super::{
    encode_head,
    handshake::{check_prefix, ClientHandshake, ServerHandshake, CHALLENGE_LEN, HELLO_LEN, PROOF_LEN},
    CodecError, Frame, Key, NonceHistory, Opener, Sealer, Session, Verify, AUTH_REJECTED, DEFAULT_MAX_FRAME,
    UNVERIFIED_RESERVE,
};

/// Opens a session on a fresh connection as its connecting side (an engine): hello, the
/// server's challenge, proof. The caller bounds the wait.
///
/// # Errors
/// [`CodecError::Unproven`] when the server does not hold `key` (the proof is sent anyway),
/// [`CodecError::Rejected`], [`CodecError::NotHandshake`] or socket errors.
pub async fn connect<S: AsyncRead + AsyncWrite + Unpin>(
    io: &mut S,
    key: &Key,
) -> Result<Session, CodecError> {
    let (handshake, hello) = ClientHandshake::start(key)?;
    io.write_all(&hello).await?;
    let body = read_message(io, CHALLENGE_LEN, "challenge").await?;
    let answer = handshake.answer(&body)?;
    io.write_all(&answer.proof).await?;
    answer.session
}

/// Opens a session on an accepted connection (the controller): reads the hello, answers with a
/// challenge, checks the proof. A proof that does not match is answered with [`AUTH_REJECTED`]
/// before the error returns. Nothing larger than a handshake message is read. The caller bounds
/// the wait.
///
/// # Errors
/// [`CodecError::BadProof`] (wrong key, or a replayed handshake), [`CodecError::Replayed`] (a
/// hello nonce `history` has seen), [`CodecError::NotHandshake`], [`CodecError::TooLarge`],
/// [`CodecError::Truncated`] or socket errors.
pub async fn accept<S: AsyncRead + AsyncWrite + Unpin>(
    io: &mut S,
    key: &Key,
    history: &NonceHistory,
) -> Result<Session, CodecError> {
    let hello = read_message(io, HELLO_LEN, "hello").await?;
    let (handshake, challenge) = ServerHandshake::accept(key, &hello, history)?;
    io.write_all(&challenge).await?;
    let proof = read_message(io, PROOF_LEN, "proof").await?;
    match handshake.finish(&proof) {
        Err(CodecError::BadProof) => {
            let _ = io.write_all(&super::rejection()).await;
            let _ = io.shutdown().await;
            Err(CodecError::BadProof)
        }
        other => other,
    }
}

/// Reads one handshake message's body (`want` bytes, or the rejection marker).
async fn read_message<S: AsyncRead + Unpin>(
    io: &mut S,
    want: usize,
    what: &'static str,
) -> Result<Vec<u8>, CodecError> {
    let eof = |e: std::io::Error| match e.kind() {
        std::io::ErrorKind::UnexpectedEof => CodecError::Truncated(what),
        _ => CodecError::Io(e),
    };
    let mut prefix = [0u8; 4];
    // A peer that closes before sending anything (a port probe) is told apart from one that
    // stops inside a message.
    if what == "hello" && io.read(&mut prefix[..1]).await? == 0 {
        return Err(CodecError::Truncated("closed before sending anything"));
    }
    let from = usize::from(what == "hello");
    io.read_exact(&mut prefix[from..]).await.map_err(eof)?;
    let size = check_prefix(prefix, want, what)?;
    let mut body = vec![0u8; size];
    io.read_exact(&mut body).await.map_err(eof)?;
    Ok(body)
}

/// A read buffer with more spare capacity than this, and little pending, is replaced by a small
/// one: memory taken for one large frame goes back once it is decoded.
const SPARE_KEPT: usize = 1 << 20;

/// A tokio codec reading frames of type `In` and writing frames of type `Out`.
///
/// Outer framing is a 4-byte big-endian length with a size limit: an oversized frame is refused
/// from its length prefix alone, before anything is allocated for it. The limit applies from the
/// first frame on (the handshake that opened the session has proved the peer), but until one
/// frame has been verified, its buffer is reserved no more than [`UNVERIFIED_RESERVE`] ahead of
/// the bytes that arrived: a peer that announces a large frame and sends little costs little.
/// Frames are checked and numbered with the session's [`Opener`] (and written with its
/// [`Sealer`], if the codec has one).
#[derive(Debug)]
pub struct FrameCodec<In, Out> {
    opener: Opener,
    sealer: Option<Sealer>,
    limit: usize,
    verify: Verify,
    /// Whether a frame from the peer has been verified.
    authenticated: bool,
    /// Size of the body being received, once its prefix has been read.
    pending: Option<usize>,
    /// Where the connection's passed descriptors wait for their frames (Unix connections).
    inbox: Option<super::fds::FdInbox>,
    _types: PhantomData<fn(Out) -> In>,
}

impl<In, Out> FrameCodec<In, Out> {
    /// A final receiver's codec ([`Verify::All`]) for both directions of `session`, with the
    /// default size limit.
    pub fn new(session: Session) -> Self {
        Self::with_limit(session, DEFAULT_MAX_FRAME)
    }

    /// A final receiver's codec ([`Verify::All`]) for both directions of `session`, with a
    /// frame size limit in bytes.
    pub fn with_limit(session: Session, limit: usize) -> Self {
        FrameCodec { sealer: Some(session.sealer), ..Self::reading(session.opener, limit, Verify::All) }
    }

    /// A forwarder's codec ([`Verify::HeaderOnly`]) for both directions of `session`: payloads
    /// are not hashed on the way in, and go out only with the MAC they came with.
    pub fn forwarding(session: Session, limit: usize) -> Self {
        FrameCodec {
            sealer: Some(session.sealer),
            ..Self::reading(session.opener, limit, Verify::HeaderOnly)
        }
    }

    /// A codec that only reads, with `opener` (the session's writing half is elsewhere).
    pub fn reading(opener: Opener, limit: usize, verify: Verify) -> Self {
        FrameCodec {
            opener,
            sealer: None,
            limit,
            verify,
            authenticated: false,
            pending: None,
            inbox: None,
            _types: PhantomData,
        }
    }

    /// The same codec, state included (session, limits, authentication, a frame half read), for
    /// other message types.
    pub fn retype<In2, Out2>(self) -> FrameCodec<In2, Out2> {
        let FrameCodec { opener, sealer, limit, verify, authenticated, pending, inbox, .. } = self;
        FrameCodec { opener, sealer, limit, verify, authenticated, pending, inbox, _types: PhantomData }
    }

    /// The same codec on a connection that passes descriptors: frames take theirs from `inbox`.
    pub fn with_fds(self, inbox: super::fds::FdInbox) -> Self {
        FrameCodec { inbox: Some(inbox), ..self }
    }

    /// Whether a frame from the peer has been verified (and a frame's buffer is reserved whole
    /// from its length prefix).
    pub fn is_authenticated(&self) -> bool {
        self.authenticated
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
            // existing allocation, to nearly twice the limit. Before a frame of the peer has
            // been verified, a frame larger than `UNVERIFIED_RESERVE` gets no room ahead: the
            // reads grow the buffer as its bytes arrive (to at most twice what came).
            if src.capacity() < size && (self.authenticated || size <= UNVERIFIED_RESERVE) {
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
        let frame = super::decode_body_fds(&mut self.opener, body, self.verify, self.inbox.as_ref())?;
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
        let sealer = self.sealer.as_mut().ok_or(CodecError::ReadOnly)?;
        let head = encode_head(sealer, &frame, self.limit, self.verify)?;
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
