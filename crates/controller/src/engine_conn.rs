//! `EngineConn` is an actor. It owns the TCP connection of one registered engine: it writes the
//! hub's tasks to it and hands the engine's replies to the hub.

use std::{
    net::SocketAddr,
    time::{Duration, Instant},
};

use actix::prelude::*;
use mpx_messages::{CodecError, ControllerToEngine, EngineId, EngineToController, Frame};
use tracing::warn;

use crate::{
    hub::{EngineGone, EngineReply, EngineStatus, Hub, ToEngine},
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
                warn!(engine = ?act.id, "engine missed 3 heartbeats");
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
                    self.hub.do_send(EngineReply { id, reply, buffers: frame.buffers })
                }
                EngineToController::RegisterRequest(_) => {
                    warn!(engine = id, peer = %self.peer, "second registration on one connection ignored");
                }
            },
            Err(e) => {
                warn!(engine = id, peer = %self.peer, error = %e, "bad frame from engine; closing its connection");
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
