//! One MPI in the engine: mpi4py must use the MPI library the engine initialised. Two MPI
//! libraries in one process (an mpi4py built for MPICH in an engine on Open MPI, say) crash or
//! hang at their first call; so the engine asks mpi4py which library it loaded, before mpi4py
//! initialises anything (`mpi4py.rc.initialize = False`), and refuses to start with a message
//! that names both.

/// The first line of an MPI library's version string (`MPI_Get_library_version`), without the
/// padding some libraries leave.
fn first_line(version: &str) -> &str {
    version.trim_matches(|c: char| c == '\0' || c.is_whitespace()).lines().next().unwrap_or("").trim()
}

/// Whether the engine's MPI library and mpi4py's are the same one.
pub fn same_library(engine: &str, mpi4py: &str) -> bool {
    let (a, b) = (first_line(engine), first_line(mpi4py));
    !a.is_empty() && a == b
}

/// The refusal when they differ.
pub fn mismatch(engine: &str, mpi4py: &str) -> String {
    format!(
        "mpi4py uses another MPI library than the engine: the engine runs on \"{}\", mpi4py on \"{}\". \
         Both must be the same library: build mpi4py against the engine's MPI (e.g. `pip install \
         --no-binary mpi4py mpi4py` with that MPI's mpicc first on PATH), or run the engines with \
         the MPI mpi4py was built for",
        first_line(engine),
        first_line(mpi4py)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    const OPEN_MPI: &str =
        "Open MPI v4.1.4, package: Debian OpenMPI, ident: 4.1.4, repo rev: v4.1.4, May 26, 2022\0\0";

    #[test]
    fn the_same_library_matches_whatever_its_padding() {
        assert!(same_library(
            OPEN_MPI,
            "Open MPI v4.1.4, package: Debian OpenMPI, ident: 4.1.4, repo rev: v4.1.4, May 26, 2022\n"
        ));
    }

    #[test]
    fn another_library_or_version_does_not() {
        assert!(!same_library(
            OPEN_MPI,
            "MPICH Version:\t4.0.2\nMPICH Release date:\tThu Apr  7 12:34:45 CDT 2022"
        ));
        assert!(!same_library(OPEN_MPI, "Open MPI v4.1.6, package: Open MPI builder, ident: 4.1.6"));
        assert!(!same_library("", ""));
        let text = mismatch(OPEN_MPI, "MPICH Version:\t4.0.2\nMPICH Release date: x");
        assert!(
            text.contains(
                "\"Open MPI v4.1.4, package: Debian OpenMPI, ident: 4.1.4, repo rev: v4.1.4, May 26, 2022\""
            ),
            "{text}"
        );
        assert!(text.contains("\"MPICH Version:\t4.0.2\""), "{text}");
    }
}
