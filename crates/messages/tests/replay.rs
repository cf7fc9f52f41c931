//! The handshake and replay protection, without sockets (and over an in-memory duplex for the
//! async side): both sides prove the key, sessions are bound to fresh nonces, frames carry
//! sequence numbers, and payload bindings keep buffers in their place.
#![cfg(feature = "tokio")] // the async handshake; `cargo test --workspace` enables it

use bytes::Bytes;
use mpx_messages::codec::{
    self, decode_body, encode_body, Binding, ClientHandshake, NonceHistory, Payload, ServerHandshake,
};
use mpx_messages::*;

fn key() -> Key {
    Key::new(b"replay test key".to_vec())
}

/// A full handshake between `client_key` and `server_key`: the client's and the server's
/// outcome.
fn handshake(
    client_key: &Key,
    server_key: &Key,
    history: &NonceHistory,
) -> (Result<Session, CodecError>, Result<Session, CodecError>) {
    let (client, hello) = ClientHandshake::start(client_key).unwrap();
    let (server, challenge) = ServerHandshake::accept(server_key, &hello[4..], history).unwrap();
    let answer = client.answer(&challenge[4..]).unwrap();
    (answer.session, server.finish(&answer.proof[4..]))
}

fn submit(req_id: u64) -> Frame<ClientToController> {
    let request = Request::Execute { code: "counter += 1".into() };
    Frame::new(ClientToController::SubmitRequest(SubmitRequest {
        source: None,
        internal: false,
        req_id: RequestId(req_id),
        targets: Targets::All,
        request,
    }))
}

#[test]
fn a_handshake_opens_a_session_whose_frames_each_side_reads() {
    let (client, server) = handshake(&key(), &key(), &NonceHistory::default());
    let (mut client, mut server) = (client.unwrap(), server.unwrap());
    for i in 0..3 {
        let body = encode_body(&mut client.sealer, &submit(i)).unwrap();
        assert_eq!(decode_body::<ClientToController>(&mut server.opener, body.freeze()).unwrap(), submit(i));
        let reply = Frame::new(ControllerToClient::ShutdownReply);
        let body = encode_body(&mut server.sealer, &reply).unwrap();
        assert_eq!(decode_body::<ControllerToClient>(&mut client.opener, body.freeze()).unwrap(), reply);
    }
    // Each direction has its own key: a frame cannot be reflected back to its sender.
    let body = encode_body(&mut client.sealer, &submit(9)).unwrap();
    let reflected = decode_body::<ClientToController>(&mut client.opener, body.freeze());
    assert!(matches!(reflected, Err(CodecError::BadSignature)), "{reflected:?}");
}

#[test]
fn a_wrong_key_fails_on_both_sides() {
    let other = Key::new(b"another cluster".to_vec());
    let (client, server) = handshake(&other, &key(), &NonceHistory::default());
    assert!(matches!(client, Err(CodecError::Unproven)), "{client:?}");
    assert!(matches!(server, Err(CodecError::BadProof)), "{server:?}");
    assert!(client.unwrap_err().to_string().contains("authentication failed"));
}

#[test]
fn a_recorded_handshake_is_refused_by_its_nonce_and_by_its_proof() {
    let history = NonceHistory::default();
    let (client, hello) = ClientHandshake::start(&key()).unwrap();
    let (server, challenge) = ServerHandshake::accept(&key(), &hello[4..], &history).unwrap();
    let answer = client.answer(&challenge[4..]).unwrap();
    server.finish(&answer.proof[4..]).unwrap();
    // The same hello again: its nonce was seen.
    let again = ServerHandshake::accept(&key(), &hello[4..], &history);
    assert!(matches!(again, Err(CodecError::Replayed(_))), "{:?}", again.err());
    // A server that forgot it (another controller) answers with a new nonce, which the
    // recorded proof does not cover.
    let (server, _) = ServerHandshake::accept(&key(), &hello[4..], &NonceHistory::default()).unwrap();
    assert!(matches!(server.finish(&answer.proof[4..]), Err(CodecError::BadProof)));
}

#[test]
fn a_recorded_frame_is_refused_on_another_session_and_out_of_order_on_its_own() {
    let history = NonceHistory::default();
    let (client, server) = handshake(&key(), &key(), &history);
    let (mut client, mut server) = (client.unwrap(), server.unwrap());
    let first = encode_body(&mut client.sealer, &submit(1)).unwrap().freeze();
    let second = encode_body(&mut client.sealer, &submit(2)).unwrap().freeze();
    decode_body::<ClientToController>(&mut server.opener, first.clone()).unwrap();
    // The same frame again on its own connection: authentic, but not the next one.
    let err = decode_body::<ClientToController>(&mut server.opener, first.clone()).unwrap_err();
    assert!(matches!(&err, CodecError::Replayed(why) if why.contains("frame 0")), "{err}");
    // Frames out of order: the second arrives where the first is expected.
    let (_, fresh) = handshake(&key(), &key(), &history);
    let (c, s) = handshake(&key(), &key(), &history);
    let (mut c, mut s) = (c.unwrap(), s.unwrap());
    let a = encode_body(&mut c.sealer, &submit(1)).unwrap().freeze();
    let b = encode_body(&mut c.sealer, &submit(2)).unwrap().freeze();
    assert!(matches!(decode_body::<ClientToController>(&mut s.opener, b), Err(CodecError::Replayed(_))));
    drop(a);
    // On another connection (another session), the recorded frames do not verify at all.
    let mut fresh = fresh.unwrap();
    for recorded in [first, second] {
        let err = decode_body::<ClientToController>(&mut fresh.opener, recorded).unwrap_err();
        assert!(matches!(err, CodecError::BadSignature), "{err}");
    }
}

