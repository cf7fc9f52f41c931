//! [`FrameWriter`]: writes an actor's outgoing frames on a task of its own, the heads from a small
//! buffer and the payloads straight from their memory. Nothing is copied into a write buffer,
//! so no buffer keeps the capacity of the largest frame once it is sent.
//!
//! A [`Link`] is a handle on a writer's queue that other actors hold to forward streamed chunks
//! ([`Link::send`]): it waits while the queue holds [`QUEUE_BUDGET`] payload bytes or more,
//! which is the back-pressure of every stream through the controller.

use std::{
    sync::{
        atomic::{AtomicU64, Ordering},
        Arc,
    },
    time::{Duration, Instant},
};

use actix::{fut::wrap_future, prelude::*};
use mpx_messages::{
    codec::{batch::BatchWriter, encode_head, fds::FdOutbox, rejection, Sealer},
    CodecError, Frame, Outbound, Verify,
};
use serde::Serialize;
use thiserror::Error;
use tokio::{
    io::AsyncWrite,
    sync::{
        mpsc::{unbounded_channel, UnboundedReceiver, UnboundedSender},
        OwnedSemaphorePermit, Semaphore,
    },
    task::AbortHandle,
};
use tracing::warn;

/// Payload bytes a connection's queue may hold before [`Link::send`] waits: what the controller
/// keeps of the streams going out on one connection.
pub const QUEUE_BUDGET: usize = 16 << 20;

/// What the writer task is asked to do.
enum Cmd<H> {
    /// Write a frame (holding its share of the budget until written).
    Write(Outbound<H>, Option<OwnedSemaphorePermit>),
    /// Write a heartbeat frame: not counted as the link's traffic ([`Link::written_since`]).
    Heartbeat(Frame<H>),
    /// Flush what came before, then close the connection.
    Close,
}

/// The connection of a [`Link`] is closed: the frame was not sent.
#[derive(Debug, Clone, Copy, Error)]
#[error("the connection is closed")]
pub struct LinkClosed;

/// The writer half of a connection, owned by its actor. Frames are forwarded: their payloads go
/// out with the MACs they came with ([`Verify::HeaderOnly`]); only headers are signed here.
///
/// The actor stops when the writer is done: after [`close`](Self::close) once everything queued
/// is written, or at the first write error. Dropping the writer abandons what is still queued.
pub struct FrameWriter<H> {
    link: Option<Link<H>>,
    task: AbortHandle,
}

/// A handle on a connection's write queue, for other actors (clonable).
pub struct Link<H> {
    tx: UnboundedSender<Cmd<H>>,
    budget: Arc<Semaphore>,
    written: Arc<Written>,
}

impl<H> Clone for Link<H> {
    fn clone(&self) -> Self {
        Link { tx: self.tx.clone(), budget: self.budget.clone(), written: self.written.clone() }
    }
}

/// When the writer last wrote a frame other than a heartbeat: milliseconds since it started,
/// plus one (zero: never).
#[derive(Debug)]
struct Written {
    start: Instant,
    at_ms: AtomicU64,
}

impl Written {
    fn now(&self) {
        let ms = u64::try_from(self.start.elapsed().as_millis()).unwrap_or(u64::MAX - 1);
        self.at_ms.store(ms + 1, Ordering::Relaxed);
    }

    fn since(&self) -> Option<Duration> {
        let at = self.at_ms.load(Ordering::Relaxed).checked_sub(1)?;
        Some(self.start.elapsed().saturating_sub(Duration::from_millis(at)))
    }
}

impl<H> Link<H> {
    /// How long ago the writer last wrote a frame other than a heartbeat to the connection
    /// (`None`: never). A heartbeat is not needed on a link the peer has just been written to.
    pub fn written_since(&self) -> Option<Duration> {
        self.written.since()
    }

    /// Queues a frame at once, whatever the queue holds (small control frames).
    ///
    /// # Errors
    /// [`LinkClosed`] when the connection is closed.
    pub fn write(&self, frame: Frame<H>) -> Result<(), LinkClosed> {
        self.tx.send(Cmd::Write(Outbound::Frame(frame), None)).map_err(|_| LinkClosed)
    }

    /// Queues a frame once the queue holds less than [`QUEUE_BUDGET`] payload bytes (its own
    /// payload counted until it is written).
    ///
    /// # Errors
    /// [`LinkClosed`] when the connection is closed (before or while waiting).
    pub async fn send(&self, frame: Frame<H>) -> Result<(), LinkClosed> {
        self.send_counted(frame, 0).await.map_err(|_| LinkClosed)
    }

