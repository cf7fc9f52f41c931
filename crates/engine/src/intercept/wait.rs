//! How a cell's MPI call waits: the non-blocking form of the call, tested in a loop that spins
//! briefly, then yields, then sleeps in growing naps, and notices an interrupt.
//!
//! # Leaving a call early, safely
//! A call interrupted while its request is still pending must never return while MPI may still
//! write into memory the cell can reach (or that Python frees once the call returns):
//! - a receive is cancelled (`MPI_Cancel`); once the cancel is confirmed
//!   (`MPI_Test_cancelled`) nothing will write into its buffer, and the call returns the error
//!   [`interrupted_code`] (mpi4py raises it as `MPI.Exception` with mpx's message). If the
//!   message arrived meanwhile, the call completes as usual and the cell gets a
//!   `KeyboardInterrupt` right after it.
//! - a probe has no request: it just stops probing and returns the same error.
//! - a collective, a send or a wait on the cell's own requests cannot be cancelled: the call
//!   never returns. The engine reports the call as abandoned ([`Board::abandon`]); its
//!   communicators can no longer be trusted to match, so the controller restarts the world and
//!   this process ends with it. The thread sleeps meanwhile.

use std::{
    ffi::{c_int, CString},
    sync::atomic::{AtomicI32, Ordering},
    time::{Duration, Instant},
};

use mpi::ffi::{self, MPI_Comm, MPI_Request, MPI_Status};
use mpx_messages::{stuck::BLOCKED_AFTER_MS, Rank};

use crate::state::Board;

/// How long a waiting call tests its request without pausing.
pub const SPIN: Duration = Duration::from_micros(50);

/// Until when it yields the core between tests.
pub const YIELD: Duration = Duration::from_millis(2);

/// The longest nap between tests after that.
pub const MAX_NAP: Duration = Duration::from_millis(1);

/// How long a cancelled receive may take to confirm the cancel.
const CANCEL_WAIT: Duration = Duration::from_millis(500);

static INTERRUPTED: AtomicI32 = AtomicI32::new(0);

/// The MPI error code an interrupted call returns (an error class of mpx's own, made at engine
/// start, with its message; `MPI_ERR_OTHER` until then).
pub fn interrupted_code() -> c_int {
    match INTERRUPTED.load(Ordering::Relaxed) {
        0 => ffi::MPI_ERR_OTHER as c_int,
        code => code,
    }
}

/// Makes mpx's error class for interrupted calls (call once, after MPI started).
pub fn make_error_class() {
    let mut class: c_int = 0;
    let mut code: c_int = 0;
    let text = CString::new(
        "mpx: interrupted (Ctrl-C): the call was cancelled before anything was received; the MPI \
         world goes on",
    )
    .expect("no NUL");
    // SAFETY: plain MPI calls with valid out-pointers; MPI is initialised.
    unsafe {
        if ffi::PMPI_Add_error_class(&mut class) == 0
            && ffi::PMPI_Add_error_code(class, &mut code) == 0
            && ffi::PMPI_Add_error_string(code, text.as_ptr()) == 0
        {
            INTERRUPTED.store(code, Ordering::Relaxed);
        }
    }
}

/// How a wait ended.
pub enum Waited {
    /// The request completed (or testing it failed): the MPI return code.
    Done(c_int),
    /// An interrupt was asked for; the request is still pending.
    Interrupted,
}

/// What a blocked call waits on, for its report: the communicator and the peer rank (in that
/// communicator) of a point-to-point call.
#[derive(Clone, Copy)]
pub struct On {
    /// The communicator (`None`: a request of the cell's own, communicator unknown).
    pub comm: Option<MPI_Comm>,
    /// The peer's rank in `comm`, when it names one (not `MPI_ANY_SOURCE`).
    pub peer: Option<c_int>,
}

/// A test that takes this long did work (copied or reduced a piece of the call's data): the
/// call is moving. An idle test takes a microsecond or two, but on this VM some take longer
/// for nothing, and each restarts the yielding: a rank waiting 5 s for another (`wait_cpu` in
/// `mpx-bench`) burnt 0.98 s of CPU with 8 µs here, 0.25 s with 14 µs and 0.19 s with 20 µs
/// (0.1 s with no such restart); an 8 MB Allreduce took 13.5, 11.9 and 16.0 ms.
pub const WORKING_TEST: Duration = Duration::from_micros(14);

