//! Codec unit tests: round trips, bad signatures, truncation, size limits. The handshake,
//! sequence numbers and payload bindings are in `replay.rs`.
#![cfg(feature = "tokio")] // uses the tokio codec; `cargo test --workspace` enables it

use bytes::{Bytes, BytesMut};
use mpx_messages::codec::{
    blocking, decode_body, decode_body_with, encode_body, Nonces, AUTH_REJECTED, UNVERIFIED_RESERVE,
};
use mpx_messages::*;
use tokio_util::codec::{Decoder, Encoder};

fn key() -> Key {
    Key::new(b"0123456789abcdef".to_vec())
}

const NONCES: Nonces = Nonces { client: [1; 32], server: [2; 32] };

/// The sending side of a session (a client), opened with [`NONCES`].
fn client() -> Session {
    Session::client(&key(), &NONCES)
}

/// The receiving side of the same session (the controller).
fn server() -> Session {
    Session::server(&key(), &NONCES)
}

/// A codec reading what [`client`] sends and sending nothing.
fn reader<In>(limit: usize, verify: Verify) -> FrameCodec<In, ()> {
    FrameCodec::reading(server().opener, limit, verify)
}

fn sample() -> Frame<ClientToController> {
    Frame::with_buffers(
        ClientToController::SubmitRequest(SubmitRequest {
            source: None,
            internal: false,
            req_id: RequestId(7),
            targets: Targets::ids([0, 2]),
            request: Request::Execute { code: "let a = rand(100);\nprint(a)".into() },
        }),
        vec![Bytes::from_static(b"\x00\x01\x02"), Bytes::new(), Bytes::from(vec![9u8; 1000])],
    )
}

#[test]
fn round_trip_through_tokio_codec() {
    let mut sender: FrameCodec<(), ClientToController> = FrameCodec::new(client());
    let mut codec = reader::<ClientToController>(DEFAULT_MAX_FRAME, Verify::All);
    let mut buf = BytesMut::new();
    sender.encode(sample(), &mut buf).unwrap();
    sender.encode(Frame::new(ClientToController::InfoRequest), &mut buf).unwrap();
    assert_eq!(codec.decode(&mut buf).unwrap(), Some(sample()));
    assert_eq!(codec.decode(&mut buf).unwrap(), Some(Frame::new(ClientToController::InfoRequest)));
    assert_eq!(codec.decode(&mut buf).unwrap(), None);
}

#[test]
fn round_trip_blocking() {
    let mut wire = Vec::new();
    blocking::write_frame(&mut wire, &mut client().sealer, &sample()).unwrap();
    let mut opener = server().opener;
    let back: Frame<ClientToController> =
        blocking::read_frame(&mut wire.as_slice(), &mut opener, DEFAULT_MAX_FRAME).unwrap().unwrap();
    assert_eq!(back, sample());
    // A clean end of stream between frames is not an error.
    let none: Option<Frame<ClientToController>> =
        blocking::read_frame(&mut [].as_slice(), &mut opener, DEFAULT_MAX_FRAME).unwrap();
    assert!(none.is_none());
}

