//! A small `MPI_Allreduce` of a cell, made of point-to-point messages that [`super::wait`] can
//! wait for and interrupt: recursive doubling (with the usual fold for a size that is not a
//! power of two) on a private duplicate of the cell's communicator.
//!
//! Why: Open MPI's non-blocking `MPI_Iallreduce` (its `libnbc` schedules) costs about 1.6x its
//! blocking `MPI_Allreduce` for a few bytes, which a cell that loops over small reductions
//! would pay on every call. Point-to-point messages cost what the blocking algorithm costs.
//!
//! When: the operation is commutative (each rank then computes the same value bit for bit: `a
//! op b` and `b op a` agree), the datatype is contiguous (`lb == 0`, `extent == size`), the data
//! is at most [`FAST_MAX_BYTES`], and the communicator is an intra-communicator. Every rank of a
//! correct program makes the same call with the same count, datatype and operation, so every
//! rank takes the same path. Anything else waits for `MPI_Iallreduce`.
//!
//! The duplicate is made (`MPI_Comm_idup`, waited for like any call) by the first such call on a
//! communicator, kept as an attribute of it, and freed with it. Messages on it never meet the
//! cell's own: no code but this sends there, in call order between each pair of ranks.

use std::{
    cell::RefCell,
    ffi::{c_int, c_void},
    sync::atomic::{AtomicI32, Ordering},
};

use mpi::ffi::{self, MPI_Comm, MPI_Datatype, MPI_Op, MPI_Request};

use super::wait::{self, On};
use crate::state::Board;

/// The largest reduction (bytes) made of point-to-point messages.
pub const FAST_MAX_BYTES: usize = 64 << 10;

/// The tag of the private duplicate's messages.
const TAG: c_int = 7;

static KEYVAL: AtomicI32 = AtomicI32::new(i32::MIN);

thread_local! {
    /// The partner's data of the current round (reused between calls).
    static SCRATCH: RefCell<Vec<u8>> = const { RefCell::new(Vec::new()) };
}

/// Frees a communicator's private duplicate when the communicator goes.
unsafe extern "C" fn free_shadow(
    _comm: MPI_Comm,
    _key: c_int,
    value: *mut c_void,
    _extra: *mut c_void,
) -> c_int {
    // SAFETY: `value` is the box this module stored, given back once.
    let mut shadow = unsafe { Box::from_raw(value.cast::<MPI_Comm>()) };
    // SAFETY: the duplicate this module made.
    unsafe { ffi::PMPI_Comm_free(&mut *shadow) }
}

fn keyval() -> Option<c_int> {
    let k = KEYVAL.load(Ordering::Relaxed);
    if k != i32::MIN {
        return Some(k);
    }
    let mut k: c_int = 0;
    // SAFETY: creating a keyval with a valid delete function; cells run on one thread.
    let rc = unsafe { ffi::PMPI_Comm_create_keyval(None, Some(free_shadow), &mut k, std::ptr::null_mut()) };
    (rc == 0).then(|| {
        KEYVAL.store(k, Ordering::Relaxed);
        k
    })
}

/// Whether this call can take the fast path (the same answer on every rank of a correct
/// program); the datatype's size in bytes if so.
fn eligible(count: c_int, datatype: MPI_Datatype, op: MPI_Op, comm: MPI_Comm) -> Option<usize> {
    let count = usize::try_from(count).ok()?;
    // SAFETY: local queries on valid handles.
    unsafe {
        let mut commute: c_int = 0;
        if ffi::PMPI_Op_commutative(op, &mut commute) != 0 || commute == 0 {
            return None;
        }
        let mut size: c_int = 0;
        let (mut lb, mut extent): (ffi::MPI_Aint, ffi::MPI_Aint) = (0, 0);
        if ffi::PMPI_Type_size(datatype, &mut size) != 0
            || ffi::PMPI_Type_get_extent(datatype, &mut lb, &mut extent) != 0
            || lb != 0
            || extent != size as ffi::MPI_Aint
        {
            return None;
        }
        let mut inter: c_int = 0;
        if ffi::PMPI_Comm_test_inter(comm, &mut inter) != 0 || inter != 0 {
            return None;
        }
        let bytes = count.checked_mul(usize::try_from(size).ok()?)?;
        (bytes <= FAST_MAX_BYTES).then_some(bytes)
    }
}

/// The communicator's private duplicate, made on first use (a collective: every rank is in
/// this same call).
fn shadow(board: &Board, comm: MPI_Comm) -> Option<MPI_Comm> {
    let key = keyval()?;
    // SAFETY: attribute calls on a valid communicator; the duplicate is waited for before use.
    unsafe {
        let mut value: *mut c_void = std::ptr::null_mut();
        let mut found: c_int = 0;
        if ffi::PMPI_Comm_get_attr(comm, key, (&mut value as *mut *mut c_void).cast(), &mut found) != 0 {
            return None;
        }
        if found != 0 {
            // SAFETY: a box this module stored; it lives until the communicator goes.
            return Some(*value.cast::<MPI_Comm>());
        }
        let mut dup: MPI_Comm = ffi::RSMPI_COMM_NULL;
        let mut req = ffi::RSMPI_REQUEST_NULL;
        if ffi::PMPI_Comm_idup(comm, &mut dup, &mut req) != 0 {
            return None;
        }
        if wait::finish(board, On { comm: Some(comm), peer: None }, &mut req, ffi::RSMPI_STATUS_IGNORE) != 0 {
            return None;
        }
        // Boxed: a communicator handle is not a pointer in every MPI.
        ffi::PMPI_Comm_set_attr(comm, key, Box::into_raw(Box::new(dup)).cast());
        Some(dup)
    }
}

