//! Property tests of the frame decoder against hostile input: random bytes, mutated and
//! truncated frames, frames signed with the right key but laid out inconsistently, and
//! oversized length prefixes, all fed in random chunkings the way `FramedRead` feeds them.
//!
//! Every property checks that the decoder never panics, that it only ever yields frames that
//! were really sent (and then exactly as sent), that a stream it cannot make sense of always
//! ends in an error, and that neither the read buffer nor any single allocation made while
//! decoding exceeds the size limit plus a small constant.
//!
//! About 105,000 generated inputs run per `cargo test` (see [`CASES`]); set `PROPTEST_CASES`
//! to scale every property at once.
#![cfg(feature = "tokio")] // uses the tokio codec; `cargo test --workspace` enables it

use std::{
    alloc::{GlobalAlloc, Layout, System},
    cell::Cell,
};

use bytes::{BufMut, Bytes, BytesMut};
use mpx_messages::{
    codec::{blocking, decode_body, encode_body, Refused, AUTH_REJECTED, MAC_LEN},
    ClientToController, CodecError, Frame, FrameCodec, Key, Payload, Request, SubmitRequest, Targets,
};
use proptest::{prelude::*, test_runner::Config};
use tokio_util::codec::{Decoder, Encoder};

/// Generated inputs per property, by property. The sum is what a plain `cargo test` runs.
const CASES: [(&str, u32); 6] = [
    ("random_bytes", 30_000),
    ("random_bytes_after_a_plausible_prefix", 20_000),
    ("mutated_frames", 25_000),
    ("signed_but_inconsistent_bodies", 20_000),
    ("oversized_prefixes", 8_000),
    ("valid_streams_up_to_the_limit", 2_000),
];

/// The frame size limit of every decoder under test.
const LIMIT: usize = 64 * 1024;

/// What the read buffer and any single allocation may exceed [`LIMIT`] by: `FramedRead`'s
/// initial 8 KiB read buffer, which it keeps as the "original capacity" of later buffers.
const SLACK: usize = 8 * 1024;

/// `FramedRead`'s initial read buffer capacity.
const FRAMED_READ_INITIAL: usize = 8 * 1024;

fn cases(name: &str) -> Config {
    let n = CASES.iter().find(|(n, _)| *n == name).expect("property listed in CASES").1;
    // PROPTEST_CASES, if set, overrides the per-property counts.
    let n = std::env::var("PROPTEST_CASES").ok().and_then(|v| v.parse().ok()).unwrap_or(n);
    Config { cases: n, failure_persistence: None, ..Config::default() }
}

// ---------------------------------------------------------------------------------------------
// Allocation tracking: the largest single allocation made on this thread while tracking is on.
// ---------------------------------------------------------------------------------------------

/// Wraps the system allocator to record, per thread, the largest allocation requested while
/// [`track`] is running.
struct Tracking;

thread_local! {
    static TRACKING: Cell<bool> = const { Cell::new(false) };
    static LARGEST: Cell<usize> = const { Cell::new(0) };
}

fn note(size: usize) {
    if TRACKING.try_with(Cell::get).unwrap_or(false) {
        let _ = LARGEST.try_with(|l| l.set(l.get().max(size)));
    }
}

// SAFETY: every call is forwarded unchanged to `System`; the thread-locals touched are
// const-initialised `Cell`s without destructors, so recording never allocates or reenters.
unsafe impl GlobalAlloc for Tracking {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        note(layout.size());
        System.alloc(layout)
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        note(layout.size());
        System.alloc_zeroed(layout)
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        note(new_size);
        System.realloc(ptr, layout, new_size)
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        System.dealloc(ptr, layout)
    }
}

#[global_allocator]
static ALLOCATOR: Tracking = Tracking;

/// Runs `f` with allocation tracking on; returns its result and the largest allocation.
fn track<T>(f: impl FnOnce() -> T) -> (T, usize) {
    LARGEST.with(|l| l.set(0));
    TRACKING.with(|t| t.set(true));
    let out = f();
    TRACKING.with(|t| t.set(false));
    (out, LARGEST.with(Cell::get))
}

