//! The Python kernel: embedded CPython (PyO3) on the engine's MPI thread, with one persistent
//! namespace (`__main__`), IPython's cell semantics (see `cell.py`), numpy arrays bound and
//! read in place, Ctrl-C as `KeyboardInterrupt`, and `mpx where` reading the main thread's
//! Python stack.
//!
//! Start-up (in [`PythonKernel::new`], after the engine duplicated COMM_WORLD for itself):
//! Python is initialised on this thread, SIGINT gets Python's `default_int_handler`, the
//! working directory goes on `sys.path`, numpy and mpi4py are imported once, and
//! `MPI.Finalize` is replaced by a function that raises (the engine finalizes MPI).

use std::{
    any::Any,
    ffi::CString,
    sync::{Arc, Mutex},
};

use bytes::Bytes;
use mpx_messages::{memfd::Mapping, Dtype, RawArray, RemoteError, StreamName, OUTPUT_CHUNK};
use numpy::{PyArrayDescrMethods, PyUntypedArray, PyUntypedArrayMethods};
use pyo3::{
    exceptions::{PyTypeError, PyValueError},
    prelude::*,
    types::{PyBytes, PyCFunction, PyDict, PyList, PyModule, PyString, PyTuple},
};

use super::{CallArg, CallReturn, CellOutput, HostArray, Interrupt, Kernel, Probe};
use crate::output::OutputBuffer;

mod mapped;
mod mpi_check;
mod signals;

pub use mapped::MappedMemory;
pub use signals::PyInterrupt;