/// How long a call keeps yielding after a [`WORKING_TEST`] before it naps again.
pub const AFTER_WORK: Duration = Duration::from_micros(300);

/// What a waiting call does before its next test.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Pause {
    /// Tests again at once.
    Spin,
    /// Gives the core away, then tests.
    Yield,
    /// Sleeps this long, then tests.
    Nap(Duration),
}

/// The pause after a test, `waited` into the call and `since_work` after its last
/// [`WORKING_TEST`] (or its start), with `nap` the next nap's length.
///
/// The call spins, then yields, then naps; but a call still moving keeps yielding: a
/// non-blocking collective moves on only inside the tests (a large `MPI_Iallreduce` goes through
/// many rounds), and napping between them made an 8 MB Allreduce in a cell take 140 ms where
/// the blocking call takes 10.
fn pause(waited: Duration, since_work: Duration, nap: Duration) -> Pause {
    if waited < SPIN {
        Pause::Spin
    } else if waited < YIELD || since_work < AFTER_WORK {
        Pause::Yield
    } else {
        Pause::Nap(nap)
    }
}

/// Tests until `test` says done, an interrupt is asked for, or testing fails. After
/// [`BLOCKED_AFTER_MS`] without progress the call is reported blocked on `on`.
pub fn poll(board: &Board, on: On, mut test: impl FnMut() -> Result<bool, c_int>) -> Waited {
    let start = Instant::now();
    let mut worked = start;
    let mut nap = Duration::from_micros(20);
    let mut reported = false;
    loop {
        let before = Instant::now();
        match test() {
            Ok(true) => return Waited::Done(0),
            Ok(false) => {}
            Err(rc) => return Waited::Done(rc),
        }
        if board.interrupted() {
            return Waited::Interrupted;
        }
        let now = Instant::now();
        if now - before >= WORKING_TEST {
            worked = now;
            nap = Duration::from_micros(20);
        }
        match pause(now - start, now - worked, nap) {
            Pause::Spin => std::hint::spin_loop(),
            Pause::Yield => std::thread::yield_now(),
            Pause::Nap(d) => {
                if !reported && now - start >= Duration::from_millis(BLOCKED_AFTER_MS) {
                    reported = true;
                    let (members, peer) = members(on);
                    board.blocked_for(members, peer);
                }
                std::thread::sleep(d);
                nap = (nap * 2).min(MAX_NAP);
            }
        }
    }
}

/// Waits for a non-blocking request made for a blocking call; an interrupt abandons the call
/// (it cannot be cancelled: see the module documentation).
///
/// # Safety
/// `req` is a pending request of this thread; `status` is valid for `MPI_Test`.
pub unsafe fn finish(board: &Board, on: On, req: &mut MPI_Request, status: *mut MPI_Status) -> c_int {
    // SAFETY: as the caller promised.
    match unsafe { finish_or_interrupt(board, on, req, status) } {
        Some(rc) => rc,
        None => abandon(board),
    }
}

/// Waits for a receive's request; an interrupt cancels it (see the module documentation).
///
/// # Safety
/// `req` is the pending request of a receive of this thread; `status` is the caller's status
/// argument (may be `MPI_STATUS_IGNORE`).
pub unsafe fn finish_recv(board: &Board, on: On, req: &mut MPI_Request, status: *mut MPI_Status) -> c_int {
    // SAFETY: as the caller promised.
    let rc = unsafe { finish_or_interrupt(board, on, req, status) };
    if let Some(rc) = rc {
        return rc;
    }
    // SAFETY: cancelling our own pending receive; the status is ours.
    unsafe {
        ffi::PMPI_Cancel(req);
        let mut own: MPI_Status = std::mem::zeroed();
        let mut flag: c_int = 0;
        let deadline = Instant::now() + CANCEL_WAIT;
        while flag == 0 {
            if ffi::PMPI_Test(req, &mut flag, &mut own) != 0 || (flag == 0 && Instant::now() >= deadline) {
                abandon(board);
            }
            if flag == 0 {
                std::thread::sleep(Duration::from_micros(100));
            }
        }
        let mut cancelled: c_int = 0;
        ffi::PMPI_Test_cancelled(&own, &mut cancelled);
        if cancelled != 0 {
            return interrupted_code();
        }
        // It completed before the cancel: the data is there; the cell stops right after.
        if status != ffi::RSMPI_STATUS_IGNORE {
            *status = own;
        }
        libc::raise(libc::SIGINT);
        0
    }
}

