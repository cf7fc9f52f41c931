//! The frame layout (see the [module docs](super)): encoding a frame's signed head, and
//! verifying and decoding a body.

use bytes::{Buf, Bytes, BytesMut};
use serde::{de::DeserializeOwned, Serialize};

use super::{
    Binding, CodecError, Fds, Frame, Mac, Opener, Payload, Refused, Sealer, Verify, AUTH_REJECTED, MAC_LEN,
    MAX_BUFFERS,
};

/// Bytes of one buffer descriptor: `len | origin | index | MAC`.
pub(crate) const DESCRIPTOR_LEN: usize = 8 + 8 + 8 + MAC_LEN;

/// The length prefix and head of the next frame of `sealer`'s session (everything but the
/// buffers), signed, and counted as sent. Payloads without a MAC are bound to this frame and
/// MACed here unless `verify` is [`Verify::HeaderOnly`] (a forwarder), which refuses them.
///
/// # Errors
/// [`CodecError::BadHeader`], [`CodecError::TooLarge`] or [`CodecError::MissingMac`]; the frame
/// is then not counted.
pub fn encode_head<H: Serialize>(
    sealer: &mut Sealer,
    frame: &Frame<H>,
    limit: usize,
    verify: Verify,
) -> Result<Vec<u8>, CodecError> {
    let header = serde_json::to_vec(&frame.header).map_err(|e| CodecError::BadHeader(e.to_string()))?;
    let n = frame.buffers.len();
    if frame.fds.len() > super::fds::MAX_FDS {
        return Err(CodecError::Malformed(format!(
            "{} descriptors in one frame (at most {})",
            frame.fds.len(),
            super::fds::MAX_FDS
        )));
    }
    let seq = sealer.next_seq();
    let mut head = Vec::with_capacity(4 + MAC_LEN + 16 + header.len() + DESCRIPTOR_LEN * n);
    head.resize(4 + MAC_LEN, 0);
    head.extend_from_slice(&seq.to_le_bytes());
    head.extend_from_slice(&(header.len() as u32).to_le_bytes());
    head.extend_from_slice(&header);
    // The count word: buffers in the low 16 bits, descriptors in the high ones.
    head.extend_from_slice(&(n as u32 | (frame.fds.len() as u32) << 16).to_le_bytes());
    let origin = if n > 0 { sealer.origin(seq) } else { 0 };
    for (i, b) in frame.buffers.iter().enumerate() {
        let binding = b.binding().unwrap_or(Binding { origin, index: i as u64 });
        let mac: Mac = match (b.mac(), verify) {
            (Some(mac), _) => *mac,
            (None, Verify::All) => sealer.key().payload_mac(binding, b.bytes()),
            (None, Verify::HeaderOnly) => return Err(CodecError::MissingMac(i)),
        };
        head.extend_from_slice(&(b.len() as u64).to_le_bytes());
        head.extend_from_slice(&binding.origin.to_le_bytes());
        head.extend_from_slice(&binding.index.to_le_bytes());
        head.extend_from_slice(&mac);
    }
    let size = head.len() - 4 + frame.buffers.iter().map(Payload::len).sum::<usize>();
    if size > limit || size > u32::MAX as usize {
        return Err(CodecError::TooLarge { size, limit });
    }
    let mac = sealer.mac(&head[4 + MAC_LEN..]);
    head[..4].copy_from_slice(&(size as u32).to_be_bytes());
    head[4..4 + MAC_LEN].copy_from_slice(&mac);
    sealer.advance();
    Ok(head)
}

/// Signs and lays out the next frame body of `sealer`'s session (everything inside the length
/// prefix), MACing every payload that has no MAC yet.
///
/// # Errors
/// [`CodecError::BadHeader`] if the header cannot be serialized.
pub fn encode_body<H: Serialize>(sealer: &mut Sealer, frame: &Frame<H>) -> Result<BytesMut, CodecError> {
    let head = encode_head(sealer, frame, u32::MAX as usize, Verify::All)?;
    let payload: usize = frame.buffers.iter().map(Payload::len).sum();
    let mut out = BytesMut::with_capacity(head.len() - 4 + payload);
    out.extend_from_slice(&head[4..]);
    for b in &frame.buffers {
        out.extend_from_slice(b.bytes());
    }
    Ok(out)
}