// ---------------------------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------------------------

type Codec = FrameCodec<ClientToController, ClientToController>;

fn key() -> Key {
    Key::new(b"fuzzing key, 32 bytes long......".to_vec())
}

fn codec() -> Codec {
    FrameCodec::with_limit(key(), LIMIT)
}

/// What happened to one byte stream.
#[derive(Debug)]
struct Outcome {
    /// Frames decoded, in order.
    frames: Vec<Frame<ClientToController>>,
    /// The error that ended the stream, if any.
    error: Option<CodecError>,
    /// Largest read buffer capacity seen after any decoder call.
    max_capacity: usize,
    /// Largest single allocation made while feeding the stream.
    max_alloc: usize,
}

/// Feeds `input` to a fresh decoder exactly as `tokio_util::codec::FramedRead` does: reads go
/// into the spare capacity of the read buffer (at most `chunks[i]` bytes each, cycling), the
/// buffer gets `reserve(1)` before every read, `decode` is called until it has nothing, and at
/// the end of input `decode_eof` is called until it has nothing. The first error ends it.
///
/// With `keep` false, decoded frames are dropped as soon as they are checked against
/// `expect`, so their bytes no longer pin the read buffer (as when a handler is done with them).
fn feed(input: &[u8], chunks: &[usize], keep: bool, expect: Option<&[Frame<ClientToController>]>) -> Outcome {
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
fn assert_bounded(out: &Outcome) {
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

/// A length-prefixed, signed frame, as a peer with the key sends it.
fn wire(frame: &Frame<ClientToController>) -> Vec<u8> {
    let mut buf = BytesMut::new();
    codec().encode(frame.clone(), &mut buf).expect("encodable frame");
    buf.to_vec()
}

/// Where the head of an arbitrary body-after-signature ends, as its own fields declare it
/// (header length, buffer count), clamped to its length.
fn declared_head_len(rest: &[u8]) -> usize {
    let word = |at: usize| rest.get(at..at + 4).map(|w| u32::from_le_bytes(w.try_into().expect("4 bytes")));
    let Some(header_len) = word(0) else { return rest.len() };
    let n_at = 4 + header_len as usize;
    let Some(n) = word(n_at) else { return rest.len() };
    (n_at + 4).saturating_add((n as usize).saturating_mul(8 + MAC_LEN)).min(rest.len())
}

/// Signs an arbitrary body-after-signature with the cluster key: the header MAC over its head as
/// its own fields declare it (what the decoder will check).
fn sign(rest: &[u8]) -> Vec<u8> {
    let mut body = key().header_mac(&rest[..declared_head_len(rest)]).to_vec();
    body.extend_from_slice(rest);
    body
}

fn prefixed(body: &[u8]) -> Vec<u8> {
    let mut out = (body.len() as u32).to_be_bytes().to_vec();
    out.extend_from_slice(body);
    out
}

/// The header bytes of a body, and its buffers with their MACs.
type ReferenceLayout<'a> = (&'a [u8], Vec<(&'a [u8], &'a [u8])>);

/// An independent reading of the frame layout: the header bytes and the buffers with their MACs
/// of a body, or `None` if the layout is inconsistent. Signature and JSON are not checked here.
fn reference_layout(body: &[u8]) -> Option<ReferenceLayout<'_>> {
    let rest = body.get(MAC_LEN..)?;
    let header_len = u32::from_le_bytes(rest.get(..4)?.try_into().ok()?) as usize;
    let header = rest.get(4..4usize.checked_add(header_len)?)?;
    let rest = &rest[4 + header_len..];
    let n = u32::from_le_bytes(rest.get(..4)?.try_into().ok()?) as usize;
    if n > 1024 {
        return None;
    }
    let lens_end = 4usize.checked_add(n.checked_mul(8)?)?;
    let lens: Vec<u64> = rest
        .get(4..lens_end)?
        .chunks_exact(8)
        .map(|c| u64::from_le_bytes(c.try_into().expect("8 bytes")))
        .collect();
    let macs_end = lens_end.checked_add(n.checked_mul(MAC_LEN)?)?;
    let macs = rest.get(lens_end..macs_end)?;
    let mut data = &rest[macs_end..];
    let total = lens.iter().try_fold(0u64, |a, &l| a.checked_add(l))?;
    if total != data.len() as u64 {
        return None;
    }
    let mut buffers = Vec::new();
    for (len, mac) in lens.into_iter().zip(macs.chunks_exact(MAC_LEN)) {
        let (head, tail) = data.split_at(len as usize);
        buffers.push((head, mac));
        data = tail;
    }
    Some((header, buffers))
}