/// Python steps of a [`crate::Registry`]: each adds native functions to the `mpx_engine`
/// module that cells import.
pub type PyStep = Box<dyn Fn(&Bound<'_, PyModule>) -> PyResult<()>>;

/// The wire dtype of numpy's array-protocol type string (`<f8`, `|b1`, ...).
pub fn dtype_of_numpy(s: &str) -> Option<Dtype> {
    Dtype::ALL.iter().copied().find(|&d| d.numpy_str() == s)
}

/// A numpy array whose memory MPI and the network read and write in place.
pub struct PyHostArray {
    obj: Py<PyAny>,
    ptr: *mut u8,
    len: usize,
    dtype: Dtype,
    shape: Vec<usize>,
    /// Made by the engine and not bound to any name: nobody else can write to it.
    fresh: bool,
}

/// Keeps a numpy array (or a `bytes` object) alive behind a `Bytes` (dropped without the GIL:
/// PyO3 defers the decref to the next time a thread holds it).
struct Owner {
    _obj: Py<PyAny>,
    ptr: *const u8,
    len: usize,
}

// SAFETY: the pointer is into the array (or immutable `bytes`) `_obj` keeps alive; the bytes
// are only read, and only arrays nobody else references (fresh ones) are shared this way, or
// bound ones while the MPI thread runs no Python code until every clone is dropped
// (`into_shared_bytes`).
unsafe impl Send for Owner {}
unsafe impl Sync for Owner {}

impl AsRef<[u8]> for Owner {
    fn as_ref(&self) -> &[u8] {
        if self.len == 0 {
            return &[];
        }
        // SAFETY: see above; numpy allocated `len` bytes at `ptr`.
        unsafe { std::slice::from_raw_parts(self.ptr, self.len) }
    }
}

impl HostArray for PyHostArray {
    fn dtype(&self) -> Dtype {
        self.dtype
    }
    fn shape(&self) -> &[usize] {
        &self.shape
    }
    fn bytes(&self) -> &[u8] {
        if self.len == 0 {
            return &[];
        }
        // SAFETY: a C-contiguous numpy array of `len` bytes at `ptr`, kept alive by `obj`;
        // the MPI thread is the only thread running Python code that could touch it.
        unsafe { std::slice::from_raw_parts(self.ptr, self.len) }
    }
    fn bytes_mut(&mut self) -> &mut [u8] {
        if self.len == 0 {
            return &mut [];
        }
        // SAFETY: as in `bytes`; arrays given out here are writable (made by np.empty).
        unsafe { std::slice::from_raw_parts_mut(self.ptr, self.len) }
    }
    fn into_bytes(self: Box<Self>) -> Bytes {
        if self.fresh {
            self.into_shared_bytes()
        } else {
            // Bound to a name: a later cell may write to it while the reply is still being
            // sent, so the reply gets its own copy.
            Bytes::copy_from_slice(self.bytes())
        }
    }
    fn into_shared_bytes(self: Box<Self>) -> Bytes {
        Bytes::from_owner(Owner { _obj: self.obj, ptr: self.ptr, len: self.len })
    }
    fn into_any(self: Box<Self>) -> Box<dyn Any> {
        self
    }
}

/// The data pointer and byte length of a numpy array.
fn array_memory(obj: &Bound<'_, PyAny>) -> PyResult<(*mut u8, usize)> {
    let a = obj.cast::<PyUntypedArray>()?;
    let len = a.len() * a.dtype().itemsize();
    // SAFETY: a valid array object; `data` is its first element.
    let ptr = unsafe { (*a.as_array_ptr()).data.cast::<u8>() };
    Ok((ptr, len))
}

/// Why the Python kernel could not start.
#[derive(Debug, thiserror::Error)]
pub enum KernelStartError {
    /// Python, numpy or the cell helper failed to start.
    #[error("{0}")]
    Python(String),
    /// mpi4py loaded another MPI library than the engine's (see `mpi_check`).
    #[error("{0}")]
    OtherMpi(String),
}

/// The Python kernel.
pub struct PythonKernel {
    ns: Py<PyDict>,
    helper: Py<PyModule>,
    count: u64,
    interrupt: Arc<PyInterrupt>,
    probe: Arc<PyProbe>,
}

/// Reads the main thread's Python stack for `mpx where`.
pub struct PyProbe {
    main_ident: u64,
    helper: Py<PyModule>,
    interrupt: Arc<PyInterrupt>,
    file: Mutex<Option<String>>,
}

impl Probe for PyProbe {
    fn probe(&self) -> Option<String> {
        if !self.interrupt.is_running() {
            return None;
        }
        let file = self.file.lock().unwrap_or_else(|e| e.into_inner()).clone();
        Python::attach(|py| {
            let files = PyTuple::new(py, file.iter()).ok()?;
            let r = self.helper.bind(py).getattr("where").ok()?.call1((self.main_ident, files)).ok()?;
            r.extract::<Option<String>>().ok().flatten()
        })
    }
}

/// An error as the cell helper describes it: (ename, evalue, line, traceback).
type RawError = (String, String, Option<usize>, String);

/// What the cell helper's `run_cell` returns: (stdout, stderr, value, error).
type Raw = (String, String, Option<String>, Option<RawError>);

fn output(raw: Raw) -> CellOutput {
    let (stdout, stderr, value, error) = raw;
    CellOutput {
        stdout,
        stderr,
        value,
        error: error.map(|(ename, evalue, line, traceback)| RemoteError { ename, evalue, line, traceback }),
        returned: None,
    }
}

/// The bytes of an `mpx_engine.Returned` (`cell.py`): the payload's shared (a `bytes` object
/// never changes); each array's shared when nothing can reach it but through the marker, which
/// nothing else refers to (no later cell can write to it), and copied otherwise.
fn call_return(helper: &Bound<'_, PyModule>, marker: Bound<'_, PyAny>) -> PyResult<CallReturn> {
    let payload = marker.getattr("payload")?.cast_into::<PyBytes>()?;
    let list = marker.getattr("arrays")?.cast_into::<PyList>()?;
    // The only references: `marker` here, and its list's from the marker and `list`.
    let sole = marker.get_refcnt() == 1 && list.get_refcnt() == 2;
    let as_array = helper.getattr("as_array")?;
    let mut arrays = Vec::with_capacity(list.len());
    for x in list.iter() {
        // An array referred to by the list and `x` alone, owning its memory (no view of it).
        let alone =
            sole && x.get_refcnt() == 2 && x.getattr("flags")?.getattr("owndata")?.extract::<bool>()?;
        let (a, dstr, copied): (Bound<'_, PyAny>, String, bool) = as_array.call1((&x,))?.extract()?;
        let dtype = dtype_of_numpy(&dstr).ok_or_else(|| {
            PyTypeError::new_err(format!("a returned array has numpy dtype {dstr}, which mpx does not move"))
        })?;
        let shape: Vec<usize> = a.getattr("shape")?.extract()?;
        let (ptr, len) = array_memory(&a)?;
        let host =
            PyHostArray { obj: a.unbind(), ptr, len, dtype, shape: shape.clone(), fresh: copied || alone };
        let raw = RawArray::new(dtype, shape, Box::new(host).into_bytes())
            .map_err(|e| PyValueError::new_err(e.to_string()))?;
        arrays.push(raw);
    }
    let bytes = payload.as_bytes();
    let (ptr, len) = (bytes.as_ptr(), bytes.len());
    let payload = Bytes::from_owner(Owner { _obj: payload.unbind().into_any(), ptr, len });
    Ok(CallReturn { payload, arrays })
}

fn py_error(py: Python<'_>, e: PyErr) -> RemoteError {
    let ename = e.get_type(py).name().map(|n| n.to_string()).unwrap_or_else(|_| "Exception".into());
    RemoteError::new(ename, e.value(py).to_string())
}

impl PythonKernel {
    /// Starts Python on this thread (which must be the thread that initialised MPI) and
    /// prepares the namespace; `rank` and `size` go into the `mpx_engine` module with the
    /// native functions of `steps`; what cells print goes to `output` as it is written.
    ///
    /// # Errors
    /// When Python cannot start or the helper fails to load.
    pub fn new(
        rank: usize,
        size: usize,
        steps: &[PyStep],
        output: Arc<OutputBuffer>,
    ) -> Result<Self, KernelStartError> {
        Python::initialize();
        let interrupt = Arc::new(PyInterrupt::for_this_thread());
        Python::attach(|py| {
            let code =
                CString::new(include_str!("cell.py")).map_err(|e| KernelStartError::Python(e.to_string()))?;
            let helper = PyModule::from_code(py, &code, c"mpx_cell.py", c"mpx_cell")
                .map_err(|e| KernelStartError::Python(format!("cell helper: {e}")))?;
            let cwd = std::env::current_dir().map(|p| p.display().to_string()).unwrap_or_default();
            let emit =
                emitter(py, output).map_err(|e| KernelStartError::Python(format!("output writer: {e}")))?;
            let (main_ident, mpi4py_version): (u64, Option<String>) = helper
                .getattr("setup")
                .and_then(|f| f.call1((cwd, emit)))
                .and_then(|v| v.extract())
                .map_err(|e| KernelStartError::Python(format!("python setup: {e}")))?;
            if let Some(theirs) = mpi4py_version {
                let ours = mpi::environment::library_version().unwrap_or_default();
                if !mpi_check::same_library(&ours, &theirs) {
                    return Err(KernelStartError::OtherMpi(mpi_check::mismatch(&ours, &theirs)));
                }
            }
            let module =
                PyModule::new(py, "mpx_engine").map_err(|e| KernelStartError::Python(e.to_string()))?;
            module.add("rank", rank).map_err(|e| KernelStartError::Python(e.to_string()))?;
            module.add("size", size).map_err(|e| KernelStartError::Python(e.to_string()))?;
            // The marker a function returns to send its result out of band (see `call_return`).
            helper
                .getattr("Returned")
                .and_then(|c| module.add("Returned", c))
                .map_err(|e| KernelStartError::Python(e.to_string()))?;
            for step in steps {
                step(&module).map_err(|e| KernelStartError::Python(format!("native functions: {e}")))?;
            }
            py.import("sys")
                .and_then(|sys| sys.getattr("modules"))
                .and_then(|m| m.set_item("mpx_engine", &module))
                .map_err(|e| KernelStartError::Python(e.to_string()))?;
            let ns = py
                .import("__main__")
                .and_then(|m| m.getattr("__dict__"))
                .and_then(|d| Ok(d.cast_into::<PyDict>()?))
                .map_err(|e| KernelStartError::Python(e.to_string()))?;
            let helper: Py<PyModule> = helper.unbind();
            let probe = Arc::new(PyProbe {
                main_ident,
                helper: helper.clone_ref(py),
                interrupt: interrupt.clone(),
                file: Mutex::new(None),
            });
            Ok(PythonKernel { ns: ns.unbind(), helper, count: 0, interrupt, probe })
        })
    }

    /// Runs `f` (a helper call) as a cell: marked running for interrupts, with any interrupt
    /// that arrives too late flushed before the next cell.
    fn guarded(
        &self,
        f: impl FnOnce(Python<'_>, &Bound<'_, PyModule>) -> PyResult<CellOutput>,
    ) -> CellOutput {
        Python::attach(|py| {
            let helper = self.helper.bind(py);
            self.interrupt.start();
            // The cell's MPI calls are interruptible from here (see `intercept`).
            let scope = crate::intercept::cell_scope();
            let result = f(py, helper);
            drop(scope);
            self.interrupt.finish(py);
            match result {
                Ok(out) => out,
                Err(e) => {
                    // An interrupt landed in the helper itself, outside the cell's try.
                    let _ = helper.getattr("restore_streams").and_then(|f| f.call0());
                    CellOutput::failed(py_error(py, e))
                }
            }
        })
    }
}

/// The native `_emit(index, text)` of `cell.py`'s writers: appends to `output` in pieces,
/// waiting (without the GIL, and still interruptible) while the buffer is full.
fn emitter(py: Python<'_>, output: Arc<OutputBuffer>) -> PyResult<Bound<'_, PyCFunction>> {
    PyCFunction::new_closure(py, Some(c"emit"), None, move |args, _kwargs| -> PyResult<()> {
        let py = args.py();
        let index: u8 = args.get_item(0)?.extract()?;
        let text = args.get_item(1)?;
        let text = text.cast::<PyString>()?.to_cow()?;
        let stream = if index == 0 { StreamName::Stdout } else { StreamName::Stderr };
        for piece in mpx_messages::output::pieces(&text, OUTPUT_CHUNK) {
            while !output.has_room() {
                py.detach(|| output.wait_room(std::time::Duration::from_millis(100)));
                py.check_signals()?;
            }
            output.append(stream, piece);
        }
        Ok(())
    })
}

impl Kernel for PythonKernel {
    fn execute(&mut self, code: &str, filename: Option<&str>) -> CellOutput {
        self.count += 1;
        let name = filename.map(str::to_string).unwrap_or_else(|| format!("<cell-{}>", self.count));
        *self.probe.file.lock().unwrap_or_else(|e| e.into_inner()) = filename.map(str::to_string);
        let out = self.guarded(|py, helper| {
            helper.getattr("run_cell")?.call1((code, self.ns.bind(py), &name))?.extract().map(output)
        });
        *self.probe.file.lock().unwrap_or_else(|e| e.into_inner()) = None;
        out
    }

    fn call(&mut self, function: &str, args: Vec<CallArg>) -> CellOutput {
        self.guarded(|py, helper| {
            let list = PyList::empty(py);
            for a in args {
                match a {
                    CallArg::Float(x) => list.append(x)?,
                    CallArg::Int(i) => list.append(i)?,
                    CallArg::Bool(b) => list.append(b)?,
                    CallArg::Str(s) => list.append(s)?,
                    CallArg::Array(a) => match a.into_any().downcast::<PyHostArray>() {
                        Ok(a) => list.append(a.obj.bind(py))?,
                        Err(_) => return Err(pyo3::exceptions::PyTypeError::new_err("not a numpy array")),
                    },
                }
            }
            let result = helper.getattr("call")?.call1((function, list.to_tuple(), self.ns.bind(py)))?;
            // The arguments' references go before `call_return` counts references.
            drop(list);
            let (stdout, stderr, value, error, returned): (_, _, _, _, Option<Bound<'_, PyAny>>) =
                result.extract()?;
            drop(result);
            let mut out = output((stdout, stderr, value, error));
            out.returned = returned.map(|marker| call_return(helper, marker)).transpose()?;
            Ok(out)
        })
    }

    fn new_array(&mut self, dtype: Dtype, shape: &[usize]) -> Result<Box<dyn HostArray>, RemoteError> {
        Python::attach(|py| {
            let make = || -> PyResult<PyHostArray> {
                let np = py.import("numpy")?;
                let shape_t = PyTuple::new(py, shape.iter())?;
                let obj = np.getattr("empty")?.call1((shape_t, dtype.numpy_str()))?;
                let (ptr, len) = array_memory(&obj)?;
                Ok(PyHostArray { obj: obj.unbind(), ptr, len, dtype, shape: shape.to_vec(), fresh: true })
            };
            make().map(|a| Box::new(a) as Box<dyn HostArray>).map_err(|e| py_error(py, e))
        })
    }

    fn bind(&mut self, name: &str, array: Box<dyn HostArray>) -> Result<(), RemoteError> {
        let a = array
            .into_any()
            .downcast::<PyHostArray>()
            .map_err(|_| RemoteError::new("TypeError", "not a numpy array"))?;
        Python::attach(|py| self.ns.bind(py).set_item(name, a.obj.bind(py)).map_err(|e| py_error(py, e)))
    }

    fn holds_mappings(&self) -> bool {
        true
    }

    fn bind_mapped(
        &mut self,
        name: &str,
        dtype: Dtype,
        shape: &[usize],
        mapping: Mapping,
    ) -> Result<(), RemoteError> {
        super::check_wire(dtype, shape, mapping.as_slice())?;
        if mapping.is_empty() {
            // Nothing to share: a new (empty) array, read-only like the mapping.
            let a = self.new_array(dtype, shape)?;
            let read_only = !mapping.is_writable();
            self.bind(name, a)?;
            return Python::attach(|py| {
                let ns = self.ns.bind(py);
                match ns.get_item(name) {
                    Ok(Some(a)) if read_only => a.call_method1("setflags", (false,)).map(drop),
                    Ok(_) => Ok(()),
                    Err(e) => Err(e),
                }
                .map_err(|e| py_error(py, e))
            });
        }
        Python::attach(|py| {
            let a = mapped::array_over(py, dtype, shape, mapping).map_err(|e| py_error(py, e))?;
            self.ns.bind(py).set_item(name, a).map_err(|e| py_error(py, e))
        })
    }

    fn array(&mut self, name: &str) -> Result<Box<dyn HostArray>, RemoteError> {
        Python::attach(|py| {
            let ns = self.ns.bind(py);
            let value = ns
                .get_item(name)
                .map_err(|e| py_error(py, e))?
                .ok_or_else(|| RemoteError::new("NameError", format!("name '{name}' is not defined")))?;
            let (obj, dstr, copied): (Bound<'_, PyAny>, String, bool) = self
                .helper
                .bind(py)
                .getattr("as_array")
                .and_then(|f| f.call1((value,)))
                .and_then(|r| r.extract())
                .map_err(|e| py_error(py, e))?;
            let dtype = dtype_of_numpy(&dstr).ok_or_else(|| {
                RemoteError::new(
                    "TypeError",
                    format!(
                        "'{name}' has numpy dtype {dstr}, which mpx does not move (numbers and bool only)"
                    ),
                )
            })?;
            let shape: Vec<usize> =
                obj.getattr("shape").and_then(|s| s.extract()).map_err(|e| py_error(py, e))?;
            let (ptr, len) = array_memory(&obj).map_err(|e| py_error(py, e))?;
            Ok(Box::new(PyHostArray { obj: obj.unbind(), ptr, len, dtype, shape, fresh: copied })
                as Box<dyn HostArray>)
        })
    }

    fn execution_count(&self) -> u64 {
        self.count
    }

    fn interrupter(&self) -> Arc<dyn Interrupt> {
        self.interrupt.clone()
    }

    fn prober(&self) -> Option<Arc<dyn Probe>> {
        Some(self.probe.clone())
    }
}
