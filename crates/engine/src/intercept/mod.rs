//! MPI calls made by cells: seen by `mpx where`, interruptible by Ctrl-C, and cheap to wait
//! in. The engine binary defines the blocking MPI functions cells use (`MPI_Barrier`,
//! `MPI_Allreduce`, `MPI_Recv`, the `v` collectives, `MPI_Mprobe` that mpi4py's `recv` uses,
//! ...) itself. While a cell runs, each notes the call on the [`Board`], makes the call's
//! non-blocking form (`MPI_Ibarrier`, ...) through the standard profiling interface (`PMPI_*`)
//! and waits for it in [`wait::poll`]: a short spin, then yields, then naps of up to
//! [`wait::MAX_NAP`], so a rank that waits long costs little CPU; an interrupt is noticed
//! between two tests (see [`wait`] for how the call is then left safely), and a call blocked
//! for a second is reported with its communicator's ranks (`mpx_messages::stuck`).
//!
//! Every rank makes the same choice for the same call (all of a cell's calls take the
//! non-blocking form), so the forms match across ranks: a blocking and a non-blocking
//! collective never match each other. Calls the engine itself makes (already on the board, or
//! outside a cell) go straight to the blocking `PMPI_*` function.
//!
//! mpi4py's extension module resolves `MPI_*` against the executable first, because the
//! engine's build script exports these symbols (`-Wl,--export-dynamic-symbol`). A custom engine
//! binary built without the export still works; its cells' MPI calls are then neither named by
//! `where` nor interruptible.

use std::{
    ffi::{c_char, c_int, c_void},
    sync::{
        atomic::{AtomicBool, Ordering},
        OnceLock,
    },
};

use mpi::ffi::{self, MPI_Comm, MPI_Datatype, MPI_Message, MPI_Op, MPI_Request, MPI_Status};

use crate::state::{Board, MpiGuard};

pub mod wait;

use wait::On;

static BOARD: OnceLock<Board> = OnceLock::new();

static IN_CELL: AtomicBool = AtomicBool::new(false);

/// Whether cells' calls wait as their non-blocking forms (`MPX_INTERRUPTIBLE_MPI=0`: they go
/// straight to the blocking calls: not interruptible, not reported blocked, still named by
/// `where`; for comparisons, or an MPI whose non-blocking collectives misbehave).
static NONBLOCKING: AtomicBool = AtomicBool::new(true);

/// Where the MPI calls of cells are noted (once, at engine start, after MPI started).
pub fn install(board: Board) {
    wait::make_error_class();
    if std::env::var("MPX_INTERRUPTIBLE_MPI").is_ok_and(|v| v == "0") {
        NONBLOCKING.store(false, Ordering::Relaxed);
    }
    let _ = BOARD.set(board);
}

/// Marks user code running (a cell of the Python kernel) until the guard drops: only then are
/// MPI calls the cell's.
pub fn cell_scope() -> CellScope {
    IN_CELL.store(true, Ordering::SeqCst);
    CellScope(())
}

/// Ends a [`cell_scope`].
pub struct CellScope(());

impl Drop for CellScope {
    fn drop(&mut self) {
        IN_CELL.store(false, Ordering::SeqCst);
    }
}

thread_local! {
    /// The last communicator named and its name: a loop of calls on one communicator asks MPI
    /// for the name once.
    static NAMED: std::cell::RefCell<Option<(MPI_Comm, String)>> = const { std::cell::RefCell::new(None) };
}

/// The communicator's name, from the last call's when it is the same communicator.
fn cached_name(comm: MPI_Comm) -> String {
    NAMED.with(|n| {
        let mut n = n.borrow_mut();
        match &*n {
            Some((c, name)) if *c == comm => name.clone(),
            _ => {
                let name = comm_name(comm);
                *n = Some((comm, name.clone()));
                name
            }
        }
    })
}

/// The communicator's MPI name (`COMM_WORLD`, or what the user set), for `where`.
fn comm_name(comm: MPI_Comm) -> String {
    let mut buf = [0 as c_char; 256];
    let mut len: c_int = 0;
    // SAFETY: buf holds MPI_MAX_OBJECT_NAME (<= 256 in Open MPI) characters.
    let rc = unsafe { ffi::PMPI_Comm_get_name(comm, buf.as_mut_ptr(), &mut len) };
    if rc != 0 || len <= 0 {
        return "a communicator".into();
    }
    let bytes: Vec<u8> = buf[..len as usize].iter().map(|&c| c as u8).collect();
    let name = String::from_utf8_lossy(&bytes).into_owned();
    name.strip_prefix("MPI_").map(str::to_string).unwrap_or(name)
}