/// Verifies and decodes the next frame body of `opener`'s session as a final receiver
/// ([`Verify::All`]).
///
/// # Errors
/// Any [`CodecError`] describing why the body was refused.
pub fn decode_body<H: DeserializeOwned>(opener: &mut Opener, body: Bytes) -> Result<Frame<H>, CodecError> {
    decode_body_with(opener, body, Verify::All)
}

/// Verifies and decodes the next frame body of `opener`'s session. The layout's lengths are
/// bounds-checked, then the header MAC and the sequence number are checked before any field is
/// interpreted; buffers are zero-copy slices of `body`, and keep their bindings and MACs. With
/// [`Verify::All`], a payload whose MAC does not match (or whose binding does not continue the
/// first buffer's origin at the next index) makes a frame with no buffers and
/// [`Frame::refused`] set (the header being authentic, the receiver can answer it).
///
/// # Errors
/// Any [`CodecError`] describing why the body was refused.
pub fn decode_body_with<H: DeserializeOwned>(
    opener: &mut Opener,
    body: Bytes,
    verify: Verify,
) -> Result<Frame<H>, CodecError> {
    decode_body_fds(opener, body, verify, None)
}

/// As [`decode_body_with`], on a connection that passes descriptors: the frame takes the ones
/// its authenticated head declares from `inbox` (see [`super::fds`]); without an inbox, a frame
/// declaring any is refused.
///
/// # Errors
/// Any [`CodecError`] describing why the body was refused.
pub fn decode_body_fds<H: DeserializeOwned>(
    opener: &mut Opener,
    body: Bytes,
    verify: Verify,
    inbox: Option<&super::fds::FdInbox>,
) -> Result<Frame<H>, CodecError> {
    if body.as_ref() == AUTH_REJECTED {
        return Err(CodecError::Rejected);
    }
    let head = open_head(opener, &body, body.len(), inbox)?;
    let payloads = body.slice(head.end..);
    Ok(head.with_payloads(opener, payloads, verify))
}

/// A payload's descriptor in a frame's head: its length, binding and MAC.
pub(crate) type Descriptor = (u64, Binding, Mac);

/// A frame's authenticated head: everything before its payloads, checked and decoded.
pub(crate) struct Head<H> {
    /// The message.
    pub header: H,
    /// The payloads' descriptors, in order.
    pub payloads: Vec<Descriptor>,
    /// The descriptors passed with the frame.
    pub fds: Fds,
    /// Where the payloads start in the body.
    pub end: usize,
}

