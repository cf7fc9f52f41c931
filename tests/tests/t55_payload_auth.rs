//! End-to-end payload authentication and the controller's memory, against real clusters:
//! a payload altered after signing (by a peer that holds the key and signs the header
//! correctly) is refused by the engine, nothing is bound and the cluster keeps working;
//! connections announcing huge frames without authenticating cost the controller almost no
//! memory; and the controller gives back the memory of large pushes and pulls.

use std::{io::Write, net::TcpStream, time::Duration};

use bytes::Bytes;
use mpx_client::{Dtype, RawArray, Targets};
use mpx_messages::{
    codec::FIRST_FRAME_MAX, Binding, ClientToController, ControllerToClient, Frame, Payload, SubmitRequest,
    Task,
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
    let task = Task::Push { name: "x".into(), array: other.meta(0), group: vec![] };
    let req = SubmitRequest { req_id: 7, targets: Targets::All, task };
    peer.send(&Frame::with_payloads(ClientToController::SubmitRequest(req), vec![forged]));

    // The controller forwards it (it checks headers only); every engine answers with an error,
    // the root naming the refused buffer.
    let mut results = Vec::new();
    while results.len() < 4 {
        let frame = peer.recv::<ControllerToClient>().expect("a reply").expect("the connection stays open");
        match frame.header {
            ControllerToClient::SubmitReply(r) => assert_eq!(r.error, None, "{r:?}"),
            ControllerToClient::TaskResult(r) if r.req_id == 7 => results.push(r),
            _ => {}
        }
    }
    results.sort_by_key(|r| r.engine_id);
    let root = results[0].outcome.error.as_ref().expect("the root refuses the push");
    assert_eq!(root.ename, "AuthenticationError", "{root:?}");
    assert!(root.evalue.contains("payload buffer 0 failed authentication"), "{root:?}");
    for r in &results[1..] {
        assert!(r.outcome.error.is_some(), "engine {} bound the refused array: {r:?}", r.engine_id);
    }

    // Nothing was bound: every engine still has the good array, and the cluster keeps working.
    for (engine, a) in client.view(Targets::All).pull_sync("x", T).unwrap().iter().enumerate() {
        assert!(a == &good, "engine {engine} holds something else than the last good push");
    }
    all.push_sync("y", &other, T).unwrap();
    assert!(client.view(Targets::List(vec![2])).pull_sync("y", T).unwrap()[0] == other);
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
        // would hold 64 MB for them); the others announce a first frame of the allowed maximum,
        // send half of it and stall. All hold their connection open.
        let (announced, sent) =
            if i % 2 == 0 { (1u32 << 30, 8 << 20) } else { (FIRST_FRAME_MAX as u32, FIRST_FRAME_MAX / 2) };
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
        client.view(Targets::List(vec![engine])).push_sync("big", &a, T).unwrap();
        peak = peak.max(rss(pid));
    }
    let after_push = rss_settles(pid, idle + (64 << 20), Duration::from_secs(5));
    for engine in 0..4 {
        let back = client.view(Targets::List(vec![engine])).pull_sync("big", T).unwrap();
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
