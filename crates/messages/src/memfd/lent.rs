//! Lent memfds: a client's pool of warm memfds for the arrays it pushes and scatters.
//!
//! A sealed memfd can never be written again, so each array moved in one costs fresh pages:
//! on this project's VM, filling 80 MB of new pages takes about 58 ms against 13 ms for pages
//! already allocated. A *lent* memfd is reused instead. Its lender (the client) seals it against
//! resizing only (`F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_SEAL`), keeps it mapped, and promises
//! not to write to it again until every receiver has let it go:
//!
//! 1. the lender copies the array into an idle memfd of its pool and sends it with the array's
//!    [`Lent`] (the lender's number and the memfd's token) in the header;
//! 2. each receiver checks it ([`super::SealedMemfd::check_lent`]: a memfd, sealed against
//!    resizing, of exactly the array's size) and maps it copy-on-write, as a sealed one: a
//!    cell's writes copy the pages they touch, in that process only;
//! 3. when the receiver's last mapping of it is gone (the variable rebound, deleted, or the
//!    array freed), its [`Receipt`] drops and the token is queued ([`take_released`]); the
//!    receiver's next reply to the same lender carries it back
//!    ([`crate::Outcome::released`]);
//! 4. once every engine the request reached has released it, the memfd is idle in the
//!    lender's pool and the next array of its size is written into its warm pages.
//!
//! What the receiver relies on is thus the lender's promise, not a seal: the memfd's size
//! cannot change (no `SIGBUS` under a mapping), and the lender writes it only after the
//! release. That is the same trust as the rest of the connection: an authenticated client can
//! already run any code on the engines. A receiver that dies releases nothing, and the lender
//! never writes that memfd again (its pool forgets it). An array that a receiver sends back
//! as the memfd it came in (a pull of a pushed array) goes only to its own lender, who maps its
//! own memfd and holds it as a receiver does.

use std::{
    collections::HashMap,
    sync::{Mutex, MutexGuard},
};

use serde::{Deserialize, Serialize};

/// A lent memfd's name in headers: whose it is and which of theirs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Lent {
    /// The lender: a random number a client draws for its connection.
    pub lender: u64,
    /// The memfd, among the lender's.
    pub token: u64,
}

/// A receiver's hold on a lent memfd: dropped with its last mapping and handle, it releases
/// the memfd (see the module's steps).
pub struct Receipt {
    lent: Lent,
    release: Box<dyn Fn(Lent) + Send + Sync>,
}

impl Receipt {
    /// A hold on `lent` that calls `release` when it drops.
    pub fn new(lent: Lent, release: impl Fn(Lent) + Send + Sync + 'static) -> Receipt {
        Receipt { lent, release: Box::new(release) }
    }

    /// A hold on `lent` whose release waits in this process's queue for the next reply to its
    /// lender ([`take_released`]).
    pub fn queued(lent: Lent) -> Receipt {
        Receipt::new(lent, queue)
    }

    /// The memfd held.
    pub fn lent(&self) -> Lent {
        self.lent
    }
}

impl std::fmt::Debug for Receipt {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Receipt").field("lent", &self.lent).finish_non_exhaustive()
    }
}

impl Drop for Receipt {
    fn drop(&mut self) {
        (self.release)(self.lent);
    }
}

/// Tokens released and not yet sent back, per lender. Bounded: a lender that never asks again
/// (its client is gone) keeps at most [`MAX_QUEUED`] tokens, and at most [`MAX_LENDERS`]
/// lenders are remembered (the oldest forgotten first).
static RELEASED: Mutex<Vec<(u64, Vec<u64>)>> = Mutex::new(Vec::new());

/// The most tokens kept for one lender.
pub const MAX_QUEUED: usize = 4096;
/// The most lenders kept.
pub const MAX_LENDERS: usize = 64;

fn released() -> MutexGuard<'static, Vec<(u64, Vec<u64>)>> {
    RELEASED.lock().unwrap_or_else(|p| p.into_inner())
}

/// Queues `lent`'s token for its lender.
fn queue(lent: Lent) {
    let mut all = released();
    let at = match all.iter().position(|(l, _)| *l == lent.lender) {
        Some(at) => at,
        None => {
            if all.len() >= MAX_LENDERS {
                all.remove(0);
            }
            all.push((lent.lender, Vec::new()));
            all.len() - 1
        }
    };
    let tokens = &mut all[at].1;
    if tokens.len() >= MAX_QUEUED {
        tokens.remove(0);
    }
    tokens.push(lent.token);
}

/// The tokens released for `lender` since the last call (for the reply to it).
pub fn take_released(lender: u64) -> Vec<u64> {
    let mut all = released();
    match all.iter().position(|(l, _)| *l == lender) {
        Some(at) => all.remove(at).1,
        None => Vec::new(),
    }
}

/// Counts of releases by lender (tests).
pub fn queued_counts() -> HashMap<u64, usize> {
    released().iter().map(|(l, t)| (*l, t.len())).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_dropped_receipt_is_queued_for_its_lender_only() {
        let (a, b) = (0xA11CE, 0xB0B);
        let r1 = Receipt::queued(Lent { lender: a, token: 1 });
        let r2 = Receipt::queued(Lent { lender: b, token: 7 });
        assert!(take_released(a).is_empty(), "nothing released while held");
        drop(r1);
        drop(r2);
        assert_eq!(take_released(a), vec![1]);
        assert_eq!(take_released(a), Vec::<u64>::new(), "taken once");
        assert_eq!(take_released(b), vec![7]);
    }

    #[test]
    fn the_queue_is_bounded() {
        let lender = 0xC0FFEE;
        for token in 0..(MAX_QUEUED as u64 + 10) {
            drop(Receipt::queued(Lent { lender, token }));
        }
        let got = take_released(lender);
        assert_eq!(got.len(), MAX_QUEUED);
        assert_eq!(got[0], 10, "the oldest are forgotten first");
    }
}