#[test]
fn every_message_kind_round_trips_as_json() {
    let engine_msgs = vec![
        EngineToController::RegisterRequest(RegisterRequest {
            rank: Rank(3),
            size: 4,
            pid: 99,
            hostname: "h".into(),
            world: vec![RankInfo { rank: Rank(0), pid: 98, hostname: "h".into() }],
            set: Some(SetId(1)),
        }),
        EngineToController::TaskReply(TaskReply {
            task_id: TaskId(1),
            outcome: Outcome {
                stdout: "x\n".into(),
                error: Some(MpxError::Cell(RemoteError {
                    line: Some(2),
                    ..RemoteError::new("RuntimeError", "boom")
                })),
                ..Default::default()
            },
        }),
        EngineToController::TaskReply(TaskReply {
            task_id: TaskId(3),
            outcome: Outcome {
                returned: Some(Returned {
                    payload: 0,
                    arrays: vec![
                        ReturnedArray { dtype: Dtype::F64, shape: vec![2, 3], buffer: 1, offset: 0 },
                        ReturnedArray { dtype: Dtype::Bool, shape: vec![], buffer: 2, offset: 16 },
                    ],
                }),
                ..Default::default()
            },
        }),
        EngineToController::TaskReply(TaskReply {
            task_id: TaskId(2),
            outcome: Outcome {
                error: Some(MpxError::authentication("refused the chunk at byte 0: altered")),
                ..Default::default()
            },
        }),
    ];
    let mut engine_msgs = engine_msgs;
    engine_msgs.push(EngineToController::Pong { seq: 9 });
    engine_msgs.push(EngineToController::Status {
        req: PollId(3),
        state: EngineState {
            activity: "mpi".into(),
            cell: Some(7),
            call: Some("allreduce".into()),
            comm: Some("COMM_WORLD".into()),
            seconds: 1.25,
            detail: Some("<cell-3> line 2".into()),
        },
    });
    engine_msgs.push(EngineToController::Output(TaskOutput {
        task_id: TaskId(4),
        stream: StreamName::Stderr,
        text: "warning é\n".into(),
    }));
    let (mut sealer, mut opener) = (client().sealer, server().opener);
    for m in engine_msgs {
        let body = encode_body(&mut sealer, &Frame::new(m.clone())).unwrap();
        let back: Frame<EngineToController> = decode_body(&mut opener, body.freeze()).unwrap();
        assert_eq!(back.header, m);
    }
    let to_engine = vec![
        ControllerToEngine::RegisterReply(RegisterReply {
            engine_id: Some(EngineId(1)),
            cluster_id: "c".into(),
            error: None,
            heartbeat_ms: 1000,
            set: Some(SetId(1)),
        }),
        ControllerToEngine::TaskRequest(TaskRequest {
            task_id: TaskId(5),
            task: Task::Execute { code: "1".into() },
        }),
        ControllerToEngine::TaskRequest(TaskRequest {
            task_id: TaskId(6),
            task: Task::Scatter {
                name: "a".into(),
                array: ArrayMeta {
                    dtype: Dtype::Bool,
                    shape: vec![4, 0, 2],
                    buffer: 0,
                    fd: None,
                    lent: None,
                },
                group: vec![Rank(0), Rank(2)],
                rows: vec![2, 2],
                first_row: 0,
            },
        }),
        ControllerToEngine::TaskRequest(TaskRequest {
            task_id: TaskId(8),
            task: Task::Scatter {
                name: "a".into(),
                array: ArrayMeta { dtype: Dtype::F64, shape: vec![9, 3], buffer: 0, fd: Some(0), lent: None },
                group: vec![Rank(3)],
                rows: vec![2],
                first_row: 7,
            },
        }),
        ControllerToEngine::TaskRequest(TaskRequest {
            task_id: TaskId(7),
            task: Task::Apply {
                function: "f".into(),
                args: vec![Arg::Float(1.5), Arg::Int(-2), Arg::Bool(true), Arg::Str("s".into())],
            },
        }),
        ControllerToEngine::Shutdown,
        ControllerToEngine::Ping { seq: 9 },
        ControllerToEngine::Interrupt,
        ControllerToEngine::StatusRequest { req: PollId(3) },
    ];
    let (mut sealer, mut opener) = (server().sealer, client().opener);
    for m in to_engine {
        let body = encode_body(&mut sealer, &Frame::new(m.clone())).unwrap();
        let back: Frame<ControllerToEngine> = decode_body(&mut opener, body.freeze()).unwrap();
        assert_eq!(back.header, m);
    }
    let to_client = vec![
        ControllerToClient::Output(EngineOutput {
            req_id: RequestId(2),
            engine_id: EngineId(3),
            stream: StreamName::Stdout,
            text: "first\n".into(),
        }),
        ControllerToClient::SubmitReply(SubmitReply {
            req_id: RequestId(2),
            engines: vec![EngineId(0)],
            error: None,
            id: Some(Ticket(17)),
        }),
    ];
    let (mut sealer, mut opener) = (server().sealer, client().opener);
    for m in to_client {
        let body = encode_body(&mut sealer, &Frame::new(m.clone())).unwrap();
        let back: Frame<ControllerToClient> = decode_body(&mut opener, body.freeze()).unwrap();
        assert_eq!(back.header, m);
    }
    let adopt = ClientToController::Adopt { req_id: RequestId(5), id: Ticket(17) };
    let (mut sealer, mut opener) = (client().sealer, server().opener);
    let body = encode_body(&mut sealer, &Frame::new(adopt.clone())).unwrap();
    let back: Frame<ClientToController> = decode_body(&mut opener, body.freeze()).unwrap();
    assert_eq!(back.header, adopt);
}

