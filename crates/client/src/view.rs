//! [`View`]: a set of target engines of one client, and the operations on them.

use std::time::Duration;

use bytes::Bytes;
use mpx_messages::{Arg, RawArray, Request, Targets};

use crate::{client::Client, error::ClientError, reply::EngineResult, result::AsyncResult};

/// An argument of [`View::apply`].
#[derive(Debug, Clone)]
pub enum ApplyArg {
    /// A float.
    Float(f64),
    /// An integer.
    Int(i64),
    /// A boolean.
    Bool(bool),
    /// A string.
    Str(String),
    /// An array (of any dtype; `(&array_value).into()` makes one from an `ArrayValue`).
    Array(RawArray),
}

impl ApplyArg {
    /// The wire argument; an array's bytes go to `buffers`.
    pub(crate) fn into_arg(self, buffers: &mut Vec<Bytes>) -> Arg {
        match self {
            ApplyArg::Float(x) => Arg::Float(x),
            ApplyArg::Int(i) => Arg::Int(i),
            ApplyArg::Bool(b) => Arg::Bool(b),
            ApplyArg::Str(s) => Arg::Str(s),
            ApplyArg::Array(a) => {
                buffers.push(a.data().clone());
                Arg::Array(a.meta(buffers.len() - 1))
            }
        }
    }
}

impl Client {
    /// A view on some engines.
    pub fn view(&self, targets: impl Into<Targets>) -> View<'_> {
        View::new(self, targets.into())
    }
}

/// A set of target engines of one client (ipyparallel's `DirectView`).
#[derive(Debug, Clone)]
pub struct View<'a> {
    client: &'a Client,
    targets: Targets,
}

impl<'a> View<'a> {
    /// A view of `targets` through `client`.
    pub fn new(client: &'a Client, targets: Targets) -> Self {
        View { client, targets }
    }

    /// The targets.
    pub fn targets(&self) -> &Targets {
        &self.targets
    }

    /// Runs a cell on the view's engines.
    ///
    /// # Errors
    /// A lost connection.
    pub fn execute(&self, code: &str) -> Result<AsyncResult, ClientError> {
        self.client.submit(self.targets.clone(), Request::Execute { code: code.to_string() })
    }

    /// Runs a file's source on the view's engines, like IPython's `%run`: errors and
    /// tracebacks name `filename`.
    ///
    /// # Errors
    /// A lost connection.
    pub fn run(&self, code: &str, filename: &str) -> Result<AsyncResult, ClientError> {
        let request = Request::Run { code: code.to_string(), filename: filename.to_string() };
        self.client.submit(self.targets.clone(), request)
    }

    /// Binds `name` to `array` (any dtype) on the view's engines. The bytes cross the network
    /// once, to the lowest target engine, which broadcasts them to the others with MPI. From an
    /// `ArrayValue` `a`: `view.push("x", &(&a).into())` (no copy of contiguous data).
    ///
    /// # Errors
    /// A lost connection.
    pub fn push(&self, name: &str, array: &RawArray) -> Result<AsyncResult, ClientError> {
        let request = Request::Push { name: name.into(), array: array.meta(0), shared: false };
        self.client.submit_with(self.targets.clone(), request, vec![array.data().clone()])
    }

    /// Binds `name` to one read-only copy of `array` shared by all the view's engines (`push
    /// --shared`): the array goes into a sealed memfd once, and every engine maps that memfd
    /// read-only, so pushing 1 GB to 4 engines of the host costs it about 1 GB, not 4. The
    /// engines' numpy arrays are not writeable (a cell writing to one gets numpy's
    /// `ValueError`; `x.copy()` makes a private one); rhai engines get a copy each.
    ///
    /// # Errors
    /// [`ClientError::NotShared`] when this client or a target engine is not on the
    /// controller's host, `MPX_SHM=0`, or no memfd can be made: a shared push never becomes a
    /// copy per engine. A lost connection.
    pub fn push_shared(&self, name: &str, array: &RawArray) -> Result<AsyncResult, ClientError> {
        let request = Request::Push { name: name.into(), array: array.meta(0), shared: true };
        self.client.submit_with(self.targets.clone(), request, vec![array.data().clone()])
    }

    /// Like [`push`](Self::push), with where the array came from (for the session's history).
    ///
    /// # Errors
    /// A lost connection.
    pub fn push_from(
        &self,
        name: &str,
        array: &RawArray,
        source: mpx_messages::DataSource,
    ) -> Result<AsyncResult, ClientError> {
        let request = Request::Push { name: name.into(), array: array.meta(0), shared: false };
        self.client.submit_from(self.targets.clone(), request, vec![array.data().clone()], Some(source))
    }

    /// Like [`push_shared`](Self::push_shared), with where the array came from.
    ///
    /// # Errors
    /// As [`push_shared`](Self::push_shared).
    pub fn push_shared_from(
        &self,
        name: &str,
        array: &RawArray,
        source: mpx_messages::DataSource,
    ) -> Result<AsyncResult, ClientError> {
        let request = Request::Push { name: name.into(), array: array.meta(0), shared: true };
        self.client.submit_from(self.targets.clone(), request, vec![array.data().clone()], Some(source))
    }

