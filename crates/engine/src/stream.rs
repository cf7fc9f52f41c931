//! Streamed arrays on the engine. An array larger than one chunk moves as a sequence of chunk
//! frames, each MACed by its sender and verified by the control thread's codec before the MPI
//! thread sees it:
//! - in (push, scatter): the control thread hands the root's chunks to the MPI thread through a
//!   channel ([`Source::Stream`]); the root copies each into the final array and the group moves
//!   it on with MPI while the next chunk is still arriving;
//! - out (pull, gather): the MPI thread hands chunks to the control thread ([`Sink`]), which
//!   writes them while the next one is gathered.
//!
//! Every rank of a group steps through the root's chunks together: before each one the root
//! broadcasts whether it has it, so a broken stream (client gone, bad chunk MAC, controller
//! lost) ends the collective on every rank at once, with nothing bound.

use std::{
    cell::Cell,
    sync::{
        mpsc::{sync_channel, Receiver, RecvTimeoutError, Sender, SyncSender},
        Arc,
    },
    time::{Duration, Instant},
};

use actix::Recipient;
use bytes::Bytes;
use mpi::{topology::SimpleCommunicator, traits::*, Count};
pub use mpx_messages::array::chunk_bytes;
use mpx_messages::{Binding, Chunk, Dtype, Key, MpxError, Payload, RemoteError, TaskId};

use crate::control::ChunkOut;

/// A chunk of a streamed request, as the control thread hands it over: (offset, total, bytes)
/// after its MAC was verified, or why the stream broke ([`MpxError::Authentication`] for a
/// refused chunk, [`MpxError::Stream`] for one that does not continue it or an aborted stream).
pub type ChunkIn = Result<(u64, u64, Bytes), MpxError>;

/// A cell-level error of the array's bytes (they do not hold the array).
fn value_error(evalue: impl Into<String>) -> MpxError {
    MpxError::Cell(RemoteError::new("ValueError", evalue))
}

/// Where the root's bytes of a push or scatter come from.
pub enum Source {
    /// The request's frame (`None`: it had no usable buffer).
    Inline(Option<Bytes>),
    /// Chunk frames after the request.
    Stream(Receiver<ChunkIn>),
}

impl Source {
    /// Whether the source can give `total` bytes (checked before any collective starts).
    pub fn check(&self, total: usize) -> Result<(), MpxError> {
        match self {
            Source::Inline(None) => Err(value_error("the array's bytes are missing")),
            Source::Inline(Some(b)) if b.len() != total => Err(value_error(format!(
                "{} bytes do not hold the array ({total} bytes from its dtype and shape)",
                b.len()
            ))),
            _ => Ok(()),
        }
    }

    /// The next piece, at byte `pos` of `total`.
    fn next(&mut self, pos: usize, total: usize) -> Result<Bytes, MpxError> {
        match self {
            Source::Inline(Some(b)) => Ok(b.slice(pos..total.min(pos + chunk_bytes()))),
            Source::Inline(None) => Err(value_error("the array's bytes are missing")),
            Source::Stream(rx) => {
                let (offset, whole, bytes) = rx.recv().map_err(|_| {
                    MpxError::stream("the connection to the controller was lost mid-stream")
                })??;
                if offset != pos as u64
                    || whole != total as u64
                    || bytes.is_empty()
                    || pos + bytes.len() > total
                {
                    return Err(MpxError::stream(format!(
                        "chunk of {} bytes at {offset} of {whole} does not continue the array at {pos} of {total}",
                        bytes.len()
                    )));
                }
                Ok(bytes)
            }
        }
    }
}

/// A streamed request's chunks as the control thread receives them: where they go, and the
/// binding the next one must carry (the stream's origin, set by its first chunk, and its number).
pub struct StreamIn {
    /// To the MPI thread.
    pub tx: Sender<ChunkIn>,
    /// The origin of the stream's first chunk.
    origin: Option<u64>,
    /// The next chunk's number.
    next: u64,
}

impl StreamIn {
    /// A stream whose first chunk is still to come.
    pub fn new(tx: Sender<ChunkIn>) -> StreamIn {
        StreamIn { tx, origin: None, next: 0 }
    }

    /// Whether a chunk bound to `binding` is the next of this stream: the same origin as the
    /// first, at the next number. A chunk of another stream, or one sent again, is not (the
    /// controller forwards chunks without hashing them; this keeps them in their place end to
    /// end).
    pub fn in_place(&mut self, binding: Option<Binding>) -> bool {
        let Some(b) = binding else { return false };
        let ok = *self.origin.get_or_insert(b.origin) == b.origin && b.index == self.next;
        self.next += 1;
        ok
    }
}

