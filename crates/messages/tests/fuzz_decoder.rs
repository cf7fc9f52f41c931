//! Property tests of the frame decoder against hostile input: random bytes, mutated and
//! truncated frames, and authentic frames sent again or out of order, all fed in random
//! chunkings the way `FramedRead` feeds them (`fuzz_signed.rs` has the signed but inconsistent
//! bodies and the size limits, `fuzz_handshake.rs` the handshake).
//!
//! Every property checks that the decoder never panics, that it only ever yields frames that
//! were really sent (and then exactly as sent, in order), that a stream it cannot make sense of
//! always ends in an error, and that neither the read buffer nor any single allocation made
//! while decoding exceeds the size limit plus a small constant.
#![cfg(feature = "tokio")] // uses the tokio codec; `cargo test --workspace` enables it

#[allow(dead_code)]
mod fuzz;

use fuzz::{assert_bounded, cases, feed, key, sender_at, strategies::*, wire, LIMIT};
use mpx_messages::{
    codec::{blocking, Nonces, Opener, AUTH_REJECTED, MAC_LEN},
    ClientToController, CodecError, Frame, Session,
};
use proptest::prelude::*;

/// The receiving side of the fuzzed session, for the blocking reader.
fn opener() -> Opener {
    Session::server(&key(), &Nonces { client: [5; 32], server: [6; 32] }).opener
}

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
        let read = blocking::read_frame::<ClientToController>(&mut r, &mut opener(), LIMIT);
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
        } else if declared < MAC_LEN as u32 + 8 {
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
        let mut sender = sender_at(0);
        let head = wire(&mut sender, &first);
        let tail = wire(&mut sender, &second);
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
    #![proptest_config(cases("replayed_frames"))]

    /// (e) Authentic frames of the session sent again (a recorded frame replayed later on the
    /// same connection) or swapped: every frame before the first one out of its place decodes
    /// exactly, that one ends the stream as a replay, and nothing after it comes out.
    #[test]
    fn replayed_frames(
        frames in prop::collection::vec(any_frame(2, 30), 1..6),
        pick in any::<prop::sample::Index>(),
        at in any::<prop::sample::Index>(),
        swap in any::<bool>(),
        chunks in chunkings(),
    ) {
        let mut sender = sender_at(0);
        let mut wires: Vec<Vec<u8>> = frames.iter().map(|f| wire(&mut sender, f)).collect();
        let n = wires.len();
        // The first frame out of its place, and the stream as it goes.
        let first_bad = if swap && n >= 2 {
            let i = pick.index(n - 1);
            wires.swap(i, i + 1);
            i
        } else {
            let j = pick.index(n);
            let k = j + 1 + at.index(n - j);
            wires.insert(k, wires[j].clone());
            k
        };
        let input: Vec<u8> = wires.concat();
        let out = feed(&input, &chunks, true, None);
        assert_bounded(&out);
        prop_assert_eq!(&out.frames[..], &frames[..first_bad]);
        prop_assert!(matches!(out.error, Some(CodecError::Replayed(_))), "{:?}", out.error);
    }
}
