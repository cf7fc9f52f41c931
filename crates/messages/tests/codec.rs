//! Codec unit tests: round trips, bad signatures, truncation, size limits.

use bytes::{Bytes, BytesMut};
use mpx_messages::codec::{blocking, decode_body, encode_body, AUTH_REJECTED};
use mpx_messages::*;
use tokio_util::codec::{Decoder, Encoder};

fn key() -> Key {
    Key::new(b"0123456789abcdef".to_vec())
}

fn sample() -> Frame<ClientToController> {
    Frame::with_buffers(
        ClientToController::SubmitRequest(SubmitRequest {
            req_id: 7,
            targets: Targets::List(vec![0, 2]),
            task: Task::Execute { code: "let a = rand(100);\nprint(a)".into() },
        }),
        vec![Bytes::from_static(b"\x00\x01\x02"), Bytes::new(), Bytes::from(vec![9u8; 1000])],
    )
}

#[test]
fn round_trip_through_tokio_codec() {
    let mut codec: FrameCodec<ClientToController, ClientToController> = FrameCodec::new(key());
    let mut buf = BytesMut::new();
    codec.encode(sample(), &mut buf).unwrap();
    codec.encode(Frame::new(ClientToController::InfoRequest), &mut buf).unwrap();
    assert_eq!(codec.decode(&mut buf).unwrap(), Some(sample()));
    assert_eq!(codec.decode(&mut buf).unwrap(), Some(Frame::new(ClientToController::InfoRequest)));
    assert_eq!(codec.decode(&mut buf).unwrap(), None);
}

#[test]
fn round_trip_blocking() {
    let mut wire = Vec::new();
    blocking::write_frame(&mut wire, &key(), &sample()).unwrap();
    let back: Frame<ClientToController> =
        blocking::read_frame(&mut wire.as_slice(), &key(), DEFAULT_MAX_FRAME).unwrap().unwrap();
    assert_eq!(back, sample());
    // A clean end of stream between frames is not an error.
    let none: Option<Frame<ClientToController>> =
        blocking::read_frame(&mut [].as_slice(), &key(), DEFAULT_MAX_FRAME).unwrap();
    assert!(none.is_none());
}

#[test]
fn every_message_kind_round_trips_as_json() {
    let engine_msgs = vec![
        EngineToController::RegisterRequest(RegisterRequest {
            rank: 3,
            size: 4,
            pid: 99,
            hostname: "h".into(),
            world: vec![RankInfo { rank: 0, pid: 98, hostname: "h".into() }],
            set: Some(1),
        }),
        EngineToController::TaskReply(TaskReply {
            task_id: 1,
            outcome: Outcome {
                stdout: "x\n".into(),
                error: Some(RemoteError {
                    ename: "RuntimeError".into(),
                    evalue: "boom".into(),
                    line: Some(2),
                    traceback: String::new(),
                }),
                ..Default::default()
            },
        }),
    ];
    let mut engine_msgs = engine_msgs;
    engine_msgs.push(EngineToController::Pong { seq: 9 });
    engine_msgs.push(EngineToController::Status {
        req: 3,
        state: EngineState {
            activity: "mpi".into(),
            cell: Some(7),
            call: Some("allreduce".into()),
            comm: Some("COMM_WORLD".into()),
            seconds: 1.25,
            detail: Some("<cell-3> line 2".into()),
        },
    });
    for m in engine_msgs {
        let body = encode_body(&key(), &Frame::new(m.clone())).unwrap();
        let back: Frame<EngineToController> = decode_body(&key(), body.freeze()).unwrap();
        assert_eq!(back.header, m);
    }
    let to_engine = vec![
        ControllerToEngine::RegisterReply(RegisterReply {
            engine_id: Some(1),
            cluster_id: "c".into(),
            error: None,
            heartbeat_ms: 1000,
            set: Some(1),
        }),
        ControllerToEngine::TaskRequest(TaskRequest { task_id: 5, task: Task::Execute { code: "1".into() } }),
        ControllerToEngine::TaskRequest(TaskRequest {
            task_id: 6,
            task: Task::Scatter {
                name: "a".into(),
                array: ArrayMeta { dtype: Dtype::Bool, shape: vec![4, 0, 2], buffer: 0 },
                group: vec![0, 2],
                rows: vec![2, 2],
            },
        }),
        ControllerToEngine::TaskRequest(TaskRequest {
            task_id: 7,
            task: Task::Apply {
                function: "f".into(),
                args: vec![Arg::Float(1.5), Arg::Int(-2), Arg::Bool(true), Arg::Str("s".into())],
            },
        }),
        ControllerToEngine::Shutdown,
        ControllerToEngine::Ping { seq: 9 },
        ControllerToEngine::Interrupt,
        ControllerToEngine::StatusRequest { req: 3 },
    ];
    for m in to_engine {
        let body = encode_body(&key(), &Frame::new(m.clone())).unwrap();
        let back: Frame<ControllerToEngine> = decode_body(&key(), body.freeze()).unwrap();
        assert_eq!(back.header, m);
    }
}

