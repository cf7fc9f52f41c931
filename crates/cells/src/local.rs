//! An in-process [`Collectives`] implementation: one [`LocalComm`] per rank, each used from its
//! own thread, connected by channels (point-to-point) and a shared exchange board guarded by a
//! `std::sync::Barrier` (collectives).
//!
//! Collectives are built on one primitive, an all-to-all exchange of byte buffers: every rank
//! writes its slot, waits at the barrier, reads all slots, and waits again so no rank overwrites a
//! slot before everyone has read it. As in MPI, every rank must call the same collectives in the
//! same order, or the world deadlocks.

use std::{
    cell::RefCell,
    collections::VecDeque,
    sync::{
        mpsc::{channel, Receiver, RecvTimeoutError, Sender},
        Arc, Barrier, Mutex,
    },
    time::Duration,
};

use crate::comm::{Collectives, CommError, ReduceOp};

/// Builds in-process worlds.
#[derive(Debug, Clone, Copy)]
pub struct LocalWorld;

struct Board {
    barrier: Barrier,
    slots: Mutex<Vec<Vec<u8>>>,
}

type Message = (i32, Vec<u8>);

/// One rank of a [`LocalWorld`]. `Send`, not `Sync`: move it to the thread that uses it.
pub struct LocalComm {
    rank: usize,
    size: usize,
    board: Arc<Board>,
    /// `to[d]` sends to rank `d`.
    to: Vec<Sender<Message>>,
    /// `from[s]` receives from rank `s`.
    from: Vec<Receiver<Message>>,
    /// Messages received from each source whose tag did not match yet.
    pending: RefCell<Vec<VecDeque<Message>>>,
    recv_timeout: Option<Duration>,
}

impl LocalWorld {
    /// A world of `n` ranks (at least 1): element `r` of the result is rank `r`'s communicator.
    #[allow(clippy::new_ret_no_self)]
    pub fn new(n: usize) -> Vec<LocalComm> {
        let n = n.max(1);
        let board = Arc::new(Board { barrier: Barrier::new(n), slots: Mutex::new(vec![Vec::new(); n]) });
        // senders[s][d] / receivers[d][s] form the channel s -> d.
        let mut senders: Vec<Vec<Sender<Message>>> = (0..n).map(|_| Vec::new()).collect();
        let mut receivers: Vec<Vec<Receiver<Message>>> = (0..n).map(|_| Vec::new()).collect();
        for s in senders.iter_mut() {
            for r in receivers.iter_mut() {
                let (tx, rx) = channel();
                s.push(tx);
                r.push(rx);
            }
        }
        senders
            .into_iter()
            .zip(receivers)
            .enumerate()
            .map(|(rank, (to, from))| LocalComm {
                rank,
                size: n,
                board: Arc::clone(&board),
                to,
                from,
                pending: RefCell::new(vec![VecDeque::new(); n]),
                recv_timeout: Some(Duration::from_secs(60)),
            })
            .collect()
    }
}

impl std::fmt::Debug for LocalComm {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LocalComm").field("rank", &self.rank).field("size", &self.size).finish()
    }
}

impl LocalComm {
    /// How long `recv_bytes` waits before failing (default 60 s; `None` waits forever).
    pub fn set_recv_timeout(&mut self, timeout: Option<Duration>) {
        self.recv_timeout = timeout;
    }

    fn check_rank(&self, r: usize) -> Result<(), CommError> {
        if r < self.size {
            Ok(())
        } else {
            Err(CommError(format!("rank {r} out of range 0..{}", self.size)))
        }
    }

    /// Puts `mine` in this rank's slot and returns every rank's slot, in rank order.
    fn exchange(&self, mine: Vec<u8>) -> Result<Vec<Vec<u8>>, CommError> {
        let poisoned = |_| CommError("local world poisoned by a panicked rank".into());
        self.board.slots.lock().map_err(poisoned)?[self.rank] = mine;
        self.board.barrier.wait();
        let all = self.board.slots.lock().map_err(poisoned)?.clone();
        self.board.barrier.wait();
        Ok(all)
    }

    fn reduce_generic<T: Copy, const N: usize>(
        &self,
        data: &mut [T],
        op: ReduceOp,
        root: Option<usize>,
        to_le: fn(T) -> [u8; N],
        from_le: fn([u8; N]) -> T,
        combine: fn(T, T, ReduceOp) -> T,
    ) -> Result<(), CommError> {
        let mine: Vec<u8> = data.iter().flat_map(|&x| to_le(x)).collect();
        let all = self.exchange(mine)?;
        if all.iter().any(|b| b.len() != data.len() * N) {
            return Err(CommError("reduction buffers differ in length across ranks".into()));
        }
        if root.is_some_and(|r| r != self.rank) {
            return Ok(());
        }
        for (i, x) in data.iter_mut().enumerate() {
            let mut acc: Option<T> = None;
            for bytes in &all {
                let mut b = [0u8; N];
                b.copy_from_slice(&bytes[i * N..(i + 1) * N]);
                let v = from_le(b);
                acc = Some(acc.map_or(v, |a| combine(a, v, op)));
            }
            if let Some(a) = acc {
                *x = a;
            }
        }
        Ok(())
    }
}

