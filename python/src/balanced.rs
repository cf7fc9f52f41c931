//! Load-balanced tasks for Python: [`BalancedTask`], one task in flight, and [`wait_any`]; the
//! `Client` methods that submit them are in the crate root.

use std::time::{Duration, Instant};

use mpx_client::{TaskHandle, TaskResult};
use pyo3::{exceptions::PyTimeoutError, prelude::*, types::PyDict};

use crate::{result::buffer, secs, to_py};

/// How often a blocking wait wakes up to let Python handle Ctrl-C.
const SLICE: Duration = Duration::from_millis(50);

/// One load-balanced task in flight (`mpx_client::TaskHandle`).
#[pyclass(module = "mpx._mpx", frozen)]
pub struct BalancedTask {
    pub(crate) inner: TaskHandle,
}

/// A task's result as a dict: engine_id (None if it never ran), stdout, stderr, value, error
/// (ename, evalue, line, traceback) or None, died (engine, rank, cause) or None, execution_count, started, completed, received,
/// array (a `Buffer` or None), returned (`(payload bytes, [Buffer])` or None), attempts.
fn task_dict<'py>(py: Python<'py>, r: TaskResult) -> PyResult<Bound<'py, PyDict>> {
    let d = PyDict::new(py);
    let o = r.outcome;
    d.set_item("engine_id", r.engine_id.map(|e| e.get()))?;
    d.set_item("stdout", o.stdout)?;
    d.set_item("stderr", o.stderr)?;
    d.set_item("value", o.value)?;
    crate::result::set_error(&d, o.error)?;
    d.set_item("execution_count", o.execution_count)?;
    d.set_item("started", o.started)?;
    d.set_item("completed", o.completed)?;
    d.set_item("received", r.received)?;
    d.set_item("array", r.array.map(buffer))?;
    d.set_item("returned", crate::result::returned(py, r.returned))?;
    d.set_item("attempts", r.attempts)?;
    Ok(d)
}

/// Waits in short slices (Ctrl-C is noticed between them) until `poll` finds something or
/// `timeout` (None: forever) runs out.
fn wait_slices<T>(
    py: Python<'_>,
    timeout: Option<f64>,
    mut poll: impl FnMut(Duration) -> Result<Option<T>, mpx_client::ClientError> + Send,
) -> PyResult<Option<T>>
where
    T: Send,
{
    let deadline = timeout.map(|t| Instant::now() + secs(t));
    loop {
        let slice = match deadline {
            Some(d) => d.saturating_duration_since(Instant::now()).min(SLICE),
            None => SLICE,
        };
        if let Some(found) = py.detach(|| poll(slice)).map_err(to_py)? {
            return Ok(Some(found));
        }
        py.check_signals()?;
        if deadline.is_some_and(|d| Instant::now() >= d) {
            return Ok(None);
        }
    }
}

#[pymethods]
impl BalancedTask {
    /// When the task was sent (seconds since the Unix epoch).
    #[getter]
    fn submitted(&self) -> f64 {
        self.inner.submitted
    }

    /// Waits up to `timeout` seconds (None: until done) and returns the result dict (taken:
    /// a second call waits again).
    #[pyo3(signature = (timeout=None))]
    fn get<'py>(&self, py: Python<'py>, timeout: Option<f64>) -> PyResult<Bound<'py, PyDict>> {
        let found = wait_slices(py, timeout, |slice| match self.inner.get(slice) {
            Ok(r) => Ok(Some(r)),
            Err(mpx_client::ClientError::Timeout(_)) => Ok(None),
            Err(e) => Err(e),
        })?;
        match found {
            Some(r) => task_dict(py, r),
            None => Err(PyTimeoutError::new_err(format!(
                "timed out after {} s (the task is still running; wait again to get it)",
                timeout.unwrap_or_default()
            ))),
        }
    }
}

/// Waits up to `timeout` seconds (None: forever) for the first of `tasks` to end: `(index,
/// result dict)`, or None on timeout.
#[pyfunction]
#[pyo3(signature = (tasks, timeout=None))]
pub fn wait_any<'py>(
    py: Python<'py>,
    tasks: Vec<PyRef<'py, BalancedTask>>,
    timeout: Option<f64>,
) -> PyResult<Option<(usize, Bound<'py, PyDict>)>> {
    let handles: Vec<TaskHandle> = tasks.iter().map(|t| t.inner.clone()).collect();
    let found = wait_slices(py, timeout, |slice| {
        let refs: Vec<&TaskHandle> = handles.iter().collect();
        mpx_client::wait_any(&refs, slice)
    })?;
    found.map(|(i, r)| Ok((i, task_dict(py, r)?))).transpose()
}
