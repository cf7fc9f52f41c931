//! [`Writer`]: the engine's frames to the controller, written by a task of the control thread:
//! heads from a small buffer, payloads from their own memory (a pulled array's slices), so no
//! write buffer keeps the capacity of the largest frame once it is sent. Payloads without a MAC
//! are MACed here.

use std::sync::{
    atomic::{AtomicUsize, Ordering},
    Arc,
};

use mpx_messages::{
    codec::{batch::BatchWriter, encode_head, fds::FdOutbox, Sealer, Verify},
    CodecError, EngineToController, Frame,
};
use tokio::{
    io::AsyncWrite,
    sync::mpsc::{unbounded_channel, UnboundedReceiver, UnboundedSender},
    task::JoinHandle,
};

/// A frame queued for writing, with the output bytes it carries (counted in the backlog).
type Queued = (Frame<EngineToController>, usize);

/// The write half of the connection to the controller.
pub struct Writer {
    tx: UnboundedSender<Queued>,
    backlog: Arc<AtomicUsize>,
}

impl Writer {
    /// Starts the writing task on the current (actix) runtime, signing and numbering frames with
    /// the session's `sealer`; it ends with the first write error, or once the writer is dropped
    /// and everything queued is written. On a Unix connection, `outbox` passes the frames'
    /// descriptors.
    pub fn start<W: AsyncWrite + Unpin + 'static>(
        io: W,
        outbox: Option<FdOutbox>,
        sealer: Sealer,
    ) -> (Writer, JoinHandle<Result<(), CodecError>>) {
        let (tx, rx) = unbounded_channel();
        let backlog = Arc::new(AtomicUsize::new(0));
        let out = match outbox {
            Some(outbox) => BatchWriter::with_outbox(io, outbox),
            None => BatchWriter::new(io),
        };
        (Writer { tx, backlog: backlog.clone() }, actix::spawn(run(out, sealer, rx, backlog)))
    }

    /// Queues a frame.
    pub fn write(&self, frame: Frame<EngineToController>) {
        let _ = self.tx.send((frame, 0));
    }

    /// Queues a frame that carries `bytes` of a task's output (counted in the
    /// [`backlog`](Self::backlog) until written).
    pub fn write_output(&self, frame: Frame<EngineToController>, bytes: usize) {
        self.backlog.fetch_add(bytes, Ordering::Relaxed);
        if self.tx.send((frame, bytes)).is_err() {
            self.backlog.fetch_sub(bytes, Ordering::Relaxed);
        }
    }

    /// Output bytes queued and not yet written to the socket.
    pub fn backlog(&self) -> usize {
        self.backlog.load(Ordering::Relaxed)
    }
}

async fn run<W: AsyncWrite + Unpin>(
    mut out: BatchWriter<W>,
    mut sealer: Sealer,
    mut rx: UnboundedReceiver<Queued>,
    backlog: Arc<AtomicUsize>,
) -> Result<(), CodecError> {
    // Replies queued together (pipelined tasks ending one after the other) go out in one write;
    // a large payload is written from its own memory.
    let mut next = rx.recv().await;
    while let Some((frame, bytes)) = next.take() {
        let head = encode_head(&mut sealer, &frame, u32::MAX as usize, Verify::All)?;
        out.frame_with_fds(&head, &frame.buffers, &frame.fds).await?;
        // Written: its payloads go now, not when the next frame comes (a pulled array's memory
        // is lent until then, see `stream::lend`).
        drop(frame);
        // Counted as sent once encoded: a batch holds at most BATCH_BYTES more.
        backlog.fetch_sub(bytes, Ordering::Relaxed);
        next = out.next(&mut rx).await?;
    }
    out.shutdown().await?;
    Ok(())
}
