//! Blocking helpers for clients that use `std::net` sockets: the connecting side of the
//! handshake, and frames of an open session.

use std::io::{Read, Write};

use bytes::Bytes;
use serde::{de::DeserializeOwned, Serialize};

use super::{
    decode_body_fds, encode_head,
    handshake::{check_prefix, ClientHandshake, CHALLENGE_LEN},
    layout::{open_head, DESCRIPTOR_LEN},
    Binding, CodecError, Fds, Frame, Key, Opener, Refused, Sealer, Session, Verify, MAC_LEN, MAX_BUFFERS,
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
    let Some(size) = read_prefix(r, limit)? else { return Ok(None) };
    let body = read_body(r, size)?;
    decode_body_fds(opener, Bytes::from(body), Verify::All, inbox).map(Some)
}

/// Where the payload of a frame may be read in place, chosen from the frame's authentic
/// header (see [`read_frame_landing`]).
pub trait Landing<H> {
    /// The memory the only payload of a frame with `header` is read into, at least `len`
    /// bytes (the first `len` are written), or `None` to read the frame as usual.
    fn place(&mut self, header: &H, len: usize) -> Option<&mut [u8]>;
}

/// What [`read_frame_landing`] read.
#[derive(Debug)]
pub enum Landed<H> {
    /// A frame, its payloads in a buffer of their own (verified as by [`read_frame`]).
    Frame(Frame<H>),
    /// A frame whose only payload was read into the place its [`Landing`] gave.
    InPlace {
        /// The message.
        header: H,
        /// The payload's length (the bytes written at the start of the place).
        len: usize,
        /// The payload's binding.
        binding: Binding,
        /// Set when the payload's MAC does not match: the place then holds bytes that are not
        /// the sender's.
        refused: Option<Refused>,
        /// Descriptors passed with the frame.
        fds: Fds,
    },
}

/// As [`read_frame_fds`], reading a frame's head first: when it has exactly one payload and
/// `landing` gives it a place, the payload is read straight into that place and verified there
/// (no buffer of its own, no copy afterwards: a streamed array's chunks land in the array).
///
/// # Errors
/// As [`read_frame`].
pub fn read_frame_landing<H: DeserializeOwned>(
    r: &mut impl Read,
    opener: &mut Opener,
    limit: usize,
    inbox: Option<&super::fds::FdInbox>,
    landing: &mut impl Landing<H>,
) -> Result<Option<Landed<H>>, CodecError> {
    let Some(size) = read_prefix(r, limit)? else { return Ok(None) };
    // MAC, sequence number and header length: a body shorter than that (a rejection, or a
    // truncated frame) is decoded whole, as by `read_frame`.
    let fixed = MAC_LEN + 12;
    if size < fixed {
        let body = read_body(r, size)?;
        return decode_body_fds(opener, Bytes::from(body), Verify::All, inbox)
            .map(|f| Some(Landed::Frame(f)));
    }
    // The head in up to three reads, each bounded by the frame's size (checked against the
    // limit): the fixed part, the header and count, the payload descriptors.
    let mut head = Vec::with_capacity(fixed);
    read_up_to(r, &mut head, fixed)?;
    let header_len = u32::from_le_bytes(head[fixed - 4..fixed].try_into().expect("4 bytes")) as usize;
    let counted = fixed.saturating_add(header_len).saturating_add(4);
    read_up_to(r, &mut head, counted.min(size))?;
    if head.len() == counted {
        let counts = u32::from_le_bytes(head[counted - 4..].try_into().expect("4 bytes")) as usize;
        let descriptors = DESCRIPTOR_LEN * (counts & 0xffff).min(MAX_BUFFERS + 1);
        read_up_to(r, &mut head, (counted + descriptors).min(size))?;
    }
    let opened = open_head::<H>(opener, &head, size, inbox)?;
    let carried = size - opened.end;
    if let [(len, binding, mac)] = opened.payloads[..] {
        if let Some(place) = landing.place(&opened.header, len as usize) {
            let Some(place) = place.get_mut(..len as usize) else {
                return Err(CodecError::Malformed("a landing place shorter than its payload".into()));
            };
            read_exactly(r, place, "connection closed inside a frame")?;
            let refused =
                (!opener.key().payload_matches(binding, place, &mac)).then_some(Refused { index: 0 });
            let (header, fds, len) = (opened.header, opened.fds, len as usize);
            return Ok(Some(Landed::InPlace { header, len, binding, refused, fds }));
        }
    }
    let body = read_body(r, carried)?;
    Ok(Some(Landed::Frame(opened.with_payloads(opener, Bytes::from(body), Verify::All))))
}

/// The next frame's length prefix, checked against `limit`; `None` on a clean end of stream.
fn read_prefix(r: &mut impl Read, limit: usize) -> Result<Option<usize>, CodecError> {
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
    Ok(Some(size))
}

/// `size` bytes of a frame, read without zero-filling first (a body can be hundreds of
/// megabytes).
fn read_body(r: &mut impl Read, size: usize) -> Result<Vec<u8>, CodecError> {
    let mut body = Vec::with_capacity(size);
    read_up_to(r, &mut body, size)?;
    Ok(body)
}

/// Reads into `buf` until it holds `len` bytes.
fn read_up_to(r: &mut impl Read, buf: &mut Vec<u8>, len: usize) -> Result<(), CodecError> {
    let want = len.saturating_sub(buf.len());
    r.take(want as u64).read_to_end(buf)?;
    if buf.len() < len {
        return Err(CodecError::Truncated("connection closed inside a frame"));
    }
    Ok(())
}
