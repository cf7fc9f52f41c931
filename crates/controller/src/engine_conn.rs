//! `EngineConn` is an actor. It owns the TCP connection of one registered engine: it writes the
//! hub's tasks to it and hands the engine's replies to the hub.

use std::{
    collections::HashMap,
    time::{Duration, Instant},
};

use actix::prelude::*;
use mpx_messages::{
    Chunk, CodecError, ControllerToEngine, EngineId, EngineToController, Frame, Payload, TaskId, TaskOutput,
};
use tracing::{debug, warn};

use crate::{
    forward::Downstream,
    hub::{CloseConn, Feed, Hub, RouteOf},
    peer::Peer,
    world::{ConnId, Event},
    writer::FrameWriter,
};

/// Writer half of an engine connection.
pub type EngineWriter = FrameWriter<ControllerToEngine>;

/// One engine's connection.
pub struct EngineConn {
    /// The connection's number.
    pub conn: ConnId,
    /// Engine id, once registered.
    pub id: Option<EngineId>,
    /// The engine's address, for the log.
    pub peer: Peer,
    /// The hub.
    pub hub: Addr<Hub>,
    /// Where frames are written.
    pub writer: EngineWriter,
    /// Why the connection ended, for the hub.
    pub cause: String,
    /// Heartbeat period (zero: no heartbeats).
    pub heartbeat: Duration,
    /// When the engine was last heard from.
    pub last_heard: Instant,
    /// Next ping's sequence number.
    pub seq: u64,
    /// Where the chunks of streamed replies go, by task id (asked of the hub at the first).
    pub routes: HashMap<TaskId, Downstream>,
}

impl EngineConn {
    /// Every period, tells the hub how many periods the engine has been silent (the core
    /// decides when that is a death), and pings it unless the link is busy both ways: a ping
    /// asks the engine to speak, and tells it that the controller lives (it leaves after 3
    /// silent periods); an engine that spoke and was written to within the period needs neither
    /// (10,000 engines running cells would otherwise get 10,000 pings a second on top).
    pub fn start_heartbeats(&mut self, ctx: &mut Context<Self>) {
        if self.heartbeat.is_zero() {
            return;
        }
        let period = self.heartbeat;
        ctx.run_interval(period, move |act, _| {
            let missed = (act.last_heard.elapsed().as_millis() / period.as_millis().max(1)) as u32;
            if let (Some(engine), true) = (act.id, missed > 0) {
                act.hub.do_send(Feed(Event::HeartbeatMissed { engine, conn: act.conn, missed }));
            }
            let written = act.writer.link().and_then(|l| l.written_since());
            if !busy(act.last_heard.elapsed(), written, period) {
                act.seq += 1;
                act.writer.heartbeat(Frame::new(ControllerToEngine::Ping { seq: act.seq }));
            }
        });
    }
}

impl Actor for EngineConn {
    type Context = Context<Self>;

    fn stopped(&mut self, _: &mut Context<Self>) {
        if let Some(engine) = self.id {
            let cause = std::mem::take(&mut self.cause);
            self.hub.do_send(Feed(Event::EngineGone { engine, conn: self.conn, cause }));
        }
    }
}

/// Handler for `CloseConn`: the core declared the engine dead.
impl Handler<CloseConn> for EngineConn {
    type Result = ();

    fn handle(&mut self, _: CloseConn, ctx: &mut Context<Self>) {
        ctx.stop();
    }
}

/// The engine's frames: the main event loop of the connection.
impl StreamHandler<Result<Frame<EngineToController>, CodecError>> for EngineConn {
    fn handle(&mut self, item: Result<Frame<EngineToController>, CodecError>, ctx: &mut Context<Self>) {
        self.last_heard = Instant::now();
        let Some(id) = self.id else {
            // Frames are handled only once the hub has answered the registration; without an
            // id it was refused, and the connection is closing.
            debug!(peer = %self.peer, "a frame on a refused engine connection dropped");
            return;
        };
        match item {
            Ok(frame) => match frame.header {
                EngineToController::Pong { .. } => {}
                EngineToController::Status { req, state } => {
                    self.hub.do_send(Feed(Event::EngineStatus { engine: id, poll: req, state }))
                }
                EngineToController::TaskReply(reply) => {
                    self.routes.remove(&reply.task_id);
                    self.hub.do_send(Feed(Event::EngineReply {
                        engine: id,
                        reply,
                        buffers: frame.buffers,
                        fds: frame.fds,
                    }))
                }
                EngineToController::Blocked(report) => {
                    self.hub.do_send(Feed(Event::EngineBlocked { engine: id, report }))
                }
                EngineToController::Unblocked { task_id } => {
                    self.hub.do_send(Feed(Event::EngineUnblocked { engine: id, task_id }))
                }
                EngineToController::Abandoned(report) => {
                    self.hub.do_send(Feed(Event::EngineAbandoned { engine: id, report }))
                }
                EngineToController::Chunk(chunk) => self.forward_chunk(id, chunk, frame.buffers, ctx),
                EngineToController::Output(output) => self.forward_output(id, output, ctx),
                EngineToController::RegisterRequest(_) => {
                    warn!(engine = %id, peer = %self.peer, "second registration on one connection ignored");
                }
            },
            Err(e) => {
                if matches!(e, CodecError::Replayed(_)) {
                    warn!(engine = %id, peer = %self.peer, error = %e, "refused a replayed frame from an engine; closing its connection");
                } else {
                    warn!(engine = %id, peer = %self.peer, error = %e, "bad frame from engine; closing its connection");
                }
                self.cause = format!("its connection sent a bad frame ({e})");
                ctx.stop();
            }
        }
    }

