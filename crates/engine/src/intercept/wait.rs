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

/// Tests until `test` says done, an interrupt is asked for, or testing fails. After
/// [`BLOCKED_AFTER_MS`] the call is reported blocked on `on`.
pub fn poll(board: &Board, on: On, mut test: impl FnMut() -> Result<bool, c_int>) -> Waited {
    let start = Instant::now();
    let mut nap = Duration::from_micros(20);
    let mut reported = false;
    loop {
        match test() {
            Ok(true) => return Waited::Done(0),
            Ok(false) => {}
            Err(rc) => return Waited::Done(rc),
        }
        if board.interrupted() {
            return Waited::Interrupted;
        }
        let waited = start.elapsed();
        if waited < SPIN {
            std::hint::spin_loop();
        } else if waited < YIELD {
            std::thread::yield_now();
        } else {
            if !reported && waited >= Duration::from_millis(BLOCKED_AFTER_MS) {
                reported = true;
                let (members, peer) = members(on);
                board.blocked_for(members, peer);
            }
            std::thread::sleep(nap);
            nap = (nap * 2).min(MAX_NAP);
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