    /// Like [`send`](Self::send), counting `extra` bytes besides the payloads (text carried in
    /// the header, e.g. output).
    ///
    /// # Errors
    /// The frame, back, when the connection is closed (before or while waiting).
    pub async fn send_counted(&self, frame: Frame<H>, extra: usize) -> Result<(), Frame<H>> {
        let bytes: usize = frame.buffers.iter().map(|b| b.len()).sum::<usize>() + extra;
        let permits = bytes.clamp(1, QUEUE_BUDGET) as u32;
        let Ok(permit) = self.budget.clone().acquire_many_owned(permits).await else { return Err(frame) };
        self.tx.send(Cmd::Write(Outbound::Frame(frame), Some(permit))).map_err(|e| match e.0 {
            Cmd::Write(Outbound::Frame(frame), _) => frame,
            _ => unreachable!("the command given back is the one sent"),
        })
    }
}

impl<H: Serialize + 'static> FrameWriter<H> {
    /// Starts writing to `io` for the actor of `ctx`, signing and numbering headers with the
    /// session's `sealer`; frames over `limit` bytes are refused. On a Unix connection,
    /// `outbox` passes the frames' descriptors.
    pub fn start<A, W>(
        io: W,
        outbox: Option<FdOutbox>,
        sealer: Sealer,
        limit: usize,
        ctx: &mut Context<A>,
    ) -> Self
    where
        A: Actor<Context = Context<A>>,
        W: AsyncWrite + Unpin + 'static,
    {
        let (tx, rx) = unbounded_channel();
        let budget = Arc::new(Semaphore::new(QUEUE_BUDGET));
        let written = Arc::new(Written { start: Instant::now(), at_ms: AtomicU64::new(0) });
        let handle = actix::spawn(run(io, outbox, sealer, limit, rx, budget.clone(), written.clone()));
        let task = handle.abort_handle();
        ctx.spawn(wrap_future::<_, A>(handle).map(|res, _, ctx| {
            if let Ok(Err(e)) = res {
                warn!(error = %e, "writing to a connection failed; closing it");
            }
            ctx.stop();
        }));
        FrameWriter { link: Some(Link { tx, budget, written }), task }
    }

    /// Queues a frame (or the rejection marker); ignored once closed.
    pub fn write(&mut self, item: impl Into<Outbound<H>>) {
        if let Some(link) = &self.link {
            let _ = link.tx.send(Cmd::Write(item.into(), None));
        }
    }

    /// Queues a heartbeat frame (a ping), which does not count as the link's traffic; ignored
    /// once closed.
    pub fn heartbeat(&mut self, frame: Frame<H>) {
        if let Some(link) = &self.link {
            let _ = link.tx.send(Cmd::Heartbeat(frame));
        }
    }

    /// A handle on the queue for other actors; `None` once closed.
    pub fn link(&self) -> Option<Link<H>> {
        self.link.clone()
    }

    /// Closes the connection once what is queued has been written (frames other actors queue
    /// afterwards through a [`Link`] are refused).
    pub fn close(&mut self) {
        if let Some(link) = self.link.take() {
            let _ = link.tx.send(Cmd::Close);
        }
    }
}

impl<H> Drop for FrameWriter<H> {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn run<H: Serialize, W: AsyncWrite + Unpin>(
    io: W,
    outbox: Option<FdOutbox>,
    mut sealer: Sealer,
    limit: usize,
    mut rx: UnboundedReceiver<Cmd<H>>,
    budget: Arc<Semaphore>,
    written: Arc<Written>,
) -> Result<(), CodecError> {
    // Links waiting for room fail once the writer is gone.
    struct CloseOnExit(Arc<Semaphore>);
    impl Drop for CloseOnExit {
        fn drop(&mut self) {
            self.0.close();
        }
    }
    let _close = CloseOnExit(budget);
    // Small frames queued together go out in one write (many task requests or results at
    // once cost one system call); a large payload is written from its own memory.
    let mut out = match outbox {
        Some(outbox) => BatchWriter::with_outbox(io, outbox),
        None => BatchWriter::new(io),
    };
    let mut next = rx.recv().await;
    while let Some(cmd) = next.take() {
        match cmd {
            Cmd::Write(Outbound::Frame(frame), _permit) => {
                write_frame(&mut out, &mut sealer, &frame, limit).await?;
                written.now();
            }
            Cmd::Heartbeat(frame) => write_frame(&mut out, &mut sealer, &frame, limit).await?,
            Cmd::Write(Outbound::AuthRejected, _) => out.raw(&rejection()),
            Cmd::Close => break,
        }
        next = out.next(&mut rx).await?;
    }
    rx.close();
    out.shutdown().await?;
    Ok(())
}

/// Signs and numbers `frame`'s header, then writes the frame (its payloads go as they came).
async fn write_frame<H: Serialize, W: AsyncWrite + Unpin>(
    out: &mut BatchWriter<W>,
    sealer: &mut Sealer,
    frame: &Frame<H>,
    limit: usize,
) -> Result<(), CodecError> {
    let head = encode_head(sealer, frame, limit, Verify::HeaderOnly)?;
    out.frame_with_fds(&head, &frame.buffers, &frame.fds).await?;
    Ok(())
}