#[test]
fn wrong_key_is_rejected() {
    let body = encode_body(&mut client().sealer, &sample()).unwrap();
    let other = Key::new(b"not the key".to_vec());
    let err = decode_body::<ClientToController>(&mut Session::server(&other, &NONCES).opener, body.freeze())
        .unwrap_err();
    assert!(matches!(err, CodecError::BadSignature), "{err}");
}

/// Where the head ends (the buffers start) in an encoding of [`sample`], and which buffer holds
/// each byte after it.
fn sample_layout(body_len: usize) -> (usize, impl Fn(usize) -> usize) {
    let head = body_len - 1003;
    (head, move |i| if i < head + 3 { 0 } else { 2 })
}

#[test]
fn any_flipped_byte_is_caught() {
    let body = encode_body(&mut client().sealer, &sample()).unwrap().freeze();
    let (head, buffer_of) = sample_layout(body.len());
    for i in (0..body.len()).step_by(7).chain([head, head + 2, head + 3, body.len() - 1]) {
        let mut bad = body.to_vec();
        bad[i] ^= 0x40;
        let got = decode_body::<ClientToController>(&mut server().opener, Bytes::from(bad));
        if i < head {
            // Head bytes: the header MAC (or the layout checked before it) refuses the frame.
            assert!(got.is_err(), "byte {i} of the head was accepted");
        } else {
            // Payload bytes: the header is authentic, the payload is refused and dropped.
            let frame = got.unwrap_or_else(|e| panic!("byte {i}: {e}"));
            assert_eq!(frame.refused, Some(Refused { index: buffer_of(i) }), "byte {i}");
            assert!(frame.buffers.is_empty(), "byte {i}: refused bytes were kept");
            assert_eq!(frame.header, sample().header);
        }
    }
}

/// The controller decodes headers only and forwards payloads with their original MACs: a payload
/// corrupted on the way in passes the controller and is caught by the final receiver.
#[test]
fn forwarding_keeps_the_original_mac_so_the_final_receiver_catches_corruption() {
    let body = encode_body(&mut client().sealer, &sample()).unwrap().freeze();
    let (head, _) = sample_layout(body.len());
    let mut bad = body.to_vec();
    bad[head + 3 + 500] ^= 1; // inside buffer 2
    let at_controller =
        decode_body_with::<ClientToController>(&mut server().opener, Bytes::from(bad), Verify::HeaderOnly)
            .unwrap();
    assert_eq!(at_controller.refused, None);
    assert_eq!(at_controller.buffers.len(), 3);
    let original: Frame<ClientToController> = decode_body(&mut server().opener, body).unwrap();
    for (fwd, orig) in at_controller.buffers.iter().zip(&original.buffers) {
        assert_eq!(fwd.mac(), orig.mac(), "the controller must keep the sender's MAC");
        assert_eq!(fwd.binding(), orig.binding(), "the controller must keep the sender's binding");
    }
    // Forwarded under a new header (as the hub does), through the controller's codec on the
    // engine's connection (another session).
    let to_engine = Nonces { client: [3; 32], server: [4; 32] };
    let forwarded = Frame::with_payloads(ClientToController::InfoRequest, at_controller.buffers.clone());
    let mut controller: FrameCodec<(), ClientToController> =
        FrameCodec::forwarding(Session::server(&key(), &to_engine), DEFAULT_MAX_FRAME);
    let mut wire = BytesMut::new();
    controller.encode(forwarded, &mut wire).unwrap();
    let mut engine: FrameCodec<ClientToController, ()> = FrameCodec::new(Session::client(&key(), &to_engine));
    let got = engine.decode(&mut wire).unwrap().unwrap();
    assert_eq!(got.header, ClientToController::InfoRequest);
    assert_eq!(got.refused, Some(Refused { index: 2 }));
    assert!(got.buffers.is_empty());
    let (_, refused) = got.into_parts().unwrap_err();
    assert!(refused.to_string().contains("payload buffer 2 failed authentication"), "{refused}");
    // Intact payloads forwarded the same way arrive intact.
    let intact = Frame::with_payloads(ClientToController::InfoRequest, original.buffers.clone());
    controller.encode(intact, &mut wire).unwrap();
    let got = engine.decode(&mut wire).unwrap().unwrap();
    assert_eq!(got.buffers, sample().buffers);
    // A forwarder never signs payloads itself: one without a MAC is refused.
    let unsigned = Frame::with_buffers(ClientToController::InfoRequest, vec![Bytes::from_static(b"x")]);
    assert!(matches!(controller.encode(unsigned, &mut wire), Err(CodecError::MissingMac(0))));
}

