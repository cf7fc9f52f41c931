//! Hostile peers against a live, in-process controller: garbage, a wrong key, truncated
//! handshakes and frames, oversized and inconsistent frames, a peer that stalls mid-hello, and a
//! misbehaving engine. Each bad connection must be closed by the controller (a wrong key first
//! hears AUTH_REJECTED) with a warning naming the peer, while a good client connected alongside
//! keeps getting answers. `t51_hostile_soak.rs` sends thousands of random ones.
//!
//! The controller runs on an actix System in a helper thread, except in the last test, which
//! checks that `mpx cluster start --daemonize --max-frame-mb` reaches the controller.

#[allow(dead_code)] // each test file uses part of it
mod bad_peers;

use std::{
    net::{Shutdown, SocketAddr},
    time::{Duration, Instant},
};

use bad_peers::*;
use mpx_messages::{
    codec::{blocking, ClientHandshake, AUTH_REJECTED, MAC_LEN, UNVERIFIED_RESERVE},
    ClientToController, CodecError, ControllerToClient, ControllerToEngine, EngineToController, Frame, Key,
    RankInfo, RegisterRequest,
};
use mpx_tests::{peer::Peer, Cluster, Kernel};

#[test]
fn t50_each_kind_of_bad_peer_is_closed_and_logged_while_a_good_client_is_served() {
    let ctl = Controller::start(key());
    let client = good_client(&ctl);
    let (_, hello) = ClientHandshake::start(&key()).expect("hello");

    // Half a hello, then silence: opened first, checked last (the handshake timeout is 10 s).
    let (mut stalled, stalled_peer) = raw(ctl.address);
    send(&mut stalled, &hello[..hello.len() / 2]);
    let stall_started = Instant::now();

    // Not our protocol at all: "GET " read as a length is over a gigabyte.
    let (mut s, peer) = raw(ctl.address);
    send(&mut s, b"GET / HTTP/1.1\r\nHost: x\r\n\r\n");
    assert!(read_until_closed(&mut s, CLOSE_WITHIN, "http").is_empty());
    Log::get().expect_warning(peer, "exceeds the limit");
    assert_serving(&client, "an HTTP request");

    // A peer with the wrong key: it cannot verify the controller, and its proof is answered
    // with AUTH_REJECTED, then the close.
    let (mut s, peer) = raw(ctl.address);
    s.set_read_timeout(Some(Duration::from_secs(5))).expect("timeout");
    let got = blocking::connect(&mut s, &Key::new(b"wrong".to_vec()));
    assert!(matches!(got, Err(CodecError::Unproven)), "{got:?}");
    let got = read_until_closed(&mut s, CLOSE_WITHIN, "wrong key");
    assert_eq!(bodies(&got), vec![AUTH_REJECTED], "wrong key got {got:?}");
    Log::get().expect_warning(peer, "authentication failed");
    assert_serving(&client, "a wrong key");

    // A hello cut at every kind of boundary, then closed by the peer.
    for cut in [1, 3, 4, 5, 12, hello.len() - 1] {
        let (mut s, peer) = raw(ctl.address);
        send(&mut s, &hello[..cut]);
        s.shutdown(Shutdown::Write).expect("shutdown");
        assert!(read_until_closed(&mut s, CLOSE_WITHIN, "truncated hello").is_empty());
        Log::get().expect_warning(peer, "truncated");
    }
    // A frame cut at every kind of boundary after a good handshake.
    for cut in [1, 3, 4, 5, 36, 44, 48, 60] {
        let mut c = Conn::open(ctl.address);
        let whole = c.framed(&submit_request("print(1)"));
        send(&mut c.s, &whole[..cut.min(whole.len() - 1)]);
        c.s.shutdown(Shutdown::Write).expect("shutdown");
        assert!(read_until_closed(&mut c.s, CLOSE_WITHIN, "truncated").is_empty());
        Log::get().expect_warning(c.peer, "truncated");
        assert_serving(&client, &format!("a frame cut at {cut}"));
    }

    // Length prefixes over the limit in place of a hello, with and without anything after them.
    for size in [LIMIT as u32 + 1, u32::MAX] {
        for tail in [&b""[..], &[0u8; 64][..]] {
            let (mut s, peer) = raw(ctl.address);
            send(&mut s, &size.to_be_bytes());
            send(&mut s, tail);
            assert!(read_until_closed(&mut s, CLOSE_WITHIN, "oversized").is_empty());
            Log::get().expect_warning(peer, "exceeds the limit");
        }
    }
    assert_serving(&client, "oversized prefixes");

    // A first frame over the limit is refused from its prefix. One over UNVERIFIED_RESERVE and
    // under the limit is served: the handshake has proved the peer (an engine's registration
    // carries its whole world), and the controller's memory for it grew only as it arrived.
    let mut c = Conn::open(ctl.address);
    send(&mut c.s, &(LIMIT as u32 + 1).to_be_bytes());
    assert!(read_until_closed(&mut c.s, CLOSE_WITHIN, "first frame over the limit").is_empty());
    Log::get().expect_warning(c.peer, &format!("exceeds the limit of {LIMIT} bytes"));
    assert_serving(&client, "a first frame over the limit");
    let mut c = Conn::open(ctl.address);
    let big =
        Frame::with_buffers(ClientToController::InfoRequest, vec![vec![0u8; 4 * UNVERIFIED_RESERVE].into()]);
    let first = c.framed(&big);
    send(&mut c.s, &first);
    c.s.set_read_timeout(Some(Duration::from_secs(5))).expect("timeout");
    let reply = blocking::read_frame::<ControllerToClient>(&mut c.s, &mut c.opener, usize::MAX);
    assert!(matches!(reply, Ok(Some(Frame { header: ControllerToClient::InfoReply(_), .. }))), "{reply:?}");
    drop(c);

    // After an authenticated first frame, a frame exactly at the limit (inconsistent inside, but
    // correctly signed, with the right sequence number) is read whole and refused for its
    // layout, not its size.
    let mut c = Conn::open(ctl.address);
    let first = c.framed(&info_request());
    send(&mut c.s, &first);
    let mut rest = vec![0u8; LIMIT - MAC_LEN];
    rest[..8].copy_from_slice(&1u64.to_le_bytes());
    rest[8..12].copy_from_slice(&u32::MAX.to_le_bytes());
    let at_limit = c.signed_raw(&rest);
    send(&mut c.s, &at_limit);
    let got = read_until_closed(&mut c.s, CLOSE_WITHIN, "at the limit");
    assert!(matches!(c.replies(&got).as_slice(), [ControllerToClient::InfoReply(_)]), "{got:?}");
    Log::get().expect_warning(c.peer, "truncated frame: header");
    assert_serving(&client, "a frame at the limit");

    // Correctly signed, but the layout lies: trailing bytes, a huge buffer count, garbage JSON.
    let header = serde_json::to_vec(&ClientToController::InfoRequest).expect("json");
    let layout = |header: &[u8], n: u32, lens: &[u64], data: &[u8]| {
        let mut rest = 0u64.to_le_bytes().to_vec();
        rest.extend_from_slice(&(header.len() as u32).to_le_bytes());
        rest.extend_from_slice(header);
        rest.extend_from_slice(&n.to_le_bytes());
        for l in lens {
            rest.extend_from_slice(&l.to_le_bytes());
            rest.extend_from_slice(&[0; DESCRIPTOR - 8]);
        }
        rest.extend_from_slice(data);
        rest
    };
    let lies: [(&str, Vec<u8>, &str); 5] = [
        ("trailing bytes", layout(&header, 0, &[], b"xyz"), "trailing bytes"),
        ("huge buffer count", layout(&header, u32::MAX, &[], b""), "buffers (at most"),
        ("lengths past the body", layout(&header, 2, &[u64::MAX, 2], b"ab"), "truncated frame: buffers"),
        ("garbage JSON", layout(b"{\"msg_type\":", 0, &[], b""), "bad header"),
        ("foreign JSON", layout(b"[1,2,3]", 0, &[], b""), "bad header"),
    ];
    for (what, rest, reason) in lies {
        let mut c = Conn::open(ctl.address);
        let lie = c.signed_raw(&rest);
        send(&mut c.s, &lie);
        assert!(read_until_closed(&mut c.s, CLOSE_WITHIN, what).is_empty(), "{what}");
        Log::get().expect_warning(c.peer, reason);
        assert_serving(&client, what);
    }

    // The handshake and two requests in one write are all answered (bytes that arrive with the
    // first frame are decoded at once, not when more bytes come).
    let mut c = Conn::open(ctl.address);
    let mut two = c.framed(&info_request());
    two.extend_from_slice(&c.framed(&info_request()));
    send(&mut c.s, &two);
    c.s.set_read_timeout(Some(Duration::from_secs(5))).expect("timeout");
    for i in 0..2 {
        let reply = blocking::read_frame::<ControllerToClient>(&mut c.s, &mut c.opener, usize::MAX);
        assert!(
            matches!(reply, Ok(Some(Frame { header: ControllerToClient::InfoReply(_), .. }))),
            "reply {i}"
        );
    }
    drop(c);

    // A good first frame, then garbage: the request is answered, then the connection closed.
    let mut c = Conn::open(ctl.address);
    let mut bytes = c.framed(&info_request());
    bytes.extend_from_slice(b"\xff\xff\xff\xffgarbage");
    send(&mut c.s, &bytes);
    let got = read_until_closed(&mut c.s, CLOSE_WITHIN, "trailing garbage");
    assert!(matches!(c.replies(&got).as_slice(), [ControllerToClient::InfoReply(_)]), "{got:?}");
    Log::get().expect_warning(c.peer, "exceeds the limit");
    assert_serving(&client, "trailing garbage");

    // A good session that later sends a frame of another session (another key): AUTH_REJECTED.
    let mut c = Conn::open(ctl.address);
    let first = c.framed(&info_request());
    send(&mut c.s, &first);
    std::thread::sleep(Duration::from_millis(50));
    let mut other = Conn::open(ctl.address);
    let foreign = other.framed(&info_request());
    send(&mut c.s, &foreign);
    let got = read_until_closed(&mut c.s, CLOSE_WITHIN, "another session's frame");
    let b = bodies(&got);
    assert!(matches!(c.replies(&got).as_slice(), [ControllerToClient::InfoReply(_)]), "{got:?}");
    assert_eq!(b.last(), Some(&AUTH_REJECTED), "{got:?}");
    Log::get().expect_warning(c.peer, "bad signature");
    assert_serving(&client, "another session's frame");

    // An engine that registers, then sends garbage.
    let mut e = Conn::open(ctl.address);
    let me = RankInfo { rank: mpx_client::Rank(0), pid: 1, hostname: "nowhere".into() };
    let reg = RegisterRequest {
        rank: mpx_client::Rank(0),
        size: 1,
        pid: 1,
        hostname: "nowhere".into(),
        world: vec![me],
        set: None,
    };
    let bytes = e.framed(&Frame::new(EngineToController::RegisterRequest(reg)));
    send(&mut e.s, &bytes);
    e.s.set_read_timeout(Some(Duration::from_secs(5))).expect("timeout");
    let reply =
        blocking::read_frame::<ControllerToEngine>(&mut e.s, &mut e.opener, usize::MAX).expect("reply");
    assert!(matches!(reply.map(|f| f.header), Some(ControllerToEngine::RegisterReply(_))));
    e.s.set_read_timeout(Some(Duration::from_millis(200))).expect("timeout");
    let mut garbage = 64u32.to_be_bytes().to_vec();
    garbage.extend_from_slice(&[b'x'; 64]);
    // A second engine claiming the same rank of that world hears why it is refused before the close.
    let mut dup = Conn::open(ctl.address);
    let reg = RegisterRequest {
        rank: mpx_client::Rank(0),
        size: 1,
        pid: 2,
        hostname: "nowhere".into(),
        world: vec![],
        set: Some(mpx_messages::SetId(0)),
    };
    let bytes = dup.framed(&Frame::new(EngineToController::RegisterRequest(reg)));
    send(&mut dup.s, &bytes);
    let got = read_until_closed(&mut dup.s, CLOSE_WITHIN, "duplicate engine");
    let refusal =
        blocking::read_frame::<ControllerToEngine>(&mut got.as_slice(), &mut dup.opener, usize::MAX);
    assert!(
        matches!(&refusal, Ok(Some(Frame { header: ControllerToEngine::RegisterReply(r), .. })) if r.error.is_some()),
        "{refusal:?}"
    );
    Log::get().expect_warning(dup.peer, "engine registration refused");
    send(&mut e.s, &garbage);
    assert!(read_until_closed(&mut e.s, CLOSE_WITHIN, "engine garbage").is_empty());
    Log::get().expect_warning(e.peer, "bad frame from engine");
    assert_serving(&client, "a bad engine");

    // The staller is cut off by the handshake timeout.
    assert!(read_until_closed(&mut stalled, CLOSE_WITHIN, "stalled").is_empty());
    let waited = stall_started.elapsed();
    assert!(waited < CLOSE_WITHIN, "stalled connection closed after {waited:?}");
    Log::get().expect_warning(stalled_peer, "no handshake");
    assert_serving(&client, "a stalled peer");
}

