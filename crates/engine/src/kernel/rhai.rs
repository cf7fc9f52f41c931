//! The rhai kernel: `mpx_cells::Interpreter` behind [`Kernel`].

use std::{
    any::Any,
    sync::{
        atomic::{AtomicBool, Ordering},
        Arc,
    },
};

use bytes::Bytes;
use mpx_cells::{raw, rhai::Dynamic, ArrayValue, CellError, Collectives, Interpreter};
use mpx_messages::{Dtype, RemoteError};

use super::{CallArg, CellOutput, HostArray, Interrupt, Kernel, Probe};

fn remote(e: CellError) -> RemoteError {
    RemoteError { line: e.line, ..RemoteError::new(e.ename, e.evalue) }
}

/// An rhai array, always in standard (C) layout.
struct RhaiArray(ArrayValue);

impl HostArray for RhaiArray {
    fn dtype(&self) -> Dtype {
        self.0.dtype()
    }
    fn shape(&self) -> &[usize] {
        self.0.shape()
    }
    fn bytes(&self) -> &[u8] {
        raw::le_bytes(&self.0).expect("RhaiArray holds standard-layout arrays")
    }
    fn bytes_mut(&mut self) -> &mut [u8] {
        raw::le_bytes_mut(&mut self.0)
    }
    fn into_bytes(self: Box<Self>) -> Bytes {
        raw::to_bytes(&self.0)
    }
    fn into_any(self: Box<Self>) -> Box<dyn Any> {
        self
    }
}

/// Sets the interpreter's interrupt flag (checked between rhai operations).
struct FlagInterrupt(Arc<AtomicBool>);

impl Interrupt for FlagInterrupt {
    fn interrupt(&self) {
        self.0.store(true, Ordering::SeqCst);
    }
}

/// The rhai kernel.
pub struct RhaiKernel {
    interp: Interpreter,
    flag: Arc<AtomicBool>,
}

impl RhaiKernel {
    /// A kernel whose cells talk to the other ranks through `comm`, with `registry`'s native
    /// functions.
    pub fn new(comm: Box<dyn Collectives>, registry: mpx_cells::Registry) -> Self {
        let flag = Arc::new(AtomicBool::new(false));
        RhaiKernel { interp: Interpreter::new(comm, registry, flag.clone()), flag }
    }
}

fn output(cell: mpx_cells::CellOutcome) -> CellOutput {
    CellOutput {
        stdout: cell.stdout,
        stderr: String::new(),
        value: cell.value,
        error: cell.error.map(remote),
        returned: None,
    }
}

impl Kernel for RhaiKernel {
    fn execute(&mut self, code: &str, _filename: Option<&str>) -> CellOutput {
        output(self.interp.execute(code))
    }

    fn call(&mut self, function: &str, args: Vec<CallArg>) -> CellOutput {
        let mut values = Vec::with_capacity(args.len());
        for a in args {
            values.push(match a {
                CallArg::Float(x) => Dynamic::from_float(x),
                CallArg::Int(i) => Dynamic::from_int(i),
                CallArg::Bool(b) => Dynamic::from_bool(b),
                CallArg::Str(s) => Dynamic::from(s),
                CallArg::Array(a) => match a.into_any().downcast::<RhaiArray>() {
                    Ok(a) => Dynamic::from(a.0),
                    Err(_) => return CellOutput::failed(RemoteError::new("TypeError", "not an rhai array")),
                },
            });
        }
        output(self.interp.call(function, values))
    }

    fn new_array(&mut self, dtype: Dtype, shape: &[usize]) -> Result<Box<dyn HostArray>, RemoteError> {
        let n = mpx_messages::array::byte_len(dtype, shape)
            .ok_or_else(|| RemoteError::new("ValueError", format!("shape {shape:?} is too large")))?;
        let a = raw::from_bytes(dtype, shape, &vec![0u8; n]).map_err(remote)?;
        Ok(Box::new(RhaiArray(a)))
    }

    fn bind(&mut self, name: &str, array: Box<dyn HostArray>) -> Result<(), RemoteError> {
        let a = array
            .into_any()
            .downcast::<RhaiArray>()
            .map_err(|_| RemoteError::new("TypeError", "not an rhai array"))?;
        self.interp.set_array(name, a.0);
        Ok(())
    }

    fn array(&mut self, name: &str) -> Result<Box<dyn HostArray>, RemoteError> {
        let mut a = self.interp.get_array(name).map_err(remote)?;
        if raw::le_bytes(&a).is_none() {
            raw::le_bytes_mut(&mut a); // a standard-layout copy; the variable is unchanged
        }
        Ok(Box::new(RhaiArray(a)))
    }

    fn execution_count(&self) -> u64 {
        self.interp.execution_count()
    }

    fn interrupter(&self) -> Arc<dyn Interrupt> {
        Arc::new(FlagInterrupt(self.flag.clone()))
    }

    fn prober(&self) -> Option<Arc<dyn Probe>> {
        None
    }
}