/// Where the chunks of a streamed reply go: the control thread, for task `task_id`.
pub struct Sink {
    /// The task replied to.
    pub task_id: TaskId,
    /// The control actor.
    pub to: Recipient<ChunkOut>,
    /// The cluster's key: chunks are MACed here, on the MPI thread, while the control thread
    /// writes the one before.
    pub key: Arc<Key>,
    /// The stream's origin (a fresh random number): every chunk is bound to it and its number.
    pub origin: u64,
    /// The next chunk's number.
    pub next: Cell<u64>,
}

impl Sink {
    /// The sink of task `task_id`'s reply, with a fresh origin.
    pub fn new(task_id: TaskId, to: Recipient<ChunkOut>, key: Arc<Key>) -> Sink {
        // Without OS randomness (never seen on Linux), the task id still tells streams apart.
        let origin = Binding::fresh_origin().unwrap_or(task_id.get());
        Sink { task_id, to, key, origin, next: Cell::new(0) }
    }

    /// Sends `bytes` as the next chunk, at `offset` of `total`, bound to the stream's origin and
    /// the chunk's number and MACed here (the control thread's writer only writes it).
    pub fn send(&self, offset: usize, total: usize, bytes: Bytes) {
        let chunk = Chunk { stream: self.task_id.get(), offset: offset as u64, total: total as u64 };
        let index = self.next.replace(self.next.get() + 1);
        let binding = Binding { origin: self.origin, index };
        let mac = self.key.payload_mac(binding, &bytes);
        self.to.do_send(ChunkOut(chunk, Payload::with_mac(bytes, binding, mac)));
    }

    /// Sends all of `bytes` in chunks of [`chunk_bytes`].
    pub fn send_all(&self, bytes: &Bytes) {
        let step = chunk_bytes();
        for pos in (0..bytes.len()).step_by(step) {
            self.send(pos, bytes.len(), bytes.slice(pos..bytes.len().min(pos + step)));
        }
    }
}

/// Steps every rank of `comm` (`None`: this engine alone) through the root's pieces of a
/// `total`-byte array: the root (the one with a `source`) takes each piece, checks it (bool
/// bytes are 0 or 1) and broadcasts `[status, length]`; then `each(pos, len, piece)` moves it
/// on every rank (`piece` only at the root).
///
/// # Errors
/// At the root, why its stream broke; elsewhere, that it broke at the root.
pub fn step_pieces(
    comm: Option<&SimpleCommunicator>,
    mut source: Option<&mut Source>,
    dtype: Dtype,
    total: usize,
    mut each: impl FnMut(usize, usize, Option<&[u8]>),
) -> Result<(), MpxError> {
    let root = source.is_some();
    let mut pos = 0;
    while pos < total {
        let mut piece = None;
        let mut failed = None;
        let mut head = [0u64; 2];
        if let Some(source) = source.as_deref_mut() {
            match source.next(pos, total).and_then(|b| check_bools(dtype, pos, b)) {
                Ok(b) => {
                    head = [0, b.len() as u64];
                    piece = Some(b);
                }
                Err(e) => {
                    head = [1, 0];
                    failed = Some(e);
                }
            }
        }
        if let Some(comm) = comm {
            bcast_head(comm, &mut head, root);
        }
        if head[0] != 0 {
            return Err(failed.unwrap_or_else(|| {
                MpxError::stream(
                    "the array did not reach the root engine whole (see its error); nothing was bound",
                )
            }));
        }
        let len = head[1] as usize;
        each(pos, len, piece.as_deref());
        pos += len;
    }
    Ok(())
}

/// The longest a streamed reply's bytes may stay lent to the control thread (written to the
/// controller) before the MPI thread gives up waiting for them.
pub const LEND_TIMEOUT: Duration = Duration::from_secs(600);

/// Bytes lent to the control thread: the owner of every slice of a [`lend`]'s bytes, whose drop
/// (the last slice written and dropped) tells the lender.
struct Lent {
    bytes: Bytes,
    _back: SyncSender<()>,
}

impl AsRef<[u8]> for Lent {
    fn as_ref(&self) -> &[u8] {
        &self.bytes
    }
}

/// `bytes` (which may be a kernel array's own memory), and what tells when every slice of them
/// has been dropped: [`Returned::wait`].
pub fn lend(bytes: Bytes) -> (Bytes, Returned) {
    let (tx, rx) = sync_channel(0);
    (Bytes::from_owner(Lent { bytes, _back: tx }), Returned(rx))
}