/// The registration of rank 0 of a world of `size` ranks, each with its details.
fn world_registration(size: u32, hostname: &str) -> Frame<EngineToController> {
    let world: Vec<RankInfo> = (0..size)
        .map(|r| RankInfo { rank: mpx_client::Rank(r), pid: 4_000_000 + r, hostname: hostname.into() })
        .collect();
    Frame::new(EngineToController::RegisterRequest(RegisterRequest {
        rank: mpx_client::Rank(0),
        size,
        pid: 4_000_000,
        hostname: hostname.into(),
        world,
        set: None,
    }))
}

#[test]
fn t50_a_world_of_10000_ranks_registers_in_its_first_frame() {
    let ctl = Controller::start(key());
    let client = good_client(&ctl);

    // Rank 0 of a world of 10,000 ranks registers the whole world in the first frame of its
    // connection, far over UNVERIFIED_RESERVE (the handshake has proved it), and is registered.
    let mut e = Conn::open(ctl.address);
    let first = e.framed(&world_registration(10_000, "node0042.cluster.example"));
    assert!(first.len() > 8 * UNVERIFIED_RESERVE && first.len() < LIMIT, "{} bytes", first.len());
    send(&mut e.s, &first);
    e.s.set_read_timeout(Some(Duration::from_secs(10))).expect("timeout");
    let reply =
        blocking::read_frame::<ControllerToEngine>(&mut e.s, &mut e.opener, usize::MAX).expect("reply");
    match reply.map(|f| f.header) {
        Some(ControllerToEngine::RegisterReply(r)) => {
            assert!(r.engine_id.is_some() && r.error.is_none(), "{r:?}")
        }
        other => panic!("a world of 10,000 ranks was not registered: {other:?}"),
    }
    assert_serving(&client, "a registration of 10,000 ranks");

    // A world too large for the controller's limit is refused from its first frame's prefix,
    // cleanly: the connection closes with a warning and nothing else is disturbed.
    let mut e = Conn::open(ctl.address);
    let first = e.framed(&world_registration(20_000, "node0042.cluster.example"));
    assert!(first.len() > LIMIT, "{} bytes", first.len());
    send(&mut e.s, &first[..4]);
    assert!(read_until_closed(&mut e.s, CLOSE_WITHIN, "a world over the limit").is_empty());
    Log::get().expect_warning(e.peer, &format!("exceeds the limit of {LIMIT} bytes"));
    assert_serving(&client, "a registration over the limit");
}

