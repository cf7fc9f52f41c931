//! End-to-end payload authentication and the controller's memory, against real clusters:
//! a payload altered after signing (by a peer that holds the key and signs the header
//! correctly) is refused by the engine, nothing is bound and the cluster keeps working; so are
//! authentic chunks out of their place (sent again, or of another stream);
//! connections announcing huge frames without authenticating cost the controller almost no
//! memory; and the controller gives back the memory of large pushes and pulls.

use std::{io::Write, net::TcpStream, time::Duration};

use bytes::Bytes;
use mpx_client::{Dtype, RawArray, Targets};
use mpx_messages::{
    codec::UNVERIFIED_RESERVE, Binding, Chunk, ClientToController, ControllerToClient, EngineReply, Frame,
    Payload, Request, SubmitRequest,
};
use mpx_tests::{
    arrays::sample,
    memory::{mb, rss, rss_settles},
    peer::Peer,
    Cluster, Kernel,
};

const T: Duration = Duration::from_secs(120);

#[test]
fn t55_a_payload_altered_after_signing_is_refused_by_the_engine_and_nothing_is_bound() {
    let c = Cluster::start(Kernel::Rhai, "payload-mac", 4, &[]);
    let client = c.client();
    let all = client.view(Targets::All);
    let good = sample(Dtype::F64, &[1000], 3);
    all.push_sync("x", &good, T).unwrap();

    // A peer holding the key: it signs the header correctly, but the payload's bytes change
    // after their MAC was made (as if altered on the way).
    let (address, key) = c.address_and_key();
    let mut peer = Peer::connect(&address, &key, T);
    peer.send(&Frame::new(ClientToController::InfoRequest));
    let other = sample(Dtype::F64, &[1000], 9);
    let mut altered = other.data().to_vec();
    let at = 4321 % altered.len();
    altered[at] ^= 0x10;
    let binding = Binding { origin: 99, index: 0 };
    let forged = Payload::with_mac(Bytes::from(altered), binding, key.payload_mac(binding, other.data()));
    let request = Request::Push { name: "x".into(), array: other.meta(0), shared: false };
    let req = SubmitRequest {
        source: None,
        internal: false,
        req_id: mpx_messages::RequestId(7),
        targets: Targets::All,
        request,
    };
    peer.send(&Frame::with_payloads(ClientToController::SubmitRequest(req), vec![forged]));

    // The controller forwards it (it checks headers only); every engine answers with an error,
    // the root naming the refused buffer.
    let mut results = Vec::new();
    while results.len() < 4 {
        let frame = peer.recv::<ControllerToClient>().expect("a reply").expect("the connection stays open");
        match frame.header {
            ControllerToClient::SubmitReply(r) => assert_eq!(r.error, None, "{r:?}"),
            ControllerToClient::EngineReply(r) if r.req_id == mpx_messages::RequestId(7) => results.push(r),
            _ => {}
        }
    }
    results.sort_by_key(|r| r.engine_id);
    let root = results[0].outcome.error.as_ref().expect("the root refuses the push");
    assert_eq!(root.ename(), "AuthenticationError", "{root:?}");
    assert!(root.evalue().contains("payload buffer 0 failed authentication"), "{root:?}");
    for r in &results[1..] {
        assert!(r.outcome.error.is_some(), "engine {} bound the refused array: {r:?}", r.engine_id);
    }

    // Nothing was bound: every engine still has the good array, and the cluster keeps working.
    for (engine, a) in client.view(Targets::All).pull_sync("x", T).unwrap().iter().enumerate() {
        assert!(a == &good, "engine {engine} holds something else than the last good push");
    }
    all.push_sync("y", &other, T).unwrap();
    assert!(client.view(Targets::ids([2])).pull_sync("y", T).unwrap()[0] == other);
    c.stop();
}

/// The results of request `req_id` from `n` engines, by engine id.
fn results(peer: &mut Peer, req_id: u64, n: usize) -> Vec<EngineReply> {
    let mut results = Vec::new();
    while results.len() < n {
        let frame = peer.recv::<ControllerToClient>().expect("a reply").expect("the connection stays open");
        match frame.header {
            ControllerToClient::SubmitReply(r) => assert_eq!(r.error, None, "{r:?}"),
            ControllerToClient::EngineReply(r) if r.req_id == mpx_messages::RequestId(req_id) => {
                results.push(r)
            }
            _ => {}
        }
    }
    results.sort_by_key(|r| r.engine_id);
    results
}

