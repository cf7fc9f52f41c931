//! The accept loop: every connection opens with the handshake (`codec::accept`: both sides
//! prove they hold the key, and the session is bound to fresh nonces), then its first frame
//! says whether it is an engine or a client, and the connection is handed to a new `EngineConn`
//! or `ClientSession` actor. A refused handshake or frame is logged with the peer's address.

use std::{
    sync::{
        atomic::{AtomicU64, Ordering},
        Arc,
    },
    time::Duration,
};

use actix::prelude::*;
use futures::StreamExt;
use mpx_messages::{
    codec::{
        self,
        fd_stream::{split_with_fds, FdReadHalf, FdWriteHalf},
        fds::{FdInbox, FdOutbox},
        NonceHistory,
    },
    ClientToController, CodecError, ControllerToClient, ControllerToEngine, EngineToController, Frame,
    FrameCodec, Key, Session, Verify,
};
use serde::Deserialize;
use tokio::{
    io::{AsyncRead, AsyncWrite},
    net::{TcpListener, TcpStream, UnixListener, UnixStream},
};
use tokio_util::codec::FramedRead;
use tracing::{debug, warn};

use crate::{
    client_session::{ClientSession, CLOSE_GRACE},
    engine_conn::EngineConn,
    hub::{ClientJoined, EngineReady, Hub, Register},
    peer::Peer,
    world::{ClientId, ConnId},
    writer::FrameWriter,
};

/// The number of the next connection (engine or client): numbers are never reused.
static NEXT_CONNECTION: AtomicU64 = AtomicU64::new(1);

/// How long a new connection may take to complete the handshake and send its first frame.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// The first frame of a connection: an engine's registration or any client request.
#[derive(Deserialize)]
#[serde(untagged)]
enum First {
    Engine(EngineToController),
    Client(ClientToController),
}

/// Settings of the listener.
#[derive(Clone, Debug)]
pub struct ListenerConfig {
    /// The cluster key.
    pub key: Key,
    /// Largest frame accepted, in bytes.
    pub max_frame: usize,
    /// Heartbeat period for engines (zero: none).
    pub heartbeat: Duration,
}

/// A connection's halves: read, write, and on a Unix one where received descriptors wait for
/// their frames and where a frame's descriptors go out.
pub type Halves<C> = (<C as Connection>::Read, <C as Connection>::Write, Option<(FdInbox, FdOutbox)>);

/// A connected socket that splits into owned halves (TCP, or Unix passing descriptors).
pub trait Connection: AsyncRead + AsyncWrite + Unpin + 'static {
    /// The read half.
    type Read: AsyncRead + Unpin + 'static;
    /// The write half.
    type Write: AsyncWrite + Unpin + 'static;
    /// Splits the socket; a Unix one also gives where received descriptors wait for their
    /// frames and where a frame's descriptors go out.
    ///
    /// # Errors
    /// The socket cannot be registered anew with the runtime.
    fn halves(self) -> std::io::Result<Halves<Self>>;
}

impl Connection for TcpStream {
    type Read = tokio::net::tcp::OwnedReadHalf;
    type Write = tokio::net::tcp::OwnedWriteHalf;
    fn halves(self) -> std::io::Result<Halves<Self>> {
        let (read, write) = self.into_split();
        Ok((read, write, None))
    }
}

impl Connection for UnixStream {
    type Read = FdReadHalf;
    type Write = FdWriteHalf;
    fn halves(self) -> std::io::Result<Halves<Self>> {
        let (read, write, inbox, outbox) = split_with_fds(self)?;
        Ok((read, write, Some((inbox, outbox))))
    }
}

/// The client nonces of recent handshakes, shared by both listeners: a hello repeating one is a
/// replay, whichever socket it comes to.
pub fn nonce_history() -> Arc<NonceHistory> {
    Arc::new(NonceHistory::default())
}

