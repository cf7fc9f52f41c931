//! Simulated engines: N connections to one controller that speak the engines' real protocol
//! (the same `mpx-messages` frames and codec as `mpx-engine`), without MPI: each registers (a
//! world's rank 0 with the whole world, the other ranks with the engine set it got), answers
//! heartbeats, answers every cell at once with an empty outcome, and leaves on `Shutdown`.
//!
//! They run as tasks of one tokio runtime. Connections are opened at most [`CONNECTING`] at a
//! time (a burst of 10,000 SYNs overflows the listen backlog and costs seconds of SYN
//! retransmits, which would measure the kernel, not the controller). Every engine gives the
//! hostname [`SIM_HOST`], so a controller that ends engines "on this host" by pid at teardown
//! never takes these pids for its own.

use std::{
    sync::{
        atomic::{AtomicU64, Ordering},
        Arc,
    },
    time::{Duration, Instant},
};

use futures::{SinkExt, StreamExt};
use mpx_messages::{
    codec, unix_time, ControllerToEngine, EngineToController, Frame, FrameCodec, Key, Outcome, Rank,
    RankInfo, RegisterRequest, RemoteError, SetId, Task, TaskReply, DEFAULT_MAX_FRAME,
};
use tokio::{
    net::TcpStream,
    sync::{mpsc, watch, Semaphore},
};
use tokio_util::codec::Framed;

/// The hostname every simulated engine registers with (no real host has it).
pub const SIM_HOST: &str = "mpx-simulated-engine";

/// Connections being opened and registered at once.
pub const CONNECTING: usize = 256;

/// A member's failure when its world's rank 0 could not register.
const NO_ROOT: &str = "rank 0 did not register";

/// What the simulated engines did, summed over all of them.
#[derive(Debug, Default)]
pub struct Counters {
    /// Pings answered.
    pub pings: AtomicU64,
    /// Tasks answered.
    pub tasks: AtomicU64,
}

/// One registration finished: the engine id, or why it failed.
pub type Registered = Result<u32, String>;

/// A running population of simulated engines.
pub struct Engines {
    /// What they did.
    pub counters: Arc<Counters>,
    registered: mpsc::UnboundedReceiver<Registered>,
    n: usize,
}

impl Engines {
    /// Starts `n` engines as worlds of `world_size` (the last one smaller if it does not
    /// divide), connecting to `address` with `key`, on the current tokio runtime.
    pub fn spawn(address: &str, key: &Key, n: usize, world_size: usize) -> Engines {
        let counters = Arc::new(Counters::default());
        let (tx, registered) = mpsc::unbounded_channel();
        let gate = Arc::new(Semaphore::new(CONNECTING));
        let mut first = 0;
        while first < n {
            let size = world_size.max(1).min(n - first);
            let (set_tx, set_rx) = watch::channel(None::<SetId>);
            let world: Vec<RankInfo> = (0..size as u32)
                .map(|rank| RankInfo { rank: Rank(rank), pid: std::process::id(), hostname: SIM_HOST.into() })
                .collect();
            let mut set_tx = Some(set_tx);
            for rank in 0..size as u32 {
                let role = match rank {
                    0 => Role::Root { world: world.clone(), set: set_tx.take().expect("one root") },
                    _ => Role::Member { set: set_rx.clone() },
                };
                let sim = Sim {
                    address: address.to_string(),
                    key: key.clone(),
                    rank,
                    size: size as u32,
                    counters: counters.clone(),
                    registered: tx.clone(),
                    gate: gate.clone(),
                };
                tokio::spawn(sim.run(role));
            }
            first += size;
        }
        Engines { counters, registered, n }
    }

    /// Waits until every engine registered, up to `timeout`; the time it took from now.
    ///
    /// # Errors
    /// The first failed registration, or how many registered before the timeout.
    pub async fn wait_registered(&mut self, timeout: Duration) -> Result<Duration, String> {
        let t0 = Instant::now();
        let deadline = tokio::time::Instant::now() + timeout;
        for done in 0..self.n {
            match tokio::time::timeout_at(deadline, self.registered.recv()).await {
                Ok(Some(Ok(_))) => {}
                Ok(Some(Err(e))) => return Err(format!("engine {done} of {}: {e}", self.n)),
                Ok(None) => return Err("the engines' tasks ended".into()),
                Err(_) => return Err(format!("{done} of {} engines registered within {timeout:?}", self.n)),
            }
        }
        Ok(t0.elapsed())
    }
}

