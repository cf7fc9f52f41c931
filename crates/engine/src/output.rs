//! [`OutputBuffer`]: what the running task writes to stdout and stderr, between the MPI thread
//! (the kernel appends) and the control thread (which drains it into `TaskOutput` frames at
//! least every [`FLUSH_EVERY`], and before each reply).
//!
//! The buffer is plain Rust memory behind a mutex that is only held to append or take, so the
//! control thread never waits for Python's GIL. It holds at most about [`BUFFER_LIMIT`] bytes: a
//! writer that finds it full waits (the Python kernel releases the GIL meanwhile and still
//! reacts to Ctrl-C), and the control thread drains only while the connection's queue of
//! unsent output is short, so a cell printing faster than the network carries it is slowed
//! down instead of filling memory.

use std::{
    collections::VecDeque,
    sync::{Condvar, Mutex, MutexGuard},
    time::Duration,
};

use mpx_messages::{output::split_point, StreamName, TaskId, TaskOutput, OUTPUT_CHUNK};

/// How often the control thread sends what a running cell wrote.
pub const FLUSH_EVERY: Duration = Duration::from_millis(100);

/// How much written text the buffer holds before writers wait (4 MiB).
pub const BUFFER_LIMIT: usize = 4 << 20;

/// What wakes the control thread to send at once (set by it).
type Waker = Box<dyn Fn() + Send + Sync>;

#[derive(Default)]
struct State {
    /// The task now running, whose output this is.
    task: Option<TaskId>,
    /// Pieces of at most [`OUTPUT_CHUNK`] bytes, oldest first.
    pieces: VecDeque<TaskOutput>,
    /// Bytes of text in `pieces`.
    bytes: usize,
    /// The engine is leaving: writers stop waiting.
    closed: bool,
}

/// The running task's output on its way out. Shared (`Arc`) by the kernel and the control thread.
#[derive(Default)]
pub struct OutputBuffer {
    state: Mutex<State>,
    room: Condvar,
    waker: Mutex<Option<Waker>>,
}

impl OutputBuffer {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The task `task_id` starts: what is written from now on is its output.
    pub fn begin(&self, task_id: TaskId) {
        self.lock().task = Some(task_id);
    }

    /// The task ended: what is written from now on (outside any task) is dropped.
    pub fn end(&self) {
        self.lock().task = None;
    }

    /// Sets what wakes the control thread when a writer finds the buffer full (so that it
    /// sends at once instead of at its next tick).
    pub fn set_waker(&self, wake: impl Fn() + Send + Sync + 'static) {
        *self.waker.lock().unwrap_or_else(|e| e.into_inner()) = Some(Box::new(wake));
    }

    /// Whether a writer may append now (the buffer is under [`BUFFER_LIMIT`], or the engine is
    /// leaving); when not, the control thread is woken to send.
    pub fn has_room(&self) -> bool {
        let room = {
            let s = self.lock();
            s.bytes < BUFFER_LIMIT || s.closed
        };
        if !room {
            if let Some(wake) = &*self.waker.lock().unwrap_or_else(|e| e.into_inner()) {
                wake();
            }
        }
        room
    }

    /// Waits up to `timeout` for room; true when there is some.
    pub fn wait_room(&self, timeout: Duration) -> bool {
        let s = self.lock();
        let (s, _) = self
            .room
            .wait_timeout_while(s, timeout, |s| s.bytes >= BUFFER_LIMIT && !s.closed)
            .unwrap_or_else(|e| e.into_inner());
        s.bytes < BUFFER_LIMIT || s.closed
    }

    /// Appends `text` written to `stream` by the running task (dropped when no task runs).
    /// Does not wait: callers that can wait call [`wait_room`](Self::wait_room) first.
    pub fn append(&self, stream: StreamName, text: &str) {
        let mut s = self.lock();
        let Some(task_id) = s.task else { return };
        s.bytes += text.len();
        let mut rest = text;
        // Continue the last piece when it is of the same task and stream and has room.
        if let Some(last) = s.pieces.back_mut() {
            if last.task_id == task_id && last.stream == stream && last.text.len() < OUTPUT_CHUNK {
                let (head, tail) = rest.split_at(split_point(rest, OUTPUT_CHUNK - last.text.len()));
                if head.len() + last.text.len() <= OUTPUT_CHUNK {
                    last.text.push_str(head);
                    rest = tail;
                }
            }
        }
        for piece in mpx_messages::output::pieces(rest, OUTPUT_CHUNK) {
            s.pieces.push_back(TaskOutput { task_id, stream, text: piece.to_string() });
        }
    }

