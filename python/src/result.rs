//! [`AsyncResult`]: one request's per-engine results, waited for with the GIL released; and
//! [`Buffer`]: a received array's bytes, which numpy wraps without a copy.

use std::time::{Duration, Instant};

use bytes::Bytes;
use mpx_client::{EngineResult, MpxError};
use pyo3::{
    exceptions::PyTimeoutError,
    prelude::*,
    types::{PyBytes, PyDict, PyTuple},
};

use crate::{secs, to_py};

/// How often a blocking wait wakes up to let Python handle Ctrl-C.
const SLICE: Duration = Duration::from_millis(50);

/// The bytes of an array received from an engine. `numpy.asarray(buffer)` is an array over
/// these very bytes (through `__array_interface__`), which keeps the buffer alive.
#[pyclass(module = "mpx._mpx", frozen)]
pub struct Buffer {
    data: Bytes,
    dtype: String,
    shape: Vec<usize>,
}

#[pymethods]
impl Buffer {
    /// numpy's array interface (version 3): the data pointer, typestr and shape. The array is
    /// writable: these bytes belong to it alone once the result has been taken.
    #[getter]
    fn __array_interface__<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        let d = PyDict::new(py);
        d.set_item("version", 3)?;
        d.set_item("typestr", &self.dtype)?;
        d.set_item("shape", PyTuple::new(py, &self.shape)?)?;
        d.set_item("data", (self.data.as_ptr() as usize, false))?;
        Ok(d)
    }

    /// Address of the first byte (for checking that nothing was copied).
    #[getter]
    fn address(&self) -> usize {
        self.data.as_ptr() as usize
    }

    /// Number of bytes.
    #[getter]
    fn nbytes(&self) -> usize {
        self.data.len()
    }
}

/// A request in flight (`mpx_client::AsyncResult`).
#[pyclass(module = "mpx._mpx", frozen)]
pub struct AsyncResult {
    inner: mpx_client::AsyncResult,
}

impl AsyncResult {
    pub(crate) fn new(inner: mpx_client::AsyncResult) -> Self {
        AsyncResult { inner }
    }

    /// Waits up to `timeout` (None: forever) in short slices, checking for Ctrl-C between them.
    fn wait_inner(&self, py: Python<'_>, timeout: Option<f64>) -> PyResult<bool> {
        let deadline = timeout.map(|t| Instant::now() + secs(t));
        loop {
            let slice = match deadline {
                Some(d) => d.saturating_duration_since(Instant::now()).min(SLICE),
                None => SLICE,
            };
            if py.detach(|| self.inner.wait(slice)).map_err(to_py)? {
                return Ok(true);
            }
            py.check_signals()?;
            if deadline.is_some_and(|d| Instant::now() >= d) {
                return Ok(false);
            }
        }
    }
}

/// The bytes of a received array, for Python.
pub(crate) fn buffer(a: mpx_client::RawArray) -> Buffer {
    Buffer { dtype: a.dtype().numpy_str().to_string(), shape: a.shape().to_vec(), data: a.data().clone() }
}

/// What a result returned out of band, for Python: `(payload, arrays)`, the payload as `bytes`
/// (the pickle, copied once: the arrays are not in it) and each array a [`Buffer`] over the
/// reply's bytes; or None.
pub(crate) fn returned(
    py: Python<'_>,
    r: Option<mpx_client::ReturnedData>,
) -> Option<(Bound<'_, PyBytes>, Vec<Buffer>)> {
    r.map(|r| (PyBytes::new(py, &r.payload), r.arrays.into_iter().map(buffer).collect()))
}

/// Sets a result dict's `error` (ename, evalue, line, traceback) or None, and `died`: a death
/// as (engine, rank, cause), which `mpx.error.collect` matches on, or None.
pub(crate) fn set_error(d: &Bound<'_, PyDict>, error: Option<MpxError>) -> PyResult<()> {
    let died = match &error {
        Some(MpxError::EngineDied { engine, rank, cause }) => Some((engine.get(), rank.get(), cause.clone())),
        _ => None,
    };
    d.set_item("died", died)?;
    d.set_item(
        "error",
        error.map(|e| (e.ename().to_string(), e.evalue(), e.line(), e.traceback().to_string())),
    )
}

fn result_dict<'py>(py: Python<'py>, r: EngineResult) -> PyResult<Bound<'py, PyDict>> {
    let d = PyDict::new(py);
    let o = r.outcome;
    d.set_item("engine_id", r.engine_id.get())?;
    d.set_item("stdout", o.stdout)?;
    d.set_item("stderr", o.stderr)?;
    d.set_item("value", o.value)?;
    set_error(&d, o.error)?;
    d.set_item("execution_count", o.execution_count)?;
    d.set_item("started", o.started)?;
    d.set_item("completed", o.completed)?;
    d.set_item("received", r.received)?;
    d.set_item("array", r.array.map(buffer))?;
    d.set_item("returned", returned(py, r.returned))?;
    Ok(d)
}

