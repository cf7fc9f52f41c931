//! Generators of hostile input: messages, frames, read chunkings, edits of a byte string, and
//! bodies signed with the right key whose fields lie.

use bytes::{BufMut, Bytes, BytesMut};
use mpx_messages::{
    codec::MAC_LEN, Binding, ClientToController, Frame, Request, RequestId, SubmitRequest, Targets,
};
use proptest::prelude::*;

use super::key;

/// The origin of the honest bindings of [`SignedBody`] buffers.
pub const ORIGIN: u64 = 42;

pub fn any_message() -> impl Strategy<Value = ClientToController> {
    let targets =
        prop_oneof![Just(Targets::All), prop::collection::vec(any::<u32>(), 0..6).prop_map(Targets::ids)];
    prop_oneof![
        Just(ClientToController::InfoRequest),
        Just(ClientToController::ShutdownRequest),
        (any::<u64>(), targets, ".{0,40}").prop_map(|(req_id, targets, code)| {
            ClientToController::SubmitRequest(SubmitRequest {
                source: None,
                internal: false,
                req_id: RequestId(req_id),
                targets,
                request: Request::Execute { code },
            })
        }),
    ]
}

pub fn any_frame(
    max_buffers: usize,
    max_buffer_len: usize,
) -> impl Strategy<Value = Frame<ClientToController>> {
    let buffers = prop::collection::vec(
        prop::collection::vec(any::<u8>(), 0..=max_buffer_len).prop_map(Bytes::from),
        0..=max_buffers,
    );
    (any_message(), buffers).prop_map(|(header, buffers)| Frame::with_buffers(header, buffers))
}

/// Read sizes: tiny reads exercise every split point, large ones whole frames at once.
pub fn chunkings() -> impl Strategy<Value = Vec<usize>> {
    prop::collection::vec(prop_oneof![1usize..8, 1usize..100, 1usize..100_000], 1..8)
}

/// One edit of a byte string.
#[derive(Debug, Clone)]
pub enum Mutation {
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

pub fn mutation() -> impl Strategy<Value = Mutation> {
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

/// Offsets in `wire` (one prefixed frame at its start) where a layout field begins: prefix,
/// signature, sequence number, header length, header, buffer count, descriptors, buffers.
pub fn boundaries(wire: &[u8]) -> Vec<usize> {
    let header_len = u32::from_le_bytes(wire[44..48].try_into().expect("4 bytes")) as usize;
    let n_at = 48 + header_len;
    let n = u32::from_le_bytes(wire[n_at..n_at + 4].try_into().expect("4 bytes")) as usize;
    let data_at = n_at + 4 + super::DESCRIPTOR * n;
    vec![0, 2, 4, 4 + MAC_LEN, 44, 48, n_at, n_at + 4, data_at, wire.len()]
}

/// Applies one edit; `bounds` are the layout boundaries of the frame before any edit.
pub fn apply(bytes: &mut Vec<u8>, m: &Mutation, bounds: &[usize]) {
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
pub struct SignedBody {
    /// The sequence number: 0 (the first frame of the session) or a replay's.
    pub seq: u64,
    pub header: HeaderBytes,
    pub header_len: Field32,
    pub n_buffers: Field32,
    pub buffers: Vec<Vec<u8>>,
    /// Per-buffer declared length: `None` honest, `Some(l)` a lie.
    pub lens: Vec<Option<u64>>,
    /// Extra declared lengths (more lengths than buffers), with zero bindings and MACs.
    pub extra_lens: Vec<u64>,
    /// Corrupt the MAC of this buffer (if there is one).
    pub bad_mac: Option<usize>,
    /// Bind this buffer (with a MAC matching that binding) one place further than it is.
    pub misplaced: Option<usize>,
    /// Bytes appended after the buffers.
    pub trailing: Vec<u8>,
    /// Cut the body (after the signature is computed over the cut body) at this many bytes
    /// from the end.
    pub cut: usize,
}

#[derive(Debug, Clone)]
pub enum HeaderBytes {
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
pub enum Field32 {
    Honest,
    Off(i32),
    Value(u32),
}

impl Field32 {
    pub fn resolve(&self, honest: usize) -> u32 {
        match *self {
            Field32::Honest => honest as u32,
            Field32::Off(d) => (honest as i64 + d as i64).clamp(0, u32::MAX as i64) as u32,
            Field32::Value(v) => v,
        }
    }
}

pub fn field32() -> impl Strategy<Value = Field32> {
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

pub fn huge_len() -> impl Strategy<Value = u64> {
    prop_oneof![
        Just(u64::MAX),
        Just(u64::MAX / 2 + 1),
        Just(1u64 << 32),
        Just(usize::MAX as u64 - 7),
        any::<u64>(),
        0u64..300,
    ]
}

pub fn signed_layout() -> impl Strategy<Value = SignedBody> {
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
    let lies = (
        prop_oneof![6 => Just(vec![]), 1 => prop::collection::vec(huge_len(), 1..3)],
        prop_oneof![6 => Just(vec![]), 1 => prop::collection::vec(any::<u8>(), 1..8)],
        prop_oneof![6 => Just(0usize), 1 => 1usize..16],
        prop_oneof![6 => Just(None), 1 => (0usize..5).prop_map(Some)],
        prop_oneof![6 => Just(None), 1 => (0usize..5).prop_map(Some)],
        prop_oneof![8 => Just(0u64), 1 => 1u64..4, 1 => any::<u64>()],
    );
    (header, field32(), field32(), buffers, lens, lies).prop_map(
        |(header, header_len, n_buffers, buffers, mut lens, lies)| {
            let (extra_lens, trailing, cut, bad_mac, misplaced, seq) = lies;
            lens.truncate(buffers.len());
            SignedBody {
                seq,
                header,
                header_len,
                n_buffers,
                buffers,
                lens,
                extra_lens,
                trailing,
                cut,
                bad_mac,
                misplaced,
            }
        },
    )
}

impl SignedBody {
    /// The body after the signature.
    pub fn rest(&self) -> Vec<u8> {
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
        out.put_u64_le(self.seq);
        out.put_u32_le(self.header_len.resolve(header.len()));
        out.put_slice(&header);
        out.put_u32_le(self.n_buffers.resolve(n_lens));
        for (i, (b, lie)) in self.buffers.iter().zip(self.lens.iter()).enumerate() {
            let shift = u64::from(self.misplaced == Some(i));
            let binding = Binding { origin: ORIGIN, index: i as u64 + shift };
            let mut mac = key().payload_mac(binding, b);
            if self.bad_mac == Some(i) {
                mac[i] ^= 1;
            }
            out.put_u64_le(lie.unwrap_or(b.len() as u64));
            out.put_u64_le(binding.origin);
            out.put_u64_le(binding.index);
            out.put_slice(&mac);
        }
        for &l in &self.extra_lens {
            out.put_u64_le(l);
            out.put_slice(&[0; 16 + MAC_LEN]);
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
