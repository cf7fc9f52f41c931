//! numpy arrays to send, read in place: the Python side hands over
//! `(dtype, shape, address, nbytes, owner)` of a C-contiguous little-endian array (from its
//! `__array_interface__`), and the bytes become a [`Bytes`] that keeps `owner` alive and is
//! written to the socket from where it is.

use bytes::Bytes;
use mpx_client::{ApplyArg, Dtype, RawArray};
use pyo3::{
    exceptions::{PyTypeError, PyValueError},
    prelude::*,
    types::{PyBool, PyFloat, PyInt, PyString, PyTuple},
};

/// Keeps a Python object (the array) alive behind a [`Bytes`]; dropped without the GIL, PyO3
/// defers the decref to the next thread that holds it.
struct PyOwner {
    _obj: Py<PyAny>,
    ptr: usize,
    len: usize,
}

impl AsRef<[u8]> for PyOwner {
    fn as_ref(&self) -> &[u8] {
        if self.len == 0 {
            return &[];
        }
        // SAFETY: the Python side passed the data pointer and byte length of a C-contiguous
        // numpy array, which `_obj` keeps alive; the bytes are only read. (As with
        // ipyparallel, the user must not write to an array while it is being sent.)
        unsafe { std::slice::from_raw_parts(self.ptr as *const u8, self.len) }
    }
}

/// The array described by `(dtype, shape, address, nbytes, owner)`, without a copy.
///
/// # Errors
/// A malformed tuple, an unknown dtype, or a length that does not match the shape.
pub fn raw_array(t: &Bound<'_, PyTuple>) -> PyResult<RawArray> {
    let (dtype, shape, ptr, len, owner): (String, Vec<usize>, usize, usize, Bound<'_, PyAny>) =
        t.extract()?;
    let dtype = Dtype::parse(&dtype)
        .ok_or_else(|| PyTypeError::new_err(format!("mpx does not move numpy dtype {dtype}")))?;
    let data = Bytes::from_owner(PyOwner { _obj: owner.unbind(), ptr, len });
    RawArray::new(dtype, shape, data).map_err(|e| PyValueError::new_err(e.to_string()))
}

/// One argument of an apply: str, bool, int, float, or an array tuple.
///
/// # Errors
/// Any other type, or a bad array.
pub fn apply_arg(a: &Bound<'_, PyAny>) -> PyResult<ApplyArg> {
    if let Ok(t) = a.cast::<PyTuple>() {
        return raw_array(t).map(ApplyArg::Array);
    }
    if a.is_instance_of::<PyString>() {
        return Ok(ApplyArg::Str(a.extract()?));
    }
    if a.is_instance_of::<PyBool>() {
        return Ok(ApplyArg::Bool(a.extract()?));
    }
    if a.is_instance_of::<PyInt>() {
        return Ok(ApplyArg::Int(a.extract()?));
    }
    if a.is_instance_of::<PyFloat>() {
        return Ok(ApplyArg::Float(a.extract()?));
    }
    Err(PyTypeError::new_err(format!("cannot send a {} as an apply argument", a.get_type().name()?)))
}