/// The board and the call's note when a cell (not the engine) makes the call.
fn note(call: &'static str, comm: Option<MPI_Comm>) -> Option<(&'static Board, MpiGuard<'static>)> {
    if !IN_CELL.load(Ordering::Relaxed) {
        return None;
    }
    let board = BOARD.get()?;
    let guard = board.mpi_from_cell(call, || comm.map(cached_name).unwrap_or_else(|| "a request".into()))?;
    Some((board, guard))
}

/// A peer rank, unless it names no single rank (`MPI_ANY_SOURCE`, `MPI_PROC_NULL`).
fn peer(rank: c_int) -> Option<c_int> {
    (rank >= 0).then_some(rank)
}

/// A blocking call made as its non-blocking form, waited for in [`wait::finish`].
macro_rules! nonblocking {
    ($name:ident => $pmpi:ident / $ipmpi:ident, $call:literal, $comm:ident, $peer:expr,
     ($($arg:ident : $t:ty),*)) => {
        #[doc = concat!("`", stringify!($name), "`: a cell's call is noted for `mpx where`, waits as `",
            stringify!($ipmpi), "` and can be interrupted.")]
        ///
        /// # Safety
        /// As the MPI function of the same name.
        #[no_mangle]
        pub unsafe extern "C" fn $name($($arg: $t),*) -> c_int {
            let noted = note($call, Some($comm));
            let Some((board, _noted)) = noted.filter(|_| NONBLOCKING.load(Ordering::Relaxed)) else {
                return unsafe { ffi::$pmpi($($arg),*) };
            };
            let mut req = unsafe { ffi::RSMPI_REQUEST_NULL };
            let rc = unsafe { ffi::$ipmpi($($arg,)* &mut req) };
            if rc != 0 {
                return rc;
            }
            let on = On { comm: Some($comm), peer: $peer };
            unsafe { wait::finish(board, on, &mut req, ffi::RSMPI_STATUS_IGNORE) }
        }
    };
}

nonblocking!(MPI_Barrier => PMPI_Barrier / PMPI_Ibarrier, "Barrier", comm, None, (comm: MPI_Comm));
nonblocking!(MPI_Bcast => PMPI_Bcast / PMPI_Ibcast, "Bcast", comm, None,
    (buffer: *mut c_void, count: c_int, datatype: MPI_Datatype, root: c_int, comm: MPI_Comm));
nonblocking!(MPI_Reduce => PMPI_Reduce / PMPI_Ireduce, "Reduce", comm, None,
    (sendbuf: *const c_void, recvbuf: *mut c_void, count: c_int, datatype: MPI_Datatype, op: MPI_Op,
     root: c_int, comm: MPI_Comm));
nonblocking!(MPI_Allreduce => PMPI_Allreduce / PMPI_Iallreduce, "Allreduce", comm, None,
    (sendbuf: *const c_void, recvbuf: *mut c_void, count: c_int, datatype: MPI_Datatype, op: MPI_Op,
     comm: MPI_Comm));
nonblocking!(MPI_Gather => PMPI_Gather / PMPI_Igather, "Gather", comm, None,
    (sendbuf: *const c_void, sendcount: c_int, sendtype: MPI_Datatype, recvbuf: *mut c_void,
     recvcount: c_int, recvtype: MPI_Datatype, root: c_int, comm: MPI_Comm));
nonblocking!(MPI_Gatherv => PMPI_Gatherv / PMPI_Igatherv, "Gatherv", comm, None,
    (sendbuf: *const c_void, sendcount: c_int, sendtype: MPI_Datatype, recvbuf: *mut c_void,
     recvcounts: *const c_int, displs: *const c_int, recvtype: MPI_Datatype, root: c_int, comm: MPI_Comm));
nonblocking!(MPI_Scatter => PMPI_Scatter / PMPI_Iscatter, "Scatter", comm, None,
    (sendbuf: *const c_void, sendcount: c_int, sendtype: MPI_Datatype, recvbuf: *mut c_void,
     recvcount: c_int, recvtype: MPI_Datatype, root: c_int, comm: MPI_Comm));
nonblocking!(MPI_Scatterv => PMPI_Scatterv / PMPI_Iscatterv, "Scatterv", comm, None,
    (sendbuf: *const c_void, sendcounts: *const c_int, displs: *const c_int, sendtype: MPI_Datatype,
     recvbuf: *mut c_void, recvcount: c_int, recvtype: MPI_Datatype, root: c_int, comm: MPI_Comm));
nonblocking!(MPI_Allgather => PMPI_Allgather / PMPI_Iallgather, "Allgather", comm, None,
    (sendbuf: *const c_void, sendcount: c_int, sendtype: MPI_Datatype, recvbuf: *mut c_void,
     recvcount: c_int, recvtype: MPI_Datatype, comm: MPI_Comm));