fn combine_f64(a: f64, b: f64, op: ReduceOp) -> f64 {
    match op {
        ReduceOp::Sum => a + b,
        ReduceOp::Prod => a * b,
        ReduceOp::Min => a.min(b),
        ReduceOp::Max => a.max(b),
    }
}

fn combine_i64(a: i64, b: i64, op: ReduceOp) -> i64 {
    match op {
        ReduceOp::Sum => a.wrapping_add(b),
        ReduceOp::Prod => a.wrapping_mul(b),
        ReduceOp::Min => a.min(b),
        ReduceOp::Max => a.max(b),
    }
}

impl Collectives for LocalComm {
    fn rank(&self) -> usize {
        self.rank
    }

    fn size(&self) -> usize {
        self.size
    }

    fn barrier(&self) -> Result<(), CommError> {
        self.board.barrier.wait();
        Ok(())
    }

    fn allreduce_f64(&self, data: &mut [f64], op: ReduceOp) -> Result<(), CommError> {
        self.reduce_generic(data, op, None, f64::to_le_bytes, f64::from_le_bytes, combine_f64)
    }

    fn allreduce_i64(&self, data: &mut [i64], op: ReduceOp) -> Result<(), CommError> {
        self.reduce_generic(data, op, None, i64::to_le_bytes, i64::from_le_bytes, combine_i64)
    }

    fn reduce_f64(&self, data: &mut [f64], op: ReduceOp, root: usize) -> Result<(), CommError> {
        self.check_rank(root)?;
        self.reduce_generic(data, op, Some(root), f64::to_le_bytes, f64::from_le_bytes, combine_f64)
    }

    fn reduce_i64(&self, data: &mut [i64], op: ReduceOp, root: usize) -> Result<(), CommError> {
        self.check_rank(root)?;
        self.reduce_generic(data, op, Some(root), i64::to_le_bytes, i64::from_le_bytes, combine_i64)
    }

    fn bcast_bytes(&self, buf: &mut Vec<u8>, root: usize) -> Result<(), CommError> {
        self.check_rank(root)?;
        let mine = if root == self.rank { buf.clone() } else { Vec::new() };
        let mut all = self.exchange(mine)?;
        if root != self.rank {
            *buf = std::mem::take(&mut all[root]);
        }
        Ok(())
    }

    fn allgather_bytes(&self, mine: &[u8]) -> Result<Vec<Vec<u8>>, CommError> {
        self.exchange(mine.to_vec())
    }

    fn send_bytes(&self, data: &[u8], dest: usize, tag: i32) -> Result<(), CommError> {
        self.check_rank(dest)?;
        self.to[dest]
            .send((tag, data.to_vec()))
            .map_err(|_| CommError(format!("rank {dest} has left the world")))
    }

    fn recv_bytes(&self, source: usize, tag: i32) -> Result<Vec<u8>, CommError> {
        self.check_rank(source)?;
        let mut pending = self.pending.borrow_mut();
        let queue = &mut pending[source];
        if let Some(i) = queue.iter().position(|(t, _)| *t == tag) {
            if let Some((_, data)) = queue.remove(i) {
                return Ok(data);
            }
        }
        loop {
            let msg = match self.recv_timeout {
                Some(t) => self.from[source].recv_timeout(t),
                None => self.from[source].recv().map_err(|_| RecvTimeoutError::Disconnected),
            };
            match msg {
                Ok((t, data)) if t == tag => return Ok(data),
                Ok(other) => queue.push_back(other),
                Err(RecvTimeoutError::Timeout) => {
                    return Err(CommError(format!("recv from rank {source} with tag {tag} timed out")))
                }
                Err(RecvTimeoutError::Disconnected) => {
                    return Err(CommError(format!("rank {source} has left the world")))
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::thread;

    use super::*;

    #[test]
    fn allreduce_and_bcast_over_threads() {
        let handles: Vec<_> = LocalWorld::new(3)
            .into_iter()
            .map(|c| {
                thread::spawn(move || {
                    let mut d = [c.rank() as f64, 1.0];
                    c.allreduce_f64(&mut d, ReduceOp::Sum).expect("allreduce");
                    let mut m = [c.rank() as i64];
                    c.reduce_i64(&mut m, ReduceOp::Max, 1).expect("reduce");
                    let mut b = if c.rank() == 2 { vec![7, 8] } else { vec![] };
                    c.bcast_bytes(&mut b, 2).expect("bcast");
                    (c.rank(), d, m[0], b)
                })
            })
            .collect();
        for h in handles {
            let (rank, d, m, b) = h.join().expect("thread");
            assert_eq!(d, [3.0, 3.0]);
            if rank == 1 {
                assert_eq!(m, 2);
            }
            assert_eq!(b, vec![7, 8]);
        }
    }

    #[test]
    fn recv_matches_tags_out_of_order() {
        let mut w = LocalWorld::new(2).into_iter();
        let (a, b) = (w.next().expect("r0"), w.next().expect("r1"));
        a.send_bytes(&[1], 1, 10).expect("send");
        a.send_bytes(&[2], 1, 20).expect("send");
        assert_eq!(b.recv_bytes(0, 20).expect("recv"), vec![2]);
        assert_eq!(b.recv_bytes(0, 10).expect("recv"), vec![1]);
        assert!(b.send_bytes(&[0], 5, 0).is_err());
    }
}
