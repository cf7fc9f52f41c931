//! numpy arrays over memfd mappings (the same-host path, see [`crate::shm`]): the array's data
//! pointer is the mapping's, and its base object, a [`MappedMemory`], owns the mapping, so the
//! memory stays mapped exactly as long as the array (or any view of it) lives and is unmapped
//! when the last one is freed.

use std::{ffi::c_int, ptr};

use mpx_messages::{memfd::Mapping, Dtype};
use numpy::{
    npyffi::{npy_intp, NpyTypes, NPY_ARRAY_WRITEABLE, PY_ARRAY_API},
    PyArrayDescr, PyArrayDescrMethods,
};
use pyo3::{exceptions::PyValueError, prelude::*};

/// The base object of a numpy array made over a mapping: owns the [`Mapping`] (unmapped when
/// Python frees this object, after the last array over it).
#[pyclass(frozen, module = "mpx_engine", name = "MappedMemory")]
pub struct MappedMemory {
    map: Mapping,
}

#[pymethods]
impl MappedMemory {
    /// Bytes mapped.
    fn __len__(&self) -> usize {
        self.map.len()
    }

    fn __repr__(&self) -> String {
        let kind = if self.map.is_writable() { "copy-on-write" } else { "read-only" };
        format!("<mpx_engine.MappedMemory: {} bytes, {kind}>", self.map.len())
    }
}

/// A C-contiguous numpy array of `dtype` and `shape` over `map`'s bytes (no copy): writable
/// when the mapping is (a private, copy-on-write one), read-only otherwise. The caller has
/// checked that the mapping holds exactly the array's bytes; it must not be empty (an empty
/// mapping has no address numpy would accept as aligned).
///
/// # Errors
/// A dimension numpy cannot hold, or numpy's own failure to make the array.
pub fn array_over<'py>(
    py: Python<'py>,
    dtype: Dtype,
    shape: &[usize],
    map: Mapping,
) -> PyResult<Bound<'py, PyAny>> {
    let expected = mpx_messages::array::byte_len(dtype, shape);
    if map.is_empty() || expected != Some(map.len()) {
        return Err(PyValueError::new_err(format!(
            "a mapping of {} bytes does not hold a {} array of shape {shape:?}",
            map.len(),
            dtype.name()
        )));
    }
    let mut dims = shape
        .iter()
        .map(|&d| npy_intp::try_from(d))
        .collect::<Result<Vec<_>, _>>()
        .map_err(|_| PyValueError::new_err(format!("shape {shape:?} is too large for numpy")))?;
    let nd = c_int::try_from(dims.len())
        .map_err(|_| PyValueError::new_err(format!("{} dimensions are too many", dims.len())))?;
    let descr = PyArrayDescr::new(py, dtype.numpy_str())?;
    let flags = if map.is_writable() { NPY_ARRAY_WRITEABLE } else { 0 };
    let data = map.as_ptr();
    let owner = Bound::new(py, MappedMemory { map })?;
    // SAFETY: `data` points at `map.len()` mapped bytes, exactly the C-contiguous array of
    // `dims` (checked above; the mapping is page-aligned). numpy takes the descriptor's
    // reference (`into_dtype_ptr` adds one) and computes C strides (none given); with `data`
    // given it neither owns nor frees the memory. The mapping moved into `owner`, which
    // `PyArray_SetBaseObject` makes the array's base (stealing our reference, also on
    // failure): the memory stays mapped while the array or any view of it lives. Writes
    // through a writable array touch only a private copy-on-write mapping.
    unsafe {
        let array = PY_ARRAY_API.PyArray_NewFromDescr(
            py,
            PY_ARRAY_API.get_type_object(py, NpyTypes::PyArray_Type),
            descr.into_dtype_ptr(),
            nd,
            dims.as_mut_ptr(),
            ptr::null_mut(),
            data.cast(),
            flags,
            ptr::null_mut(),
        );
        // On failure `owner` is dropped here and unmaps (no array refers to it).
        let array = Bound::from_owned_ptr_or_err(py, array)?;
        if PY_ARRAY_API.PyArray_SetBaseObject(py, array.as_ptr().cast(), owner.into_ptr()) != 0 {
            // numpy released the owner (the mapping is gone): the array is dropped here
            // without its data ever being read.
            return Err(PyErr::fetch(py));
        }
        Ok(array)
    }
}
