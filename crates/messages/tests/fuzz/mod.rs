//! What the decoder property tests share: the case counts, allocation tracking, a session, and
//! a feeder that drives the decoder exactly as `FramedRead` does.
//!
//! About 110,000 generated inputs run per `cargo test` over the fuzz_* test files (see
//! [`CASES`]); set `PROPTEST_CASES` to scale every property at once.

pub mod alloc;
pub mod strategies;

use bytes::BytesMut;
use mpx_messages::{
    codec::{Nonces, MAC_LEN},
    Binding, ClientToController, CodecError, Frame, FrameCodec, Key, Session, Verify,
};
use proptest::test_runner::Config;
use tokio_util::codec::{Decoder, Encoder};

use alloc::track;

/// Generated inputs per property, by property. The sum is what a plain `cargo test` runs.
pub const CASES: [(&str, u32); 9] = [
    ("random_bytes", 30_000),
    ("random_bytes_after_a_plausible_prefix", 20_000),
    ("mutated_frames", 25_000),
    ("replayed_frames", 3_000),
    ("signed_but_inconsistent_bodies", 20_000),
    ("oversized_prefixes", 8_000),
    ("valid_streams_up_to_the_limit", 2_000),
    ("random_handshake_messages", 3_000),
    ("handshakes_with_random_keys", 500),
];

/// The frame size limit of every decoder under test.
pub const LIMIT: usize = 64 * 1024;

/// What the read buffer and any single allocation may exceed [`LIMIT`] by: `FramedRead`'s
/// initial 8 KiB read buffer, which it keeps as the "original capacity" of later buffers.
pub const SLACK: usize = 8 * 1024;

/// `FramedRead`'s initial read buffer capacity.
pub const FRAMED_READ_INITIAL: usize = 8 * 1024;

/// Bytes of one buffer descriptor: length, origin, index, MAC.
pub const DESCRIPTOR: usize = 8 + 8 + 8 + MAC_LEN;

/// The configuration of the property `name`.
pub fn cases(name: &str) -> Config {
    let n = CASES.iter().find(|(n, _)| *n == name).expect("property listed in CASES").1;
    // PROPTEST_CASES, if set, overrides the per-property counts.
    let n = std::env::var("PROPTEST_CASES").ok().and_then(|v| v.parse().ok()).unwrap_or(n);
    Config { cases: n, failure_persistence: None, ..Config::default() }
}

/// The decoder under test: the controller's side of a session.
pub type Codec = FrameCodec<ClientToController, ()>;

/// The sender: the client's side of the same session.
pub type Sender = FrameCodec<(), ClientToController>;

pub fn key() -> Key {
    Key::new(b"fuzzing key, 32 bytes long......".to_vec())
}

const NONCES: Nonces = Nonces { client: [5; 32], server: [6; 32] };

/// A fresh decoder (expecting the session's frame 0).
pub fn codec() -> Codec {
    FrameCodec::reading(Session::server(&key(), &NONCES).opener, LIMIT, Verify::All)
}

/// A fresh sender whose next frame is frame `seq` of the session.
pub fn sender_at(seq: u64) -> Sender {
    let mut sender = FrameCodec::with_limit(Session::client(&key(), &NONCES), LIMIT);
    for _ in 0..seq {
        wire(&mut sender, &Frame::new(ClientToController::InfoRequest));
    }
    sender
}

/// A length-prefixed, signed frame, the sender's next, as a peer with the key sends it.
pub fn wire(sender: &mut Sender, frame: &Frame<ClientToController>) -> Vec<u8> {
    let mut buf = BytesMut::new();
    sender.encode(frame.clone(), &mut buf).expect("encodable frame");
    buf.to_vec()
}

/// What happened to one byte stream.
#[derive(Debug)]
pub struct Outcome {
    /// Frames decoded, in order.
    pub frames: Vec<Frame<ClientToController>>,
    /// The error that ended the stream, if any.
    pub error: Option<CodecError>,
    /// Largest read buffer capacity seen after any decoder call.
    pub max_capacity: usize,
    /// Largest single allocation made while feeding the stream.
    pub max_alloc: usize,
}