#[test]
fn payloads_are_bound_to_their_place() {
    let (client, server) = handshake(&key(), &key(), &NonceHistory::default());
    let (mut client, mut server) = (client.unwrap(), server.unwrap());
    // Buffers made here share their frame's fresh origin, at indices 0, 1, ...
    let frame =
        Frame::with_buffers(ClientToController::InfoRequest, vec![Bytes::from("a"), Bytes::from("b")]);
    let got: Frame<ClientToController> =
        decode_body(&mut server.opener, encode_body(&mut client.sealer, &frame).unwrap().freeze()).unwrap();
    let (a, b) = (got.buffers[0].binding().unwrap(), got.buffers[1].binding().unwrap());
    assert_eq!((a.origin, a.index, b.index), (b.origin, 0, 1));
    // The next frame's buffers have another origin.
    let next: Frame<ClientToController> =
        decode_body(&mut server.opener, encode_body(&mut client.sealer, &frame).unwrap().freeze()).unwrap();
    assert_ne!(next.buffers[0].binding().unwrap().origin, a.origin);
    // A buffer taken from one message into another (with its own authentic MAC) is refused;
    // so are two buffers swapped.
    let moved = Frame::with_payloads(
        ClientToController::InfoRequest,
        vec![got.buffers[0].clone(), next.buffers[1].clone()],
    );
    let swapped = Frame::with_payloads(
        ClientToController::InfoRequest,
        vec![got.buffers[1].clone(), got.buffers[0].clone()],
    );
    for (what, frame) in [("moved", moved), ("swapped", swapped)] {
        let got: Frame<ClientToController> =
            decode_body(&mut server.opener, encode_body(&mut client.sealer, &frame).unwrap().freeze())
                .unwrap();
        assert_eq!(got.refused, Some(Refused { index: 1 }), "{what}");
        assert!(got.buffers.is_empty(), "{what}");
    }
    // A chunk bound by its sender keeps its binding through the codec.
    let chunk = Binding { origin: Binding::fresh_origin().unwrap(), index: 7 };
    let frame =
        Frame::with_payloads(ClientToController::InfoRequest, vec![Payload::bound(Bytes::from("c"), chunk)]);
    let got: Frame<ClientToController> =
        decode_body(&mut server.opener, encode_body(&mut client.sealer, &frame).unwrap().freeze()).unwrap();
    assert_eq!(got.buffers[0].binding(), Some(chunk));
}

#[tokio::test]
async fn the_async_handshake_over_a_socket_pair() {
    let (history, key) = (NonceHistory::default(), key());
    let (mut a, mut b) = tokio::io::duplex(1024);
    let (client, server) = tokio::join!(codec::connect(&mut a, &key), codec::accept(&mut b, &key, &history));
    let (mut client, mut server) = (client.unwrap(), server.unwrap());
    let body = encode_body(&mut client.sealer, &submit(1)).unwrap();
    assert_eq!(decode_body::<ClientToController>(&mut server.opener, body.freeze()).unwrap(), submit(1));
    // A wrong key: the client cannot verify the server; the server rejects the proof and says so.
    let (mut a, mut b) = tokio::io::duplex(1024);
    let other = Key::new(b"wrong".to_vec());
    let (client, server) =
        tokio::join!(codec::connect(&mut a, &other), codec::accept(&mut b, &key, &history));
    assert!(matches!(client, Err(CodecError::Unproven)), "{client:?}");
    assert!(matches!(server, Err(CodecError::BadProof)), "{server:?}");
    let mut rest = Vec::new();
    tokio::io::AsyncReadExt::read_to_end(&mut a, &mut rest).await.unwrap();
    assert_eq!(rest, codec::rejection());
    // Not a hello at all.
    let (mut a, mut b) = tokio::io::duplex(1024);
    tokio::io::AsyncWriteExt::write_all(&mut a, b"GET / HTTP/1.1\r\n\r\n").await.unwrap();
    let err = codec::accept(&mut b, &key, &history).await.unwrap_err();
    assert!(matches!(err, CodecError::TooLarge { .. }), "{err}");
}
