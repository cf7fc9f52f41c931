//! `Kernel`: which cell language an engine runs (`mpx-engine --kernel NAME`), one name for the
//! CLI, the launchers and the engine.

/// The cell language the engines run: `mpx-engine --kernel NAME`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Kernel {
    /// Embedded CPython with numpy and mpi4py (the engine's default).
    #[default]
    Python,
    /// rhai with ndarrays and MPI collectives built in (no dependencies).
    Rhai,
}

impl Kernel {
    /// Every kernel.
    pub const ALL: [Kernel; 2] = [Kernel::Python, Kernel::Rhai];

    /// Its name on the engine's command line (`python`, `rhai`).
    pub fn name(self) -> &'static str {
        match self {
            Kernel::Python => "python",
            Kernel::Rhai => "rhai",
        }
    }
}

impl std::fmt::Display for Kernel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// A kernel name that names no kernel.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown kernel {given:?}: expected one of {}", Kernel::ALL.map(|k| k.name()).join(", "))]
pub struct UnknownKernel {
    /// The name given.
    pub given: String,
}

impl std::str::FromStr for Kernel {
    type Err = UnknownKernel;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Kernel::ALL.into_iter().find(|k| k.name() == s).ok_or_else(|| UnknownKernel { given: s.to_string() })
    }
}
