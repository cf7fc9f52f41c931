//! [`OutputStream`]: what a request's engines print, as it arrives (`mpx_client::OutputStream`),
//! for `%px` in Jupyter, which shows each engine's output while the cell runs.

use std::{
    sync::Mutex,
    time::{Duration, Instant},
};

use pyo3::prelude::*;

use crate::secs;

/// How often a blocking wait wakes up to let Python handle Ctrl-C.
const SLICE: Duration = Duration::from_millis(50);

/// A piece of output for Python: `(engine_id, "stdout" or "stderr", text)`.
pub type Piece = (u32, &'static str, String);

/// One request's output as it arrives. While it is open, the request's results carry no
/// stdout or stderr (each piece is given once, here); what arrived before it was opened comes
/// first. Its `close()` (or dropping it) gives what comes next back to the results.
#[pyclass(module = "mpx._mpx", frozen)]
pub struct OutputStream {
    /// None once closed.
    inner: Mutex<Option<mpx_client::OutputStream>>,
}

impl OutputStream {
    pub(crate) fn new(inner: mpx_client::OutputStream) -> Self {
        OutputStream { inner: Mutex::new(Some(inner)) }
    }
}

#[pymethods]
impl OutputStream {
    /// The pieces that arrived since the last call, oldest first, as `(engine_id, stream,
    /// text)`; waits up to `timeout` seconds for at least one (empty on timeout, once closed,
    /// or when the connection closed). Ctrl-C raises KeyboardInterrupt (no piece is lost).
    #[pyo3(signature = (timeout=0.0))]
    fn next(&self, py: Python<'_>, timeout: f64) -> PyResult<Vec<Piece>> {
        let deadline = Instant::now() + secs(timeout);
        loop {
            let slice = deadline.saturating_duration_since(Instant::now()).min(SLICE);
            let pieces = py.detach(|| {
                let guard = self.inner.lock().unwrap_or_else(|e| e.into_inner());
                guard.as_ref().map(|s| s.next(slice))
            });
            let Some(pieces) = pieces else { return Ok(Vec::new()) };
            if !pieces.is_empty() {
                return Ok(pieces
                    .into_iter()
                    .map(|p| (p.engine_id.get(), p.stream.as_str(), p.text))
                    .collect());
            }
            py.check_signals()?;
            if Instant::now() >= deadline {
                return Ok(Vec::new());
            }
        }
    }

    /// Stops streaming: the output that comes from now on goes to the results again.
    fn close(&self) {
        self.inner.lock().unwrap_or_else(|e| e.into_inner()).take();
    }
}
