//! Blocking helpers for clients that use `std::net` sockets: the connecting side of the
//! handshake, and frames of an open session.

use std::io::{Read, Write};

use bytes::Bytes;
use serde::{de::DeserializeOwned, Serialize};

use super::{
    encode_head,
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

/// As [`write_frame`], on a Unix connection: the frame's descriptors go with its first byte
/// (see [`super::fds`]).
///
/// # Errors
/// Socket errors, or a header that cannot be serialized.
pub fn write_frame_unix<H: Serialize>(
    sock: &std::os::unix::net::UnixStream,
    sealer: &mut Sealer,
    frame: &Frame<H>,
) -> Result<(), CodecError> {
    use std::{io::IoSlice, os::fd::AsFd};
    let head = encode_head(sealer, frame, u32::MAX as usize, Verify::All)?;
    let outbox = super::fds::FdOutbox::default();
    if !frame.fds.is_empty() {
        outbox.put(frame.fds.clone());
    }
    let parts: Vec<&[u8]> =
        std::iter::once(&head[..]).chain(frame.buffers.iter().map(|b| &b.bytes()[..])).collect();
    let (mut part, mut at) = (0, 0);
    while part < parts.len() {
        let slices: Vec<IoSlice<'_>> = std::iter::once(IoSlice::new(&parts[part][at..]))
            .chain(parts[part + 1..].iter().take(63).map(|p| IoSlice::new(p)))
            .collect();
        let mut n = match outbox.write(sock.as_fd(), &slices) {
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e.into()),
        };
        while n > 0 && part < parts.len() {
            let left = parts[part].len() - at;
            if n >= left {
                n -= left;
                (part, at) = (part + 1, 0);
            } else {
                at += n;
                n = 0;
            }
        }
        while part < parts.len() && parts[part].len() == at {
            (part, at) = (part + 1, 0);
        }
    }
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
    read_frame_fds(r, opener, limit, None)
}

/// As [`read_frame`], on a Unix connection that passes descriptors: the frame takes the ones
/// its head declares from `inbox` (filled by the reads, see [`super::fds::FdReader`]).
///
/// # Errors
/// As [`read_frame`].
pub fn read_frame_fds<H: DeserializeOwned>(
    r: &mut impl Read,
    opener: &mut Opener,
    limit: usize,
    inbox: Option<&super::fds::FdInbox>,
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
    super::decode_body_fds(opener, Bytes::from(body), super::Verify::All, inbox).map(Some)
}