// ---------------------------------------------------------------------------------------------
// Strategies
// ---------------------------------------------------------------------------------------------

fn any_message() -> impl Strategy<Value = ClientToController> {
    let targets =
        prop_oneof![Just(Targets::All), prop::collection::vec(any::<u32>(), 0..6).prop_map(Targets::ids)];
    prop_oneof![
        Just(ClientToController::InfoRequest),
        Just(ClientToController::ShutdownRequest),
        (any::<u64>(), targets, ".{0,40}").prop_map(|(req_id, targets, code)| {
            ClientToController::SubmitRequest(SubmitRequest {
                req_id,
                targets,
                request: Request::Execute { code },
            })
        }),
    ]
}

fn any_frame(max_buffers: usize, max_buffer_len: usize) -> impl Strategy<Value = Frame<ClientToController>> {
    let buffers = prop::collection::vec(
        prop::collection::vec(any::<u8>(), 0..=max_buffer_len).prop_map(Bytes::from),
        0..=max_buffers,
    );
    (any_message(), buffers).prop_map(|(header, buffers)| Frame::with_buffers(header, buffers))
}

/// Read sizes: tiny reads exercise every split point, large ones whole frames at once.
fn chunkings() -> impl Strategy<Value = Vec<usize>> {
    prop::collection::vec(prop_oneof![1usize..8, 1usize..100, 1usize..100_000], 1..8)
}

/// One edit of a byte string.
#[derive(Debug, Clone)]
enum Mutation {
    /// Flip bit `bit` of the byte at `at` (modulo length).
    Flip { at: usize, bit: u8 },
    /// Insert a byte.
    Insert { at: usize, byte: u8 },
    /// Delete a byte.
    Delete { at: usize },
    /// Overwrite four bytes with a little- or big-endian u32 (a plausible length).
    Word { at: usize, value: u32, big_endian: bool },
    /// Cut the string at an offset.
    Truncate { at: usize },
    /// Cut it at a layout boundary of the first frame (prefix, signature, header length, ...),
    /// give or take one byte.
    TruncateAtBoundary { which: usize, delta: i8 },
}

fn mutation() -> impl Strategy<Value = Mutation> {
    prop_oneof![
        (any::<usize>(), 0u8..8).prop_map(|(at, bit)| Mutation::Flip { at, bit }),
        (any::<usize>(), any::<u8>()).prop_map(|(at, byte)| Mutation::Insert { at, byte }),
        any::<usize>().prop_map(|at| Mutation::Delete { at }),
        (any::<usize>(), prop_oneof![any::<u32>(), 0u32..300], any::<bool>())
            .prop_map(|(at, value, big_endian)| Mutation::Word { at, value, big_endian }),
        any::<usize>().prop_map(|at| Mutation::Truncate { at }),
        (0usize..10, -1i8..=1).prop_map(|(which, delta)| Mutation::TruncateAtBoundary { which, delta }),
    ]
}