/// A [`Stuck`](mpx_messages::Stuck) notice as a dict (see [`AsyncResult::stuck`]).
fn stuck_dict<'py>(py: Python<'py>, s: &mpx_messages::Stuck) -> PyResult<Bound<'py, PyDict>> {
    let d = PyDict::new(py);
    d.set_item("message", s.message())?;
    d.set_item("set", s.set.get())?;
    let blocked = s
        .blocked
        .iter()
        .map(|b| {
            let e = PyDict::new(py);
            e.set_item("engine_id", b.engine_id.get())?;
            e.set_item("rank", b.rank.get())?;
            e.set_item("call", &b.call)?;
            e.set_item("comm", &b.comm)?;
            e.set_item("detail", b.detail.as_deref())?;
            Ok(e)
        })
        .collect::<PyResult<Vec<_>>>()?;
    d.set_item("blocked", blocked)?;
    let left = s
        .left
        .iter()
        .map(|l| {
            let e = PyDict::new(py);
            e.set_item("engine_id", l.engine_id.get())?;
            e.set_item("rank", l.rank.get())?;
            e.set_item("error", l.error.as_deref())?;
            Ok(e)
        })
        .collect::<PyResult<Vec<_>>>()?;
    d.set_item("left", left)?;
    Ok(d)
}

#[pymethods]
impl AsyncResult {
    /// Waits up to `timeout` seconds (None: until done); True when every engine answered.
    /// Ctrl-C raises KeyboardInterrupt (the request goes on).
    #[pyo3(signature = (timeout=None))]
    fn wait(&self, py: Python<'_>, timeout: Option<f64>) -> PyResult<bool> {
        self.wait_inner(py, timeout)
    }

    /// Whether every engine has answered.
    fn ready(&self) -> bool {
        self.inner.ready()
    }

    /// When the request was sent (seconds since the Unix epoch).
    #[getter]
    fn submitted(&self) -> f64 {
        self.inner.submitted
    }

    /// The engines this request runs on (waits for the controller's acceptance).
    #[pyo3(signature = (timeout=10.0))]
    fn engines(&self, py: Python<'_>, timeout: f64) -> PyResult<Vec<u32>> {
        py.detach(|| self.inner.engines(secs(timeout))).map(crate::numbers).map_err(to_py)
    }

    /// The results so far, as dicts, in engine order.
    fn partial<'py>(&self, py: Python<'py>) -> PyResult<Vec<Bound<'py, PyDict>>> {
        self.inner.partial().into_iter().map(|r| result_dict(py, r)).collect()
    }

    /// How many engines have answered so far.
    fn answered(&self) -> usize {
        self.inner.answered()
    }

    /// The request's controller-wide id once the controller accepted it (what `mpx wait ID`
    /// takes), else None.
    fn id(&self) -> Option<u64> {
        self.inner.id().map(|t| t.get())
    }

    /// What the controller said so far of this request's ranks stuck in MPI calls, oldest
    /// first, as dicts: message (for the user), set, blocked (dicts: engine_id, rank, call,
    /// comm, detail), left (dicts: engine_id, rank, error: the class it left with, or None).
    fn stuck<'py>(&self, py: Python<'py>) -> PyResult<Vec<Bound<'py, PyDict>>> {
        self.inner.stuck().iter().map(|s| stuck_dict(py, s)).collect()
    }

    /// Waits (as [`wait`](Self::wait)) and returns every engine's result as a dict: engine_id,
    /// stdout, stderr, value, error (ename, evalue, line, traceback) or None, execution_count,
    /// started, completed, received, array (a [`Buffer`] or None), returned (what an apply's
    /// function returned out of band: `(payload bytes, [Buffer])`, or None).
    #[pyo3(signature = (timeout=None))]
    fn get<'py>(&self, py: Python<'py>, timeout: Option<f64>) -> PyResult<Vec<Bound<'py, PyDict>>> {
        if !self.wait_inner(py, timeout)? {
            let t = timeout.unwrap_or_default();
            return Err(PyTimeoutError::new_err(format!(
                "timed out after {t} s (the request is still running; wait again to get it)"
            )));
        }
        let results = self.inner.get(Duration::ZERO).map_err(to_py)?;
        results.into_iter().map(|r| result_dict(py, r)).collect()
    }

    /// The engines' output as it arrives, from now on (what arrived before comes first): while
    /// the [`OutputStream`](crate::OutputStream) is open, the results carry no stdout or stderr.
    fn output(&self) -> crate::OutputStream {
        crate::OutputStream::new(self.inner.output())
    }

    /// Drops the results kept for this request (after they were taken).
    fn forget(&self) {
        self.inner.clone().forget();
    }
}
