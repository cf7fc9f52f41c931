//! The kernel: what runs cells on an engine. The worker, the data plane and the control thread
//! see only [`Kernel`], [`HostArray`], [`Interrupt`] and [`Probe`] (and [`returned`], which lays a
//! call's out-of-band return out as reply buffers); two kernels implement them:
//! - [`python`]: embedded CPython with one persistent `__main__` namespace (numpy, mpi4py);
//! - [`rhai`](mod@rhai): the zero-dependency cell language of `mpx_cells`.

use std::any::Any;

use bytes::Bytes;
use mpx_messages::{memfd::Mapping, Arg, Dtype, RemoteError};

pub mod python;
pub mod returned;
pub mod rhai;

/// What running a cell (or a call) produced.
#[derive(Debug, Clone, Default)]
pub struct CellOutput {
    /// Everything the cell printed.
    pub stdout: String,
    /// Everything the cell wrote to stderr.
    pub stderr: String,
    /// The display form (`repr`) of the cell's value, when it has one.
    pub value: Option<String>,
    /// The error that stopped the cell.
    pub error: Option<RemoteError>,
    /// What a call returned out of band instead of a displayed value (see [`Kernel::call`]).
    pub returned: Option<CallReturn>,
}

/// What a call returned for the reply's buffers rather than its display: an opaque payload
/// (for the Python kernel, the bytes of an `mpx_engine.Returned`: the Python client's pickled
/// result) and arrays (the numpy arrays that pickle refers to by index).
#[derive(Debug, Clone, Default)]
pub struct CallReturn {
    /// The payload's bytes.
    pub payload: Bytes,
    /// The arrays, in the payload's order: bytes the kernel no longer writes to (shared when
    /// nothing else refers to the array, copied otherwise).
    pub arrays: Vec<mpx_messages::RawArray>,
}

impl CellOutput {
    /// An output that is only `error`.
    pub fn failed(error: RemoteError) -> Self {
        CellOutput { error: Some(error), ..CellOutput::default() }
    }
}

/// An argument of a function call (apply).
pub enum CallArg {
    /// A float.
    Float(f64),
    /// An integer.
    Int(i64),
    /// A boolean.
    Bool(bool),
    /// A string.
    Str(String),
    /// An array made by the kernel ([`Kernel::new_array`]).
    Array(Box<dyn HostArray>),
}

/// An array in a kernel's own memory (a numpy array, an rhai `ArrayValue`), C-contiguous,
/// whose bytes MPI and the network read and write in place.
pub trait HostArray {
    /// Element type.
    fn dtype(&self) -> Dtype;
    /// Shape (row-major).
    fn shape(&self) -> &[usize];
    /// The elements as little-endian bytes in C order.
    fn bytes(&self) -> &[u8];
    /// The same bytes, writable (to receive into).
    fn bytes_mut(&mut self) -> &mut [u8];
    /// The bytes as a `Bytes` that keeps the array alive (no copy where the kernel can
    /// guarantee nobody writes to the array any more; one copy otherwise).
    fn into_bytes(self: Box<Self>) -> Bytes;
    /// The bytes, without a copy where the kernel can share its array's memory: the caller
    /// lets no kernel code run (no cell could write to the array) until every clone of them is
    /// dropped. By default the same as [`into_bytes`](Self::into_bytes).
    fn into_shared_bytes(self: Box<Self>) -> Bytes {
        self.into_bytes()
    }
    /// For the kernel that made it, to take it back in [`Kernel::bind`].
    fn into_any(self: Box<Self>) -> Box<dyn Any>;
}

/// Stops the running cell, from another thread (the control thread).
pub trait Interrupt: Send + Sync {
    /// Interrupts the cell now running, if any; a cell that has ended is never affected,
    /// and neither is the next one.
    fn interrupt(&self);
}

/// Says where the running cell is (file, line, function), from another thread. May block
/// (e.g. on Python's GIL): callers run it off their event loop and with a timeout.
pub trait Probe: Send + Sync {
    /// `<cell-7> line 3 in f()`-style text, or `None` when no cell runs.
    fn probe(&self) -> Option<String>;
}

