//! An engine binary with native Rust functions callable from cells (the seed's "compiled
//! libraries exposed to Python"), in both kernels. Start a cluster with it:
//!
//! ```text
//! cargo build --examples
//! mpx cluster start -n 4 --engine target/debug/examples/mpx-engine-native
//! mpx px 'import numpy as np, mpx_engine; mpx_engine.norm2(np.ones(4))'     # Python: 2.0
//! mpx cluster start -n 4 --kernel rhai --engine target/debug/examples/mpx-engine-native
//! mpx px 'norm2(rand(10))'                                                  # rhai
//! ```

use clap::Parser;
use mpx_engine::{
    numpy::{IntoPyArray, PyArrayDyn, PyReadonlyArrayDyn},
    pyo3::{exceptions::PyValueError, prelude::*},
    ArrayValue, EngineArgs, Registry,
};

/// Euclidean norm of an array of any dtype (reads it without copying when it is f64).
fn norm2(a: ArrayValue) -> f64 {
    a.to_f64().iter().map(|x| x * x).sum::<f64>().sqrt()
}

/// `a * x + y`, element-wise, as a new f64 array.
fn axpy(
    a: f64,
    x: ArrayValue,
    y: ArrayValue,
) -> Result<ArrayValue, Box<mpx_engine::cells::rhai::EvalAltResult>> {
    let (x, y) = (x.to_f64(), y.to_f64());
    if x.shape() != y.shape() {
        return Err(format!("axpy: shapes {:?} and {:?} differ", x.shape(), y.shape()).into());
    }
    Ok(ArrayValue::from(&*x * a + &*y))
}

/// Python: Euclidean norm of a float64 numpy array, read in place (no copy), computed
/// without the GIL.
#[pyfunction(name = "norm2")]
fn py_norm2(py: Python<'_>, a: PyReadonlyArrayDyn<'_, f64>) -> f64 {
    let a = a.as_array();
    py.detach(|| a.iter().map(|x| x * x).sum::<f64>().sqrt())
}

/// Python: `a * x + y` on float64 numpy arrays (read in place), as a new numpy array (its
/// memory moves into numpy without a copy).
#[pyfunction(name = "axpy")]
fn py_axpy<'py>(
    py: Python<'py>,
    a: f64,
    x: PyReadonlyArrayDyn<'py, f64>,
    y: PyReadonlyArrayDyn<'py, f64>,
) -> PyResult<Bound<'py, PyArrayDyn<f64>>> {
    let (x, y) = (x.as_array(), y.as_array());
    if x.shape() != y.shape() {
        return Err(PyValueError::new_err(format!(
            "axpy: shapes {:?} and {:?} differ",
            x.shape(),
            y.shape()
        )));
    }
    Ok((&x * a + &y).into_pyarray(py))
}

/// Python: ends this rank's process at once, as a crashing native library would.
#[pyfunction(name = "exit_now")]
fn py_exit_now(code: i32) {
    std::process::exit(code)
}

fn main() -> anyhow::Result<()> {
    let opts = EngineArgs::parse().options();
    let mut registry = Registry::new();
    registry.add(|engine| {
        engine.register_fn("norm2", norm2);
        engine.register_fn("axpy", axpy);
        engine.register_fn("axpy", |a: i64, x: ArrayValue, y: ArrayValue| axpy(a as f64, x, y));
        // Ends this rank's process at once, as a crashing native library would.
        engine.register_fn("exit_now", |code: i64| -> () { std::process::exit(code as i32) });
    });
    registry.add_python(|m| {
        m.add_function(wrap_pyfunction!(py_norm2, m)?)?;
        m.add_function(wrap_pyfunction!(py_axpy, m)?)?;
        m.add_function(wrap_pyfunction!(py_exit_now, m)?)
    });
    mpx_engine::main_with(opts, registry)?;
    Ok(())
}
