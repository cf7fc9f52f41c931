//! `mpx._mpx`: the Rust client library ([`mpx_client`]) as a Python extension module. The
//! pure-Python package `mpx` (python/mpx/) builds ipyparallel's API on top of it.
//!
//! # Layout
//! - [`Client`] (this file): one connection to a controller; every request takes its targets
//!   (`None` = all engines, or a list of engine ids) and returns an [`AsyncResult`].
//! - [`result`]: [`AsyncResult`] (waits release the GIL and notice Ctrl-C) and [`Buffer`], the
//!   bytes of an array received, which numpy reads in place through `__array_interface__`.
//! - [`array`](mod@array): numpy arrays to send, read in place (no copy) through their data pointer.
//! - [`output`]: [`OutputStream`], a request's output as it arrives (for `%px` in Jupyter).
//! - [`session`]: the session's history replayed (stoppable with Ctrl-C) and exported.
//! - [`command`]: the `mpx` command and the engine, run in this interpreter (`mpx` installed by
//!   pip, `python -m mpx.engine`).
//!
//! Arrays cross the boundary as (pointer, length, owner): numpy reads them in place.
#![deny(missing_docs)]

use std::{sync::Arc, time::Duration};

use mpx_client::{ApplyArg, ClientError, EngineId, Targets};
use pyo3::{
    create_exception,
    exceptions::{PyConnectionError, PyException, PyFileNotFoundError, PyTimeoutError, PyValueError},
    prelude::*,
    types::PyTuple,
};

pub mod array;
pub mod balanced;
pub mod command;
pub mod output;
pub mod result;
pub mod session;

pub use balanced::BalancedTask;
pub use output::OutputStream;
pub use result::{AsyncResult, Buffer};

create_exception!(_mpx, RefusedError, PyException, "The controller refused the request.");

/// A Rust client error as the matching Python exception.
pub(crate) fn to_py(e: ClientError) -> PyErr {
    let text = e.to_string();
    match e {
        ClientError::NotFound(_) => PyFileNotFoundError::new_err(text),
        ClientError::Timeout(_) => PyTimeoutError::new_err(text),
        ClientError::Connect { .. } | ClientError::Closed(_) | ClientError::Rejected => {
            PyConnectionError::new_err(text)
        }
        // A shared push that cannot be made is refused as the controller would refuse it.
        ClientError::Refused(_) | ClientError::NotShared(_) => RefusedError::new_err(text),
        _ => PyValueError::new_err(text),
    }
}

/// Seconds as a [`Duration`] (negative counts as zero).
pub(crate) fn secs(s: f64) -> Duration {
    Duration::from_secs_f64(s.max(0.0))
}

/// Engine ids as Python sees them: plain ints.
pub(crate) fn numbers(ids: Vec<EngineId>) -> Vec<u32> {
    ids.into_iter().map(EngineId::get).collect()
}

fn targets(t: Option<Vec<u32>>) -> Targets {
    t.map_or(Targets::All, Targets::ids)
}

/// A connection to a cluster's controller (`mpx_client::Client`).
#[pyclass(module = "mpx._mpx", frozen)]
pub struct Client {
    inner: Arc<mpx_client::Client>,
}

impl Client {
    fn balanced(
        &self,
        py: Python<'_>,
        targets: Option<Vec<u32>>,
        retries: u32,
        work: Vec<mpx_client::Work>,
    ) -> PyResult<Vec<BalancedTask>> {
        let view = self.inner.load_balanced_view(self::targets(targets)).retries(retries);
        let handles = py.detach(move || view.submit(work)).map_err(to_py)?;
        Ok(handles.into_iter().map(|inner| BalancedTask { inner }).collect())
    }

    fn wrap(&self, r: Result<mpx_client::AsyncResult, ClientError>) -> PyResult<AsyncResult> {
        r.map(AsyncResult::new).map_err(to_py)
    }
}