/// The end of a [`lend`]: every slice of the lent bytes dropped.
pub struct Returned(Receiver<()>);

impl Returned {
    /// Waits until every slice of the lent bytes is dropped (written to the socket, or dropped
    /// with a connection that broke).
    ///
    /// # Errors
    /// They were still held after `timeout`.
    pub fn wait(self, timeout: Duration) -> Result<(), MpxError> {
        match self.0.recv_timeout(timeout) {
            Err(RecvTimeoutError::Disconnected) | Ok(()) => Ok(()),
            Err(RecvTimeoutError::Timeout) => {
                Err(MpxError::stream(format!("the array was not sent within {} s", timeout.as_secs())))
            }
        }
    }
}

/// Buffers for the pieces a root gathers and streams: at most `count` of them exist, each
/// reused once the control thread has written the piece it held (so the root allocates and
/// faults in fresh memory only `count` times, and waits when every buffer is still queued).
pub struct Pieces {
    back: Sender<Vec<u8>>,
    free: Receiver<Vec<u8>>,
    made: usize,
    count: usize,
}

/// A piece's buffer while its bytes are lent out: given back to its [`Pieces`] when dropped.
struct Piece {
    buf: Vec<u8>,
    back: Sender<Vec<u8>>,
}

impl AsRef<[u8]> for Piece {
    fn as_ref(&self) -> &[u8] {
        &self.buf
    }
}

impl Drop for Piece {
    fn drop(&mut self) {
        let _ = self.back.send(std::mem::take(&mut self.buf));
    }
}

impl Pieces {
    /// A pool of at most `count` piece buffers.
    pub fn new(count: usize) -> Pieces {
        let (back, free) = std::sync::mpsc::channel();
        Pieces { back, free, made: 0, count: count.max(1) }
    }

    /// A buffer of `len` bytes (contents unspecified: the caller fills every byte), once one
    /// is free (or fewer than `count` exist).
    ///
    /// # Errors
    /// Every buffer was still lent out after `timeout`.
    pub fn take(&mut self, len: usize, timeout: Duration) -> Result<Vec<u8>, MpxError> {
        let mut buf = match self.free.try_recv() {
            Ok(buf) => buf,
            Err(_) if self.made < self.count => {
                self.made += 1;
                Vec::new()
            }
            Err(_) => self
                .free
                .recv_timeout(timeout)
                .map_err(|_| MpxError::stream(format!("no piece was sent within {} s", timeout.as_secs())))?,
        };
        buf.resize(len, 0);
        Ok(buf)
    }

    /// `buf` as bytes that give it back to this pool once every clone is dropped.
    pub fn lend(&self, buf: Vec<u8>) -> Bytes {
        Bytes::from_owner(Piece { buf, back: self.back.clone() })
    }
}

/// The longest sleep between two tests of a rank waiting for the root's next piece.
const MAX_NAP: Duration = Duration::from_micros(500);

/// How long a waiting rank tests without sleeping first (a piece already on its way).
const SPIN: Duration = Duration::from_micros(50);

/// Broadcasts the root's `head` (`root`: this rank is the root). The other ranks wait for it
/// without spinning for long: an `MPI_Ibcast` tested in a loop that sleeps between tests (up to
/// `MAX_NAP`). A blocked MPI call busy-waits, and on an oversubscribed node the ranks waiting
/// for the root's next chunk would take the cores its socket and hashing stages need.
pub fn bcast_head(comm: &SimpleCommunicator, head: &mut [u64], root: bool) {
    mpi::request::scope(|scope| {
        let req = comm.process_at_rank(0).immediate_broadcast_into(scope, head);
        if root {
            req.wait();
        } else {
            wait_asleep(req, Duration::ZERO);
        }
    });
}

/// Whether any rank of `comm` says `failed`, waiting for the others as [`bcast_head`] does
/// (an `MPI_Iallreduce` tested between naps): ranks that finished their part first do not
/// spin while the others still copy.
pub fn any_failed(comm: &SimpleCommunicator, failed: bool) -> bool {
    let (mine, mut any) = (u8::from(failed), 0u8);
    mpi::request::scope(|scope| {
        let req =
            comm.immediate_all_reduce_into(scope, &mine, &mut any, mpi::collective::SystemOperation::max());
        wait_asleep(req, AGREEMENT_YIELD);
    });
    any != 0
}

/// How long a rank waiting in an agreement ([`any_failed`]) yields between tests before it
/// naps: the others are copying their parts of the same move, which ends soon.
const AGREEMENT_YIELD: Duration = Duration::from_millis(1);

