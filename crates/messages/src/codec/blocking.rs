//! Blocking helpers for clients that use `std::net` sockets.

use std::io::{Read, Write};

use bytes::Bytes;
use serde::{de::DeserializeOwned, Serialize};

use super::{decode_body, encode_head, CodecError, Frame, Key, Verify};

/// Writes one frame (length prefix + signed head, then the buffers from where they are, not
/// copied). Payloads without a MAC are MACed here.
///
/// # Errors
/// Socket errors, or a header that cannot be serialized.
pub fn write_frame<H: Serialize>(w: &mut impl Write, key: &Key, frame: &Frame<H>) -> Result<(), CodecError> {
    let head = encode_head(key, frame, u32::MAX as usize, Verify::All)?;
    w.write_all(&head)?;
    for b in &frame.buffers {
        w.write_all(b.bytes())?;
    }
    w.flush()?;
    Ok(())
}

/// Reads one frame as a final receiver ([`Verify::All`]); `Ok(None)` on a clean end of stream
/// between frames. A frame whose header is authentic but one of whose payloads is not comes
/// back with no buffers and [`Frame::refused`] set.
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