#[test]
fn wrong_key_is_rejected() {
    let body = encode_body(&key(), &sample()).unwrap();
    let other = Key::new(b"not the key".to_vec());
    let err = decode_body::<ClientToController>(&other, body.freeze()).unwrap_err();
    assert!(matches!(err, CodecError::BadSignature), "{err}");
}

#[test]
fn any_flipped_byte_is_rejected() {
    let body = encode_body(&key(), &sample()).unwrap().freeze();
    for i in (0..body.len()).step_by(7) {
        let mut bad = body.to_vec();
        bad[i] ^= 0x40;
        let err = decode_body::<ClientToController>(&key(), Bytes::from(bad)).unwrap_err();
        assert!(matches!(err, CodecError::BadSignature), "byte {i}: {err}");
    }
}

#[test]
fn truncated_frames_are_rejected() {
    let mut wire = Vec::new();
    blocking::write_frame(&mut wire, &key(), &sample()).unwrap();
    for cut in [1, 3, 4, 10, 40, wire.len() / 2, wire.len() - 1] {
        let err = blocking::read_frame::<ClientToController>(&mut &wire[..cut], &key(), DEFAULT_MAX_FRAME)
            .unwrap_err();
        assert!(matches!(err, CodecError::Truncated(_)), "cut {cut}: {err}");
    }
    // Through the tokio codec: a partial frame is "not yet", and at EOF it is an error.
    let mut codec: FrameCodec<ClientToController, ClientToController> = FrameCodec::new(key());
    let mut buf = BytesMut::from(&wire[..wire.len() - 5]);
    assert!(codec.decode(&mut buf).unwrap().is_none());
    assert!(matches!(codec.decode_eof(&mut buf), Err(CodecError::Truncated(_))));
}

#[test]
fn a_signed_but_inconsistent_body_is_rejected() {
    // Correctly signed by someone with the key, but the declared buffer lengths lie.
    let mut body = encode_body(&key(), &sample()).unwrap();
    body.truncate(body.len() - 10);
    let mut mac_input = body[32..].to_vec();
    let resigned = {
        use hmac::{Hmac, Mac};
        let mut mac = <Hmac<sha2::Sha256> as Mac>::new_from_slice(b"0123456789abcdef").unwrap();
        mac.update(&mac_input);
        mac.finalize().into_bytes()
    };
    let mut bad = resigned.to_vec();
    bad.append(&mut mac_input);
    let err = decode_body::<ClientToController>(&key(), Bytes::from(bad)).unwrap_err();
    assert!(matches!(err, CodecError::Truncated(_)), "{err}");
}

#[test]
fn oversized_frame_is_refused_from_its_prefix() {
    let mut codec: FrameCodec<ClientToController, ClientToController> = FrameCodec::with_limit(key(), 1024);
    let mut buf = BytesMut::from(&(1_000_000u32).to_be_bytes()[..]);
    let err = codec.decode(&mut buf).unwrap_err();
    assert!(matches!(err, CodecError::TooLarge { size: 1_000_000, limit: 1024 }), "{err}");
    let mut out = BytesMut::new();
    assert!(matches!(codec.encode(sample(), &mut out), Err(CodecError::TooLarge { .. })));
}

#[test]
fn auth_rejection_marker_is_recognised() {
    let err = decode_body::<ClientToController>(&key(), Bytes::from_static(AUTH_REJECTED)).unwrap_err();
    assert!(matches!(err, CodecError::Rejected));
}

#[test]
fn key_hex_round_trip() {
    let k = Key::from_hex(&key().to_hex()).unwrap();
    let body = encode_body(&k, &sample()).unwrap();
    assert!(decode_body::<ClientToController>(&key(), body.freeze()).is_ok());
    assert!(Key::from_hex("zz").is_err());
    assert!(Key::from_hex("").is_err());
}