#[test]
fn t50_cli_max_frame_mb_reaches_the_daemonized_controller() {
    let c = Cluster::start(Kernel::Rhai, "maxframe", 1, &["--max-frame-mb", "1"]);
    let (address, key) = c.address_and_key();
    let address: SocketAddr = address.parse().expect("address");

    // Just under 1 MiB is served (after a small first frame)...
    let mut p = Peer::connect(&address.to_string(), &key, Duration::from_secs(10));
    let big = Frame::with_buffers(ClientToController::InfoRequest, vec![vec![0u8; 1000 << 10].into()]);
    p.send(&Frame::new(ClientToController::InfoRequest));
    p.send(&big);
    for _ in 0..2 {
        let reply = p.recv::<ControllerToClient>().expect("reply");
        assert!(matches!(reply.map(|f| f.header), Some(ControllerToClient::InfoReply(_))));
    }

    // ...one byte over it is refused from the prefix (after a small first frame, or as the
    // first frame).
    let mut p = Peer::connect(&address.to_string(), &key, Duration::from_millis(200));
    p.send(&Frame::new(ClientToController::InfoRequest));
    p.send_raw(&((1u32 << 20) + 1).to_be_bytes());
    let got = read_until_closed(&mut p.stream, CLOSE_WITHIN, "over --max-frame-mb");
    let mut r = got.as_slice();
    let reply =
        blocking::read_frame::<ControllerToClient>(&mut r, &mut p.session.opener, usize::MAX).expect("reply");
    assert!(matches!(reply.map(|f| f.header), Some(ControllerToClient::InfoReply(_))));
    assert!(r.is_empty(), "more than the reply came back: {r:?}");
    let log_file = mpx_controller::files::log_file(&c.home, "default");
    let log = std::fs::read_to_string(log_file).unwrap_or_default();
    assert!(log.contains("exceeds the limit of 1048576 bytes"), "{log}");
    assert_eq!(mpx_tests::out_values(&c.px("rank")).len(), 1);
    c.stop();
}