nonblocking!(MPI_Allgatherv => PMPI_Allgatherv / PMPI_Iallgatherv, "Allgatherv", comm, None,
    (sendbuf: *const c_void, sendcount: c_int, sendtype: MPI_Datatype, recvbuf: *mut c_void,
     recvcounts: *const c_int, displs: *const c_int, recvtype: MPI_Datatype, comm: MPI_Comm));
nonblocking!(MPI_Alltoall => PMPI_Alltoall / PMPI_Ialltoall, "Alltoall", comm, None,
    (sendbuf: *const c_void, sendcount: c_int, sendtype: MPI_Datatype, recvbuf: *mut c_void,
     recvcount: c_int, recvtype: MPI_Datatype, comm: MPI_Comm));
nonblocking!(MPI_Alltoallv => PMPI_Alltoallv / PMPI_Ialltoallv, "Alltoallv", comm, None,
    (sendbuf: *const c_void, sendcounts: *const c_int, sdispls: *const c_int, sendtype: MPI_Datatype,
     recvbuf: *mut c_void, recvcounts: *const c_int, rdispls: *const c_int, recvtype: MPI_Datatype,
     comm: MPI_Comm));
nonblocking!(MPI_Send => PMPI_Send / PMPI_Isend, "Send", comm, peer(dest),
    (buf: *const c_void, count: c_int, datatype: MPI_Datatype, dest: c_int, tag: c_int, comm: MPI_Comm));
nonblocking!(MPI_Ssend => PMPI_Ssend / PMPI_Issend, "Ssend", comm, peer(dest),
    (buf: *const c_void, count: c_int, datatype: MPI_Datatype, dest: c_int, tag: c_int, comm: MPI_Comm));

/// `MPI_Recv`: a cell's receive waits as `MPI_Irecv`; an interrupt cancels it.
///
/// # Safety
/// As the MPI function of the same name.
#[no_mangle]
pub unsafe extern "C" fn MPI_Recv(
    buf: *mut c_void,
    count: c_int,
    datatype: MPI_Datatype,
    source: c_int,
    tag: c_int,
    comm: MPI_Comm,
    status: *mut MPI_Status,
) -> c_int {
    let noted = note("Recv", Some(comm));
    let Some((board, _noted)) = noted.filter(|_| NONBLOCKING.load(Ordering::Relaxed)) else {
        return unsafe { ffi::PMPI_Recv(buf, count, datatype, source, tag, comm, status) };
    };
    let mut req = unsafe { ffi::RSMPI_REQUEST_NULL };
    let rc = unsafe { ffi::PMPI_Irecv(buf, count, datatype, source, tag, comm, &mut req) };
    if rc != 0 {
        return rc;
    }
    let on = On { comm: Some(comm), peer: peer(source) };
    unsafe { wait::finish_recv(board, on, &mut req, status) }
}

/// `MPI_Sendrecv`: a cell's call waits as `MPI_Irecv` + `MPI_Isend`.
///
/// # Safety
/// As the MPI function of the same name.
#[no_mangle]
pub unsafe extern "C" fn MPI_Sendrecv(
    sendbuf: *const c_void,
    sendcount: c_int,
    sendtype: MPI_Datatype,
    dest: c_int,
    sendtag: c_int,
    recvbuf: *mut c_void,
    recvcount: c_int,
    recvtype: MPI_Datatype,
    source: c_int,
    recvtag: c_int,
    comm: MPI_Comm,
    status: *mut MPI_Status,
) -> c_int {
    let noted = note("Sendrecv", Some(comm));
    let Some((board, _noted)) = noted.filter(|_| NONBLOCKING.load(Ordering::Relaxed)) else {
        return unsafe {
            ffi::PMPI_Sendrecv(
                sendbuf, sendcount, sendtype, dest, sendtag, recvbuf, recvcount, recvtype, source, recvtag,
                comm, status,
            )
        };
    };
    let mut reqs = unsafe { [ffi::RSMPI_REQUEST_NULL, ffi::RSMPI_REQUEST_NULL] };
    let rc = unsafe { ffi::PMPI_Irecv(recvbuf, recvcount, recvtype, source, recvtag, comm, &mut reqs[0]) };
    if rc != 0 {
        return rc;
    }
    let rc = unsafe { ffi::PMPI_Isend(sendbuf, sendcount, sendtype, dest, sendtag, comm, &mut reqs[1]) };
    if rc != 0 {
        wait::abandon(board);
    }
    let mut statuses: [MPI_Status; 2] = unsafe { std::mem::zeroed() };
    let mut flag: c_int = 0;
    let on = On { comm: Some(comm), peer: peer(source) };
    let waited = wait::poll(board, on, || {
        match unsafe { ffi::PMPI_Testall(2, reqs.as_mut_ptr(), &mut flag, statuses.as_mut_ptr()) } {
            0 => Ok(flag != 0),
            rc => Err(rc),
        }
    });
    match waited {
        wait::Waited::Done(rc) => {
            if rc == 0 && status != unsafe { ffi::RSMPI_STATUS_IGNORE } {
                unsafe { *status = statuses[0] };
            }
            rc
        }
        wait::Waited::Interrupted => wait::abandon(board),
    }
}