/// Offsets in `wire` (one prefixed frame at its start) where a layout field begins.
fn boundaries(wire: &[u8]) -> Vec<usize> {
    let header_len = u32::from_le_bytes(wire[36..40].try_into().expect("4 bytes")) as usize;
    let n_at = 40 + header_len;
    let n = u32::from_le_bytes(wire[n_at..n_at + 4].try_into().expect("4 bytes")) as usize;
    let macs_at = n_at + 4 + 8 * n;
    let data_at = macs_at + MAC_LEN * n;
    vec![0, 2, 4, 4 + MAC_LEN, 40, n_at, n_at + 4, macs_at, data_at, wire.len()]
}

/// Applies one edit; `bounds` are the layout boundaries of the frame before any edit.
fn apply(bytes: &mut Vec<u8>, m: &Mutation, bounds: &[usize]) {
    let len = bytes.len();
    match *m {
        Mutation::Flip { at, bit } if len > 0 => bytes[at % len] ^= 1 << bit,
        Mutation::Insert { at, byte } => bytes.insert(at % (len + 1), byte),
        Mutation::Delete { at } if len > 0 => {
            bytes.remove(at % len);
        }
        Mutation::Word { at, value, big_endian } if len >= 4 => {
            let at = at % (len - 3);
            let word = if big_endian { value.to_be_bytes() } else { value.to_le_bytes() };
            bytes[at..at + 4].copy_from_slice(&word);
        }
        Mutation::Truncate { at } => bytes.truncate(at % (len + 1)),
        Mutation::TruncateAtBoundary { which, delta } => {
            let cut = (bounds[which % bounds.len()] as isize + delta as isize).clamp(0, len as isize);
            bytes.truncate(cut as usize);
        }
        _ => {}
    }
}

/// How a signed body's fields are laid out: each either honest or a lie.
#[derive(Debug, Clone)]
struct SignedBody {
    header: HeaderBytes,
    header_len: Field32,
    n_buffers: Field32,
    buffers: Vec<Vec<u8>>,
    /// Per-buffer declared length: `None` honest, `Some(l)` a lie.
    lens: Vec<Option<u64>>,
    /// Extra declared lengths (more lengths than buffers), with zero MACs.
    extra_lens: Vec<u64>,
    /// Corrupt the MAC of this buffer (if there is one).
    bad_mac: Option<usize>,
    /// Bytes appended after the buffers.
    trailing: Vec<u8>,
    /// Cut the body (after the signature is computed over the cut body) at this many bytes
    /// from the end.
    cut: usize,
}

#[derive(Debug, Clone)]
enum HeaderBytes {
    /// A real message, serialized.
    Valid(ClientToController),
    /// A real message, serialized, then cut short.
    Cut(ClientToController, usize),
    /// JSON, but not a message of this channel.
    WrongJson(String),
    /// Not JSON.
    Garbage(Vec<u8>),
}

#[derive(Debug, Clone)]
enum Field32 {
    Honest,
    Off(i32),
    Value(u32),
}

impl Field32 {
    fn resolve(&self, honest: usize) -> u32 {
        match *self {
            Field32::Honest => honest as u32,
            Field32::Off(d) => (honest as i64 + d as i64).clamp(0, u32::MAX as i64) as u32,
            Field32::Value(v) => v,
        }
    }
}

fn field32() -> impl Strategy<Value = Field32> {
    prop_oneof![
        8 => Just(Field32::Honest),
        2 => (-9i32..=9).prop_map(Field32::Off),
        1 => prop_oneof![
            Just(u32::MAX),
            Just(u32::MAX - 3),
            Just(1024),
            Just(1025),
            Just(0x8000_0000),
            any::<u32>()
        ]
        .prop_map(Field32::Value),
    ]
}

fn huge_len() -> impl Strategy<Value = u64> {
    prop_oneof![
        Just(u64::MAX),
        Just(u64::MAX / 2 + 1),
        Just(1u64 << 32),
        Just(usize::MAX as u64 - 7),
        any::<u64>(),
        0u64..300,
    ]
}

