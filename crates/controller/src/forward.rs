//! Streamed arrays through the controller: the routes of their chunks and the checks made on
//! the way. A chunk's payload is forwarded as it came (its bytes and MAC untouched, never
//! hashed or copied); only its header is read and re-signed. A stream holds at most
//! [`QUEUE_BUDGET`](crate::writer::QUEUE_BUDGET) bytes in the controller: the session reading
//! the sender's socket waits ([`Link::send`]) until the receiver's queue has room.

use mpx_messages::{
    array::byte_len, Chunk, ControllerToClient, ControllerToEngine, EngineId, EngineOutput, Frame, Payload,
    Request, RequestId, TaskId, TaskOutput,
};

use thiserror::Error;

use crate::writer::{Link, LinkClosed};

/// Why a client's chunk cannot be forwarded (its stream is then aborted).
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum BadChunk {
    /// No buffer, or several.
    #[error("a chunk frame carries exactly one buffer")]
    Buffers,
    /// Its place or size does not continue the stream.
    #[error(
        "chunk of {len} bytes at offset {offset} (of {total}) does not continue the stream at {next} of {expected}"
    )]
    OutOfPlace {
        /// Its bytes.
        len: u64,
        /// Its offset.
        offset: u64,
        /// The array's size it gives.
        total: u64,
        /// The offset the stream is at.
        next: u64,
        /// The array's size the request gave.
        expected: u64,
    },
}

/// Where the chunks of a client's push or scatter go: the root engine's task.
#[derive(Clone)]
pub struct Upstream {
    /// The root engine's write queue.
    pub link: Link<ControllerToEngine>,
    /// The root's task.
    pub task_id: TaskId,
    /// Bytes of the whole array.
    pub total: u64,
    /// Bytes forwarded so far (the next chunk's offset).
    pub next: u64,
}

/// Where the chunks of an engine's reply go: the client that asked.
#[derive(Clone)]
pub struct Downstream {
    /// The client's write queue.
    pub link: Link<ControllerToClient>,
    /// The client's request.
    pub req_id: RequestId,
}

/// The byte count of a push or scatter whose frame came without buffers: its array streams in
/// chunks after the request. `None` for every other request.
pub fn streamed_total(request: &Request, buffers: &[Payload]) -> Option<u64> {
    match request {
        // (An array in a memfd does not stream: its bytes never pass through sockets.)
        Request::Push { array, .. } | Request::Scatter { array, .. }
            if buffers.is_empty() && array.fd.is_none() =>
        {
            byte_len(array.dtype, &array.shape).map(|n| n as u64)
        }
        _ => None,
    }
}

impl Upstream {
    /// The frame for the root engine carrying a client's chunk, after checking that it continues
    /// the stream with exactly one buffer that fits the array.
    ///
    /// # Errors
    /// [`BadChunk`]: why the chunk does not fit (the stream is then aborted).
    pub fn chunk_frame(
        &mut self,
        chunk: Chunk,
        mut buffers: Vec<Payload>,
    ) -> Result<Frame<ControllerToEngine>, BadChunk> {
        let Some(payload) = buffers.pop().filter(|_| buffers.is_empty()) else {
            return Err(BadChunk::Buffers);
        };
        let len = payload.len() as u64;
        if chunk.offset != self.next || chunk.total != self.total || len == 0 || self.next + len > self.total
        {
            return Err(BadChunk::OutOfPlace {
                len,
                offset: chunk.offset,
                total: chunk.total,
                next: self.next,
                expected: self.total,
            });
        }
        self.next += len;
        let chunk = Chunk { stream: self.task_id.get(), ..chunk };
        Ok(Frame::with_payloads(ControllerToEngine::Chunk(chunk), vec![payload]))
    }

    /// Whether every byte has been forwarded.
    pub fn is_complete(&self) -> bool {
        self.next == self.total
    }

    /// Tells the root engine that the array will not arrive whole.
    pub fn abort(&self, reason: impl Into<String>) {
        let abort = ControllerToEngine::StreamAbort { task_id: self.task_id, reason: reason.into() };
        let _ = self.link.write(Frame::new(abort));
    }
}

impl Downstream {
    /// Forwards a piece of an engine's output to the client, waiting for room in its queue
    /// (the text counts like a payload).
    ///
    /// # Errors
    /// The piece, back, when the client is gone.
    pub async fn forward_output(&self, engine_id: EngineId, output: TaskOutput) -> Result<(), TaskOutput> {
        let piece = EngineOutput { req_id: self.req_id, engine_id, stream: output.stream, text: output.text };
        let bytes = piece.text.len();
        match self.link.send_counted(Frame::new(ControllerToClient::Output(piece)), bytes).await {
            Ok(()) => Ok(()),
            Err(frame) => match frame.header {
                ControllerToClient::Output(piece) => {
                    Err(TaskOutput { task_id: output.task_id, stream: piece.stream, text: piece.text })
                }
                _ => unreachable!("the frame given back is the one sent"),
            },
        }
    }

    /// Forwards an engine's chunk to the client, waiting for room in its queue.
    ///
    /// # Errors
    /// [`LinkClosed`] when the client is gone.
    pub async fn forward(
        &self,
        engine_id: EngineId,
        chunk: Chunk,
        buffers: Vec<Payload>,
    ) -> Result<(), LinkClosed> {
        let chunk = Chunk { stream: self.req_id.get(), ..chunk };
        self.link.send(Frame::with_payloads(ControllerToClient::Chunk { chunk, engine_id }, buffers)).await
    }
}