/// `MPI_Probe`: a cell's probe loops on `MPI_Iprobe`; an interrupt ends it with an error.
///
/// # Safety
/// As the MPI function of the same name.
#[no_mangle]
pub unsafe extern "C" fn MPI_Probe(
    source: c_int,
    tag: c_int,
    comm: MPI_Comm,
    status: *mut MPI_Status,
) -> c_int {
    let noted = note("Probe", Some(comm));
    let Some((board, _noted)) = noted.filter(|_| NONBLOCKING.load(Ordering::Relaxed)) else {
        return unsafe { ffi::PMPI_Probe(source, tag, comm, status) };
    };
    let mut flag: c_int = 0;
    let on = On { comm: Some(comm), peer: peer(source) };
    match wait::poll(board, on, || match unsafe { ffi::PMPI_Iprobe(source, tag, comm, &mut flag, status) } {
        0 => Ok(flag != 0),
        rc => Err(rc),
    }) {
        wait::Waited::Done(rc) => rc,
        wait::Waited::Interrupted => wait::interrupted_code(),
    }
}

/// `MPI_Mprobe` (mpi4py's `recv`): a cell's probe loops on `MPI_Improbe`; an interrupt ends it
/// with an error.
///
/// # Safety
/// As the MPI function of the same name.
#[no_mangle]
pub unsafe extern "C" fn MPI_Mprobe(
    source: c_int,
    tag: c_int,
    comm: MPI_Comm,
    message: *mut MPI_Message,
    status: *mut MPI_Status,
) -> c_int {
    let noted = note("Mprobe", Some(comm));
    let Some((board, _noted)) = noted.filter(|_| NONBLOCKING.load(Ordering::Relaxed)) else {
        return unsafe { ffi::PMPI_Mprobe(source, tag, comm, message, status) };
    };
    let mut flag: c_int = 0;
    let on = On { comm: Some(comm), peer: peer(source) };
    match wait::poll(board, on, || {
        match unsafe { ffi::PMPI_Improbe(source, tag, comm, &mut flag, message, status) } {
            0 => Ok(flag != 0),
            rc => Err(rc),
        }
    }) {
        wait::Waited::Done(rc) => rc,
        wait::Waited::Interrupted => wait::interrupted_code(),
    }
}

/// `MPI_Wait`: a cell's wait loops on `MPI_Test`.
///
/// # Safety
/// As the MPI function of the same name.
#[no_mangle]
pub unsafe extern "C" fn MPI_Wait(request: *mut MPI_Request, status: *mut MPI_Status) -> c_int {
    let noted = note("Wait", None);
    let Some((board, _noted)) = noted.filter(|_| NONBLOCKING.load(Ordering::Relaxed)) else {
        return unsafe { ffi::PMPI_Wait(request, status) };
    };
    unsafe { wait::finish(board, On { comm: None, peer: None }, &mut *request, status) }
}

/// `MPI_Waitall`: a cell's wait loops on `MPI_Testall`.
///
/// # Safety
/// As the MPI function of the same name.
#[no_mangle]
pub unsafe extern "C" fn MPI_Waitall(
    count: c_int,
    array_of_requests: *mut MPI_Request,
    array_of_statuses: *mut MPI_Status,
) -> c_int {
    let noted = note("Waitall", None);
    let Some((board, _noted)) = noted.filter(|_| NONBLOCKING.load(Ordering::Relaxed)) else {
        return unsafe { ffi::PMPI_Waitall(count, array_of_requests, array_of_statuses) };
    };
    let mut flag: c_int = 0;
    let waited = wait::poll(board, On { comm: None, peer: None }, || {
        match unsafe { ffi::PMPI_Testall(count, array_of_requests, &mut flag, array_of_statuses) } {
            0 => Ok(flag != 0),
            rc => Err(rc),
        }
    });
    match waited {
        wait::Waited::Done(rc) => rc,
        wait::Waited::Interrupted => wait::abandon(board),
    }
}