#[test]
fn a_first_frame_gets_memory_only_as_its_bytes_arrive() {
    let mut codec = reader::<ClientToController>(DEFAULT_MAX_FRAME, Verify::HeaderOnly);
    // Announcing a big first frame (under the limit: the handshake has proved the peer) reserves
    // nothing for it: a prefix alone allocates nothing large.
    let mut buf = BytesMut::from(&(1u32 << 30).to_be_bytes()[..]);
    buf.extend_from_slice(&[7u8; 100]);
    assert!(codec.decode(&mut buf).unwrap().is_none());
    assert!(buf.capacity() < UNVERIFIED_RESERVE, "allocated {} before a verified frame", buf.capacity());
    // Over the configured limit, it is refused from its prefix.
    let mut codec = reader::<ClientToController>(1 << 20, Verify::HeaderOnly);
    let mut buf = BytesMut::from(&((1u32 << 20) + 1).to_be_bytes()[..]);
    let err = codec.decode(&mut buf).unwrap_err();
    assert!(matches!(err, CodecError::TooLarge { limit: 0x10_0000, .. }), "{err}");
    // After one verified frame, a frame's buffer is reserved whole from its prefix (and the
    // state survives `retype`).
    let mut codec = reader::<ClientToController>(DEFAULT_MAX_FRAME, Verify::HeaderOnly);
    let mut sealer = client().sealer;
    let small = encode_body(&mut sealer, &Frame::new(ClientToController::InfoRequest)).unwrap();
    let big = Frame::with_buffers(ClientToController::InfoRequest, vec![Bytes::from(vec![5u8; 200_000])]);
    let big_body = encode_body(&mut sealer, &big).unwrap();
    let mut wire = BytesMut::new();
    wire.extend_from_slice(&(small.len() as u32).to_be_bytes());
    wire.extend_from_slice(&small);
    assert!(!codec.is_authenticated());
    assert!(codec.decode(&mut wire).unwrap().is_some());
    assert!(codec.is_authenticated());
    let codec: FrameCodec<EngineToController, ()> = codec.retype();
    assert!(codec.is_authenticated());
    let mut codec: FrameCodec<ClientToController, ()> = codec.retype();
    wire.extend_from_slice(&(big_body.len() as u32).to_be_bytes());
    wire.extend_from_slice(&big_body[..10]);
    assert!(codec.decode(&mut wire).unwrap().is_none());
    assert!(wire.capacity() >= big_body.len(), "no room reserved after a verified frame");
    wire.extend_from_slice(&big_body[10..]);
    let got = codec.decode(&mut wire).unwrap().unwrap();
    assert_eq!(got.buffers[0].len(), 200_000);
}

#[test]
fn a_world_of_10000_ranks_registers_in_one_first_frame() {
    let world: Vec<RankInfo> = (0..10_000)
        .map(|r| RankInfo {
            rank: Rank(r),
            pid: 4_000_000 + r,
            hostname: format!("node{:04}.cluster.example", r / 64),
        })
        .collect();
    let request = RegisterRequest {
        rank: Rank(0),
        size: 10_000,
        pid: 4_000_000,
        hostname: world[0].hostname.clone(),
        world,
        set: None,
    };
    let mut sender: FrameCodec<(), EngineToController> = FrameCodec::new(client());
    let mut wire = BytesMut::new();
    sender.encode(Frame::new(EngineToController::RegisterRequest(request.clone())), &mut wire).unwrap();
    assert!(wire.len() > UNVERIFIED_RESERVE, "{} bytes", wire.len());
    // It arrives in pieces, as from a socket; the buffer grows with them, then the frame decodes.
    let mut codec = reader::<EngineToController>(DEFAULT_MAX_FRAME, Verify::HeaderOnly);
    let mut buf = BytesMut::new();
    let mut got = None;
    for piece in wire.chunks(16 << 10) {
        assert!(got.is_none(), "decoded before its last piece");
        if buf.capacity() - buf.len() < piece.len() {
            buf.reserve(piece.len());
        }
        buf.extend_from_slice(piece);
        got = codec.decode(&mut buf).unwrap();
    }
    let frame = got.expect("the registration");
    assert_eq!(frame.header, EngineToController::RegisterRequest(request));
}