#[pymethods]
impl Client {
    /// Connects by connection-file path or cluster id ("" = the only cluster running).
    #[new]
    fn new(py: Python<'_>, target: &str) -> PyResult<Self> {
        let target = target.to_string();
        let inner = py.detach(move || mpx_client::Client::connect(&target)).map_err(to_py)?;
        Ok(Client { inner: Arc::new(inner) })
    }

    /// The cluster id.
    #[getter]
    fn cluster_id(&self) -> String {
        self.inner.cluster_id().to_string()
    }

    /// Whether this client is on the controller's host (connected through its Unix socket):
    /// arrays then move as memfds.
    #[getter]
    fn is_local(&self) -> bool {
        self.inner.is_local()
    }

    /// The connection file's path.
    #[getter]
    fn connection_file(&self) -> String {
        self.inner.connection_file().display().to_string()
    }

    /// Ids of the registered engines.
    fn ids(&self, py: Python<'_>) -> PyResult<Vec<u32>> {
        py.detach(|| self.inner.ids()).map(numbers).map_err(to_py)
    }

    /// The cluster's state (id, engines, pids) as JSON.
    fn info_json(&self, py: Python<'_>, timeout: f64) -> PyResult<String> {
        let info = py.detach(|| self.inner.info(secs(timeout))).map_err(to_py)?;
        serde_json::to_string(&info).map_err(|e| PyValueError::new_err(e.to_string()))
    }

    /// Runs a cell on `targets`.
    #[pyo3(signature = (targets, code))]
    fn execute(&self, py: Python<'_>, targets: Option<Vec<u32>>, code: &str) -> PyResult<AsyncResult> {
        let view = self.inner.view(self::targets(targets));
        self.wrap(py.detach(|| view.execute(code)))
    }

    /// Runs a cell of the Python client's own (its apply helper): as [`execute`](Self::execute),
    /// but not recorded in the session's history.
    #[pyo3(signature = (targets, code))]
    fn execute_internal(
        &self,
        py: Python<'_>,
        targets: Option<Vec<u32>>,
        code: &str,
    ) -> PyResult<AsyncResult> {
        let view = self.inner.view(self::targets(targets));
        self.wrap(py.detach(|| view.execute_internal(code)))
    }

    /// Runs a file's source on `targets` (tracebacks name `filename`).
    fn run(
        &self,
        py: Python<'_>,
        targets: Option<Vec<u32>>,
        code: &str,
        filename: &str,
    ) -> PyResult<AsyncResult> {
        let view = self.inner.view(self::targets(targets));
        self.wrap(py.detach(|| view.run(code, filename)))
    }

    /// Binds `name` to an array on `targets`; `array` is `(dtype, shape, address, nbytes,
    /// owner)` of a C-contiguous little-endian array, sent from where it is. `shared`: one
    /// read-only copy for all the targets (`View::push_shared`; `RefusedError` where it cannot
    /// be made).
    #[pyo3(signature = (targets, name, array, shared=false))]
    fn push(
        &self,
        py: Python<'_>,
        targets: Option<Vec<u32>>,
        name: &str,
        array: &Bound<'_, PyTuple>,
        shared: bool,
    ) -> PyResult<AsyncResult> {
        let raw = array::raw_array(array)?;
        let view = self.inner.view(self::targets(targets));
        self.wrap(py.detach(|| if shared { view.push_shared(name, &raw) } else { view.push(name, &raw) }))
    }

    /// Binds `name` on `targets` to the array of the `.npy` file `path` (`scatter`: split along
    /// axis 0 over them); the history keeps the file's path and hash, so a replay or an export
    /// can load it again.
    fn push_npy(
        &self,
        py: Python<'_>,
        targets: Option<Vec<u32>>,
        name: &str,
        path: &str,
        scatter: bool,
    ) -> PyResult<AsyncResult> {
        let (raw, source) = py.detach(|| session::npy_file(path))?;
        let view = self.inner.view(self::targets(targets));
        self.wrap(py.detach(|| {
            if scatter {
                view.scatter_from(name, &raw, source)
            } else {
                view.push_from(name, &raw, source)
            }
        }))
    }