#[test]
fn t55_authentic_chunks_out_of_their_place_are_refused_by_the_engine_and_nothing_is_bound() {
    let c = Cluster::start(Kernel::Rhai, "chunk-place", 2, &[]);
    let client = c.client();
    let good = sample(Dtype::F64, &[300], 3);
    client.view(Targets::All).push_sync("x", &good, T).unwrap();
    let (address, key) = c.address_and_key();
    let mut peer = Peer::connect(&address, &key, T);
    let other = sample(Dtype::F64, &[300], 9);
    let (total, step) = (other.data().len(), 600);
    // Four chunks, each authentic (its own MAC over its bytes and binding); `order` says which
    // chunk of which stream goes in each place.
    let cases: [(&str, [(u64, usize); 4]); 2] = [
        ("a chunk sent again", [(1, 0), (1, 1), (1, 1), (1, 3)]),
        ("a chunk of another stream", [(1, 0), (1, 1), (2, 2), (1, 3)]),
    ];
    for (req_id, (what, order)) in (10u64..).zip(cases) {
        let request = Request::Push { name: "x".into(), array: other.meta(0), shared: false };
        let req = SubmitRequest {
            source: None,
            internal: false,
            req_id: mpx_messages::RequestId(req_id),
            targets: Targets::All,
            request,
        };
        peer.send(&Frame::new(ClientToController::SubmitRequest(req)));
        for (place, (origin, k)) in order.into_iter().enumerate() {
            let bytes = other.data().slice(k * step..(k + 1) * step);
            let payload = Payload::bound(bytes, Binding { origin, index: k as u64 });
            let chunk = Chunk { stream: req_id, offset: (place * step) as u64, total: total as u64 };
            peer.send(&Frame::with_payloads(ClientToController::Chunk(chunk), vec![payload]));
        }
        let results = results(&mut peer, req_id, 2);
        let root = results[0].outcome.error.as_ref().unwrap_or_else(|| panic!("{what}: the root bound it"));
        assert_eq!(root.ename(), "AuthenticationError", "{what}: {root:?}");
        assert!(root.evalue().contains("not the next chunk of this array"), "{what}: {root:?}");
        assert!(results[1].outcome.error.is_some(), "{what}: engine 1 bound it");
    }
    // Nothing was bound; the same chunks in their place are taken.
    for a in client.view(Targets::All).pull_sync("x", T).unwrap() {
        assert!(a == good, "an engine holds something else than the last good push");
    }
    let request = Request::Push { name: "x".into(), array: other.meta(0), shared: false };
    peer.send(&Frame::new(ClientToController::SubmitRequest(SubmitRequest {
        source: None,
        internal: false,
        req_id: mpx_messages::RequestId(20),
        targets: Targets::All,
        request,
    })));
    for k in 0..4 {
        let payload = Payload::bound(
            other.data().slice(k * step..(k + 1) * step),
            Binding { origin: 3, index: k as u64 },
        );
        let chunk = Chunk { stream: 20, offset: (k * step) as u64, total: total as u64 };
        peer.send(&Frame::with_payloads(ClientToController::Chunk(chunk), vec![payload]));
    }
    assert!(results(&mut peer, 20, 2).iter().all(|r| r.outcome.error.is_none()));
    assert!(client.view(Targets::All).pull_sync("x", T).unwrap().iter().all(|a| a == &other));
    c.stop();
}

#[test]
fn t55_unauthenticated_connections_announcing_huge_frames_cost_almost_no_memory() {
    let c = Cluster::start(Kernel::Rhai, "hostile-mem", 1, &[]);
    let pid = c.pids.controller;
    let idle = rss(pid);
    let mut held = Vec::new();
    for i in 0..16 {
        let mut s = TcpStream::connect(c.address_and_key().0).expect("connect");
        s.set_write_timeout(Some(Duration::from_secs(2))).expect("timeout");
        // Half of them announce 1 GiB and send 8 MB of it (a controller that believed the prefix
        // would hold 64 MB for them); the others announce UNVERIFIED_RESERVE bytes (the most a
        // prefix is believed before a peer is verified), send half of it and stall. All hold their connection open.
        let (announced, sent) = if i % 2 == 0 {
            (1u32 << 30, 8 << 20)
        } else {
            (UNVERIFIED_RESERVE as u32, UNVERIFIED_RESERVE / 2)
        };
        let _ = s.write_all(&announced.to_be_bytes());
        let _ = s.write_all(&vec![0x5a; sent]);
        held.push(s);
    }
    std::thread::sleep(Duration::from_millis(500));
    let loaded = rss(pid);
    assert!(
        loaded <= idle + (4 << 20),
        "16 unauthenticated connections took the controller from {:.1} MB to {:.1} MB",
        mb(idle),
        mb(loaded)
    );
    drop(held);
    // The cluster still serves.
    assert!(c.client().info(T).is_ok());
    c.stop();
}

#[test]
fn t55_the_controller_gives_back_the_memory_of_80_mb_pushes_and_pulls() {
    let c = Cluster::start(Kernel::Rhai, "rss", 4, &[]);
    let pid = c.pids.controller;
    let client = c.client();
    client.view(Targets::All).execute_sync("1", T).unwrap();
    let idle = rss(pid);
    let n = 10_000_000; // 80 MB of f64
    let data: Vec<u8> = (0..n).flat_map(|i| (i as f64).to_le_bytes()).collect();
    let a = RawArray::new(Dtype::F64, vec![n], Bytes::from(data)).unwrap();
    let mut peak = idle;
    for engine in 0..4 {
        client.view(Targets::ids([engine])).push_sync("big", &a, T).unwrap();
        peak = peak.max(rss(pid));
    }
    let after_push = rss_settles(pid, idle + (64 << 20), Duration::from_secs(5));
    for engine in 0..4 {
        let back = client.view(Targets::ids([engine])).pull_sync("big", T).unwrap();
        assert!(back[0] == a, "engine {engine}");
    }
    let after_pull = rss_settles(pid, idle + (64 << 20), Duration::from_secs(5));
    eprintln!(
        "controller RSS: idle {:.1} MB, peak seen {:.1} MB, after pushes {:.1} MB, after pulls {:.1} MB",
        mb(idle),
        mb(peak),
        mb(after_push),
        mb(after_pull)
    );
    assert!(after_push <= idle + (64 << 20), "after 4 × 80 MB pushes: {:.1} MB", mb(after_push));
    assert!(after_pull <= idle + (64 << 20), "after 4 × 80 MB pulls: {:.1} MB", mb(after_pull));
    c.stop();
}
