//! Arrays coming in from the controller: in a reply's own buffers ([`decode_array`]), or
//! streaming in (pull, gather replies larger than a chunk), where each chunk, verified by the
//! codec, is written into the array's final buffer.

use std::collections::HashMap;

use bytes::{Bytes, BytesMut};
use mpx_messages::{
    codec::blocking::Landing, memfd::Mapping, Binding, Chunk, ControllerToClient, EngineId, MpxError,
    Outcome, RawArray, RequestId,
};

/// The arrays streaming in, by (request, engine): each written into its final buffer, allocated
/// once at its first chunk; or why it broke ([`MpxError::Authentication`] for a chunk refused or
/// out of its place, [`MpxError::Stream`] for one that does not continue it).
#[derive(Default)]
pub(crate) struct Incoming {
    streams: HashMap<(RequestId, EngineId), Result<Stream, MpxError>>,
}

/// One array streaming in: its bytes so far, and the binding its next chunk must carry (the
/// origin of its first chunk, and the next number). A chunk of another stream, or one sent
/// again, is out of its place: the controller forwards chunks without hashing them, and this
/// keeps them in their place end to end.
#[derive(Default)]
struct Stream {
    bytes: Buffer,
    origin: Option<u64>,
    next: u64,
}

/// An array's final buffer: a warm memfd (`mpx_messages::memfd::warm`: pages already
/// allocated, idle again when the array is freed) for the sizes it keeps, else the heap.
enum Buffer {
    Heap(BytesMut),
    Warm { map: Mapping, filled: usize },
}

impl Default for Buffer {
    fn default() -> Self {
        Buffer::Heap(BytesMut::new())
    }
}

impl Buffer {
    /// Bytes written so far.
    fn len(&self) -> usize {
        match self {
            Buffer::Heap(b) => b.len(),
            Buffer::Warm { filled, .. } => *filled,
        }
    }

    /// Makes room for the whole array (`total` bytes) at its first chunk.
    fn start(&mut self, total: usize) {
        *self = match mpx_messages::memfd::warm::receive(total) {
            Some(map) => Buffer::Warm { map, filled: 0 },
            None => Buffer::Heap(BytesMut::with_capacity(total)),
        };
    }

    /// Whether `chunk`, `len` bytes, continues the array: at its end, within the total it
    /// says, and within the mapping made for the total of the array's first chunk.
    fn continued_by(&self, chunk: &Chunk, len: usize) -> bool {
        let at = self.len();
        let fits = match self {
            Buffer::Warm { map, .. } if at > 0 => at.checked_add(len).is_some_and(|end| end <= map.len()),
            _ => true,
        };
        chunk.offset == at as u64
            && at.checked_add(len).is_some_and(|end| end <= chunk.total as usize)
            && fits
    }

    /// Appends a piece (it fits: checked against the total first).
    fn extend(&mut self, piece: &[u8]) {
        match self {
            Buffer::Heap(b) => b.extend_from_slice(piece),
            Buffer::Warm { map, filled } => {
                map.as_mut_slice()[*filled..*filled + piece.len()].copy_from_slice(piece);
                *filled += piece.len();
            }
        }
    }

    /// The bytes written.
    fn freeze(self) -> Bytes {
        match self {
            Buffer::Heap(b) => b.freeze(),
            Buffer::Warm { map, filled } => Bytes::from_owner(map).slice(..filled),
        }
    }
}

impl Stream {
    /// Why the chunk at `offset` with `binding` (`refused`: its MAC did not match) cannot join
    /// this array, if it cannot (see [`Stream::in_place`]).
    fn refusal(
        &mut self,
        offset: u64,
        binding: Option<Binding>,
        refused: Option<mpx_messages::Refused>,
    ) -> Option<MpxError> {
        let in_place = self.in_place(binding);
        match refused {
            Some(r) => Some(MpxError::authentication(format!("refused the chunk at byte {offset}: {r}"))),
            None if !in_place => Some(MpxError::authentication(format!(
                "refused the chunk at byte {offset}: it is not the next chunk of this array (another array's, or sent again)"
            ))),
            None => None,
        }
    }

    fn in_place(&mut self, binding: Option<Binding>) -> bool {
        let Some(b) = binding else { return false };
        let ok = *self.origin.get_or_insert(b.origin) == b.origin && b.index == self.next;
        self.next += 1;
        ok
    }
}