/// Like [`finish`], but returns `None` on an interrupt, leaving the request pending.
///
/// # Safety
/// As [`finish`].
pub unsafe fn finish_or_interrupt(
    board: &Board,
    on: On,
    req: &mut MPI_Request,
    status: *mut MPI_Status,
) -> Option<c_int> {
    let mut flag: c_int = 0;
    // SAFETY: as the caller promised.
    let waited = poll(board, on, || match unsafe { ffi::PMPI_Test(req, &mut flag, status) } {
        0 => Ok(flag != 0),
        rc => Err(rc),
    });
    match waited {
        Waited::Done(rc) => Some(rc),
        Waited::Interrupted => None,
    }
}

/// The call cannot be left safely: report it and wait for the world's restart to end this
/// process (see the module documentation).
pub fn abandon(board: &Board) -> ! {
    board.abandon();
    tracing::warn!("interrupted inside an MPI call that cannot be cancelled; waiting for the restart");
    loop {
        std::thread::sleep(Duration::from_secs(1));
    }
}

/// The `COMM_WORLD` ranks of `on`'s communicator, and its peer as a `COMM_WORLD` rank.
fn members(on: On) -> (Vec<Rank>, Option<Rank>) {
    let Some(comm) = on.comm else { return (Vec::new(), None) };
    // SAFETY: local group queries on a valid communicator; every group made is freed.
    unsafe {
        let mut inter: c_int = 0;
        if ffi::PMPI_Comm_test_inter(comm, &mut inter) != 0 || inter != 0 {
            return (Vec::new(), None);
        }
        let (mut group, mut world) = (std::mem::zeroed(), std::mem::zeroed());
        if ffi::PMPI_Comm_group(comm, &mut group) != 0 {
            return (Vec::new(), None);
        }
        if ffi::PMPI_Comm_group(ffi::RSMPI_COMM_WORLD, &mut world) != 0 {
            ffi::PMPI_Group_free(&mut group);
            return (Vec::new(), None);
        }
        let mut size: c_int = 0;
        ffi::PMPI_Group_size(group, &mut size);
        let ranks: Vec<c_int> = (0..size).collect();
        let mut out = vec![0 as c_int; ranks.len()];
        let ok = ffi::PMPI_Group_translate_ranks(group, size, ranks.as_ptr(), world, out.as_mut_ptr()) == 0;
        ffi::PMPI_Group_free(&mut group);
        ffi::PMPI_Group_free(&mut world);
        if !ok {
            return (Vec::new(), None);
        }
        let world_rank = |r: c_int| out.get(usize::try_from(r).ok()?).and_then(|&w| u32::try_from(w).ok());
        let members = out.iter().filter_map(|&w| u32::try_from(w).ok()).map(Rank).collect();
        (members, on.peer.and_then(world_rank).map(Rank))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn us(n: u64) -> Duration {
        Duration::from_micros(n)
    }

    #[test]
    fn a_wait_spins_then_yields_then_naps_unless_the_call_is_still_moving() {
        let nap = us(40);
        assert_eq!(pause(us(10), us(10), nap), Pause::Spin);
        assert_eq!(pause(us(500), us(500), nap), Pause::Yield);
        assert_eq!(pause(YIELD + us(1), YIELD + us(1), nap), Pause::Nap(nap));
        // A test that did work a moment ago: the call keeps yielding, however long it has run.
        assert_eq!(pause(Duration::from_secs(3), us(100), nap), Pause::Yield);
        assert_eq!(pause(Duration::from_secs(3), AFTER_WORK, nap), Pause::Nap(nap));
    }
}
