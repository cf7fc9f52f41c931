//! Property tests of the frame decoder against bodies signed with the right key but laid out
//! inconsistently (the parser proper), oversized length prefixes, and valid streams up to the
//! size limit, fed in random chunkings the way `FramedRead` feeds them. The read buffer and any
//! single allocation made while decoding stay within the size limit plus a small constant.
#![cfg(feature = "tokio")] // uses the tokio codec; `cargo test --workspace` enables it

#[allow(dead_code)]
mod fuzz;

use bytes::{Bytes, BytesMut};
use fuzz::{
    assert_bounded, cases, feed, key, prefixed, reference_layout, sender_at, sign, strategies::*, wire,
    CASES, DESCRIPTOR, FRAMED_READ_INITIAL, LIMIT,
};
use mpx_messages::{
    codec::{blocking, decode_body, encode_body, Nonces, Opener, Refused, Sealer},
    ClientToController, CodecError, Frame, Payload, Session,
};
use proptest::prelude::*;
use tokio_util::codec::Encoder;

const NONCES: Nonces = Nonces { client: [5; 32], server: [6; 32] };

/// The receiving side of the fuzzed session.
fn opener() -> Opener {
    Session::server(&key(), &NONCES).opener
}

/// The sending side of the fuzzed session, at its first frame.
fn sender_sealer() -> Sealer {
    Session::client(&key(), &NONCES).sealer
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
        let direct = decode_body::<ClientToController>(&mut opener(), Bytes::from(body.clone()));
        let expected = reference_layout(&body).and_then(|(seq, header, buffers)| {
            if seq != 0 {
                return None;
            }
            let header: ClientToController = serde_json::from_slice(header).ok()?;
            let first = buffers.first().map(|(_, b, _)| *b).unwrap_or_default();
            let bad = buffers.iter().enumerate().position(|(i, (b, binding, mac))| {
                let in_place = binding.origin == first.origin && binding.index == first.index.wrapping_add(i as u64);
                !in_place || key().payload_mac(*binding, b)[..] != mac[..]
            });
            Some(match bad {
                Some(index) => Frame { header, buffers: vec![], refused: Some(Refused { index }), fds: Default::default() },
                None => Frame::with_payloads(
                    header,
                    buffers.into_iter().map(|(b, _, _)| Payload::new(Bytes::copy_from_slice(b))).collect(),
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
        input.extend_from_slice(&wire(&mut sender_at(1), &after));
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
            let read = blocking::read_frame::<ClientToController>(&mut input.as_slice(), &mut opener(), LIMIT);
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
        let mut sender = sender_at(0);
        let input: Vec<u8> = frames.iter().flat_map(|f| wire(&mut sender, f)).collect();
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
    let mut sender = sender_at(0);
    let input: Vec<u8> = frames.iter().flat_map(|f| wire(&mut sender, f)).collect();
    let out = feed(&input, &[9], false, Some(&frames));
    assert!(out.error.is_none(), "{:?}", out.error);
    assert!(out.max_alloc <= LIMIT, "an allocation of {} bytes (limit {LIMIT})", out.max_alloc);
}

/// A frame of exactly the limit is accepted, one byte more is refused, by both readers.
#[test]
fn frame_at_the_limit_is_accepted_and_one_byte_more_refused() {
    let empty =
        encode_body(&mut sender_sealer(), &Frame::new(ClientToController::InfoRequest)).unwrap().len();
    // One buffer adds its descriptor; fill up to exactly LIMIT.
    let fits = Frame::with_buffers(
        ClientToController::InfoRequest,
        vec![Bytes::from(vec![7u8; LIMIT - empty - DESCRIPTOR])],
    );
    let w = wire(&mut sender_at(0), &fits);
    assert_eq!(w.len(), 4 + LIMIT);
    let out = feed(&w, &[100_000], true, Some(std::slice::from_ref(&fits)));
    assert!(out.error.is_none(), "{:?}", out.error);
    assert_bounded(&out);
    let back = blocking::read_frame::<ClientToController>(&mut w.as_slice(), &mut opener(), LIMIT).unwrap();
    assert_eq!(back, Some(fits));

    let over = Frame::with_buffers(
        ClientToController::InfoRequest,
        vec![Bytes::from(vec![7u8; LIMIT - empty - DESCRIPTOR + 1])],
    );
    let mut buf = BytesMut::new();
    assert!(matches!(sender_at(0).encode(over.clone(), &mut buf), Err(CodecError::TooLarge { .. })));
    let body = encode_body(&mut sender_sealer(), &over).unwrap();
    let out = feed(&prefixed(&body), &[100_000], true, None);
    assert!(matches!(out.error, Some(CodecError::TooLarge { size, .. }) if size == LIMIT + 1));
}

/// The total number of generated inputs is what the module documentation promises.
#[test]
fn at_least_100k_generated_inputs() {
    let total: u32 = CASES.iter().map(|(_, n)| n).sum();
    assert!(total >= 100_000, "{total}");
}
