//! `Registry`: native Rust functions an engine binary makes callable from cells, for both
//! kernels.

use std::fmt;

use pyo3::{prelude::*, types::PyModule};

use crate::kernel::python::PyStep;

/// Native Rust functions for cells: rhai registration steps (run on each new rhai
/// interpreter) and Python steps (each adds functions to the `mpx_engine` module that Python
/// cells import: `import mpx_engine; mpx_engine.norm2(a)`).
///
/// # Examples
///
/// ```
/// use mpx_engine::{ArrayValue, Registry};
/// use pyo3::prelude::*;
///
/// #[pyfunction]
/// fn twice(x: f64) -> f64 { 2.0 * x }
///
/// let mut reg = Registry::new();
/// reg.add(|e| { e.register_fn("twice", |x: f64| 2.0 * x); });
/// reg.add_python(|m| m.add_function(wrap_pyfunction!(twice, m)?));
/// assert_eq!(reg.len(), 2);
/// ```
#[derive(Default)]
pub struct Registry {
    rhai: mpx_cells::Registry,
    python: Vec<PyStep>,
}

impl Registry {
    /// An empty registry.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds an rhai registration step, e.g. `reg.add(|e| { e.register_fn("norm2", ...); })`.
    pub fn add(&mut self, f: impl Fn(&mut mpx_cells::rhai::Engine) + 'static) -> &mut Self {
        self.rhai.add(f);
        self
    }

    /// Adds a Python step: `f` adds functions (PyO3 `#[pyfunction]`s; numpy arrays arrive
    /// without copies as `numpy::PyReadonlyArrayDyn`) to the `mpx_engine` module.
    pub fn add_python(&mut self, f: impl Fn(&Bound<'_, PyModule>) -> PyResult<()> + 'static) -> &mut Self {
        self.python.push(Box::new(f));
        self
    }

    /// Number of steps (both kernels).
    pub fn len(&self) -> usize {
        self.rhai.len() + self.python.len()
    }

    /// True when no step was added.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The parts: rhai steps and Python steps.
    pub fn into_parts(self) -> (mpx_cells::Registry, Vec<PyStep>) {
        (self.rhai, self.python)
    }
}

impl fmt::Debug for Registry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Registry")
            .field("rhai", &self.rhai.len())
            .field("python", &self.python.len())
            .finish()
    }
}