/// Accepts TCP connections forever (until the System stops).
pub async fn serve(
    listener: TcpListener,
    hub: Addr<Hub>,
    config: ListenerConfig,
    history: Arc<NonceHistory>,
) {
    loop {
        match listener.accept().await {
            Ok((stream, peer)) => {
                let _ = stream.set_nodelay(true);
                actix::spawn(handshake(
                    stream,
                    Peer::Tcp(peer),
                    hub.clone(),
                    config.clone(),
                    history.clone(),
                ));
            }
            Err(e) => {
                warn!(error = %e, "accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    }
}

/// Accepts connections on the controller's Unix socket forever: peers on this host, with the
/// same handshake as over TCP (the socket's mode, 0600 in a 0700 directory, only narrows who can
/// try).
pub async fn serve_unix(
    listener: UnixListener,
    hub: Addr<Hub>,
    config: ListenerConfig,
    history: Arc<NonceHistory>,
) {
    loop {
        match listener.accept().await {
            Ok((stream, _)) => {
                let pid = stream.peer_cred().ok().and_then(|c| c.pid());
                actix::spawn(handshake(
                    stream,
                    Peer::Unix { pid },
                    hub.clone(),
                    config.clone(),
                    history.clone(),
                ));
            }
            Err(e) => {
                warn!(error = %e, "accept failed on the Unix socket");
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    }
}

/// Refuses a connection whose handshake failed, saying why in the log.
fn refuse(peer: Peer, e: &CodecError) {
    match e {
        CodecError::Replayed(_) => warn!(%peer, error = %e, "refused a replayed connection"),
        CodecError::BadProof => warn!(%peer, error = %e, "refused a connection: authentication failed"),
        CodecError::Truncated("closed before sending anything") => {
            debug!(%peer, "a connection closed at once")
        }
        _ => warn!(%peer, error = %e, "refused a connection: bad handshake"),
    }
}

async fn handshake<S: Connection>(
    mut stream: S,
    peer: Peer,
    hub: Addr<Hub>,
    config: ListenerConfig,
    history: Arc<NonceHistory>,
) {
    let deadline = tokio::time::Instant::now() + HANDSHAKE_TIMEOUT;
    let opened = tokio::time::timeout_at(deadline, codec::accept(&mut stream, &config.key, &history)).await;
    let Session { sealer, opener } = match opened {
        Ok(Ok(session)) => session,
        Ok(Err(e)) => return refuse(peer, &e),
        Err(_) => {
            warn!(%peer, "refused a connection: no handshake within {HANDSHAKE_TIMEOUT:?}");
            return;
        }
    };
    let (read, mut write, fds) = match stream.halves() {
        Ok(halves) => halves,
        Err(e) => {
            warn!(%peer, error = %e, "dropped a connection: its socket could not be registered");
            return;
        }
    };
    let (inbox, outbox) = fds.unzip();
    // Forwarding codec: payloads keep their MACs for the engines and clients they go to. The
    // handshake has proved the peer, so its first frame may be as large as any (a registration
    // carries its whole world); until one is verified, memory grows only with the bytes that
    // arrive (`UNVERIFIED_RESERVE`).
    let mut codec: FrameCodec<First, ()> = FrameCodec::reading(opener, config.max_frame, Verify::HeaderOnly);
    if let Some(inbox) = inbox {
        codec = codec.with_fds(inbox);
    }
    let mut framed = FramedRead::new(read, codec);
    let first = match tokio::time::timeout_at(deadline, framed.next()).await {
        Ok(Some(Ok(frame))) => frame,
        Ok(Some(Err(e))) => {
            warn!(%peer, error = %e, "refused a connection: bad first frame");
            if matches!(e, CodecError::BadSignature) {
                let _ = tokio::io::AsyncWriteExt::write_all(&mut write, &codec::rejection()).await;
            }
            return;
        }
        Ok(None) => {
            debug!(%peer, "a connection closed before sending anything");
            return;
        }
        Err(_) => {
            warn!(%peer, "refused a connection: no first frame within {HANDSHAKE_TIMEOUT:?}");
            return;
        }
    };
    // The reader keeps its buffer and state: bytes that came in with the first frame (a
    // pipelined request, or garbage) are decoded right away, not when more bytes arrive.
    match first.header {
        First::Engine(EngineToController::RegisterRequest(req)) => {
            let reader = framed.map_decoder(FrameCodec::retype::<EngineToController, ControllerToEngine>);
            let conn = ConnId(NEXT_CONNECTION.fetch_add(1, Ordering::Relaxed));
            let hub2 = hub.clone();
            EngineConn::create(move |ctx| {
                let writer = FrameWriter::start(write, outbox, sealer, config.max_frame, ctx);
                let link = writer.link().expect("a new writer is open");
                let local = matches!(peer, Peer::Unix { .. });
                let register = Register { conn, req, link, close: ctx.address().recipient(), local };
                ctx.wait(actix::fut::wrap_future::<_, EngineConn>(hub2.send(register)).map(
                    move |res, act, ctx| {
                        let refused = match res {
                            Ok(reply) => {
                                act.id = reply.engine_id;
                                let error = reply.error.clone();
                                act.writer.write(Frame::new(ControllerToEngine::RegisterReply(reply)));
                                error
                            }
                            Err(e) => Some(mpx_messages::MpxError::refused(e.to_string())),
                        };
                        if let Some(e) = refused {
                            warn!(%peer, error = %e, "engine registration refused");
                            // The writer stops the actor once the refusal is flushed.
                            act.writer.close();
                            ctx.run_later(CLOSE_GRACE, |_, ctx| ctx.stop());
                        } else {
                            act.start_heartbeats(ctx);
                            if let Some(id) = act.id {
                                // Tasks may go to it now that its answer is queued first.
                                act.hub.do_send(EngineReady(id));
                            }
                        }
                    },
                ));
                ctx.add_stream(reader);
                EngineConn {
                    conn,
                    id: None,
                    peer,
                    hub: hub2,
                    writer,
                    cause: String::new(),
                    heartbeat: config.heartbeat,
                    last_heard: std::time::Instant::now(),
                    seq: 0,
                    routes: Default::default(),
                }
            });
            debug!(%peer, "engine connected");
        }
        First::Engine(other) => {
            warn!(%peer, "refused a connection: engine spoke before registering ({other:?})");
        }
        First::Client(msg) => {
            let reader = framed.map_decoder(FrameCodec::retype::<ClientToController, ControllerToClient>);
            let first = Frame::with_payloads(msg, first.buffers).with_fds(first.fds);
            let stream = futures::stream::once(async move { Ok(first) }).chain(reader);
            let client = ClientId(NEXT_CONNECTION.fetch_add(1, Ordering::Relaxed));
            ClientSession::create(move |ctx| {
                let writer = FrameWriter::start(write, outbox, sealer, config.max_frame, ctx);
                let link = writer.link().expect("a new writer is open");
                hub.do_send(ClientJoined { client, link });
                ctx.add_stream(stream);
                ClientSession { client, peer, hub, writer, upstreams: Default::default() }
            });
        }
    }
}
