//! BLAS and OpenMP thread counts: ranks on one host must not oversubscribe it.
//!
//! An optimised BLAS (OpenBLAS, MKL, BLIS) starts one thread per core of the host in every
//! process that loads it. Four ranks on a 4-core host would run 16 BLAS threads on 4 cores, and
//! a matmul in a cell gets slower than on one rank. So, unless the user set any of the thread
//! variables, each engine sets them all to the cores it may use divided by the engines on its
//! host (at least 1). The engines on the host are what the launcher says
//! (`OMPI_COMM_WORLD_LOCAL_SIZE` under Open MPI, `MPI_LOCALNRANKS` under MPICH's Hydra,
//! `SLURM_NTASKS_PER_NODE` under `srun`); when it says nothing the variables are left alone.
//! A rank bound to fewer cores than the host has (mpirun's `--bind-to core`) uses its own cores
//! as they are: they are its alone.
//!
//! The variables must be set before the BLAS library is loaded (numpy reads them on import),
//! and while the process has one thread: [`apply_defaults`] runs first thing in
//! [`crate::main_with`], before MPI starts any thread.

/// The variables that set a BLAS or OpenMP thread pool's size.
pub const THREAD_VARS: [&str; 5] = [
    "OMP_NUM_THREADS",
    "OPENBLAS_NUM_THREADS",
    "MKL_NUM_THREADS",
    "BLIS_NUM_THREADS",
    "VECLIB_MAXIMUM_THREADS",
];

/// The launchers' variables that give the number of ranks on this host, in the order tried.
pub const LOCAL_SIZE_VARS: [&str; 3] =
    ["OMPI_COMM_WORLD_LOCAL_SIZE", "MPI_LOCALNRANKS", "SLURM_NTASKS_PER_NODE"];

/// The thread count each engine should use: `usable` cores, shared by `local` engines when the
/// process may use the whole host (`usable == host`), at least 1.
pub fn per_engine(usable: usize, host: usize, local: usize) -> usize {
    if usable < host {
        // Bound by the launcher to a subset: those cores are this rank's own.
        return usable.max(1);
    }
    (usable / local.max(1)).max(1)
}

/// The thread count to set, or `None` when the user set one of [`THREAD_VARS`] or the launcher
/// does not say how many engines share the host. `get` reads a variable.
pub fn decide(get: impl Fn(&str) -> Option<String>, usable: usize, host: usize) -> Option<usize> {
    if THREAD_VARS.iter().any(|v| get(v).is_some()) {
        return None;
    }
    let local = LOCAL_SIZE_VARS.iter().find_map(|v| get(v)?.trim().parse::<usize>().ok())?;
    Some(per_engine(usable, host, local))
}

/// Sets every one of [`THREAD_VARS`] to this engine's share of its host (see the module
/// documentation); returns the count set, if any. Call while the process has one thread.
pub fn apply_defaults() -> Option<usize> {
    let usable = std::thread::available_parallelism().map_or(1, |n| n.get());
    // SAFETY: sysconf has no preconditions.
    let host = usize::try_from(unsafe { libc::sysconf(libc::_SC_NPROCESSORS_ONLN) }).unwrap_or(usable);
    let n = decide(|v| std::env::var(v).ok(), usable, host.max(usable))?;
    for var in THREAD_VARS {
        std::env::set_var(var, n.to_string());
    }
    Some(n)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env<'a>(pairs: &'a [(&'a str, &'a str)]) -> impl Fn(&str) -> Option<String> + 'a {
        move |k| pairs.iter().find(|(n, _)| *n == k).map(|(_, v)| v.to_string())
    }

    #[test]
    fn the_host_is_shared_by_its_engines() {
        assert_eq!(decide(env(&[("OMPI_COMM_WORLD_LOCAL_SIZE", "4")]), 8, 8), Some(2));
        assert_eq!(decide(env(&[("OMPI_COMM_WORLD_LOCAL_SIZE", "4")]), 2, 2), Some(1));
        assert_eq!(decide(env(&[("MPI_LOCALNRANKS", "3")]), 16, 16), Some(5));
        assert_eq!(decide(env(&[("SLURM_NTASKS_PER_NODE", "2")]), 16, 16), Some(8));
    }

    #[test]
    fn the_users_setting_wins() {
        let set = [("OMPI_COMM_WORLD_LOCAL_SIZE", "4"), ("OMP_NUM_THREADS", "3")];
        assert_eq!(decide(env(&set), 8, 8), None);
        let set = [("OMPI_COMM_WORLD_LOCAL_SIZE", "4"), ("OPENBLAS_NUM_THREADS", "8")];
        assert_eq!(decide(env(&set), 8, 8), None);
    }

    #[test]
    fn unknown_layout_is_left_alone() {
        assert_eq!(decide(env(&[]), 8, 8), None);
        assert_eq!(decide(env(&[("OMPI_COMM_WORLD_LOCAL_SIZE", "x")]), 8, 8), None);
    }

    #[test]
    fn a_bound_rank_keeps_its_own_cores() {
        assert_eq!(per_engine(2, 16, 8), 2);
        assert_eq!(per_engine(1, 16, 8), 1);
        assert_eq!(per_engine(16, 16, 0), 16);
    }
}