    /// Like [`scatter`](Self::scatter), with where the array came from.
    ///
    /// # Errors
    /// A lost connection.
    pub fn scatter_from(
        &self,
        name: &str,
        array: &RawArray,
        source: mpx_messages::DataSource,
    ) -> Result<AsyncResult, ClientError> {
        let request = Request::Scatter { name: name.into(), array: array.meta(0) };
        self.client.submit_from(self.targets.clone(), request, vec![array.data().clone()], Some(source))
    }

    /// Fetches `name` from each of the view's engines (results carry `array`, checked against
    /// its dtype and shape).
    ///
    /// # Errors
    /// A lost connection.
    pub fn pull(&self, name: &str) -> Result<AsyncResult, ClientError> {
        self.client.submit(
            self.targets.clone(),
            Request::Pull { name: name.into(), shm: false, lender: None, returned: Vec::new() },
        )
    }

    /// Splits `array` (any dtype) along axis 0 over the view's engines; one transfer to the
    /// lowest target, then MPI Scatterv. The controller splits the rows of `array.shape()[0]`
    /// as evenly as possible, the first engines getting one more (as ipyparallel); a 0-d
    /// array is refused.
    ///
    /// # Errors
    /// A lost connection.
    pub fn scatter(&self, name: &str, array: &RawArray) -> Result<AsyncResult, ClientError> {
        let request = Request::Scatter { name: name.into(), array: array.meta(0) };
        self.client.submit_with(self.targets.clone(), request, vec![array.data().clone()])
    }

    /// Concatenates `name` along axis 0 over the view's engines (MPI Gatherv to the lowest
    /// target, whose result carries the whole array).
    ///
    /// # Errors
    /// A lost connection.
    pub fn gather(&self, name: &str) -> Result<AsyncResult, ClientError> {
        self.client.submit(
            self.targets.clone(),
            Request::Gather { name: name.into(), shm: false, returned: Vec::new() },
        )
    }

    /// Calls a registered native (or cell-defined) function on the view's engines.
    ///
    /// # Errors
    /// A lost connection.
    pub fn apply(&self, function: &str, args: Vec<ApplyArg>) -> Result<AsyncResult, ClientError> {
        let mut buffers = Vec::new();
        let args = args.into_iter().map(|a| a.into_arg(&mut buffers)).collect();
        self.client.submit_with(
            self.targets.clone(),
            Request::Apply { function: function.into(), args },
            buffers,
        )
    }

    /// [`push`](Self::push) and wait; any engine's error is an error.
    ///
    /// # Errors
    /// Timeout, refusal, a lost connection, or the engines' errors.
    pub fn push_sync(&self, name: &str, array: &RawArray, timeout: Duration) -> Result<(), ClientError> {
        self.push(name, array)?.take_ok(timeout).map(drop)
    }

    /// [`push_shared`](Self::push_shared) and wait.
    ///
    /// # Errors
    /// As [`push_shared`](Self::push_shared) and [`push_sync`](Self::push_sync).
    pub fn push_shared_sync(
        &self,
        name: &str,
        array: &RawArray,
        timeout: Duration,
    ) -> Result<(), ClientError> {
        self.push_shared(name, array)?.take_ok(timeout).map(drop)
    }

    /// [`pull`](Self::pull) and wait: each engine's array, in engine order
    /// (`ArrayValue::try_from(&raw)` turns one into an `ArrayValue` when its dtype allows).
    ///
    /// # Errors
    /// Timeout, refusal, a lost connection, or the engines' errors (naming engine and variable).
    pub fn pull_sync(&self, name: &str, timeout: Duration) -> Result<Vec<RawArray>, ClientError> {
        let results = self.pull(name)?.take_ok(timeout)?;
        Ok(results.into_iter().filter_map(|r| r.array).collect())
    }

    /// [`scatter`](Self::scatter) and wait.
    ///
    /// # Errors
    /// As [`push_sync`](Self::push_sync).
    pub fn scatter_sync(&self, name: &str, array: &RawArray, timeout: Duration) -> Result<(), ClientError> {
        self.scatter(name, array)?.take_ok(timeout).map(drop)
    }

    /// [`gather`](Self::gather) and wait: the concatenated array.
    ///
    /// # Errors
    /// As [`pull_sync`](Self::pull_sync).
    pub fn gather_sync(&self, name: &str, timeout: Duration) -> Result<RawArray, ClientError> {
        let results = self.gather(name)?.take_ok(timeout)?;
        results
            .into_iter()
            .find_map(|r| r.array)
            .ok_or_else(|| ClientError::Closed("the gather's root sent no array".into()))
    }

    /// Runs a cell and waits for every engine's result (errors included, per engine).
    ///
    /// # Errors
    /// Timeout (the cell goes on), refusal, or a lost connection.
    pub fn execute_sync(&self, code: &str, timeout: Duration) -> Result<Vec<EngineResult>, ClientError> {
        self.execute(code)?.take(timeout)
    }

    /// Runs a cell of the tool's own (a completion, a probe): as [`execute`](Self::execute),
    /// but not part of the session's history.
    ///
    /// # Errors
    /// A lost connection.
    pub fn execute_internal(&self, code: &str) -> Result<AsyncResult, ClientError> {
        self.client.submit_internal(self.targets.clone(), Request::Execute { code: code.to_string() })
    }
}