/// Checks and decodes the head at the start of `bytes`, a frame body of `body_len` bytes in
/// all (`bytes` holds at least its head, or the head is refused as truncated). The layout's
/// lengths are bounds-checked, then the header MAC and the sequence number are checked before
/// any field is interpreted.
///
/// # Errors
/// Any [`CodecError`] describing why the head was refused.
pub(crate) fn open_head<H: DeserializeOwned>(
    opener: &mut Opener,
    bytes: &[u8],
    body_len: usize,
    inbox: Option<&super::fds::FdInbox>,
) -> Result<Head<H>, CodecError> {
    if bytes.len() < MAC_LEN + 8 {
        return Err(CodecError::Truncated("shorter than a signature and a sequence number"));
    }
    let mut rest = &bytes[MAC_LEN..];
    let seq = rest.get_u64_le();
    let header_len = take_u32(&mut rest, "header length")? as usize;
    if rest.len() < header_len {
        return Err(CodecError::Truncated("header"));
    }
    let (header_bytes, mut rest) = rest.split_at(header_len);
    let counts = take_u32(&mut rest, "buffer count")? as usize;
    let (n_buffers, n_fds) = (counts & 0xffff, counts >> 16);
    if n_buffers > MAX_BUFFERS {
        return Err(CodecError::Malformed(format!("{n_buffers} buffers (at most {MAX_BUFFERS})")));
    }
    if rest.len() < DESCRIPTOR_LEN * n_buffers {
        return Err(CodecError::Truncated("buffer descriptors"));
    }
    let end = bytes.len() - rest.len() + DESCRIPTOR_LEN * n_buffers;
    opener.check(seq, &bytes[MAC_LEN..end], &bytes[..MAC_LEN])?;
    // The count is authentic now: take the frame's descriptors (even if a payload is refused
    // later, so that the next frame gets its own).
    let fds = match (n_fds, inbox) {
        (0, _) => Fds::default(),
        (n, _) if n > super::fds::MAX_FDS => {
            return Err(CodecError::Malformed(format!("{n} descriptors (at most {})", super::fds::MAX_FDS)))
        }
        (n, Some(inbox)) => inbox.take(n)?,
        (n, None) => {
            return Err(CodecError::Malformed(format!(
                "the frame declares {n} descriptors on a connection that cannot pass them"
            )))
        }
    };
    let mut payloads = Vec::with_capacity(n_buffers);
    let mut total: u64 = 0;
    for _ in 0..n_buffers {
        let len = rest.get_u64_le();
        let binding = Binding { origin: rest.get_u64_le(), index: rest.get_u64_le() };
        let mac: Mac = rest[..MAC_LEN].try_into().expect("32 bytes");
        rest.advance(MAC_LEN);
        total = total.saturating_add(len);
        payloads.push((len, binding, mac));
    }
    let carried = (body_len - end) as u64;
    if total != carried {
        return Err(if total > carried {
            CodecError::Truncated("buffers")
        } else {
            CodecError::Malformed("trailing bytes after the buffers".into())
        });
    }
    let header = serde_json::from_slice(header_bytes).map_err(|e| CodecError::BadHeader(e.to_string()))?;
    Ok(Head { header, payloads, fds, end })
}

impl<H> Head<H> {
    /// The frame, with its payloads: `bytes`, all of them in order (their lengths checked by
    /// [`open_head`]). With [`Verify::All`], a payload whose MAC does not match (or whose binding
    /// does not continue the first buffer's origin at the next index) makes a frame with no
    /// buffers and [`Frame::refused`] set (the header being authentic, the receiver can answer
    /// it).
    pub(crate) fn with_payloads(self, opener: &Opener, mut bytes: Bytes, verify: Verify) -> Frame<H> {
        let Head { header, payloads, fds, .. } = self;
        let mut buffers = Vec::with_capacity(payloads.len());
        let first = payloads.first().map(|(_, b, _)| *b).unwrap_or_default();
        for (i, (len, binding, mac)) in payloads.into_iter().enumerate() {
            let piece = bytes.split_to(len as usize);
            if verify == Verify::All && !payload_holds(opener, first, i, binding, &piece, &mac) {
                return Frame { header, buffers: Vec::new(), refused: Some(Refused { index: i }), fds };
            }
            buffers.push(Payload::with_mac(piece, binding, mac));
        }
        Frame { header, buffers, refused: None, fds }
    }
}

/// Whether payload `i` of a frame whose first payload is bound to `first` is in its place
/// (the same origin, the next index) and carries its MAC.
fn payload_holds(
    opener: &Opener,
    first: Binding,
    i: usize,
    binding: Binding,
    bytes: &[u8],
    mac: &Mac,
) -> bool {
    let in_place = binding.origin == first.origin && binding.index == first.index.wrapping_add(i as u64);
    in_place && opener.key().payload_matches(binding, bytes, mac)
}

fn take_u32(buf: &mut &[u8], what: &'static str) -> Result<u32, CodecError> {
    if buf.len() < 4 {
        return Err(CodecError::Truncated(what));
    }
    Ok(buf.get_u32_le())
}