/// One engine's interpreter: runs cells in a persistent namespace and binds and reads arrays.
/// Lives on the MPI thread (the thread that initialised MPI).
pub trait Kernel {
    /// Runs a cell. `filename` names a file run with `mpx run`; otherwise the cell is
    /// `<cell-N>` (N = its execution count).
    fn execute(&mut self, code: &str, filename: Option<&str>) -> CellOutput;
    /// Calls a function of the namespace (or a native one) with arguments. A function that
    /// returns the kernel's out-of-band marker (Python: `mpx_engine.Returned(payload, arrays)`)
    /// gives [`CellOutput::returned`] instead of a displayed value.
    fn call(&mut self, function: &str, args: Vec<CallArg>) -> CellOutput;
    /// A new C-contiguous array to receive into (contents unspecified).
    ///
    /// # Errors
    /// A dtype the kernel cannot hold, or memory.
    fn new_array(&mut self, dtype: Dtype, shape: &[usize]) -> Result<Box<dyn HostArray>, RemoteError>;
    /// Binds `name` to an array made by [`new_array`](Self::new_array).
    ///
    /// # Errors
    /// An array from another kernel, or a bad name.
    fn bind(&mut self, name: &str, array: Box<dyn HostArray>) -> Result<(), RemoteError>;
    /// Binds `name` to a `dtype` array of `shape` whose bytes are `mapping` (a memfd mapped
    /// by the same-host path, see [`crate::shm`]). A kernel that can hold foreign memory
    /// makes the array over the mapping without a copy, keeps the mapping alive as long as the
    /// array and unmaps it when the array is freed (Python); by default the bytes are copied
    /// into a new kernel array (rhai). Writable when the mapping is (a copy-on-write one);
    /// over a read-only shared mapping (`push --shared`) the array is read-only too, except
    /// where the kernel copied it (rhai's copy is its own, writable).
    ///
    /// # Errors
    /// A mapping whose length does not match dtype and shape, a bool byte other than 0 or 1,
    /// a dtype the kernel refuses, or a bad name.
    fn bind_mapped(
        &mut self,
        name: &str,
        dtype: Dtype,
        shape: &[usize],
        mapping: Mapping,
    ) -> Result<(), RemoteError> {
        check_wire(dtype, shape, mapping.as_slice())?;
        let mut a = self.new_array(dtype, shape)?;
        a.bytes_mut().copy_from_slice(mapping.as_slice());
        drop(mapping);
        self.bind(name, a)
    }
    /// Whether [`bind_mapped`](Self::bind_mapped) keeps the mapping as the array's memory
    /// (no copy): then an array received over TCP is received into a warm memfd
    /// ([`crate::landing`]) rather than into fresh pages.
    fn holds_mappings(&self) -> bool {
        false
    }
    /// The variable `name` as an array, read in place when it is one already.
    ///
    /// # Errors
    /// `NameError` when it does not exist, `TypeError` when it is no array of a wire dtype.
    fn array(&mut self, name: &str) -> Result<Box<dyn HostArray>, RemoteError>;
    /// Cells run so far.
    fn execution_count(&self) -> u64;
    /// The handle other threads use to interrupt cells.
    fn interrupter(&self) -> std::sync::Arc<dyn Interrupt>;
    /// The handle `mpx where` uses to see inside a running cell, if the kernel has one.
    fn prober(&self) -> Option<std::sync::Arc<dyn Probe>>;
}

/// Arguments of an apply as kernel values (arrays copied once from the wire into the
/// kernel's memory).
///
/// # Errors
/// A missing buffer or an array that does not match its description.
pub fn call_args(
    kernel: &mut dyn Kernel,
    args: Vec<Arg>,
    buffers: &[Bytes],
) -> Result<Vec<CallArg>, RemoteError> {
    args.into_iter()
        .map(|a| match a {
            Arg::Float(x) => Ok(CallArg::Float(x)),
            Arg::Int(i) => Ok(CallArg::Int(i)),
            Arg::Bool(b) => Ok(CallArg::Bool(b)),
            Arg::Str(s) => Ok(CallArg::Str(s)),
            Arg::Array(meta) => {
                let bytes = buffers.get(meta.buffer).ok_or_else(|| {
                    RemoteError::new("ValueError", format!("argument buffer {} is missing", meta.buffer))
                })?;
                array_from_wire(kernel, meta.dtype, &meta.shape, bytes).map(CallArg::Array)
            }
        })
        .collect()
}

/// An array made from wire bytes: a new kernel array with the bytes copied in (bool bytes
/// checked to be 0 or 1).
///
/// # Errors
/// A length that does not match dtype and shape, a bad bool, or a dtype the kernel refuses.
pub fn array_from_wire(
    kernel: &mut dyn Kernel,
    dtype: Dtype,
    shape: &[usize],
    bytes: &[u8],
) -> Result<Box<dyn HostArray>, RemoteError> {
    check_wire(dtype, shape, bytes)?;
    let mut a = kernel.new_array(dtype, shape)?;
    a.bytes_mut().copy_from_slice(bytes);
    Ok(a)
}

/// Checks that `bytes` hold a `dtype` array of `shape` (and only 0/1 for bool).
///
/// # Errors
/// A `ValueError` saying what does not match.
pub fn check_wire(dtype: Dtype, shape: &[usize], bytes: &[u8]) -> Result<(), RemoteError> {
    let n = mpx_messages::array::byte_len(dtype, shape)
        .ok_or_else(|| RemoteError::new("ValueError", format!("shape {shape:?} is too large")))?;
    if bytes.len() != n {
        return Err(RemoteError::new(
            "ValueError",
            format!(
                "{} bytes do not hold a {} array of shape {shape:?} ({n} bytes)",
                bytes.len(),
                dtype.name()
            ),
        ));
    }
    if dtype == Dtype::Bool {
        if let Some(b) = bytes.iter().find(|&&b| b > 1) {
            return Err(RemoteError::new("ValueError", format!("byte {b} is not a bool (0 or 1)")));
        }
    }
    Ok(())
}
