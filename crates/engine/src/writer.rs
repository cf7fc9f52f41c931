//! [`Writer`]: the engine's frames to the controller, written by a task of the control thread:
//! heads from a small buffer, payloads from their own memory (a pulled array's slices), so no
//! write buffer keeps the capacity of the largest frame once it is sent. Payloads without a MAC
//! are MACed here.

use std::sync::{
    atomic::{AtomicUsize, Ordering},
    Arc,
};

use mpx_messages::{
    codec::{encode_head, Sealer, Verify},
    CodecError, EngineToController, Frame,
};
use tokio::{
    io::AsyncWriteExt,
    net::tcp::OwnedWriteHalf,
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
    /// and everything queued is written.
    pub fn start(io: OwnedWriteHalf, sealer: Sealer) -> (Writer, JoinHandle<Result<(), CodecError>>) {
        let (tx, rx) = unbounded_channel();
        let backlog = Arc::new(AtomicUsize::new(0));
        (Writer { tx, backlog: backlog.clone() }, actix::spawn(run(io, sealer, rx, backlog)))
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

/// Bytes of small frames gathered into one write at most.
const BATCH_BYTES: usize = 256 << 10;

/// Payloads up to this size are copied into the batch; larger ones are written from their memory.
const SMALL_PAYLOAD: usize = 16 << 10;

/// Writes and empties the batch.
async fn flush(io: &mut OwnedWriteHalf, batch: &mut Vec<u8>) -> std::io::Result<()> {
    if !batch.is_empty() {
        io.write_all(batch).await?;
        batch.clear();
    }
    Ok(())
}

async fn run(
    mut io: OwnedWriteHalf,
    mut sealer: Sealer,
    mut rx: UnboundedReceiver<Queued>,
    backlog: Arc<AtomicUsize>,
) -> Result<(), CodecError> {
    // Replies queued together (pipelined tasks ending one after the other) go out in one write;
    // a large payload is written from its own memory.
    let mut batch: Vec<u8> = Vec::new();
    let mut next = rx.recv().await;
    while let Some((frame, bytes)) = next.take() {
        let head = encode_head(&mut sealer, &frame, u32::MAX as usize, Verify::All)?;
        let payload: usize = frame.buffers.iter().map(|b| b.len()).sum();
        if payload <= SMALL_PAYLOAD {
            batch.extend_from_slice(&head);
            for b in &frame.buffers {
                batch.extend_from_slice(b.bytes());
            }
        } else {
            flush(&mut io, &mut batch).await?;
            io.write_all(&head).await?;
            for b in &frame.buffers {
                io.write_all(b.bytes()).await?;
            }
        }
        // Counted as sent once encoded: a batch holds at most BATCH_BYTES more.
        backlog.fetch_sub(bytes, Ordering::Relaxed);
        next = match rx.try_recv() {
            Ok(frame) if batch.len() < BATCH_BYTES => Some(frame),
            Ok(frame) => {
                flush(&mut io, &mut batch).await?;
                Some(frame)
            }
            Err(_) => {
                flush(&mut io, &mut batch).await?;
                rx.recv().await
            }
        };
    }
    flush(&mut io, &mut batch).await?;
    io.shutdown().await?;
    Ok(())
}