/// How an engine registers.
enum Role {
    /// Rank 0: registers the whole world, then tells the others the engine set.
    Root { world: Vec<RankInfo>, set: watch::Sender<Option<SetId>> },
    /// Another rank: waits for the set, then attaches.
    Member { set: watch::Receiver<Option<SetId>> },
}

/// One simulated engine.
struct Sim {
    address: String,
    key: Key,
    rank: u32,
    size: u32,
    counters: Arc<Counters>,
    registered: mpsc::UnboundedSender<Registered>,
    gate: Arc<Semaphore>,
}

type Conn = Framed<TcpStream, FrameCodec<ControllerToEngine, EngineToController>>;

impl Sim {
    async fn run(self, role: Role) {
        match self.register(role).await {
            Ok(conn) => self.serve(conn).await,
            // A member of a world whose rank 0 failed: rank 0 reports why.
            Err(e) if e == NO_ROOT => {}
            Err(e) => {
                let _ = self.registered.send(Err(e));
            }
        }
    }

    /// Connects and registers as the real engine does (see `mpx-engine`'s worker).
    async fn register(&self, role: Role) -> Result<Conn, String> {
        let (world, set, root_set) = match role {
            Role::Root { world, set } => (world, None, Some(set)),
            Role::Member { mut set } => {
                let got = set.wait_for(Option::is_some).await.map_err(|_| NO_ROOT.to_string())?;
                (Vec::new(), *got, None)
            }
        };
        let _permit = self.gate.acquire().await.map_err(|e| e.to_string())?;
        let mut stream = TcpStream::connect(&self.address)
            .await
            .map_err(|e| format!("cannot connect to {}: {e}", self.address))?;
        let _ = stream.set_nodelay(true);
        // The engine's handshake (both sides prove the key; the session's keys and sequence
        // numbers), then its codec.
        let session = codec::connect(&mut stream, &self.key).await.map_err(|e| format!("handshake: {e}"))?;
        let codec = FrameCodec::with_limit(session, DEFAULT_MAX_FRAME);
        let mut conn = Framed::new(stream, codec);
        let request = RegisterRequest {
            rank: Rank(self.rank),
            size: self.size,
            pid: std::process::id(),
            hostname: SIM_HOST.into(),
            world,
            set,
        };
        conn.send(Frame::new(EngineToController::RegisterRequest(request)))
            .await
            .map_err(|e| e.to_string())?;
        loop {
            let frame = conn.next().await.ok_or("the controller closed the connection")?;
            let (msg, _) = frame.map_err(|e| e.to_string())?.into_parts().map_err(|(_, r)| r.to_string())?;
            match msg {
                ControllerToEngine::RegisterReply(reply) => {
                    let id = reply
                        .engine_id
                        .ok_or_else(|| reply.error.map(|e| e.to_string()).unwrap_or_default())?;
                    if let Some(tx) = root_set {
                        let _ = tx.send(reply.set);
                    }
                    let _ = self.registered.send(Ok(id.get()));
                    return Ok(conn);
                }
                ControllerToEngine::Ping { seq } => {
                    self.counters.pings.fetch_add(1, Ordering::Relaxed);
                    let pong = Frame::new(EngineToController::Pong { seq });
                    conn.send(pong).await.map_err(|e| e.to_string())?;
                }
                other => return Err(format!("before the registration reply: {other:?}")),
            }
        }
    }

    /// Answers pings and cells until `Shutdown` or the end of the connection.
    async fn serve(&self, mut conn: Conn) {
        let mut count = 0u64;
        while let Some(Ok(frame)) = conn.next().await {
            let Ok((msg, _)) = frame.into_parts() else { continue };
            let answer = match msg {
                ControllerToEngine::Ping { seq } => {
                    self.counters.pings.fetch_add(1, Ordering::Relaxed);
                    EngineToController::Pong { seq }
                }
                ControllerToEngine::TaskRequest(req) => {
                    self.counters.tasks.fetch_add(1, Ordering::Relaxed);
                    count += 1;
                    let now = unix_time();
                    let mut outcome = Outcome {
                        execution_count: count,
                        started: now,
                        completed: now,
                        ..Default::default()
                    };
                    if !matches!(req.task, Task::Execute { .. }) {
                        outcome.error = Some(
                            RemoteError::new("NotImplemented", "a simulated engine only runs cells").into(),
                        );
                    }
                    EngineToController::TaskReply(TaskReply { task_id: req.task_id, outcome })
                }
                ControllerToEngine::Shutdown => break,
                _ => continue,
            };
            if conn.send(Frame::new(answer)).await.is_err() {
                break;
            }
        }
    }
}