#[test]
fn the_read_buffer_gives_back_a_large_frame_s_memory() {
    let mut codec = reader::<ClientToController>(DEFAULT_MAX_FRAME, Verify::HeaderOnly);
    let mut sealer = client().sealer;
    let small = encode_body(&mut sealer, &Frame::new(ClientToController::InfoRequest)).unwrap();
    let big = Frame::with_buffers(ClientToController::InfoRequest, vec![Bytes::from(vec![5u8; 8 << 20])]);
    let big = encode_body(&mut sealer, &big).unwrap();
    let mut buf = BytesMut::new();
    buf.extend_from_slice(&(small.len() as u32).to_be_bytes());
    buf.extend_from_slice(&small);
    assert!(codec.decode(&mut buf).unwrap().is_some());
    // The big frame arrives in two parts, then the next frame's first bytes.
    buf.extend_from_slice(&(big.len() as u32).to_be_bytes());
    buf.extend_from_slice(&big[..1000]);
    assert!(codec.decode(&mut buf).unwrap().is_none());
    buf.extend_from_slice(&big[1000..]);
    buf.extend_from_slice(&(small.len() as u32).to_be_bytes());
    let frame = codec.decode(&mut buf).unwrap().unwrap();
    drop(frame);
    assert!(buf.capacity() < 1 << 20, "the read buffer kept {} bytes", buf.capacity());
}

#[test]
fn truncated_frames_are_rejected() {
    let mut wire = Vec::new();
    blocking::write_frame(&mut wire, &mut client().sealer, &sample()).unwrap();
    for cut in [1, 3, 4, 10, 40, wire.len() / 2, wire.len() - 1] {
        let err = blocking::read_frame::<ClientToController>(
            &mut &wire[..cut],
            &mut server().opener,
            DEFAULT_MAX_FRAME,
        )
        .unwrap_err();
        assert!(matches!(err, CodecError::Truncated(_)), "cut {cut}: {err}");
    }
    // Through the tokio codec: a partial frame is "not yet", and at EOF it is an error.
    let mut codec = reader::<ClientToController>(DEFAULT_MAX_FRAME, Verify::All);
    let mut buf = BytesMut::from(&wire[..wire.len() - 5]);
    assert!(codec.decode(&mut buf).unwrap().is_none());
    assert!(matches!(codec.decode_eof(&mut buf), Err(CodecError::Truncated(_))));
}

#[test]
fn a_signed_but_inconsistent_body_is_rejected() {
    // Correctly signed by someone with the key (the header MAC covers the head only), but the
    // declared buffer lengths lie: the buffers end early.
    let mut body = encode_body(&mut client().sealer, &sample()).unwrap();
    body.truncate(body.len() - 10);
    let err = decode_body::<ClientToController>(&mut server().opener, body.freeze()).unwrap_err();
    assert!(matches!(err, CodecError::Truncated(_)), "{err}");
}

#[test]
fn oversized_frame_is_refused_from_its_prefix() {
    let mut codec: FrameCodec<ClientToController, ClientToController> =
        FrameCodec::with_limit(server(), 1024);
    let mut buf = BytesMut::from(&(1_000_000u32).to_be_bytes()[..]);
    let err = codec.decode(&mut buf).unwrap_err();
    assert!(matches!(err, CodecError::TooLarge { size: 1_000_000, limit: 1024 }), "{err}");
    let mut out = BytesMut::new();
    assert!(matches!(codec.encode(sample(), &mut out), Err(CodecError::TooLarge { .. })));
}

#[test]
fn auth_rejection_marker_is_recognised() {
    let err = decode_body::<ClientToController>(&mut server().opener, Bytes::from_static(AUTH_REJECTED))
        .unwrap_err();
    assert!(matches!(err, CodecError::Rejected));
}

#[test]
fn key_hex_round_trip() {
    let k = Key::from_hex(&key().to_hex()).unwrap();
    let body = encode_body(&mut Session::client(&k, &NONCES).sealer, &sample()).unwrap();
    assert!(decode_body::<ClientToController>(&mut server().opener, body.freeze()).is_ok());
    assert!(Key::from_hex("zz").is_err());
    assert!(Key::from_hex("").is_err());
}
