//! The cells the latency rows run, in each kernel's language: the set-up of the reference
//! session (`psum`, its 100-element input, the 1M-f64 allreduce input) and the timed cells.

use crate::cluster::Kernel;

/// The reference session's `psum` in rhai (Allreduce(SUM) of the local sums).
const PSUM_RHAI: &str = include_str!("../../examples/psum.rhai");
/// The rhai inputs: the psum input and the 1M-f64 (8 MB) allreduce input.
const INPUTS_RHAI: &str = "let a = rand(100);\nlet big = rand(1000000);";

/// The reference session's `psum` with mpi4py (examples/psum.py, the seed's example).
const PSUM_PYTHON: &str = include_str!("../../examples/psum.py");
/// The Python inputs: the psum input, the 1M-f64 (8 MB) allreduce input and its result buffer.
const INPUTS_PYTHON: &str = "\
a = np.random.rand(100)
big = np.random.rand(1000000)
big_sum = np.empty_like(big)
";

/// One kernel's cells.
#[derive(Debug, Clone, Copy)]
pub struct Cells {
    /// Run once on all engines when the shared cluster starts, in order.
    pub setup: &'static [&'static str],
    /// A cell that does nothing.
    pub noop: &'static str,
    /// The measured psum cell (`s = psum(a)`).
    pub psum: &'static str,
    /// Barrier, then the allreduce of `big` timed inside the engine; the cell's value is the
    /// allreduce's time in seconds.
    pub allreduce_timed: &'static str,
    /// The allreduce of `big` alone (for the client round trip).
    pub allreduce: &'static str,
}

impl Cells {
    /// The cells of `kernel`.
    pub fn of(kernel: Kernel) -> Cells {
        match kernel {
            Kernel::Python => Cells {
                setup: &[PSUM_PYTHON, INPUTS_PYTHON],
                noop: "pass",
                psum: "s = psum(a)",
                allreduce_timed: "\
MPI.COMM_WORLD.Barrier()
t0 = MPI.Wtime()
MPI.COMM_WORLD.Allreduce(big, big_sum, op=MPI.SUM)
MPI.Wtime() - t0",
                allreduce: "MPI.COMM_WORLD.Allreduce(big, big_sum, op=MPI.SUM)",
            },
            Kernel::Rhai => Cells {
                setup: &[PSUM_RHAI, INPUTS_RHAI],
                noop: "()",
                psum: "let s = psum(a);",
                allreduce_timed: "barrier();\nlet t0 = wtime();\nlet r = allreduce(big, SUM);\nwtime() - t0",
                allreduce: "let r = allreduce(big, SUM);",
            },
        }
    }
}