/// Tests `req` until it completes: without sleeping for [`SPIN`], then yielding the CPU
/// between tests until `yielding` has passed, then between naps that double up to
/// [`MAX_NAP`].
fn wait_asleep<'a, D: ?Sized, S: mpi::request::Scope<'a>>(
    mut req: mpi::request::Request<'a, D, S>,
    yielding: Duration,
) {
    let start = Instant::now();
    let mut nap = Duration::from_micros(10);
    loop {
        match req.test() {
            Ok(_) => return,
            Err(pending) => req = pending,
        }
        let waited = start.elapsed();
        if waited > SPIN && waited <= yielding {
            std::thread::yield_now();
        } else if waited > SPIN {
            std::thread::sleep(nap);
            nap = (nap * 2).min(MAX_NAP);
        }
    }
}

fn check_bools(dtype: Dtype, pos: usize, b: Bytes) -> Result<Bytes, MpxError> {
    if dtype == Dtype::Bool {
        if let Some(i) = b.iter().position(|&x| x > 1) {
            return Err(value_error(format!("byte {} at element {} is not a bool (0 or 1)", b[i], pos + i)));
        }
    }
    Ok(b)
}

/// Byte offsets of parts of `counts` bytes laid end to end.
pub fn starts_of(counts: &[usize]) -> Vec<usize> {
    counts.iter().scan(0, |acc, &n| Some(std::mem::replace(acc, *acc + n))).collect()
}

/// Each rank's share of the piece `[pos, pos + len)` of an array split into `[starts[r],
/// starts[r] + counts[r])`: MPI counts and displacements within the piece, and where this
/// rank's share goes in its own part (`me`'s offset).
pub fn piece_split(
    starts: &[usize],
    counts: &[usize],
    pos: usize,
    len: usize,
    me: usize,
) -> (Vec<Count>, Vec<Count>, usize) {
    let mut c = Vec::with_capacity(counts.len());
    let mut d = Vec::with_capacity(counts.len());
    let mut mine = 0;
    for (r, (&s, &n)) in starts.iter().zip(counts).enumerate() {
        let lo = s.max(pos);
        let hi = (s + n).min(pos + len);
        let (count, at) = if hi > lo { (hi - lo, lo - pos) } else { (0, 0) };
        if r == me {
            mine = lo.saturating_sub(s).min(n);
        }
        c.push(count as Count);
        d.push(at as Count);
    }
    (c, d, mine)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_piece_splits_over_the_parts_it_overlaps() {
        // Parts of 10, 10 and 5 bytes; the piece [8, 18) covers 2 of part 0 and 8 of part 1.
        let (starts, counts) = ([0, 10, 20], [10, 10, 5]);
        assert_eq!(piece_split(&starts, &counts, 8, 10, 1), (vec![2, 8, 0], vec![0, 2, 0], 0));
        assert_eq!(piece_split(&starts, &counts, 8, 10, 0).2, 8);
        assert_eq!(piece_split(&starts, &counts, 18, 7, 2), (vec![0, 2, 5], vec![0, 0, 2], 0));
        assert_eq!(piece_split(&starts, &counts, 18, 7, 1).2, 8);
    }

    #[test]
    fn a_broken_stream_fails_as_a_stream_not_as_a_cell() {
        // A chunk that does not continue the array.
        let (tx, rx) = std::sync::mpsc::channel();
        tx.send(Ok((4, 8, Bytes::from_static(b"abcd")))).unwrap();
        let got = Source::Stream(rx).next(0, 8);
        assert!(
            matches!(&got, Err(MpxError::Stream { reason }) if reason.contains("does not continue")),
            "{got:?}"
        );
        // A refused chunk keeps its kind.
        let (tx, rx) = std::sync::mpsc::channel();
        tx.send(Err(MpxError::authentication("not the next chunk"))).unwrap();
        assert!(matches!(Source::Stream(rx).next(0, 8), Err(MpxError::Authentication { .. })));
        // The control thread gone mid-stream.
        let (tx, rx) = std::sync::mpsc::channel::<ChunkIn>();
        drop(tx);
        let got = Source::Stream(rx).next(0, 8);
        assert!(matches!(&got, Err(MpxError::Stream { reason }) if reason.contains("lost")), "{got:?}");
        assert_eq!(
            got.unwrap_err().to_string(),
            "StreamError: the connection to the controller was lost mid-stream"
        );
        // Bytes that do not hold the array are the cell's error, as before.
        let got = Source::Inline(Some(Bytes::from_static(b"ab"))).check(8);
        assert!(matches!(&got, Err(MpxError::Cell(e)) if e.ename == "ValueError"), "{got:?}");
    }
}
