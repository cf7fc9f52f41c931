//! `Registry`: native Rust functions the engine makes callable from cells.

use std::fmt;

use rhai::Engine;

type Step = Box<dyn Fn(&mut Engine)>;

/// Native Rust functions made callable from cells, as registration steps run on each new
/// interpreter's rhai `Engine` (after the built-ins, so a step may override one).
///
/// # Examples
///
/// ```
/// use mpx_cells::{ArrayValue, Registry};
/// let mut reg = Registry::new();
/// reg.add(|e| {
///     e.register_fn("norm2", |a: ArrayValue| -> f64 { a.to_f64().iter().map(|x| x * x).sum() });
/// });
/// assert_eq!(reg.len(), 1);
/// ```
#[derive(Default)]
pub struct Registry {
    steps: Vec<Step>,
}

impl Registry {
    /// An empty registry.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds a registration step, e.g. `reg.add(|e| { e.register_fn("norm2", ...); })`.
    pub fn add(&mut self, f: impl Fn(&mut Engine) + 'static) -> &mut Self {
        self.steps.push(Box::new(f));
        self
    }

    /// Number of registration steps.
    pub fn len(&self) -> usize {
        self.steps.len()
    }

    /// True when no step was added.
    pub fn is_empty(&self) -> bool {
        self.steps.is_empty()
    }

    /// Runs every step on `engine`, in the order they were added.
    pub fn apply(&self, engine: &mut Engine) {
        for step in &self.steps {
            step(engine);
        }
    }
}

impl fmt::Debug for Registry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Registry").field("steps", &self.steps.len()).finish()
    }
}