/// Feeds `input` to a fresh decoder exactly as `tokio_util::codec::FramedRead` does: reads go
/// into the spare capacity of the read buffer (at most `chunks[i]` bytes each, cycling), the
/// buffer gets `reserve(1)` before every read, `decode` is called until it has nothing, and at
/// the end of input `decode_eof` is called until it has nothing. The first error ends it.
///
/// With `keep` false, decoded frames are dropped as soon as they are checked against
/// `expect`, so their bytes no longer pin the read buffer (as when a handler is done with them).
pub fn feed(
    input: &[u8],
    chunks: &[usize],
    keep: bool,
    expect: Option<&[Frame<ClientToController>]>,
) -> Outcome {
    let mut codec = codec();
    let mut frames = Vec::new();
    let mut decoded = 0;
    let mut max_capacity = 0;
    let (result, max_alloc) = track(|| {
        let mut buf = BytesMut::with_capacity(FRAMED_READ_INITIAL);
        let mut pos = 0;
        let mut turn = 0;
        let mut take = |frame: Frame<ClientToController>| {
            if let Some(expect) = expect {
                assert_eq!(Some(&frame), expect.get(decoded), "frame {decoded} differs");
            }
            decoded += 1;
            if keep {
                frames.push(frame);
            }
        };
        loop {
            loop {
                let res = codec.decode(&mut buf);
                note_capacity(&mut max_capacity, &buf);
                match res? {
                    Some(frame) => take(frame),
                    None => break,
                }
            }
            if pos == input.len() {
                loop {
                    let res = codec.decode_eof(&mut buf);
                    note_capacity(&mut max_capacity, &buf);
                    match res? {
                        Some(frame) => take(frame),
                        None => return Ok::<(), CodecError>(()),
                    }
                }
            }
            buf.reserve(1);
            let spare = buf.capacity() - buf.len();
            let chunk = chunks[turn % chunks.len()].max(1);
            turn += 1;
            let n = spare.min(chunk).min(input.len() - pos);
            buf.extend_from_slice(&input[pos..pos + n]);
            pos += n;
            note_capacity(&mut max_capacity, &buf);
        }
    });
    Outcome { frames, error: result.err(), max_capacity, max_alloc }
}

fn note_capacity(max: &mut usize, buf: &BytesMut) {
    *max = (*max).max(buf.capacity());
}

/// Asserts the memory bounds of one fed stream.
pub fn assert_bounded(out: &Outcome) {
    assert!(
        out.max_capacity <= LIMIT + SLACK,
        "read buffer grew to {} bytes (limit {LIMIT})",
        out.max_capacity
    );
    assert!(
        out.max_alloc <= LIMIT + SLACK,
        "an allocation of {} bytes while decoding (limit {LIMIT})",
        out.max_alloc
    );
}

/// Where the head of an arbitrary body-after-signature ends, as its own fields declare it
/// (sequence number, header length, buffer count), clamped to its length.
pub fn declared_head_len(rest: &[u8]) -> usize {
    let word = |at: usize| rest.get(at..at + 4).map(|w| u32::from_le_bytes(w.try_into().expect("4 bytes")));
    let Some(header_len) = word(8) else { return rest.len() };
    let n_at = 12 + header_len as usize;
    let Some(counts) = word(n_at) else { return rest.len() };
    // Buffers in the count word's low 16 bits (descriptors in the high ones).
    let n = counts & 0xffff;
    (n_at + 4).saturating_add((n as usize).saturating_mul(DESCRIPTOR)).min(rest.len())
}

/// Signs an arbitrary body-after-signature with the session's key: the header MAC over its head
/// as its own fields declare it (what the decoder will check).
pub fn sign(rest: &[u8]) -> Vec<u8> {
    let sealer = Session::client(&key(), &NONCES).sealer;
    let mut body = sealer.mac(&rest[..declared_head_len(rest)]).to_vec();
    body.extend_from_slice(rest);
    body
}

pub fn prefixed(body: &[u8]) -> Vec<u8> {
    let mut out = (body.len() as u32).to_be_bytes().to_vec();
    out.extend_from_slice(body);
    out
}

/// One buffer as the layout declares it: bytes, binding, MAC.
pub type ReferenceBuffer<'a> = (&'a [u8], Binding, &'a [u8]);

/// An independent reading of the frame layout: the sequence number, the header bytes and the
/// buffers of a body, or `None` if the layout is inconsistent. Signature and JSON are not
/// checked here.
pub fn reference_layout(body: &[u8]) -> Option<(u64, &[u8], Vec<ReferenceBuffer<'_>>)> {
    let u64_at =
        |b: &[u8], at: usize| b.get(at..at + 8).map(|w| u64::from_le_bytes(w.try_into().expect("8")));
    let rest = body.get(MAC_LEN..)?;
    let seq = u64_at(rest, 0)?;
    let header_len = u32::from_le_bytes(rest.get(8..12)?.try_into().ok()?) as usize;
    let header = rest.get(12..12usize.checked_add(header_len)?)?;
    let rest = &rest[12 + header_len..];
    let counts = u32::from_le_bytes(rest.get(..4)?.try_into().ok()?) as usize;
    // Buffers in the low 16 bits; a frame declaring descriptors is refused where none can pass.
    let (n, fds) = (counts & 0xffff, counts >> 16);
    if n > 1024 || fds > 0 {
        return None;
    }
    let descriptors = rest.get(4..4usize.checked_add(n.checked_mul(DESCRIPTOR)?)?)?;
    let mut data = &rest[4 + n * DESCRIPTOR..];
    let lens: Vec<u64> = descriptors.chunks_exact(DESCRIPTOR).map(|d| u64_at(d, 0).expect("8")).collect();
    let total = lens.iter().try_fold(0u64, |a, &l| a.checked_add(l))?;
    if total != data.len() as u64 {
        return None;
    }
    let mut buffers = Vec::new();
    for d in descriptors.chunks_exact(DESCRIPTOR) {
        let (bytes, tail) = data.split_at(u64_at(d, 0)? as usize);
        let binding = Binding { origin: u64_at(d, 8)?, index: u64_at(d, 16)? };
        buffers.push((bytes, binding, &d[24..]));
        data = tail;
    }
    Some((seq, header, buffers))
}
