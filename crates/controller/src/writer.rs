//! [`FrameWriter`]: writes an actor's outgoing frames on a task of its own, the heads from a small
//! buffer and the payloads straight from their memory. Nothing is copied into a write buffer,
//! so no buffer keeps the capacity of the largest frame once it is sent.

use actix::{fut::wrap_future, prelude::*};
use mpx_messages::{
    codec::{encode_head, AUTH_REJECTED},
    CodecError, Key, Outbound, Verify,
};
use serde::Serialize;
use tokio::{
    io::AsyncWriteExt,
    net::tcp::OwnedWriteHalf,
    sync::mpsc::{unbounded_channel, UnboundedReceiver, UnboundedSender},
    task::AbortHandle,
};
use tracing::warn;

/// The writer half of a connection, owned by its actor. Frames are forwarded: their payloads go
/// out with the MACs they came with ([`Verify::HeaderOnly`]); only headers are signed here.
///
/// The actor stops when the writer is done: after [`close`](Self::close) once everything queued
/// is written, or at the first write error. Dropping the writer abandons what is still queued.
pub struct FrameWriter<H> {
    tx: Option<UnboundedSender<Outbound<H>>>,
    task: AbortHandle,
}

impl<H: Serialize + 'static> FrameWriter<H> {
    /// Starts writing to `io` for the actor of `ctx`, signing headers with `key`; frames over
    /// `limit` bytes are refused.
    pub fn start<A>(io: OwnedWriteHalf, key: Key, limit: usize, ctx: &mut Context<A>) -> Self
    where
        A: Actor<Context = Context<A>>,
    {
        let (tx, rx) = unbounded_channel();
        let handle = actix::spawn(run(io, key, limit, rx));
        let task = handle.abort_handle();
        ctx.spawn(wrap_future::<_, A>(handle).map(|res, _, ctx| {
            if let Ok(Err(e)) = res {
                warn!(error = %e, "writing to a connection failed; closing it");
            }
            ctx.stop();
        }));
        FrameWriter { tx: Some(tx), task }
    }

    /// Queues a frame (or the rejection marker); ignored once closed.
    pub fn write(&mut self, item: impl Into<Outbound<H>>) {
        if let Some(tx) = &self.tx {
            let _ = tx.send(item.into());
        }
    }

    /// Closes the connection once what is queued has been written.
    pub fn close(&mut self) {
        self.tx = None;
    }
}

impl<H> Drop for FrameWriter<H> {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn run<H: Serialize>(
    mut io: OwnedWriteHalf,
    key: Key,
    limit: usize,
    mut rx: UnboundedReceiver<Outbound<H>>,
) -> Result<(), CodecError> {
    while let Some(item) = rx.recv().await {
        match item {
            Outbound::Frame(frame) => {
                let head = encode_head(&key, &frame, limit, Verify::HeaderOnly)?;
                io.write_all(&head).await?;
                for b in &frame.buffers {
                    io.write_all(b.bytes()).await?;
                }
            }
            Outbound::AuthRejected => {
                io.write_all(&(AUTH_REJECTED.len() as u32).to_be_bytes()).await?;
                io.write_all(AUTH_REJECTED).await?;
            }
        }
    }
    io.shutdown().await?;
    Ok(())
}
