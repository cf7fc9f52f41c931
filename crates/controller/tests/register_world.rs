//! A world of 10,000 ranks registers through a real listener and hub: rank 0's registration
//! carries the whole world in one frame of about 700 KB (far above what a first frame could
//! carry before: 64 KiB, about 1,100 ranks), then ranks attach their own connections to the
//! engine set it got. The engines are simulated (the protocol without MPI, as
//! `benches/src/sim.rs` does); a sample of ranks attaches, which is enough to check the set's ids
//! (the scale benchmark attaches all of them: `mpx-bench-engines`).

use std::{
    net::SocketAddr,
    time::{Duration, Instant},
};

use futures::{SinkExt, StreamExt};
use mpx_controller::{cluster::new_key, hub::Info, start_controller};
use mpx_messages::{
    codec, ControllerToEngine, EngineId, EngineToController, Frame, FrameCodec, Key, Rank, RankInfo,
    RegisterReply, RegisterRequest, DEFAULT_MAX_FRAME,
};
use tokio::net::TcpStream;
use tokio_util::codec::Framed;

/// Ranks in the world.
const SIZE: u32 = 10_000;
/// How long one registration may take.
const WITHIN: Duration = Duration::from_secs(30);

type Conn = Framed<TcpStream, FrameCodec<ControllerToEngine, EngineToController>>;

/// Every rank as rank 0 reports it: pids and host names as long as a real cluster's.
fn world() -> Vec<RankInfo> {
    (0..SIZE).map(|r| RankInfo { rank: Rank(r), pid: 4_000_000 + r, hostname: hostname(r) }).collect()
}

fn hostname(rank: u32) -> String {
    format!("node{:04}.cluster.example.org", rank / 64)
}

/// Connects, opens a session and registers; the open connection and the controller's answer.
async fn register(address: SocketAddr, key: &Key, req: RegisterRequest) -> (Conn, RegisterReply) {
    let mut stream = TcpStream::connect(address).await.expect("connect");
    let session = codec::connect(&mut stream, key).await.expect("handshake");
    let mut conn = Framed::new(stream, FrameCodec::with_limit(session, DEFAULT_MAX_FRAME));
    conn.send(Frame::new(EngineToController::RegisterRequest(req))).await.expect("send the registration");
    loop {
        let frame = tokio::time::timeout(WITHIN, conn.next())
            .await
            .expect("an answer in time")
            .expect("the controller closed the connection")
            .expect("a good frame");
        match frame.header {
            ControllerToEngine::RegisterReply(reply) => return (conn, reply),
            ControllerToEngine::Ping { .. } => continue,
            other => panic!("before the registration reply: {other:?}"),
        }
    }
}

#[test]
fn a_world_of_10000_ranks_registers_in_one_frame() {
    actix::System::new().block_on(async {
        let key = new_key();
        let ctl = start_controller(
            "127.0.0.1:0",
            None,
            key.clone(),
            "big-world",
            DEFAULT_MAX_FRAME,
            Duration::ZERO,
        )
        .await
        .expect("a controller");
        let world = world();
        let encoded = serde_json::to_vec(&world).expect("json").len();
        assert!(encoded > 64 << 10, "the world takes {encoded} bytes: more than a 64 KiB first frame");

        let t0 = Instant::now();
        let root = RegisterRequest {
            rank: Rank(0),
            size: SIZE,
            pid: world[0].pid,
            hostname: hostname(0),
            world: world.clone(),
            set: None,
        };
        let (_root, reply) = register(ctl.address, &key, root).await;
        assert_eq!(reply.error, None);
        assert_eq!(reply.engine_id, Some(EngineId(0)));
        let set = reply.set.expect("the world's engine set");
        eprintln!("rank 0 registered a world of {SIZE} ranks ({encoded} bytes of it) in {:?}", t0.elapsed());

        // Other ranks attach to the set, with the details rank 0 gave for them.
        let mut held = Vec::new();
        for rank in [1, SIZE / 2, SIZE - 1] {
            let detail = &world[rank as usize];
            let req = RegisterRequest {
                rank: Rank(rank),
                size: SIZE,
                pid: detail.pid,
                hostname: detail.hostname.clone(),
                world: Vec::new(),
                set: Some(set),
            };
            let (conn, reply) = register(ctl.address, &key, req).await;
            assert_eq!(reply.error, None, "rank {rank}");
            assert_eq!(reply.engine_id, Some(EngineId(rank)), "rank {rank}");
            held.push(conn);
        }
        // A rank that does not match the world's registration is refused.
        let liar = RegisterRequest {
            rank: Rank(7),
            size: SIZE,
            pid: 1,
            hostname: hostname(7),
            world: Vec::new(),
            set: Some(set),
        };
        let (_, reply) = register(ctl.address, &key, liar).await;
        assert_eq!(reply.engine_id, None);
        assert!(reply.error.is_some());

        let info = ctl.hub.send(Info).await.expect("the hub answers");
        let mut attached: Vec<(u32, u32, u32)> =
            info.engines.iter().map(|e| (e.id.get(), e.rank.0, e.world_size)).collect();
        attached.sort_unstable();
        assert_eq!(
            attached,
            vec![(0, 0, SIZE), (1, 1, SIZE), (SIZE / 2, SIZE / 2, SIZE), (SIZE - 1, SIZE - 1, SIZE)]
        );
        actix::System::current().stop();
    });
}
