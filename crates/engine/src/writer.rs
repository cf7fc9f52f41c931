//! [`Writer`]: the engine's frames to the controller, written by a task of the control thread:
//! heads from a small buffer, payloads from their own memory (a pulled array's slices), so no
//! write buffer keeps the capacity of the largest frame once it is sent. Payloads without a MAC
//! are MACed here.

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

/// The write half of the connection to the controller.
pub struct Writer {
    tx: UnboundedSender<Frame<EngineToController>>,
}

impl Writer {
    /// Starts the writing task on the current (actix) runtime, signing and numbering frames with
    /// the session's `sealer`; it ends with the first write error, or once the writer is dropped
    /// and everything queued is written.
    pub fn start(io: OwnedWriteHalf, sealer: Sealer) -> (Writer, JoinHandle<Result<(), CodecError>>) {
        let (tx, rx) = unbounded_channel();
        (Writer { tx }, actix::spawn(run(io, sealer, rx)))
    }

    /// Queues a frame.
    pub fn write(&self, frame: Frame<EngineToController>) {
        let _ = self.tx.send(frame);
    }
}

async fn run(
    mut io: OwnedWriteHalf,
    mut sealer: Sealer,
    mut rx: UnboundedReceiver<Frame<EngineToController>>,
) -> Result<(), CodecError> {
    while let Some(frame) = rx.recv().await {
        let head = encode_head(&mut sealer, &frame, u32::MAX as usize, Verify::All)?;
        io.write_all(&head).await?;
        for b in &frame.buffers {
            io.write_all(b.bytes()).await?;
        }
    }
    io.shutdown().await?;
    Ok(())
}
