//! Property tests of the handshake against hostile input: random hellos, challenges and
//! proofs never panic, only a well-formed hello is answered, no random proof or challenge is
//! ever accepted, and two sides with different keys never open a session.
#![cfg(feature = "tokio")] // `cargo test --workspace` enables it

#[allow(dead_code)]
mod fuzz;

use fuzz::cases;
use mpx_messages::{
    codec::{ClientHandshake, NonceHistory, ServerHandshake},
    CodecError, Key,
};
use proptest::prelude::*;

/// A random message, sometimes behind the right magic.
fn message(magic: &'static [u8; 8], len: usize) -> impl Strategy<Value = Vec<u8>> {
    (any::<bool>(), prop::collection::vec(any::<u8>(), 0..=len + 2)).prop_map(move |(keep, mut bytes)| {
        if keep && bytes.len() >= 8 {
            bytes[..8].copy_from_slice(magic);
        }
        bytes
    })
}

proptest! {
    #![proptest_config(cases("random_handshake_messages"))]

    #[test]
    fn random_handshake_messages(
        hello in message(b"MPXHELO1", 40),
        challenge in message(b"MPXCHAL1", 72),
        proof in message(b"MPXPROF1", 40),
    ) {
        let key = Key::new(b"handshake fuzz".to_vec());
        let history = NonceHistory::default();
        // A hello is only its magic and a nonce: anything else is refused.
        let accepted = ServerHandshake::accept(&key, &hello, &history);
        prop_assert_eq!(accepted.is_ok(), hello.len() == 40 && &hello[..8] == b"MPXHELO1");
        // No random proof opens a session.
        if let Ok((server, _)) = accepted {
            prop_assert!(server.finish(&proof).is_err());
        }
        // No random challenge proves the server.
        let (client, _) = ClientHandshake::start(&key).unwrap();
        match client.answer(&challenge) {
            Ok(answer) => prop_assert!(matches!(answer.session, Err(CodecError::Unproven))),
            Err(e) => prop_assert!(matches!(e, CodecError::NotHandshake(_)), "{e}"),
        }
    }
}

proptest! {
    #![proptest_config(cases("handshakes_with_random_keys"))]

    #[test]
    fn handshakes_with_random_keys(a in prop::collection::vec(any::<u8>(), 1..40), b in prop::collection::vec(any::<u8>(), 1..40)) {
        let (ka, kb) = (Key::new(a.clone()), Key::new(b.clone()));
        let (client, hello) = ClientHandshake::start(&ka).unwrap();
        let (server, challenge) = ServerHandshake::accept(&kb, &hello[4..], &NonceHistory::default()).unwrap();
        let answer = client.answer(&challenge[4..]).unwrap();
        let server = server.finish(&answer.proof[4..]);
        prop_assert_eq!(answer.session.is_ok(), a == b);
        prop_assert_eq!(server.is_ok(), a == b);
    }
}
