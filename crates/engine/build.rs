//! Exports the engine's `MPI_*` wrappers (src/intercept.rs) from its executables, so that
//! mpi4py's calls reach them before Open MPI's and `mpx where` can name a cell's MPI call.
fn main() {
    for name in [
        "Barrier",
        "Bcast",
        "Reduce",
        "Allreduce",
        "Gather",
        "Scatter",
        "Allgather",
        "Alltoall",
        "Send",
        "Ssend",
        "Recv",
        "Sendrecv",
        "Probe",
        "Wait",
        "Waitall",
    ] {
        println!("cargo:rustc-link-arg-bins=-Wl,--export-dynamic-symbol=MPI_{name}");
        println!("cargo:rustc-link-arg-examples=-Wl,--export-dynamic-symbol=MPI_{name}");
    }
    println!("cargo:rerun-if-changed=build.rs");
}
