//! Blocking helpers for clients that use `std::net` sockets: the connecting side of the
//! handshake, and frames of an open session.

use std::io::{Read, Write};

use bytes::Bytes;
use serde::{de::DeserializeOwned, Serialize};

use super::{
    decode_body, encode_head,
    handshake::{check_prefix, ClientHandshake, CHALLENGE_LEN},
    CodecError, Frame, Key, Opener, Sealer, Session, Verify,
};

/// Opens a session on a fresh connection as its connecting side: hello, the server's
/// challenge, proof. The caller bounds the wait (a read timeout on the socket).
///
/// # Errors
/// [`CodecError::Unproven`] when the server does not hold `key` (the proof is sent anyway, so
/// the server logs it), [`CodecError::Rejected`], [`CodecError::NotHandshake`] or socket errors.
pub fn connect(stream: &mut (impl Read + Write), key: &Key) -> Result<Session, CodecError> {
    let (handshake, hello) = ClientHandshake::start(key)?;
    stream.write_all(&hello)?;
    stream.flush()?;
    let mut prefix = [0u8; 4];
    read_exactly(stream, &mut prefix, "challenge")?;
    let size = check_prefix(prefix, CHALLENGE_LEN, "challenge")?;
    let mut body = vec![0u8; size];
    read_exactly(stream, &mut body, "challenge")?;
    let answer = handshake.answer(&body)?;
    stream.write_all(&answer.proof)?;
    stream.flush()?;
    answer.session
}

fn read_exactly(r: &mut impl Read, buf: &mut [u8], what: &'static str) -> Result<(), CodecError> {
    r.read_exact(buf).map_err(|e| match e.kind() {
        std::io::ErrorKind::UnexpectedEof => CodecError::Truncated(what),
        _ => CodecError::Io(e),
    })
}

/// Writes the next frame of `sealer`'s session (length prefix + signed head, then the buffers
/// from where they are, not copied). Payloads without a MAC are MACed here.
///
/// # Errors
/// Socket errors, or a header that cannot be serialized.
pub fn write_frame<H: Serialize>(
    w: &mut impl Write,
    sealer: &mut Sealer,
    frame: &Frame<H>,
) -> Result<(), CodecError> {
    let head = encode_head(sealer, frame, u32::MAX as usize, Verify::All)?;
    w.write_all(&head)?;
    for b in &frame.buffers {
        w.write_all(b.bytes())?;
    }
    w.flush()?;
    Ok(())
}

/// Reads the next frame of `opener`'s session as a final receiver ([`Verify::All`]); `Ok(None)`
/// on a clean end of stream between frames. A frame whose header is authentic but one of whose
/// payloads is not comes back with no buffers and [`Frame::refused`] set.
///
/// # Errors
/// Socket errors, a frame over `limit`, or any verification/decoding failure (a frame out of
/// sequence is [`CodecError::Replayed`]).
pub fn read_frame<H: DeserializeOwned>(
    r: &mut impl Read,
    opener: &mut Opener,
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
    decode_body(opener, Bytes::from(body)).map(Some)
}