impl Incoming {
    /// Adds a chunk (verified by the codec, or `refused`; its buffers with the first one's
    /// binding) to its array.
    pub(crate) fn add(
        &mut self,
        chunk: Chunk,
        engine: EngineId,
        (buffers, binding): (Vec<Bytes>, Option<Binding>),
        refused: Option<mpx_messages::Refused>,
    ) {
        let key = (RequestId(chunk.stream), engine);
        let entry = self.streams.entry(key).or_insert_with(|| Ok(Stream::default()));
        let Ok(stream) = entry else { return };
        let refusal = stream.refusal(chunk.offset, binding, refused);
        let buf = &mut stream.bytes;
        let bad = match (refusal, buffers.as_slice()) {
            (Some(why), _) => Some(why),
            (None, [piece]) if buf.continued_by(&chunk, piece.len()) => {
                if buf.len() == 0 {
                    buf.start(chunk.total as usize);
                }
                buf.extend(piece);
                None
            }
            (None, _) => Some(MpxError::stream(format!(
                "chunk at byte {} of {} does not continue the array at byte {}",
                chunk.offset,
                chunk.total,
                buf.len()
            ))),
        };
        if let Some(why) = bad {
            *entry = Err(why);
        }
    }

    /// Where the next chunk of `chunk`'s array (`len` bytes, from `engine`) is read in place:
    /// its part of the array's final buffer, when that buffer is a mapping and the chunk
    /// continues the array (else `None`: the chunk is read as a frame and [`add`](Self::add)ed,
    /// which says what is wrong with it).
    pub(crate) fn room(&mut self, chunk: &Chunk, engine: EngineId, len: usize) -> Option<&mut [u8]> {
        let key = (RequestId(chunk.stream), engine);
        let Ok(stream) = self.streams.entry(key).or_insert_with(|| Ok(Stream::default())) else {
            return None;
        };
        let buf = &mut stream.bytes;
        if !buf.continued_by(chunk, len) {
            return None;
        }
        let at = buf.len();
        if at == 0 {
            buf.start(chunk.total as usize);
        }
        match buf {
            Buffer::Warm { map, .. } => map.as_mut_slice().get_mut(at..at + len),
            Buffer::Heap(_) => None,
        }
    }

    /// A chunk of `len` bytes was read into its [`room`](Self::room), with `binding`
    /// (`refused`: its MAC did not match).
    pub(crate) fn landed(
        &mut self,
        chunk: &Chunk,
        engine: EngineId,
        len: usize,
        binding: Binding,
        refused: Option<mpx_messages::Refused>,
    ) {
        let key = (RequestId(chunk.stream), engine);
        let Some(entry) = self.streams.get_mut(&key) else { return };
        let Ok(stream) = entry else { return };
        match stream.refusal(chunk.offset, Some(binding), refused) {
            Some(why) => *entry = Err(why),
            None => {
                if let Buffer::Warm { filled, .. } = &mut stream.bytes {
                    *filled += len;
                }
            }
        }
    }

    /// The array of (request, engine), once its reply came.
    pub(crate) fn take(&mut self, req: RequestId, engine: EngineId) -> Option<Result<Bytes, MpxError>> {
        self.streams.remove(&(req, engine)).map(|s| s.map(|s| s.bytes.freeze()))
    }
}

/// A chunk's payload is read straight into its array ([`Incoming::room`]).
impl Landing<ControllerToClient> for Incoming {
    fn place(&mut self, header: &ControllerToClient, len: usize) -> Option<&mut [u8]> {
        match header {
            ControllerToClient::Chunk { chunk, engine_id } => self.room(chunk, *engine_id, len),
            _ => None,
        }
    }
}

/// Decodes a streamed array; a broken stream or a bad array becomes the outcome's error.
pub(crate) fn decode_streamed(outcome: &mut Outcome, bytes: Result<Bytes, MpxError>) -> Option<RawArray> {
    match bytes {
        Ok(bytes) => decode_array(outcome, &[bytes]),
        Err(why) => {
            outcome.error = Some(why);
            None
        }
    }
}

