//! [`EngineProgram`]: what mpirun starts on each rank.

use std::{ffi::OsString, path::PathBuf};

use super::template::shell_quote;

/// The module a Python interpreter runs as an engine (`python -m mpx.engine`).
pub const PYTHON_ENGINE_MODULE: &str = "mpx.engine";

/// The program of each rank: an engine binary (`mpx-engine`, or a custom one with native
/// functions), or a Python interpreter that runs the engine of its installed `mpx` package
/// (`python -m mpx.engine`), so that cells run in that interpreter's environment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EngineProgram {
    /// An engine executable, which embeds the Python it was built against.
    Binary(PathBuf),
    /// A Python interpreter with the `mpx` package installed.
    Python(PathBuf),
}

impl EngineProgram {
    /// The command's words, before the engine's own options (`--kernel`, `--connect`).
    pub fn argv(&self) -> Vec<OsString> {
        match self {
            EngineProgram::Binary(exe) => vec![exe.into()],
            EngineProgram::Python(python) => vec![python.into(), "-m".into(), PYTHON_ENGINE_MODULE.into()],
        }
    }

    /// The command as a job script writes it, each word quoted for the shell where needed.
    pub fn shell_words(&self) -> String {
        self.argv().iter().map(|w| shell_quote(&w.to_string_lossy())).collect::<Vec<_>>().join(" ")
    }
}

impl Default for EngineProgram {
    /// `mpx-engine`, found on PATH.
    fn default() -> Self {
        EngineProgram::Binary("mpx-engine".into())
    }
}

impl From<PathBuf> for EngineProgram {
    fn from(exe: PathBuf) -> Self {
        EngineProgram::Binary(exe)
    }
}

impl std::fmt::Display for EngineProgram {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.shell_words())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_python_engine_runs_the_module_of_that_interpreter() {
        let p = EngineProgram::Python("/home/a b/venv/bin/python".into());
        assert_eq!(p.argv(), ["/home/a b/venv/bin/python", "-m", "mpx.engine"].map(OsString::from));
        assert_eq!(p.shell_words(), "'/home/a b/venv/bin/python' -m mpx.engine");
        let b = EngineProgram::from(PathBuf::from("/opt/mpx-engine"));
        assert_eq!(b.shell_words(), "/opt/mpx-engine");
    }
}
