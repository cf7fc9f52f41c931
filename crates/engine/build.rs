//! Exports the engine's `MPI_*` wrappers (src/intercept.rs) from its executables, so that
//! mpi4py's calls reach them before Open MPI's: `mpx where` names a cell's MPI call, and Ctrl-C
//! can interrupt it.
fn main() {
    for name in [
        "Barrier",
        "Bcast",
        "Reduce",
        "Allreduce",
        "Gather",
        "Gatherv",
        "Scatter",
        "Scatterv",
        "Allgather",
        "Allgatherv",
        "Alltoall",
        "Alltoallv",
        "Send",
        "Ssend",
        "Recv",
        "Sendrecv",
        "Probe",
        "Mprobe",
        "Wait",
        "Waitall",
    ] {
        println!("cargo:rustc-link-arg-bins=-Wl,--export-dynamic-symbol=MPI_{name}");
        println!("cargo:rustc-link-arg-examples=-Wl,--export-dynamic-symbol=MPI_{name}");
    }
    println!("cargo:rerun-if-changed=build.rs");
}
