//! `ClientSession` is an actor. It owns one client's TCP connection: it decodes the client's
//! requests, hands them to the hub, and writes the hub's answers and results back.

use std::{collections::HashMap, time::Duration};

use actix::prelude::*;
use mpx_messages::{
    Chunk, ClientToController, CodecError, ControllerToClient, Frame, Outbound, Payload, RequestId,
};
use tracing::{debug, warn};

use crate::{
    forward::Upstream,
    hub::{ClientLeft, Feed, Hub, Info, Submit},
    peer::Peer,
    world::{ClientId, Event},
    writer::FrameWriter,
};

/// Writer half of a client connection.
pub type ClientWriter = FrameWriter<ControllerToClient>;

/// How long a closing connection may take to flush its last frames before it is dropped
/// anyway (a peer that does not read must not keep its session alive).
pub const CLOSE_GRACE: Duration = Duration::from_secs(5);

/// One client's connection.
pub struct ClientSession {
    /// The connection's number (the hub writes to it through its link).
    pub client: ClientId,
    /// The client's address, for the log.
    pub peer: Peer,
    /// The hub.
    pub hub: Addr<Hub>,
    /// Where frames are written.
    pub writer: ClientWriter,
    /// The client's arrays streaming to engines, by request id.
    pub upstreams: HashMap<RequestId, Upstream>,
}

impl ClientSession {
    fn reply(&mut self, msg: ControllerToClient) {
        self.writer.write(Outbound::Frame(Frame::new(msg)));
    }

    /// Closes the connection once what is written has been flushed: the writer stops the actor
    /// when it is done, or the grace period does. Stopping right
    /// away would drop frames still queued, such as [`Outbound::AuthRejected`].
    fn close(&mut self, ctx: &mut Context<Self>) {
        for (_, up) in self.upstreams.drain() {
            up.abort("the client's connection closed before the whole array arrived; nothing was bound");
        }
        self.writer.close();
        ctx.run_later(CLOSE_GRACE, |_, ctx| ctx.stop());
    }
}

impl Actor for ClientSession {
    type Context = Context<Self>;

    fn stopped(&mut self, _: &mut Context<Self>) {
        self.hub.do_send(ClientLeft(self.client));
    }
}

/// The client's frames: the one dispatch point of this channel.
impl StreamHandler<Result<Frame<ClientToController>, CodecError>> for ClientSession {
    fn handle(&mut self, item: Result<Frame<ClientToController>, CodecError>, ctx: &mut Context<Self>) {
        let frame = match item {
            Ok(frame) => frame,
            Err(e) => {
                if matches!(e, CodecError::Replayed(_)) {
                    warn!(peer = %self.peer, error = %e, "refused a replayed frame from a client; closing its connection");
                } else {
                    warn!(peer = %self.peer, error = %e, "bad frame from a client; closing its connection");
                }
                if matches!(e, CodecError::BadSignature) {
                    self.writer.write(Outbound::AuthRejected);
                }
                self.close(ctx);
                return;
            }
        };
        match frame.header {
            ClientToController::InfoRequest => {
                self.hub
                    .send(Info)
                    .into_actor(self)
                    .map(|res, act, _| {
                        if let Ok(info) = res {
                            act.reply(ControllerToClient::InfoReply(info));
                        }
                    })
                    .wait(ctx);
            }
            ClientToController::SubmitRequest(mut req) => {
                let req_id = req.req_id;
                if !matches!(self.peer, Peer::Unix { .. }) {
                    // Only a client on this host can map what engines here would send back.
                    if let mpx_messages::Request::Pull { shm, .. } = &mut req.request {
                        *shm = false;
                    }
                }
                // `wait`: the route of a streamed array is known before its chunks are read.
                // (The hub writes the SubmitReply ahead of any result, on the same queue.)
                self.hub
                    .send(Submit { client: self.client, req, buffers: frame.buffers, fds: frame.fds })
                    .into_actor(self)
                    .map(move |res, act, _| {
                        if let Ok(Some(up)) = res {
                            act.upstreams.insert(req_id, up);
                        }
                    })
                    .wait(ctx);
            }
            ClientToController::Chunk(chunk) => self.forward_chunk(chunk, frame.buffers, ctx),
            ClientToController::InterruptRequest { targets } => {
                self.hub.do_send(Feed(Event::Interrupt { client: self.client, targets }));
            }
            ClientToController::WhereRequest => {
                self.hub.do_send(Feed(Event::Where { client: self.client }));
            }
            ClientToController::AbortRequest { reason } => {
                self.hub.do_send(Feed(Event::Abort { client: self.client, reason }));
            }
            ClientToController::HistoryRequest => {
                self.hub.do_send(Feed(Event::History { client: self.client }));
            }
            ClientToController::RestartRequest { reason } => {
                self.hub.do_send(Feed(Event::Restart { client: self.client, reason }));
            }
            ClientToController::BalancedRequest(req) => {
                let buffers = frame.buffers;
                self.hub.do_send(Feed(Event::SubmitBalanced { client: self.client, req, buffers }));
            }
            ClientToController::ShutdownRequest => {
                self.hub.do_send(Feed(Event::Shutdown { client: self.client }));
            }
            ClientToController::Adopt { req_id, id } => {
                let now = mpx_messages::unix_time();
                self.hub.do_send(Feed(Event::Adopt { client: self.client, req_id, id, now }));
            }
        }
    }

    fn finished(&mut self, ctx: &mut Context<Self>) {
        self.close(ctx);
    }
}

impl ClientSession {
    /// Forwards a chunk of a streamed array to its root engine. Reading from the client waits
    /// until the engine's queue has room (back-pressure); a chunk that does not continue its
    /// stream aborts it, and a lost engine drops the rest (its tasks fail through the hub).
    fn forward_chunk(&mut self, chunk: Chunk, buffers: Vec<Payload>, ctx: &mut Context<Self>) {
        let req_id = RequestId(chunk.stream);
        let Some(up) = self.upstreams.get_mut(&req_id) else {
            debug!(peer = %self.peer, req = %req_id, "chunk of no streaming request dropped");
            return;
        };
        let frame = match up.chunk_frame(chunk, buffers) {
            Ok(frame) => frame,
            Err(why) => {
                warn!(peer = %self.peer, req = %req_id, %why, "bad chunk; the stream is aborted");
                up.abort(format!("the client sent a bad chunk ({why}); nothing was bound"));
                self.upstreams.remove(&req_id);
                return;
            }
        };
        let link = up.link.clone();
        if up.is_complete() {
            self.upstreams.remove(&req_id);
        }
        ctx.wait(actix::fut::wrap_future::<_, Self>(async move { link.send(frame).await }).map(
            move |sent, act, _| {
                if sent.is_err() {
                    act.upstreams.remove(&req_id);
                }
            },
        ));
    }
}