fn signed_layout() -> impl Strategy<Value = SignedBody> {
    let header = prop_oneof![
        8 => any_message().prop_map(HeaderBytes::Valid),
        2 => (any_message(), 1usize..20).prop_map(|(m, c)| HeaderBytes::Cut(m, c)),
        1 => prop_oneof![
            Just("{}".to_string()),
            Just("null".to_string()),
            Just(r#"{"msg_type":"Nope"}"#.to_string()),
            Just(r#"{"msg_type":"SubmitRequest","content":{"req_id":-1}}"#.to_string()),
            Just("[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[".to_string()),
            "\\PC{0,30}",
        ]
        .prop_map(HeaderBytes::WrongJson),
        1 => prop::collection::vec(any::<u8>(), 0..40).prop_map(HeaderBytes::Garbage),
    ];
    let buffers = prop::collection::vec(prop::collection::vec(any::<u8>(), 0..40), 0..5);
    let lens = prop::collection::vec(prop_oneof![12 => Just(None), 1 => huge_len().prop_map(Some)], 5);
    (
        header,
        field32(),
        field32(),
        buffers,
        lens,
        prop_oneof![6 => Just(vec![]), 1 => prop::collection::vec(huge_len(), 1..3)],
        prop_oneof![6 => Just(vec![]), 1 => prop::collection::vec(any::<u8>(), 1..8)],
        prop_oneof![6 => Just(0usize), 1 => 1usize..16],
        prop_oneof![6 => Just(None), 1 => (0usize..5).prop_map(Some)],
    )
        .prop_map(
            |(header, header_len, n_buffers, buffers, mut lens, extra_lens, trailing, cut, bad_mac)| {
                lens.truncate(buffers.len());
                SignedBody {
                    header,
                    header_len,
                    n_buffers,
                    buffers,
                    lens,
                    extra_lens,
                    trailing,
                    cut,
                    bad_mac,
                }
            },
        )
}

impl SignedBody {
    /// The body after the signature.
    fn rest(&self) -> Vec<u8> {
        let header: Vec<u8> = match &self.header {
            HeaderBytes::Valid(m) => serde_json::to_vec(m).expect("serializable"),
            HeaderBytes::Cut(m, c) => {
                let mut h = serde_json::to_vec(m).expect("serializable");
                h.truncate(h.len().saturating_sub(*c));
                h
            }
            HeaderBytes::WrongJson(s) => s.clone().into_bytes(),
            HeaderBytes::Garbage(g) => g.clone(),
        };
        let n_lens = self.buffers.len() + self.extra_lens.len();
        let mut out = BytesMut::new();
        out.put_u32_le(self.header_len.resolve(header.len()));
        out.put_slice(&header);
        out.put_u32_le(self.n_buffers.resolve(n_lens));
        for (b, lie) in self.buffers.iter().zip(self.lens.iter()) {
            out.put_u64_le(lie.unwrap_or(b.len() as u64));
        }
        for &l in &self.extra_lens {
            out.put_u64_le(l);
        }
        for (i, b) in self.buffers.iter().enumerate() {
            let mut mac = key().payload_mac(b);
            if self.bad_mac == Some(i) {
                mac[i] ^= 1;
            }
            out.put_slice(&mac);
        }
        for _ in &self.extra_lens {
            out.put_slice(&[0; MAC_LEN]);
        }
        for b in &self.buffers {
            out.put_slice(b);
        }
        out.put_slice(&self.trailing);
        let keep = out.len().saturating_sub(self.cut);
        out.truncate(keep);
        out.to_vec()
    }
}

// ---------------------------------------------------------------------------------------------
// Properties
// ---------------------------------------------------------------------------------------------

proptest! {
    #![proptest_config(cases("random_bytes"))]

    /// (a) Random bytes in random chunkings: never a frame, never a panic, bounded memory,
    /// and the blocking reader agrees that nothing valid is there.
    #[test]
    fn random_bytes(input in prop::collection::vec(any::<u8>(), 0..600), chunks in chunkings()) {
        let out = feed(&input, &chunks, true, None);
        prop_assert!(out.frames.is_empty(), "random bytes decoded to {:?}", out.frames);
        prop_assert_eq!(out.error.is_none(), input.is_empty(), "{:?}", out.error);
        assert_bounded(&out);
        let mut r = input.as_slice();
        let read = blocking::read_frame::<ClientToController>(&mut r, &key(), LIMIT);
        prop_assert!(matches!(read, Err(_) | Ok(None)));
        prop_assert_eq!(matches!(read, Ok(None)), input.is_empty());
    }
}

proptest! {
    #![proptest_config(cases("random_bytes_after_a_plausible_prefix"))]

    /// (a') Random bodies behind a length prefix that fits (so the decoder waits for, then
    /// verifies, the body), including the AUTH_REJECTED marker and bodies shorter than a
    /// signature.
    #[test]
    fn random_bytes_after_a_plausible_prefix(
        declared in prop_oneof![0u32..40, 0u32..700],
        body in prop::collection::vec(any::<u8>(), 0..700),
        marker in any::<bool>(),
        chunks in chunkings(),
    ) {
        let body = if marker { AUTH_REJECTED.to_vec() } else { body };
        let declared = if marker { body.len() as u32 } else { declared };
        let mut input = declared.to_be_bytes().to_vec();
        input.extend_from_slice(&body);
        let out = feed(&input, &chunks, true, None);
        prop_assert!(out.frames.is_empty());
        assert_bounded(&out);
        let err = out.error.expect("an error always ends a stream of random bytes");
        if (declared as usize) > body.len() {
            prop_assert!(matches!(err, CodecError::Truncated(_)), "{err}");
        } else if marker {
            prop_assert!(matches!(err, CodecError::Rejected), "{err}");
        } else if declared < MAC_LEN as u32 {
            prop_assert!(matches!(err, CodecError::Truncated(_)), "{err}");
        } else if (declared as usize) < body.len() && declared > 0 {
            // The first body is random: its layout or its header MAC fails before anything
            // is interpreted.
            prop_assert!(
                matches!(err, CodecError::BadSignature | CodecError::Truncated(_) | CodecError::Malformed(_)),
                "{err}"
            );
        }
    }
}

proptest! {
    #![proptest_config(cases("mutated_frames"))]

    /// (b) A valid frame followed by a mutated one: the first always decodes exactly; from the
    /// mutated one on, the only frames that may come out are the exact frame that was sent
    /// (when an edit left it intact) or its authentic header with its payload refused (when
    /// only payload bytes changed), and a stream that differs from what was sent always ends
    /// in an error or in that refusal.
    #[test]
    fn mutated_frames(
        first in any_frame(2, 30),
        second in any_frame(3, 60),
        mutations in prop::collection::vec(mutation(), 1..4),
        chunks in chunkings(),
    ) {
        let head = wire(&first);
        let tail = wire(&second);
        let bounds = boundaries(&tail);
        let mut mutated = tail.clone();
        for m in &mutations {
            apply(&mut mutated, m, &bounds);
        }
        let mut input = head.clone();
        input.extend_from_slice(&mutated);
        let out = feed(&input, &chunks, true, None);
        assert_bounded(&out);
        prop_assert_eq!(out.frames.first(), Some(&first));
        let refused = |f: &Frame<ClientToController>| {
            f.refused.is_some() && f.buffers.is_empty() && f.header == second.header
        };
        for f in &out.frames[1..] {
            prop_assert!(f == &second || refused(f), "a forged frame got through: {f:?}");
        }
        if mutated == tail {
            prop_assert!(out.error.is_none(), "{:?}", out.error);
            prop_assert_eq!(out.frames.len(), 2);
        } else if mutated.is_empty() {
            prop_assert!(out.error.is_none(), "{:?}", out.error);
            prop_assert_eq!(out.frames.len(), 1);
        } else {
            let caught = out.error.is_some() || out.frames[1..].iter().any(refused);
            prop_assert!(caught, "mutated stream accepted: {:?}", mutations);
        }
    }
}

proptest! {
    #![proptest_config(cases("signed_but_inconsistent_bodies"))]

    /// (c) Bodies signed with the right key but with lying lengths, garbage or foreign JSON,
    /// huge counts, trailing bytes or a wrong payload MAC: they pass the header MAC, so this
    /// tests the parser proper. The decoder must agree with an independent reading of the
    /// layout: it yields a frame exactly when the layout is consistent and the header is a
    /// message, and then the frame holds exactly the declared header and buffers, or none and
    /// the first buffer whose bytes do not match their MAC.
    #[test]
    fn signed_but_inconsistent_bodies(layout in signed_layout(), chunks in chunkings()) {
        let body = sign(&layout.rest());
        let direct = decode_body::<ClientToController>(&key(), Bytes::from(body.clone()));
        let expected = reference_layout(&body).and_then(|(header, buffers)| {
            let header: ClientToController = serde_json::from_slice(header).ok()?;
            let bad = buffers.iter().position(|(b, mac)| key().payload_mac(b)[..] != mac[..]);
            Some(match bad {
                Some(index) => Frame { header, buffers: vec![], refused: Some(Refused { index }) },
                None => Frame::with_payloads(
                    header,
                    buffers.into_iter().map(|(b, _)| Payload::new(Bytes::copy_from_slice(b))).collect(),
                ),
            })
        });
        match (&direct, &expected) {
            (Ok(got), Some(want)) => prop_assert_eq!(got, want),
            (Err(e), None) => prop_assert!(!matches!(e, CodecError::BadSignature), "{e}"),
            _ => prop_assert!(false, "decoder {direct:?}, reference {expected:?}"),
        }
        // Through the streaming decoder, with a valid frame after it.
        let after = Frame::new(ClientToController::InfoRequest);
        let mut input = prefixed(&body);
        input.extend_from_slice(&wire(&after));
        let out = feed(&input, &chunks, true, None);
        assert_bounded(&out);
        match expected {
            Some(want) => {
                prop_assert!(out.error.is_none(), "{:?}", out.error);
                prop_assert_eq!(out.frames, vec![want, after]);
            }
            None => {
                prop_assert!(out.frames.is_empty());
                prop_assert!(out.error.is_some());
            }
        }
    }
}

proptest! {
    #![proptest_config(cases("oversized_prefixes"))]

    /// (d) A length prefix over the limit is refused as soon as its four bytes are in, before
    /// anything is allocated for it; a prefix at or under the limit waits for its body with a
    /// buffer no larger than the limit allows, and fails as truncated at end of input.
    #[test]
    fn oversized_prefixes(
        declared in prop_oneof![
            (LIMIT as u32 + 1)..=u32::MAX,
            Just(LIMIT as u32 + 1),
            Just(u32::MAX),
            (LIMIT as u32 - 64)..=(LIMIT as u32),
        ],
        body in prop::collection::vec(any::<u8>(), 0..2000),
        chunks in chunkings(),
    ) {
        let mut input = declared.to_be_bytes().to_vec();
        input.extend_from_slice(&body);
        let out = feed(&input, &chunks, true, None);
        assert_bounded(&out);
        prop_assert!(out.frames.is_empty());
        let err = out.error.expect("an error");
        if declared as usize > LIMIT {
            prop_assert!(
                matches!(err, CodecError::TooLarge { size, limit: LIMIT } if size == declared as usize),
                "{err}"
            );
            // Refused from the prefix alone: nothing beyond the initial buffer was allocated.
            prop_assert!(out.max_alloc <= FRAMED_READ_INITIAL, "allocated {}", out.max_alloc);
            let read = blocking::read_frame::<ClientToController>(&mut input.as_slice(), &key(), LIMIT);
            prop_assert!(matches!(read, Err(CodecError::TooLarge { .. })), "{:?}", read);
        } else {
            prop_assert!(matches!(err, CodecError::Truncated(_)), "{err}");
        }
    }
}

proptest! {
    #![proptest_config(cases("valid_streams_up_to_the_limit"))]

    /// Streams of valid frames of every size up to the limit, in random chunkings, decode to
    /// exactly what was encoded; the read buffer and every allocation stay within the limit
    /// (frames are dropped once checked, as handlers do, so the buffer can be reclaimed).
    #[test]
    fn valid_streams_up_to_the_limit(
        sizes in prop::collection::vec(prop_oneof![0usize..100, 0usize..(LIMIT - 200)], 1..6),
        seed in any::<u8>(),
        chunks in chunkings(),
        keep in any::<bool>(),
    ) {
        let frames: Vec<_> = sizes
            .iter()
            .enumerate()
            .map(|(i, &n)| {
                let data: Vec<u8> = (0..n).map(|j| (j as u8).wrapping_mul(seed).wrapping_add(i as u8)).collect();
                Frame::with_buffers(ClientToController::InfoRequest, vec![Bytes::from(data)])
            })
            .collect();
        let input: Vec<u8> = frames.iter().flat_map(wire).collect();
        let out = feed(&input, &chunks, keep, Some(&frames));
        prop_assert!(out.error.is_none(), "{:?}", out.error);
        assert_bounded(&out);
    }
}

/// Regression: a frame that arrives while the read buffer still holds (the reclaimable bytes of)
/// a smaller one used to be given room with `BytesMut::reserve`, which doubled the old
/// allocation: two frames of 36 KiB under a 64 KiB limit made a 72 KiB allocation.
#[test]
fn a_second_frame_does_not_double_the_read_buffer() {
    let frames: Vec<_> = [36_787usize, 36_788]
        .iter()
        .map(|&n| Frame::with_buffers(ClientToController::InfoRequest, vec![Bytes::from(vec![1u8; n])]))
        .collect();
    let input: Vec<u8> = frames.iter().flat_map(wire).collect();
    let out = feed(&input, &[9], false, Some(&frames));
    assert!(out.error.is_none(), "{:?}", out.error);
    assert!(out.max_alloc <= LIMIT, "an allocation of {} bytes (limit {LIMIT})", out.max_alloc);
}

/// A frame of exactly the limit is accepted, one byte more is refused, by both readers.
#[test]
fn frame_at_the_limit_is_accepted_and_one_byte_more_refused() {
    let empty = encode_body(&key(), &Frame::new(ClientToController::InfoRequest)).unwrap().len();
    // One buffer adds its 8-byte length and its MAC; fill up to exactly LIMIT.
    let fits = Frame::with_buffers(
        ClientToController::InfoRequest,
        vec![Bytes::from(vec![7u8; LIMIT - empty - 8 - MAC_LEN])],
    );
    let w = wire(&fits);
    assert_eq!(w.len(), 4 + LIMIT);
    let out = feed(&w, &[100_000], true, Some(std::slice::from_ref(&fits)));
    assert!(out.error.is_none(), "{:?}", out.error);
    assert_bounded(&out);
    let back = blocking::read_frame::<ClientToController>(&mut w.as_slice(), &key(), LIMIT).unwrap();
    assert_eq!(back, Some(fits));

    let over = Frame::with_buffers(
        ClientToController::InfoRequest,
        vec![Bytes::from(vec![7u8; LIMIT - empty - 7 - MAC_LEN])],
    );
    let mut buf = BytesMut::new();
    assert!(matches!(codec().encode(over.clone(), &mut buf), Err(CodecError::TooLarge { .. })));
    let body = encode_body(&key(), &over).unwrap();
    let out = feed(&prefixed(&body), &[100_000], true, None);
    assert!(matches!(out.error, Some(CodecError::TooLarge { size, .. }) if size == LIMIT + 1));
}

/// The total number of generated inputs is what the module documentation promises.
#[test]
fn at_least_100k_generated_inputs() {
    let total: u32 = CASES.iter().map(|(_, n)| n).sum();
    assert!(total >= 100_000, "{total}");
}