    /// Splits an array (as in [`push`](Self::push)) along axis 0 over `targets`.
    fn scatter(
        &self,
        py: Python<'_>,
        targets: Option<Vec<u32>>,
        name: &str,
        array: &Bound<'_, PyTuple>,
    ) -> PyResult<AsyncResult> {
        let raw = array::raw_array(array)?;
        let view = self.inner.view(self::targets(targets));
        self.wrap(py.detach(|| view.scatter(name, &raw)))
    }

    /// Fetches the array `name` from each of `targets`.
    fn pull(&self, py: Python<'_>, targets: Option<Vec<u32>>, name: &str) -> PyResult<AsyncResult> {
        let view = self.inner.view(self::targets(targets));
        self.wrap(py.detach(|| view.pull(name)))
    }

    /// Fetches the array `name` from each of `targets` for the Python client's own use (the
    /// arrays of a Python function's result): not recorded in the session's history.
    fn pull_internal(&self, py: Python<'_>, targets: Option<Vec<u32>>, name: &str) -> PyResult<AsyncResult> {
        let request =
            mpx_client::Request::Pull { name: name.into(), shm: false, lender: None, returned: Vec::new() };
        self.wrap(py.detach(|| self.inner.submit_internal(self::targets(targets), request)))
    }

    /// Concatenates `name` along axis 0 over `targets` (the lowest target's result has it).
    fn gather(&self, py: Python<'_>, targets: Option<Vec<u32>>, name: &str) -> PyResult<AsyncResult> {
        let view = self.inner.view(self::targets(targets));
        self.wrap(py.detach(|| view.gather(name)))
    }

    /// Calls the function `function` (a name in the engines' namespace or `mpx_engine`) with
    /// `args`: str, bool, int, float, or an array tuple as in [`push`](Self::push).
    fn apply(
        &self,
        py: Python<'_>,
        targets: Option<Vec<u32>>,
        function: &str,
        args: Vec<Bound<'_, PyAny>>,
    ) -> PyResult<AsyncResult> {
        let args = args.iter().map(array::apply_arg).collect::<PyResult<Vec<ApplyArg>>>()?;
        let view = self.inner.view(self::targets(targets));
        self.wrap(py.detach(move || view.apply(function, args)))
    }

    /// Load-balanced cells: each code runs on one engine of `targets` (a task whose engine dies
    /// runs again elsewhere up to `retries` times).
    fn balanced_execute(
        &self,
        py: Python<'_>,
        targets: Option<Vec<u32>>,
        retries: u32,
        codes: Vec<String>,
    ) -> PyResult<Vec<BalancedTask>> {
        let work = codes.into_iter().map(mpx_client::Work::Code).collect();
        self.balanced(py, targets, retries, work)
    }

