//! Arrays streaming in from the controller (pull, gather replies larger than a chunk): each
//! chunk, verified by the codec, is written into the array's final buffer.

use std::collections::HashMap;

use bytes::{Bytes, BytesMut};
use mpx_messages::{Chunk, EngineId, Outcome, RawArray, RemoteError};

use crate::reader::decode_array;

/// The arrays streaming in, by (request, engine): each written into its final buffer, allocated
/// once at its first chunk.
#[derive(Default)]
pub(crate) struct Incoming {
    streams: HashMap<(u64, EngineId), Result<BytesMut, String>>,
}

impl Incoming {
    /// Adds a chunk (verified by the codec, or `refused`) to its array.
    pub(crate) fn add(
        &mut self,
        chunk: Chunk,
        engine: EngineId,
        buffers: Vec<Bytes>,
        refused: Option<mpx_messages::Refused>,
    ) {
        let key = (chunk.stream, engine);
        let entry = self.streams.entry(key).or_insert_with(|| Ok(BytesMut::new()));
        let Ok(buf) = entry else { return };
        let bad = match (refused, buffers.as_slice()) {
            (Some(r), _) => Some(format!("refused the chunk at byte {}: {r}", chunk.offset)),
            (None, [piece])
                if chunk.offset == buf.len() as u64 && buf.len() + piece.len() <= chunk.total as usize =>
            {
                if buf.is_empty() {
                    buf.reserve(chunk.total as usize);
                }
                buf.extend_from_slice(piece);
                None
            }
            (None, _) => Some(format!(
                "chunk at byte {} of {} does not continue the array at byte {}",
                chunk.offset,
                chunk.total,
                buf.len()
            )),
        };
        if let Some(why) = bad {
            *entry = Err(why);
        }
    }

    /// The array of (request, engine), once its reply came.
    pub(crate) fn take(&mut self, req: u64, engine: EngineId) -> Option<Result<Bytes, String>> {
        self.streams.remove(&(req, engine)).map(|s| s.map(BytesMut::freeze))
    }
}

/// Decodes a streamed array; a broken stream or a bad array becomes the outcome's error.
pub(crate) fn decode_streamed(outcome: &mut Outcome, bytes: Result<Bytes, String>) -> Option<RawArray> {
    match bytes {
        Ok(bytes) => decode_array(outcome, &[bytes]),
        Err(why) => {
            outcome.error = Some(RemoteError::new("DecodeError", format!("bad array reply: {why}")).into());
            None
        }
    }
}
