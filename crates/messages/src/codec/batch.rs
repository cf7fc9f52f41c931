//! A connection's writing side that gathers small frames into one write: many task requests,
//! results or output pieces queued at once cost one system call, while a large payload is
//! written from its own memory (never copied into the batch).

use tokio::{
    io::{AsyncWrite, AsyncWriteExt},
    sync::mpsc::UnboundedReceiver,
};

use super::{fds::FdOutbox, Fds, Payload};

/// Bytes of small frames gathered into one write at most.
pub const BATCH_BYTES: usize = 256 << 10;

/// Payloads up to this size are copied into the batch; larger ones are written from their memory.
pub const SMALL_PAYLOAD: usize = 16 << 10;

/// A writer that batches small frames (see the module docs).
#[derive(Debug)]
pub struct BatchWriter<W> {
    io: W,
    batch: Vec<u8>,
    /// Where a frame's descriptors go to be attached to its first byte (Unix connections).
    outbox: Option<FdOutbox>,
}

impl<W: AsyncWrite + Unpin> BatchWriter<W> {
    /// A batching writer over `io`.
    pub fn new(io: W) -> Self {
        BatchWriter { io, batch: Vec::new(), outbox: None }
    }

    /// A batching writer over `io`, a connection that passes descriptors through `outbox`
    /// ([`super::fd_stream::FdWriteHalf`]).
    pub fn with_outbox(io: W, outbox: FdOutbox) -> Self {
        BatchWriter { io, batch: Vec::new(), outbox: Some(outbox) }
    }

    /// Writes a frame that passes descriptors: what is batched first, then the frame alone,
    /// its descriptors attached to its first byte.
    ///
    /// # Errors
    /// The socket's write error, or `InvalidInput` on a connection without an outbox.
    pub async fn frame_with_fds(
        &mut self,
        head: &[u8],
        buffers: &[Payload],
        fds: &Fds,
    ) -> std::io::Result<()> {
        if fds.is_empty() {
            return self.frame(head, buffers).await;
        }
        let Some(outbox) = self.outbox.clone() else {
            return Err(std::io::Error::new(
                std::io::ErrorKind::InvalidInput,
                "descriptors cannot pass over this connection (not a Unix one)",
            ));
        };
        self.flush().await?;
        outbox.put(fds.clone());
        self.io.write_all(head).await?;
        for b in buffers {
            self.io.write_all(b.bytes()).await?;
        }
        Ok(())
    }

    /// Adds an encoded frame head and its payloads: copied into the batch when the payloads are
    /// small, else written at once after what is batched.
    ///
    /// # Errors
    /// The socket's write error.
    pub async fn frame(&mut self, head: &[u8], buffers: &[Payload]) -> std::io::Result<()> {
        let payload: usize = buffers.iter().map(Payload::len).sum();
        if payload <= SMALL_PAYLOAD {
            self.batch.extend_from_slice(head);
            for b in buffers {
                self.batch.extend_from_slice(b.bytes());
            }
        } else {
            self.flush().await?;
            self.io.write_all(head).await?;
            for b in buffers {
                self.io.write_all(b.bytes()).await?;
            }
        }
        Ok(())
    }

    /// Adds raw bytes to the batch.
    pub fn raw(&mut self, bytes: &[u8]) {
        self.batch.extend_from_slice(bytes);
    }

    /// Writes and empties the batch.
    ///
    /// # Errors
    /// The socket's write error.
    pub async fn flush(&mut self) -> std::io::Result<()> {
        if !self.batch.is_empty() {
            self.io.write_all(&self.batch).await?;
            self.batch.clear();
        }
        Ok(())
    }

    /// The next item of `rx`: taken at once while the batch has room and more is queued;
    /// otherwise after the batch is written (waiting for the next item if none is queued).
    ///
    /// # Errors
    /// The socket's write error.
    pub async fn next<T>(&mut self, rx: &mut UnboundedReceiver<T>) -> std::io::Result<Option<T>> {
        match rx.try_recv() {
            Ok(item) if self.batch.len() < BATCH_BYTES => Ok(Some(item)),
            Ok(item) => {
                self.flush().await?;
                Ok(Some(item))
            }
            Err(_) => {
                self.flush().await?;
                Ok(rx.recv().await)
            }
        }
    }

    /// Writes what is batched and shuts the writing side down.
    ///
    /// # Errors
    /// The socket's error.
    pub async fn shutdown(mut self) -> std::io::Result<()> {
        self.flush().await?;
        self.io.shutdown().await
    }
}