    fn finished(&mut self, ctx: &mut Context<Self>) {
        if self.cause.is_empty() {
            self.cause = "connection closed".into();
        }
        ctx.stop();
    }
}

impl EngineConn {
    /// Where the streamed output and chunks of engine `id`'s task `task_id` go: the route cached
    /// at its first piece, or the hub's answer.
    fn route_of(
        &self,
        id: EngineId,
        task_id: TaskId,
    ) -> impl std::future::Future<Output = Option<Downstream>> {
        let cached = self.routes.get(&task_id).cloned();
        let hub = self.hub.clone();
        async move {
            match cached {
                Some(route) => Some(route),
                None => hub.send(RouteOf { engine: id, task_id }).await.ok().flatten(),
            }
        }
    }

    /// Forwards a piece of a running task's output to the client that asked, like a chunk:
    /// reading from the engine waits until the client's queue has room. A piece nobody waits
    /// for on a route goes to the core (which keeps it when the request is kept).
    fn forward_output(&mut self, id: EngineId, output: TaskOutput, ctx: &mut Context<Self>) {
        let task_id = output.task_id;
        let route = self.route_of(id, task_id);
        let hub = self.hub.clone();
        let forward = async move {
            let Some(route) = route.await else {
                let now = mpx_messages::unix_time();
                hub.do_send(Feed(Event::EngineOutput { engine: id, output, now }));
                return None;
            };
            match route.forward_output(id, output).await {
                Ok(()) => Some(route),
                Err(unsent) => {
                    // The client went away meanwhile: the core keeps it, or drops it.
                    let now = mpx_messages::unix_time();
                    hub.do_send(Feed(Event::EngineOutput { engine: id, output: unsent, now }));
                    None
                }
            }
        };
        ctx.wait(actix::fut::wrap_future::<_, Self>(forward).map(move |route, act, _| {
            act.last_heard = Instant::now();
            match route {
                Some(route) => act.routes.insert(task_id, route),
                None => act.routes.remove(&task_id),
            };
        }));
    }

    /// Forwards a chunk of a streamed reply to the client that asked. Reading from the engine
    /// waits until the client's queue has room (back-pressure); the chunks of a reply nobody
    /// waits for any more are dropped (its `TaskReply` follows them through the hub).
    fn forward_chunk(&mut self, id: EngineId, chunk: Chunk, buffers: Vec<Payload>, ctx: &mut Context<Self>) {
        let task_id = TaskId(chunk.stream);
        let route = self.route_of(id, task_id);
        let forward = async move {
            match route.await {
                Some(route) if route.forward(id, chunk, buffers).await.is_ok() => Some(route),
                _ => None,
            }
        };
        ctx.wait(actix::fut::wrap_future::<_, Self>(forward).map(move |route, act, _| {
            // Time spent waiting for the client is not the engine's silence.
            act.last_heard = Instant::now();
            match route {
                Some(route) => act.routes.insert(task_id, route),
                None => act.routes.remove(&task_id),
            };
        }));
    }
}

/// Whether a link heard from `heard` ago and written to `written` ago (pings aside; `None`:
/// never) is busy both ways within one heartbeat `period`, so that this period's ping can be
/// left out. (The pong to the last ping makes `heard` recent on an idle link, and pings do not
/// count as written: an idle link is pinged every period.)
fn busy(heard: Duration, written: Option<Duration>, period: Duration) -> bool {
    heard < period && written.is_some_and(|w| w < period)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_ping_is_left_out_only_when_the_link_is_busy_both_ways_within_the_period() {
        let (ms, period) = (Duration::from_millis, Duration::from_secs(1));
        assert!(busy(ms(10), Some(ms(20)), period));
        assert!(!busy(ms(10), None, period), "never written to: ping");
        assert!(!busy(ms(10), Some(ms(1500)), period), "not written to lately: the engine must hear us");
        assert!(!busy(ms(1500), Some(ms(10)), period), "silent engine: ping it");
        assert!(!busy(period, Some(ms(10)), period));
    }
}
