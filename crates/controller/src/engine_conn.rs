//! `EngineConn` is an actor. It owns the TCP connection of one registered engine: it writes the
//! hub's tasks to it and hands the engine's replies to the hub.

use std::{
    collections::HashMap,
    net::SocketAddr,
    time::{Duration, Instant},
};

use actix::prelude::*;
use mpx_messages::{Chunk, CodecError, ControllerToEngine, EngineId, EngineToController, Frame, Payload};
use tracing::warn;

use crate::{
    forward::Downstream,
    hub::{EngineGone, EngineReply, EngineStatus, Hub, RouteOf, ToEngine},
    writer::FrameWriter,
};

/// Writer half of an engine connection.
pub type EngineWriter = FrameWriter<ControllerToEngine>;

/// One engine's connection.
pub struct EngineConn {
    /// Engine id, once registered.
    pub id: Option<EngineId>,
    /// The engine's address, for the log.
    pub peer: SocketAddr,
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
    pub routes: HashMap<u64, Downstream>,
}

impl EngineConn {
    /// Pings every period; three silent periods and the engine is declared dead.
    pub fn start_heartbeats(&mut self, ctx: &mut Context<Self>) {
        if self.heartbeat.is_zero() {
            return;
        }
        let period = self.heartbeat;
        ctx.run_interval(period, move |act, ctx| {
            if act.last_heard.elapsed() > period * 3 {
                match act.id {
                    Some(engine) => warn!(engine, "engine missed 3 heartbeats"),
                    None => warn!("an engine missed 3 heartbeats before it registered"),
                }
                act.cause = format!("it missed 3 heartbeats ({} ms period)", period.as_millis());
                ctx.stop();
                return;
            }
            act.seq += 1;
            act.writer.write(Frame::new(ControllerToEngine::Ping { seq: act.seq }));
        });
    }
}

impl Actor for EngineConn {
    type Context = Context<Self>;

    fn stopped(&mut self, _: &mut Context<Self>) {
        if let Some(id) = self.id {
            self.hub.do_send(EngineGone { id, cause: std::mem::take(&mut self.cause) });
        }
    }
}

/// Handler for `ToEngine`: write the frame.
impl Handler<ToEngine> for EngineConn {
    type Result = ();

    fn handle(&mut self, msg: ToEngine, _: &mut Context<Self>) {
        self.writer.write(msg.0);
    }
}

/// The engine's frames: the main event loop of the connection.
impl StreamHandler<Result<Frame<EngineToController>, CodecError>> for EngineConn {
    fn handle(&mut self, item: Result<Frame<EngineToController>, CodecError>, ctx: &mut Context<Self>) {
        let id = self.id.unwrap_or(u32::MAX);
        self.last_heard = Instant::now();
        match item {
            Ok(frame) => match frame.header {
                EngineToController::Pong { .. } => {}
                EngineToController::Status { req, state } => {
                    self.hub.do_send(EngineStatus { id, req, state })
                }
                EngineToController::TaskReply(reply) => {
                    self.routes.remove(&reply.task_id);
                    self.hub.do_send(EngineReply { id, reply, buffers: frame.buffers })
                }
                EngineToController::Chunk(chunk) => self.forward_chunk(id, chunk, frame.buffers, ctx),
                EngineToController::RegisterRequest(_) => {
                    warn!(engine = id, peer = %self.peer, "second registration on one connection ignored");
                }
            },
            Err(e) => {
                if matches!(e, CodecError::Replayed(_)) {
                    warn!(engine = id, peer = %self.peer, error = %e, "refused a replayed frame from an engine; closing its connection");
                } else {
                    warn!(engine = id, peer = %self.peer, error = %e, "bad frame from engine; closing its connection");
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
    /// Forwards a chunk of a streamed reply to the client that asked. Reading from the engine
    /// waits until the client's queue has room (back-pressure); the chunks of a reply nobody
    /// waits for any more are dropped (its `TaskReply` follows them through the hub).
    fn forward_chunk(&mut self, id: EngineId, chunk: Chunk, buffers: Vec<Payload>, ctx: &mut Context<Self>) {
        let task_id = chunk.stream;
        let cached = self.routes.get(&task_id).cloned();
        let hub = self.hub.clone();
        let forward = async move {
            let route = match cached {
                Some(route) => Some(route),
                None => hub.send(RouteOf { engine: id, task_id }).await.ok().flatten(),
            };
            match route {
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