/// `MPI_IN_PLACE` (Open MPI's `(void *) 1`, MPICH's `(void *) -1`): no real buffer lives there.
fn in_place(buf: *const c_void) -> bool {
    matches!(buf as usize, 1 | usize::MAX)
}

/// Exchanges `mine` with `peer` (receiving into `theirs` when given) on `shadow`.
///
/// # Safety
/// The buffers hold `bytes` bytes; `shadow` is valid.
unsafe fn exchange(
    board: &Board,
    on: On,
    shadow: MPI_Comm,
    peer: c_int,
    send: Option<*const c_void>,
    recv: Option<*mut c_void>,
    bytes: c_int,
) -> c_int {
    let mut reqs: [MPI_Request; 2] = unsafe { [ffi::RSMPI_REQUEST_NULL, ffi::RSMPI_REQUEST_NULL] };
    let byte = unsafe { ffi::RSMPI_UINT8_T };
    if let Some(buf) = recv {
        let rc = unsafe { ffi::PMPI_Irecv(buf, bytes, byte, peer, TAG, shadow, &mut reqs[0]) };
        if rc != 0 {
            return rc;
        }
    }
    if let Some(buf) = send {
        let rc = unsafe { ffi::PMPI_Isend(buf, bytes, byte, peer, TAG, shadow, &mut reqs[1]) };
        if rc != 0 {
            wait::abandon(board);
        }
    }
    let mut flag: c_int = 0;
    let statuses = unsafe { ffi::RSMPI_STATUSES_IGNORE };
    match wait::poll(board, on, || {
        match unsafe { ffi::PMPI_Testall(2, reqs.as_mut_ptr(), &mut flag, statuses) } {
            0 => Ok(flag != 0),
            rc => Err(rc),
        }
    }) {
        wait::Waited::Done(rc) => rc,
        wait::Waited::Interrupted => wait::abandon(board),
    }
}

/// A cell's `MPI_Allreduce` by recursive doubling, or `None` when it does not qualify (see the
/// module documentation).
///
/// # Safety
/// As `MPI_Allreduce`.
pub unsafe fn allreduce(
    board: &Board,
    sendbuf: *const c_void,
    recvbuf: *mut c_void,
    count: c_int,
    datatype: MPI_Datatype,
    op: MPI_Op,
    comm: MPI_Comm,
) -> Option<c_int> {
    let bytes = eligible(count, datatype, op, comm)?;
    let shadow = shadow(board, comm)?;
    let (mut rank, mut size): (c_int, c_int) = (0, 0);
    // SAFETY: local queries; the buffers are the caller's, `bytes` long.
    unsafe {
        ffi::PMPI_Comm_rank(shadow, &mut rank);
        ffi::PMPI_Comm_size(shadow, &mut size);
        if !in_place(sendbuf) && bytes > 0 {
            std::ptr::copy_nonoverlapping(sendbuf.cast::<u8>(), recvbuf.cast::<u8>(), bytes);
        }
    }
    if size == 1 || bytes == 0 {
        return Some(0);
    }
    let on = On { comm: Some(comm), peer: None };
    let n = bytes as c_int;
    Some(SCRATCH.with(|scratch| {
        let mut scratch = scratch.borrow_mut();
        scratch.resize(bytes, 0);
        let tmp = scratch.as_mut_ptr().cast::<c_void>();
        let mine = recvbuf.cast_const();
        // SAFETY: every buffer holds `bytes` bytes; `shadow` is this call's communicator's.
        unsafe {
            let reduce = |rc: c_int| {
                if rc == 0 {
                    ffi::PMPI_Reduce_local(tmp, recvbuf, count, datatype, op)
                } else {
                    rc
                }
            };
            let pof2 = 1 << (31 - (size as u32).leading_zeros());
            let rem = size - pof2;
            // Fold the ranks past the power of two into their even neighbours.
            let newrank = if rank < 2 * rem {
                if rank % 2 == 0 {
                    let rc = exchange(board, on, shadow, rank + 1, Some(mine), None, n);
                    if rc != 0 {
                        return rc;
                    }
                    -1
                } else {
                    let rc = reduce(exchange(board, on, shadow, rank - 1, None, Some(tmp), n));
                    if rc != 0 {
                        return rc;
                    }
                    rank / 2
                }
            } else {
                rank - rem
            };
            if newrank >= 0 {
                let mut mask = 1;
                while mask < pof2 {
                    let partner = newrank ^ mask;
                    let peer = if partner < rem { partner * 2 + 1 } else { partner + rem };
                    let rc = reduce(exchange(board, on, shadow, peer, Some(mine), Some(tmp), n));
                    if rc != 0 {
                        return rc;
                    }
                    mask <<= 1;
                }
            }
            // Unfold: the even neighbours get the result.
            if rank < 2 * rem {
                let rc = if rank % 2 == 1 {
                    exchange(board, on, shadow, rank - 1, Some(mine), None, n)
                } else {
                    exchange(board, on, shadow, rank + 1, None, Some(recvbuf), n)
                };
                if rc != 0 {
                    return rc;
                }
            }
            0
        }
    }))
}
