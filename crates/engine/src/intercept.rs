//! MPI calls made by cells, seen by `mpx where`: the engine binary defines the blocking MPI
//! functions a cell uses most (`MPI_Barrier`, `MPI_Allreduce`, `MPI_Recv`, ...) itself, notes
//! the call on the [`Board`] while a cell runs, and calls the real one through the standard
//! profiling interface (`PMPI_*`). mpi4py's extension module resolves `MPI_*` against the
//! executable first, because the engine's build script exports these symbols
//! (`-Wl,--export-dynamic-symbol`). Calls the engine itself makes are already on the board
//! and are not noted twice. A custom engine binary built without the export still works; its
//! `where` just cannot name the MPI calls of Python cells.

use std::{
    ffi::{c_char, c_int, c_void},
    sync::OnceLock,
};

use mpi::ffi::{self, MPI_Comm, MPI_Datatype, MPI_Op, MPI_Request, MPI_Status};

use crate::state::{Board, MpiGuard};

static BOARD: OnceLock<Board> = OnceLock::new();

/// Where the MPI calls of cells are noted (once, at engine start).
pub fn install(board: Board) {
    let _ = BOARD.set(board);
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

fn note(call: &'static str, comm: Option<MPI_Comm>) -> Option<MpiGuard<'static>> {
    let board = BOARD.get()?;
    board.mpi_from_cell(call, || comm.map(comm_name).unwrap_or_else(|| "a request".into()))
}

macro_rules! intercept {
    ($name:ident => $pmpi:ident, $call:literal, $comm:expr, ($($arg:ident : $t:ty),*)) => {
        #[doc = concat!("`", stringify!($name), "`, noted for `mpx where` while a cell runs.")]
        ///
        /// # Safety
        /// As the MPI function of the same name.
        #[no_mangle]
        pub unsafe extern "C" fn $name($($arg: $t),*) -> c_int {
            let _noted = note($call, $comm);
            ffi::$pmpi($($arg),*)
        }
    };
}

intercept!(MPI_Barrier => PMPI_Barrier, "Barrier", Some(comm), (comm: MPI_Comm));
intercept!(MPI_Bcast => PMPI_Bcast, "Bcast", Some(comm),
    (buffer: *mut c_void, count: c_int, datatype: MPI_Datatype, root: c_int, comm: MPI_Comm));
intercept!(MPI_Reduce => PMPI_Reduce, "Reduce", Some(comm),
    (sendbuf: *const c_void, recvbuf: *mut c_void, count: c_int, datatype: MPI_Datatype, op: MPI_Op,
     root: c_int, comm: MPI_Comm));
intercept!(MPI_Allreduce => PMPI_Allreduce, "Allreduce", Some(comm),
    (sendbuf: *const c_void, recvbuf: *mut c_void, count: c_int, datatype: MPI_Datatype, op: MPI_Op,
     comm: MPI_Comm));
intercept!(MPI_Gather => PMPI_Gather, "Gather", Some(comm),
    (sendbuf: *const c_void, sendcount: c_int, sendtype: MPI_Datatype, recvbuf: *mut c_void,
     recvcount: c_int, recvtype: MPI_Datatype, root: c_int, comm: MPI_Comm));
intercept!(MPI_Scatter => PMPI_Scatter, "Scatter", Some(comm),
    (sendbuf: *const c_void, sendcount: c_int, sendtype: MPI_Datatype, recvbuf: *mut c_void,
     recvcount: c_int, recvtype: MPI_Datatype, root: c_int, comm: MPI_Comm));
intercept!(MPI_Allgather => PMPI_Allgather, "Allgather", Some(comm),
    (sendbuf: *const c_void, sendcount: c_int, sendtype: MPI_Datatype, recvbuf: *mut c_void,
     recvcount: c_int, recvtype: MPI_Datatype, comm: MPI_Comm));
intercept!(MPI_Alltoall => PMPI_Alltoall, "Alltoall", Some(comm),
    (sendbuf: *const c_void, sendcount: c_int, sendtype: MPI_Datatype, recvbuf: *mut c_void,
     recvcount: c_int, recvtype: MPI_Datatype, comm: MPI_Comm));
intercept!(MPI_Send => PMPI_Send, "Send", Some(comm),
    (buf: *const c_void, count: c_int, datatype: MPI_Datatype, dest: c_int, tag: c_int, comm: MPI_Comm));
intercept!(MPI_Ssend => PMPI_Ssend, "Ssend", Some(comm),
    (buf: *const c_void, count: c_int, datatype: MPI_Datatype, dest: c_int, tag: c_int, comm: MPI_Comm));
intercept!(MPI_Recv => PMPI_Recv, "Recv", Some(comm),
    (buf: *mut c_void, count: c_int, datatype: MPI_Datatype, source: c_int, tag: c_int, comm: MPI_Comm,
     status: *mut MPI_Status));
intercept!(MPI_Sendrecv => PMPI_Sendrecv, "Sendrecv", Some(comm),
    (sendbuf: *const c_void, sendcount: c_int, sendtype: MPI_Datatype, dest: c_int, sendtag: c_int,
     recvbuf: *mut c_void, recvcount: c_int, recvtype: MPI_Datatype, source: c_int, recvtag: c_int,
     comm: MPI_Comm, status: *mut MPI_Status));
intercept!(MPI_Probe => PMPI_Probe, "Probe", Some(comm),
    (source: c_int, tag: c_int, comm: MPI_Comm, status: *mut MPI_Status));
intercept!(MPI_Wait => PMPI_Wait, "Wait", None, (request: *mut MPI_Request, status: *mut MPI_Status));
intercept!(MPI_Waitall => PMPI_Waitall, "Waitall", None,
    (count: c_int, array_of_requests: *mut MPI_Request, array_of_statuses: *mut MPI_Status));