/// Decodes the array an outcome refers to; a bad one becomes the outcome's error.
pub(crate) fn decode_array(outcome: &mut Outcome, buffers: &[Bytes]) -> Option<RawArray> {
    let meta = outcome.array.as_ref()?;
    match RawArray::from_meta(meta, buffers) {
        Ok(a) => Some(a),
        Err(why) => {
            outcome.error = Some(MpxError::decode(format!("bad array reply: {why}")));
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn add(incoming: &mut Incoming, offset: u64, origin: u64, index: u64, bytes: &'static [u8]) {
        let chunk = Chunk { stream: 1, offset, total: 6 };
        incoming.add(
            chunk,
            EngineId(0),
            (vec![Bytes::from_static(bytes)], Some(Binding { origin, index })),
            None,
        );
    }

    #[test]
    fn chunks_are_taken_only_in_their_place() {
        let mut incoming = Incoming::default();
        add(&mut incoming, 0, 7, 0, b"ab");
        add(&mut incoming, 2, 7, 1, b"cd");
        add(&mut incoming, 4, 7, 2, b"ef");
        assert_eq!(incoming.take(RequestId(1), EngineId(0)), Some(Ok(Bytes::from_static(b"abcdef"))));
        // A chunk sent again, and one of another stream, each break their array.
        for (origin, index) in [(7, 1), (8, 2)] {
            let mut incoming = Incoming::default();
            add(&mut incoming, 0, 7, 0, b"ab");
            add(&mut incoming, 2, 7, 1, b"cd");
            add(&mut incoming, 4, origin, index, b"ef");
            let got = incoming.take(RequestId(1), EngineId(0)).expect("a stream");
            assert!(
                matches!(&got, Err(MpxError::Authentication { reason }) if reason.contains("not the next chunk")),
                "({origin}, {index}): {got:?}"
            );
        }
        // A chunk in its place whose bytes do not continue the array breaks it as a stream.
        let mut incoming = Incoming::default();
        add(&mut incoming, 0, 7, 0, b"ab");
        add(&mut incoming, 4, 7, 1, b"ef");
        let got = incoming.take(RequestId(1), EngineId(0)).expect("a stream");
        assert!(
            matches!(&got, Err(MpxError::Stream { reason }) if reason.contains("does not continue")),
            "{got:?}"
        );
    }

    /// Lands `bytes` as the chunk at `offset` of a stream of `total` bytes, as the reader does.
    fn land(
        incoming: &mut Incoming,
        offset: u64,
        total: u64,
        index: u64,
        bytes: &[u8],
        refused: bool,
    ) -> bool {
        let chunk = Chunk { stream: 1, offset, total };
        let Some(room) = incoming.room(&chunk, EngineId(0), bytes.len()) else { return false };
        room[..bytes.len()].copy_from_slice(bytes);
        let refused = refused.then_some(mpx_messages::Refused { index: 0 });
        incoming.landed(&chunk, EngineId(0), bytes.len(), Binding { origin: 7, index }, refused);
        true
    }

    #[test]
    fn chunks_land_in_their_array_and_only_in_their_place() {
        let (total, half) = (8usize << 20, 4usize << 20);
        let whole: Vec<u8> = (0..total).map(|i| (i % 253) as u8).collect();
        let mut incoming = Incoming::default();
        assert!(land(&mut incoming, 0, total as u64, 0, &whole[..half], false));
        // A chunk that does not continue the array gets no place (read whole, then `add`ed).
        assert!(incoming
            .room(&Chunk { stream: 1, offset: 0, total: total as u64 }, EngineId(0), half)
            .is_none());
        assert!(land(&mut incoming, half as u64, total as u64, 1, &whole[half..], false));
        let got = incoming.take(RequestId(1), EngineId(0)).expect("a stream").expect("whole");
        assert!(got[..] == whole[..], "the landed chunks are the array");
        // A refused chunk, and one out of its place, break the array.
        for (index, refused, why) in [(1, true, "refused the chunk"), (5, false, "not the next chunk")] {
            let mut incoming = Incoming::default();
            assert!(land(&mut incoming, 0, total as u64, 0, &whole[..half], false));
            assert!(land(&mut incoming, half as u64, total as u64, index, &whole[half..], refused));
            let got = incoming.take(RequestId(1), EngineId(0)).expect("a stream");
            assert!(
                matches!(&got, Err(MpxError::Authentication { reason }) if reason.contains(why)),
                "{got:?}"
            );
        }
        // A chunk that says the array is larger than its first chunk said breaks it (no place,
        // and no write past the array).
        let mut incoming = Incoming::default();
        assert!(land(&mut incoming, 0, total as u64, 0, &whole[..half], false));
        let larger = Chunk { stream: 1, offset: half as u64, total: 2 * total as u64 };
        assert!(incoming.room(&larger, EngineId(0), total).is_none());
        let piece = Bytes::from(vec![0u8; total]);
        incoming.add(larger, EngineId(0), (vec![piece], Some(Binding { origin: 7, index: 1 })), None);
        let got = incoming.take(RequestId(1), EngineId(0)).expect("a stream");
        assert!(matches!(&got, Err(MpxError::Stream { .. })), "{got:?}");
        // An array too small for a memfd of its own is not landed (its chunks are copied).
        let mut incoming = Incoming::default();
        assert!(!land(&mut incoming, 0, 6, 0, b"abc", false));
    }
}