    /// Load-balanced calls: each `(function, args)` (args as in [`apply`](Self::apply)) runs on
    /// one engine of `targets`.
    fn balanced_apply(
        &self,
        py: Python<'_>,
        targets: Option<Vec<u32>>,
        retries: u32,
        calls: Vec<(String, Vec<Bound<'_, PyAny>>)>,
    ) -> PyResult<Vec<BalancedTask>> {
        let work = calls
            .into_iter()
            .map(|(function, args)| {
                let args = args.iter().map(array::apply_arg).collect::<PyResult<Vec<ApplyArg>>>()?;
                Ok(mpx_client::Work::Call { function, args })
            })
            .collect::<PyResult<Vec<_>>>()?;
        self.balanced(py, targets, retries, work)
    }

    /// Interrupts the running cells of `targets` (they fail with `KeyboardInterrupt`; a rank
    /// in a receive or probe gets an `MPI.Exception`, and one in a collective makes the world
    /// restart: every engine of that request then fails with `WorldDown`); returns the
    /// engines told.
    fn interrupt(&self, py: Python<'_>, targets: Option<Vec<u32>>, timeout: f64) -> PyResult<Vec<u32>> {
        py.detach(|| self.inner.interrupt(self::targets(targets), secs(timeout))).map(numbers).map_err(to_py)
    }

    /// Restarts the cluster's MPI world (same engine ids; variables are lost; the controller,
    /// this connection and the connection file stay); returns the new world's engines once
    /// every one is ready. Requests sent meanwhile wait for the new world.
    fn restart(&self, py: Python<'_>, reason: &str, timeout: f64) -> PyResult<Vec<u32>> {
        py.detach(|| self.inner.restart(reason, secs(timeout))).map(numbers).map_err(to_py)
    }

    /// The session's history as JSON: `{"epoch": the current world's, "entries": [...]}` (see
    /// `mpx_messages::history`).
    fn history_json(&self, py: Python<'_>, timeout: f64) -> PyResult<String> {
        let history = py.detach(|| self.inner.history(secs(timeout))).map_err(to_py)?;
        serde_json::to_string(&history).map_err(|e| PyValueError::new_err(e.to_string()))
    }

    /// Runs the session before the current MPI world again (`mpx replay`): its cells and runs
    /// that succeeded, its pushes and scatters of unchanged `.npy` files, in order, each waited
    /// for up to `timeout` seconds (None: no limit), stopping at the first that fails. Returns
    /// `(that session's entries as JSON, the numbers run, [(number, why not replayed)],
    /// (number, why it failed) or None)`. Ctrl-C interrupts the engines and stops the replay.
    #[pyo3(signature = (timeout, control_timeout))]
    fn replay(
        &self,
        py: Python<'_>,
        timeout: Option<f64>,
        control_timeout: f64,
    ) -> PyResult<session::ReplayOut> {
        session::replay_previous(py, &self.inner, timeout, secs(control_timeout))
    }

    /// Writes the session since the last restart as a program for mpirun (`mpx export`): the
    /// script `path`, its `.npy` data beside it, and a Slurm or PBS job script (running the
    /// interpreter `python`) when asked. Returns `(script, [data files], [job scripts],
    /// entries, ranks)`.
    #[pyo3(signature = (path, sbatch, pbs, queue, walltime, python, timeout))]
    #[allow(clippy::too_many_arguments)]
    fn export(
        &self,
        py: Python<'_>,
        path: &str,
        sbatch: bool,
        pbs: bool,
        queue: Option<&str>,
        walltime: Option<&str>,
        python: &str,
        timeout: f64,
    ) -> PyResult<session::ExportOut> {
        session::export_session(py, &self.inner, path, sbatch, pbs, queue, walltime, python, secs(timeout))
    }

    /// What every engine is doing, as JSON: `[[id, state or null], ...]`.
    fn where_json(&self, py: Python<'_>, timeout: f64) -> PyResult<String> {
        let states = py.detach(|| self.inner.engine_states(secs(timeout))).map_err(to_py)?;
        serde_json::to_string(&states).map_err(|e| PyValueError::new_err(e.to_string()))
    }

    /// Asks the controller to stop the whole cluster.
    fn shutdown(&self, py: Python<'_>, timeout: f64) -> PyResult<()> {
        py.detach(|| self.inner.shutdown(secs(timeout))).map_err(to_py)
    }
}

/// The extension module.
#[pymodule]
fn _mpx(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<Client>()?;
    m.add_class::<AsyncResult>()?;
    m.add_class::<Buffer>()?;
    m.add_class::<BalancedTask>()?;
    m.add_class::<OutputStream>()?;
    m.add_function(wrap_pyfunction!(balanced::wait_any, m)?)?;
    m.add_function(wrap_pyfunction!(command::run_command, m)?)?;
    m.add_function(wrap_pyfunction!(command::run_engine, m)?)?;
    m.add("RefusedError", m.py().get_type::<RefusedError>())?;
    Ok(())
}