    /// Appends `text` in pieces, waiting for room before each (for writers that may block:
    /// not the Python kernel's, which must also release the GIL and see Ctrl-C).
    pub fn write(&self, stream: StreamName, text: &str) {
        for piece in mpx_messages::output::pieces(text, OUTPUT_CHUNK) {
            while !self.has_room() && !self.wait_room(Duration::from_millis(100)) {}
            self.append(stream, piece);
        }
    }

    /// Takes everything written so far, and wakes writers waiting for room.
    pub fn drain(&self) -> Vec<TaskOutput> {
        let taken: Vec<TaskOutput> = {
            let mut s = self.lock();
            s.bytes = 0;
            s.pieces.drain(..).collect()
        };
        self.room.notify_all();
        taken
    }

    /// Takes pieces up to about `max` bytes (at least one piece when there is any).
    pub fn drain_some(&self, max: usize) -> Vec<TaskOutput> {
        let mut taken = Vec::new();
        {
            let mut s = self.lock();
            let mut n = 0;
            while n < max.max(1) {
                let Some(p) = s.pieces.pop_front() else { break };
                n += p.text.len();
                s.bytes -= p.text.len();
                taken.push(p);
            }
        }
        if !taken.is_empty() {
            self.room.notify_all();
        }
        taken
    }

    /// The engine is leaving: writers stop waiting for room.
    pub fn close(&self) {
        self.lock().closed = true;
        self.room.notify_all();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn appends_merge_into_pieces_of_one_task_and_stream() {
        let b = OutputBuffer::default();
        b.append(StreamName::Stdout, "before any task\n");
        b.begin(TaskId(7));
        b.append(StreamName::Stdout, "a\n");
        b.append(StreamName::Stdout, "b\n");
        b.append(StreamName::Stderr, "oops\n");
        b.append(StreamName::Stdout, "c\n");
        b.end();
        b.append(StreamName::Stdout, "after\n");
        let got: Vec<(u64, StreamName, String)> =
            b.drain().into_iter().map(|p| (p.task_id.get(), p.stream, p.text)).collect();
        assert_eq!(
            got,
            vec![
                (7, StreamName::Stdout, "a\nb\n".into()),
                (7, StreamName::Stderr, "oops\n".into()),
                (7, StreamName::Stdout, "c\n".into()),
            ]
        );
        assert!(b.drain().is_empty());
    }

    #[test]
    fn big_writes_become_bounded_pieces_and_fill_the_buffer() {
        let b = OutputBuffer::default();
        b.begin(TaskId(1));
        b.append(StreamName::Stdout, "x");
        let big = "y".repeat(3 * OUTPUT_CHUNK + 5);
        b.append(StreamName::Stdout, &big);
        assert!(b.has_room());
        let pieces = b.drain_some(2 * OUTPUT_CHUNK);
        assert_eq!(pieces.len(), 2);
        assert!(pieces.iter().all(|p| p.text.len() == OUTPUT_CHUNK));
        let rest = b.drain();
        assert_eq!(rest.iter().map(|p| p.text.len()).sum::<usize>(), 3 * OUTPUT_CHUNK + 6 - 2 * OUTPUT_CHUNK);
        b.append(StreamName::Stdout, &"z".repeat(BUFFER_LIMIT));
        assert!(!b.has_room());
        assert!(!b.wait_room(Duration::from_millis(10)));
        b.drain();
        assert!(b.wait_room(Duration::from_millis(10)));
    }

    #[test]
    fn a_waiting_writer_wakes_when_drained_or_closed() {
        let b = std::sync::Arc::new(OutputBuffer::default());
        b.begin(TaskId(1));
        b.append(StreamName::Stdout, &"z".repeat(BUFFER_LIMIT));
        let b2 = b.clone();
        let t = std::thread::spawn(move || b2.wait_room(Duration::from_secs(10)));
        std::thread::sleep(Duration::from_millis(20));
        b.drain_some(BUFFER_LIMIT);
        assert!(t.join().unwrap());
        b.append(StreamName::Stdout, &"z".repeat(BUFFER_LIMIT));
        b.close();
        assert!(b.wait_room(Duration::from_secs(10)));
    }
}
